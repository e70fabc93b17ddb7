//! `client --host managerhost -p 8080`: reads commands from stdin, one per line (or runs the one
//! given after the flags). Wiring only; the commands are in `skiff::client`.

use argh::FromArgs;
use skiff::cli::{self, LogLevel};
use skiff::client::{self, Command};
use skiff::http::ManagerClient;
use skiff::signals::TerminationSignals;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Skiff client: talks to the manager's API. Commands: start FILE, stop ID, get ID, list,
/// list-nodes, help, quit.
#[derive(FromArgs)]
struct Args {
    /// the manager's host (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    host: String,
    /// the manager's port (default 8080)
    #[argh(option, short = 'p', default = "8080")]
    port: u16,
    /// print the API's JSON instead of tables
    #[argh(switch)]
    json: bool,
    /// a file holding the cluster token (mode 600); default: the SKIFF_TOKEN environment variable
    #[argh(option)]
    token_file: Option<std::path::PathBuf>,
    /// log level: off, error, warn (default), info, debug, trace
    #[argh(option, default = "LogLevel(log::LevelFilter::Warn)")]
    log_level: LogLevel,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    #[allow(dead_code)]
    version: bool,
    /// a command to run once instead of reading stdin
    #[argh(positional, greedy)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args: Args = cli::parse_args("client");
    cli::init_logging(args.log_level);
    // Ctrl-C (or SIGTERM) leaves at once, mid-call included, with the usual exit code 130
    if let Ok(signals) = TerminationSignals::block() {
        std::thread::spawn(move || {
            signals.wait();
            eprintln!();
            std::process::exit(130);
        });
    }
    let token = match skiff::auth::load(args.token_file.as_deref(), std::env::var(skiff::auth::TOKEN_ENV).ok()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let api = ManagerClient::new(&args.host, args.port, token.as_ref());
    let mut out = std::io::stdout();
    if !args.command.is_empty() {
        let words: Vec<&str> = args.command.iter().map(String::as_str).collect();
        return match client::parse_words(&words) {
            Ok(Some(cmd)) => match client::run(&cmd, &api, args.json, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Ok(None) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut failed = false;
    loop {
        if interactive {
            print!("skiff> ");
            let _ = out.flush();
        }
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
        let result = match client::parse_line(&line) {
            Ok(Some(Command::Quit)) => break,
            Ok(Some(cmd)) => client::run(&cmd, &api, args.json, &mut out),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("error: {e}");
            failed = true;
        }
        let _ = out.flush();
    }
    // piped input: say with the exit code whether every command worked
    if failed && !interactive {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
