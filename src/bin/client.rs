//! `client --host managerhost -p 8080`: reads commands from stdin, one per line (or runs the one
//! given after the flags). Wiring only; the commands, the loop and the exit codes are in
//! `skiff::client`.

use argh::FromArgs;
use skiff::cli::{self, LogLevel};
use skiff::client;
use skiff::signals::TerminationSignals;
use std::process::ExitCode;

/// Skiff client: talks to the manager's API. Commands (one per line on stdin, or one after the
/// flags): start, stop, get, logs, events, list, list-nodes, drain, activate, remove-node,
/// service ..., help, quit; `help` lists them with their options.
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
    /// log level: off, error, warn, info, debug, trace (default: RUST_LOG, else warn)
    #[argh(option)]
    log_level: Option<LogLevel>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    #[allow(dead_code, reason = "declared for --help; `cli::wants_version` reads the flag before argh parses")]
    version: bool,
    /// a command to run once instead of reading stdin
    #[argh(positional, greedy)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Args = cli::parse_args_from("client", client::command_words_apart(raw));
    cli::init_logging(args.log_level, LogLevel(log::LevelFilter::Warn));
    // Ctrl-C (or SIGTERM) leaves at once, mid-call included, with the usual exit code 130
    if let Ok(signals) = TerminationSignals::block() {
        std::thread::spawn(move || {
            signals.wait();
            eprintln!();
            std::process::exit(130);
        });
    }
    let opts = client::Options {
        host: args.host,
        port: args.port,
        json: args.json,
        token_file: args.token_file,
        command: args.command,
    };
    ExitCode::from(client::main(opts))
}
