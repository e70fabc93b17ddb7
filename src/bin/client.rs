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

/// The client's flags that take a value (the word after them is not a command).
const VALUED: [&str; 5] = ["--host", "-p", "--port", "--token-file", "--log-level"];

/// The arguments with `--` put before the command's first word, so that the command's words are
/// never taken for the client's own: `client help` runs the `help` command (argh would print its
/// usage), `client logs ID -f` keeps `-f` for `logs`.
fn command_words_apart(raw: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(raw.len() + 1);
    let mut words = raw.into_iter();
    while let Some(word) = words.next() {
        if word == "--" || !word.starts_with('-') {
            if word != "--" {
                out.push("--".to_string());
            }
            out.push(word);
            out.extend(words);
            break;
        }
        let valued = VALUED.contains(&word.as_str());
        out.push(word);
        if valued {
            out.extend(words.next());
        }
    }
    out
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Args = cli::parse_args_from("client", command_words_apart(raw));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_s_words_are_kept_apart_from_the_client_s_flags() {
        let w = |ws: &[&str]| ws.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(command_words_apart(w(&["help"])), w(&["--", "help"]));
        assert_eq!(
            command_words_apart(w(&["-p", "9", "--host", "m", "logs", "ID", "-f"])),
            w(&["-p", "9", "--host", "m", "--", "logs", "ID", "-f"])
        );
        assert_eq!(command_words_apart(w(&["--json", "list"])), w(&["--json", "--", "list"]));
        assert_eq!(command_words_apart(w(&["--help"])), w(&["--help"]), "the client's own help stays");
        assert_eq!(command_words_apart(w(&["-p", "9", "--", "list"])), w(&["-p", "9", "--", "list"]));
        assert_eq!(command_words_apart(w(&[])), w(&[]));
    }
}
