//! The line-based client: commands read from stdin (or given once on the command line), each one
//! REST call to the manager, answers printed as tables or as the API's JSON.
//!
//! Owns command parsing (and telling a one-shot command's words from the client's flags,
//! `command_words_apart`), the read-eval loop, the exit-code policy (`session`) and output
//! formatting; the calls themselves are `http::ManagerClient`'s typed methods.

mod nodes;
mod services;
mod tables;

pub use tables::*;

use crate::http::{ClientError, ManagerClient};
use crate::task::TaskId;
use crate::time::Timestamp;
use std::io::{BufRead, Write};
use std::path::PathBuf;

pub const HELP: &str = "\
commands:
  start FILE     submit the task spec in FILE (JSON); prints the new task's id
  start --dry-run FILE
                 where the task would go, and why not elsewhere; places nothing
  stop ID        stop a task (its container gets SIGTERM, then SIGKILL after a grace period)
  get ID [--wait STATE [--timeout S]]
                 show one task; with --wait, once it reads STATE (exit 1 if not within S, 60 by default)
  events [--follow] [--task ID] [--node NAME] [--service NAME]
                 the cluster's recent history (Ctrl-C stops following)
  logs ID [--tail N] [--follow] [--timestamps]
                 print a task's output (Ctrl-C stops following)
  list [--service NAME]
                 list all tasks (or the service's replicas); SERVICE is name@version
  list-nodes     list the workers, their status and availability
  help           show this help
  quit           leave (end of input does too)
nodes:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(PathBuf),
    DryRun(PathBuf),
    Stop(String),
    Get(String),
    Wait {
        id: String,
        state: crate::task::TaskState,
        timeout_s: u64,
    },
    Events {
        follow: bool,
        task: Option<String>,
        node: Option<String>,
        service: Option<String>,
    },
    Logs {
        id: String,
        tail: Option<u64>,
        follow: bool,
        timestamps: bool,
    },
    /// All tasks, or one service's replicas.
    List(Option<String>),
    ListNodes,
    Node(nodes::NodeCmd),
    Service(services::ServiceCmd),
    Help,
    Quit,
}

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    parse_words(&words)
}

pub fn parse_words(words: &[&str]) -> Result<Option<Command>, String> {
    let one_arg = |what: &str| -> Result<String, String> {
        match words {
            [_, arg] => Ok(arg.to_string()),
            _ => Err(format!("usage: {} {what}", words[0])),
        }
    };
    let no_arg = |cmd: Command| -> Result<Option<Command>, String> {
        if words.len() == 1 {
            Ok(Some(cmd))
        } else {
            Err(format!("{} takes no arguments", words[0]))
        }
    };
    match words.first().copied() {
        None => Ok(None),
        Some(w) if w.starts_with('#') => Ok(None),
        Some("start") if words.get(1) == Some(&"--dry-run") => match words {
            [_, _, file] => Ok(Some(Command::DryRun(PathBuf::from(file)))),
            _ => Err("usage: start --dry-run FILE".into()),
        },
        Some("start") => one_arg("FILE").map(|f| Some(Command::Start(PathBuf::from(f)))),
        Some("stop") => one_arg("ID").map(|id| Some(Command::Stop(id))),
        Some("get") if words.len() > 2 => parse_wait(&words[1..]).map(Some),
        Some("get") => one_arg("ID").map(|id| Some(Command::Get(id))),
        Some("events") => parse_events(&words[1..]).map(Some),
        Some("logs") => parse_logs(&words[1..]).map(Some),
        Some("list") => match words {
            [_] => Ok(Some(Command::List(None))),
            [_, "--service", name] => Ok(Some(Command::List(Some(name.to_string())))),
            _ => Err("usage: list [--service NAME]".into()),
        },
        Some("list-nodes") => no_arg(Command::ListNodes),
        Some("drain" | "activate" | "remove-node") => nodes::parse(words).map(|c| Some(Command::Node(c))),
        Some("service") => services::parse(&words[1..]).map(|c| Some(Command::Service(c))),
        Some("help") => no_arg(Command::Help),
        Some("quit" | "exit") => no_arg(Command::Quit),
        Some(other) => Err(format!("unknown command {other:?}; try help")),
    }
}

fn parse_wait(args: &[&str]) -> Result<Command, String> {
    const USAGE: &str = "usage: get ID --wait STATE [--timeout S]";
    let state_of = |s: &str| {
        let names: Vec<&str> = crate::task::TaskState::ALL.iter().map(|s| s.as_str()).collect();
        crate::task::TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("--wait takes one of {}", names.join(", ")))
    };
    match args {
        [id, "--wait", state] => Ok(Command::Wait { id: id.to_string(), state: state_of(state)?, timeout_s: 60 }),
        [id, "--wait", state, "--timeout", s] | [id, "--timeout", s, "--wait", state] => {
            let timeout_s = s.parse::<u64>().map_err(|_| format!("--timeout takes seconds; {USAGE}"))?;
            Ok(Command::Wait { id: id.to_string(), state: state_of(state)?, timeout_s })
        }
        _ => Err(USAGE.to_string()),
    }
}

fn parse_events(args: &[&str]) -> Result<Command, String> {
    const USAGE: &str = "usage: events [--follow] [--task ID] [--node NAME] [--service NAME]";
    let (mut follow, mut task, mut node, mut service) = (false, None, None, None);
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            "--follow" | "-f" => follow = true,
            "--task" => task = Some(args.get(i + 1).ok_or(USAGE)?.to_string()),
            "--node" => node = Some(args.get(i + 1).ok_or(USAGE)?.to_string()),
            "--service" => service = Some(args.get(i + 1).ok_or(USAGE)?.to_string()),
            _ => return Err(USAGE.to_string()),
        }
        i += if matches!(args[i], "--task" | "--node" | "--service") { 2 } else { 1 };
    }
    Ok(Command::Events { follow, task, node, service })
}

fn parse_logs(args: &[&str]) -> Result<Command, String> {
    const USAGE: &str = "usage: logs ID [--tail N] [--follow] [--timestamps]";
    let (mut id, mut tail, mut follow, mut timestamps) = (None, None, false, false);
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            "--follow" | "-f" => follow = true,
            "--timestamps" | "-t" => timestamps = true,
            "--tail" | "-n" => {
                i += 1;
                let n = args.get(i).and_then(|n| n.parse::<u64>().ok());
                tail = Some(n.ok_or_else(|| format!("--tail takes a number of lines; {USAGE}"))?);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}; {USAGE}")),
            word if id.is_none() => id = Some(word.to_string()),
            _ => return Err(USAGE.to_string()),
        }
        i += 1;
    }
    let id = id.ok_or_else(|| USAGE.to_string())?;
    Ok(Command::Logs { id, tail, follow, timestamps })
}

/// Why a command failed, and so which exit code a one-shot or piped run ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The command line or the line read is not a command (exit code 2).
    Usage(String),
    /// The command was understood and did not work (exit code 1).
    Failed(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

/// Where the client's commands come from.
pub enum Input<'a> {
    /// One command from the command line, then exit.
    Once(Vec<String>),
    /// Lines from stdin; `interactive` (a terminal) gets a prompt, and failures do not change
    /// the exit code (a person saw them), while piped input exits 1 if any command failed and 2
    /// if any line was not a command.
    Lines { reader: &'a mut dyn BufRead, interactive: bool },
}

/// What the client's command line asks for.
pub struct Options {
    pub host: String,
    pub port: u16,
    /// Print the API's JSON instead of tables.
    pub json: bool,
    pub token_file: Option<PathBuf>,
    /// One command to run; empty: read commands from stdin.
    pub command: Vec<String>,
}

impl Options {
    /// Takes the client's own flags out of a one-shot command, wherever they are
    /// (`client list --json` as `client --json list`): none of them is also a command's.
    pub fn take_flags_from_command(&mut self) -> Result<(), String> {
        let mut rest = Vec::with_capacity(self.command.len());
        let mut words = std::mem::take(&mut self.command).into_iter();
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (word.clone(), None),
            };
            let mut value =
                |name: &str| inline.clone().or_else(|| words.next()).ok_or_else(|| format!("{name} takes a value"));
            match flag.as_str() {
                "--json" if inline.is_none() => self.json = true,
                "--host" => self.host = value("--host")?,
                "-p" | "--port" => {
                    let v = value("--port")?;
                    self.port = v.parse().map_err(|_| format!("--port: {v:?} is not a port"))?;
                }
                "--token-file" => self.token_file = Some(PathBuf::from(value("--token-file")?)),
                _ => rest.push(word),
            }
        }
        self.command = rest;
        Ok(())
    }
}

/// The client's flags that take a value (the word after them is not a command; `bin/client.rs`
/// declares them).
const VALUED: [&str; 5] = ["--host", "-p", "--port", "--token-file", "--log-level"];

/// The arguments with `--` put before the command's first word, so that the command's words are
/// never taken for the client's own: `client help` runs the `help` command (argh would print its
/// usage), `client logs ID -f` keeps `-f` for `logs`.
pub fn command_words_apart(raw: Vec<String>) -> Vec<String> {
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

/// The client after its flags: the token (`--token-file`, else `SKIFF_TOKEN`), the manager's
/// address, then the commands of `Input::Once` or of stdin. Returns the exit code.
pub fn main(mut opts: Options) -> u8 {
    let mut err = std::io::stderr();
    if let Err(e) = opts.take_flags_from_command() {
        return report(&mut err, &Failure::Usage(e));
    }
    let token = match crate::auth::load(opts.token_file.as_deref(), std::env::var(crate::auth::TOKEN_ENV).ok()) {
        Ok(token) => token,
        Err(e) => return report(&mut err, &Failure::Usage(e)),
    };
    let api = ManagerClient::new(&opts.host, opts.port, token.as_ref());
    let stdin = std::io::stdin();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    let mut lines = stdin.lock();
    let input = if opts.command.is_empty() {
        Input::Lines { reader: &mut lines, interactive }
    } else {
        Input::Once(opts.command)
    };
    session(&api, opts.json, input, &mut std::io::stdout(), &mut err)
}

/// The one place a failure is shown: once, on stderr; its exit code.
fn report(err: &mut dyn Write, f: &Failure) -> u8 {
    crate::control::best_effort(writeln!(err, "error: {f}"));
    f.exit_code()
}

/// Runs the commands, prints each failure once on `err`, and returns the exit code (0; 1 when a
/// command failed; 2 for a usage error).
pub fn session(api: &ManagerClient, json: bool, input: Input<'_>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match input {
        Input::Once(words) => {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let result = parse_words(&words)
                .map_err(Failure::Usage)
                .and_then(|cmd| cmd.map_or(Ok(()), |cmd| run(&cmd, api, json, out)));
            result.err().map_or(0, |f| report(err, &f))
        }
        Input::Lines { reader, interactive } => {
            // the worst of the failures: a usage error (2) outranks a failed command (1)
            let mut code = 0;
            loop {
                if interactive {
                    crate::control::best_effort(write!(out, "skiff> "));
                    crate::control::best_effort(out.flush());
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return report(err, &Failure::Failed(format!("cannot read stdin: {e}"))),
                }
                let result = match parse_line(&line) {
                    Ok(Some(Command::Quit)) => break,
                    Ok(Some(cmd)) => run(&cmd, api, json, out),
                    Ok(None) => Ok(()),
                    Err(e) => Err(Failure::Usage(e)),
                };
                if let Err(f) = result {
                    code = code.max(report(err, &f));
                }
                crate::control::best_effort(out.flush());
            }
            if interactive {
                0 // a person at a terminal has seen each error as it came
            } else {
                code
            }
        }
    }
}

/// Runs one command, writing its answer to `out`: a table, or the API's JSON with `json`.
pub fn run(cmd: &Command, api: &ManagerClient, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let failed = |e: ClientError| Failure::Failed(e.to_string());
    let text = match cmd {
        Command::Start(file) => {
            let spec =
                std::fs::read(file).map_err(|e| Failure::Failed(format!("cannot read {}: {e}", file.display())))?;
            let task = api.submit(&spec).map_err(failed)?;
            if json {
                pretty(&task)
            } else {
                format!("{}\n", task.id)
            }
        }
        Command::DryRun(file) => {
            let spec =
                std::fs::read(file).map_err(|e| Failure::Failed(format!("cannot read {}: {e}", file.display())))?;
            let answer = api.dry_run(&spec).map_err(failed)?;
            if json {
                pretty(&answer)
            } else {
                dry_run_table(&answer)
            }
        }
        Command::Stop(id) => {
            let task = api.stop(task_id(id)?).map_err(failed)?;
            if json {
                pretty(&task)
            } else {
                format!("stopping {id}\n")
            }
        }
        Command::Get(id) => {
            let task = api.get(task_id(id)?).map_err(failed)?;
            if json {
                pretty(&task)
            } else {
                shown(api, &task)
            }
        }
        Command::Wait { id, state, timeout_s } => {
            let id = task_id(id)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(*timeout_s);
            let task = loop {
                let task = api.get(id).map_err(failed)?;
                if task.state == *state {
                    break task;
                }
                // a finished task changes no more: waiting on would be waiting for nothing
                if std::time::Instant::now() >= deadline || task.is_terminal() {
                    return Err(Failure::Failed(format!(
                        "task {id} is {} (wanted {state}{}){}",
                        task.state,
                        if task.is_terminal() { "; it is finished" } else { ", timed out" },
                        task.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            };
            if json {
                pretty(&task)
            } else {
                shown(api, &task)
            }
        }
        Command::Events { follow, task, node, service } => {
            let mut query = format!("follow={follow}");
            if let Some(t) = task {
                query.push_str(&format!("&task={}", task_id(t)?));
            }
            if let Some(n) = node {
                query.push_str(&format!("&node={}", crate::http::query_escape(n)));
            }
            if let Some(s) = service {
                query.push_str(&format!("&service={}", crate::http::query_escape(s)));
            }
            if *follow || json {
                // the API's own lines (NDJSON when following), as they come
                api.events_raw(&query, out).map_err(failed)?;
                String::new()
            } else {
                event_table(&api.events(&query).map_err(failed)?, Timestamp::now())
            }
        }
        Command::Logs { id, tail, follow, timestamps } => {
            let mut query = format!("follow={follow}&timestamps={timestamps}");
            if let Some(n) = tail {
                query.push_str(&format!("&tail={n}"));
            }
            // the output is the task's own, as it comes: no table, and --json changes nothing
            api.logs(task_id(id)?, &query, out).map_err(failed)?;
            String::new()
        }
        Command::List(service) => {
            let tasks = api.list(service.as_deref()).map_err(failed)?;
            if json {
                pretty(&tasks)
            } else {
                task_table(&tasks, Timestamp::now())
            }
        }
        Command::ListNodes => {
            let nodes = api.nodes().map_err(failed)?;
            if json {
                pretty(&nodes)
            } else {
                node_table(&nodes, Timestamp::now()) + &nodes::drains(&nodes)
            }
        }
        Command::Node(c) => nodes::run(c, api, json)?,
        Command::Service(c) => services::run(c, api, json)?,
        Command::Help => format!("{HELP}{}\nservices:{}\n", nodes::HELP, services::HELP),
        Command::Quit => String::new(),
    };
    out.write_all(text.as_bytes()).map_err(|e| Failure::Failed(format!("cannot write output: {e}")))
}

/// Ids go into URL paths: only a task id does.
fn task_id(id: &str) -> Result<TaskId, Failure> {
    id.parse().map_err(|e: crate::task::InvalidTaskId| Failure::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NodeInfo;
    use crate::api::NodeStatus;
    use crate::task::Task;
    use crate::task::{TaskId, TaskSpec, TaskState};

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

    #[test]
    fn parses_commands() {
        assert_eq!(parse_line("start web.json"), Ok(Some(Command::Start("web.json".into()))));
        assert_eq!(parse_line("  stop  abc "), Ok(Some(Command::Stop("abc".into()))));
        assert_eq!(parse_line("get abc"), Ok(Some(Command::Get("abc".into()))));
        assert_eq!(parse_line("list"), Ok(Some(Command::List(None))));
        assert_eq!(parse_line("list --service web"), Ok(Some(Command::List(Some("web".into())))));
        assert!(parse_line("list --service").unwrap_err().contains("list [--service NAME]"));
        assert!(parse_line("list --node w1").is_err());
        assert_eq!(parse_line("list-nodes"), Ok(Some(Command::ListNodes)));
        assert_eq!(parse_line("quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("# a comment"), Ok(None));
        assert!(parse_line("start").is_err());
        assert_eq!(parse_line("start --dry-run web.json"), Ok(Some(Command::DryRun("web.json".into()))));
        assert!(parse_line("start --dry-run").is_err());
        assert!(parse_line("stop a b").is_err());
        assert!(parse_line("list now").is_err());
        assert!(parse_line("launch x").unwrap_err().contains("unknown command"));
    }

    #[test]
    fn parses_logs_with_its_options_in_any_order() {
        let logs =
            |id: &str, tail, follow, timestamps| Ok(Some(Command::Logs { id: id.into(), tail, follow, timestamps }));
        assert_eq!(parse_line("logs abc"), logs("abc", None, false, false));
        assert_eq!(parse_line("logs --follow abc --tail 5 -t"), logs("abc", Some(5), true, true));
        assert!(parse_line("logs").is_err());
        assert!(parse_line("logs abc --tail").unwrap_err().contains("--tail takes a number"));
        assert!(parse_line("logs abc --tail x").is_err());
        assert!(parse_line("logs abc --since 1h").unwrap_err().contains("unknown option"));
        assert!(parse_line("logs a b").is_err());
        use crate::task::TaskState::Running;
        assert_eq!(
            parse_line("get a --wait running"),
            Ok(Some(Command::Wait { id: "a".into(), state: Running, timeout_s: 60 }))
        );
        assert_eq!(
            parse_line("get a --timeout 5 --wait Running"),
            Ok(Some(Command::Wait { id: "a".into(), state: Running, timeout_s: 5 }))
        );
        assert!(parse_line("get a --wait sleeping").unwrap_err().contains("Running"));
        let events = |follow, task: Option<&str>, node: Option<&str>| {
            Ok(Some(Command::Events { follow, task: task.map(Into::into), node: node.map(Into::into), service: None }))
        };
        assert_eq!(parse_line("events"), events(false, None, None));
        assert_eq!(parse_line("events --node w1 --follow --task x"), events(true, Some("x"), Some("w1")));
        assert_eq!(
            parse_line("events --service web"),
            Ok(Some(Command::Events { follow: false, task: None, node: None, service: Some("web".into()) }))
        );
        assert!(parse_line("events --service").is_err());
        assert!(parse_line("events --node").is_err());
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert!(task_id("3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b").is_ok());
        assert!(task_id("../nodes").is_err());
        assert!(task_id("a?b").is_err());
    }

    /// A client of a manager that is not there: every call fails at once, as an unreachable one.
    fn nowhere() -> ManagerClient {
        ManagerClient::new("127.0.0.1", 1, None)
    }

    fn run_session(input: Input<'_>) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = session(&nowhere(), false, input, &mut out, &mut err);
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn the_client_s_flags_may_follow_a_one_shot_command() {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let mut opts = Options { host: "127.0.0.1".into(), port: 8080, json: false, token_file: None, command: vec![] };
        opts.command = words(&["logs", "ID", "--tail", "5", "--json", "-p", "9090", "--host=m1", "--follow"]);
        opts.take_flags_from_command().expect("fine");
        assert_eq!((opts.json, opts.port, opts.host.as_str()), (true, 9090, "m1"));
        assert_eq!(opts.command, words(&["logs", "ID", "--tail", "5", "--follow"]), "the command's own stay");
        opts.command = words(&["list", "-p"]);
        assert_eq!(opts.take_flags_from_command(), Err("--port takes a value".into()));
        opts.command = words(&["list", "--port", "http"]);
        assert!(opts.take_flags_from_command().is_err_and(|e| e.contains("not a port")));
    }

    #[test]
    fn exit_codes_say_how_a_session_went() {
        let once = |words: &[&str]| run_session(Input::Once(words.iter().map(|w| w.to_string()).collect()));
        let (code, out, _) = once(&["help"]);
        assert_eq!(code, 0);
        assert!(out.contains("list-nodes"));
        let (code, _, err) = once(&["launch"]);
        assert_eq!(code, 2);
        assert!(err.starts_with("error: unknown command"), "{err}");
        let (code, _, err) = once(&["list"]);
        assert_eq!(code, 1);
        assert_eq!(err.lines().count(), 1, "the failure is printed once: {err}");
        assert!(err.contains("cannot reach the manager at 127.0.0.1:1"), "{err}");

        let mut piped: &[u8] = b"help\n# nothing\nlist\nhelp\n";
        let (code, out, err) = run_session(Input::Lines { reader: &mut piped, interactive: false });
        assert_eq!((code, out.matches("commands:").count(), err.lines().count()), (1, 2, 1));
        let mut garbled: &[u8] = b"list\nfrobnicate\nhelp\n";
        let (code, _, err) = run_session(Input::Lines { reader: &mut garbled, interactive: false });
        assert_eq!((code, err.lines().count()), (2, 2), "a line that is no command outranks a failed one: {err}");
        let mut fine: &[u8] = b"help\nquit\nlist\n";
        let (code, _, err) = run_session(Input::Lines { reader: &mut fine, interactive: false });
        assert_eq!((code, err.as_str()), (0, ""), "quit ends before the failing list");
        let mut typed: &[u8] = b"list\n";
        let (code, out, _) = run_session(Input::Lines { reader: &mut typed, interactive: true });
        assert_eq!(code, 0, "a person saw the failure");
        assert!(out.starts_with("skiff> "));
    }

    #[test]
    fn tables_line_up() {
        let spec = TaskSpec::from_json(br#"{"name":"web","image":"skiff/busybox"}"#).expect("valid");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(1_000));
        t.state = TaskState::Running;
        t.node = Some("worker1".into());
        let text = task_table(&[t.clone()], Timestamp(61_000));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID "));
        assert_eq!(lines[0].find("NAME"), lines[1].find("web"));
        assert!(lines[1].contains("Running") && lines[1].contains("worker1") && lines[1].contains("1m"));
        let details = task_details(&t);
        assert!(details.contains("state         Running"));
        assert!(details.contains("service       -\n"), "{details}");
        // a replica beside a single task: SERVICE is name@version, and the columns still line up
        let mut replica = t.clone();
        replica.name = "a-longer-name".into();
        replica.service = Some("web".into());
        replica.service_version = Some(3);
        let text = task_table(&[t.clone(), replica.clone()], Timestamp(61_000));
        let lines: Vec<&str> = text.lines().collect();
        let col = lines[0].find("SERVICE").expect("a SERVICE column");
        assert_eq!(lines[1].find(" - ").map(|i| i + 1), Some(col), "{text}");
        assert_eq!(lines[2].find("web@3"), Some(col), "{text}");
        assert_eq!(lines[0].find("STATE"), lines[2].find("Running"), "{text}");
        assert!(task_details(&replica).contains("service       web@3\n"));
        let at = Timestamp(1_000);
        let e = crate::events::EventLog::new(4)
            .push_service(at, "web".into(), Some("updating".into()), "completed".into(), "done".into())
            .clone();
        let events = event_table(&[e], Timestamp(3_000));
        let row = events.lines().nth(1).unwrap_or_default();
        assert!(row.contains("service web") && row.contains("updating -> completed"), "{events}");
        let node = NodeInfo {
            name: "worker1".into(),
            address: "127.0.0.1:7001".into(),
            status: NodeStatus::Down,
            last_contact: None,
            tasks: 0,
            engine_reachable: None,
            error: Some("unreachable".into()),
            capacity: None,
            allocated: Default::default(),
            stats: None,
            availability: crate::api::Availability::Drained,
            drain: None,
        };
        let text = node_table(&[node], Timestamp(0));
        let row = text.lines().nth(1).unwrap_or_default();
        assert!(row.contains("down") && row.contains("drained") && row.contains("never"), "{text}");
    }

    #[test]
    fn a_tasks_urls_are_at_its_nodes_address_one_per_published_tcp_port() {
        use crate::task::{PortBinding, Protocol};
        let spec = TaskSpec::from_json(br#"{"name":"web","image":"skiff/busybox"}"#).expect("valid");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(1_000));
        let bind = |container, protocol, host_ip: &str, host| PortBinding {
            container,
            protocol,
            host_ip: host_ip.into(),
            host,
        };
        t.ports = vec![
            bind(8080, Protocol::Tcp, "0.0.0.0", 32768),
            bind(8080, Protocol::Tcp, "::", 32771),
            bind(53, Protocol::Udp, "0.0.0.0", 32769),
            bind(9090, Protocol::Tcp, "0.0.0.0", 32770),
        ];
        assert_eq!(
            task_urls(&t, Some("10.213.0.11:7070")),
            "urls          http://10.213.0.11:32768\n              http://10.213.0.11:32770\n"
        );
        // an IPv6 node: the IPv6 binding of 8080, and 9090's only one
        assert_eq!(
            task_urls(&t, Some("[fd00::2]:7070")),
            "urls          http://[fd00::2]:32771\n              http://[fd00::2]:32770\n"
        );
        assert_eq!(task_urls(&t, None), "", "no address known, no URL");
        t.ports.clear();
        assert_eq!(task_urls(&t, Some("10.213.0.11:7070")), "", "nothing published, no URL");
    }

    #[test]
    fn sizes_in_human_units() {
        assert_eq!(size_mb(64), "64M");
        assert_eq!(size_mb(1536), "1.5G");
        assert_eq!(size_mb(3 * 1024 * 1024), "3.0T");
        assert_eq!(cores(0.5), "0.5");
        assert_eq!(cores(2.0), "2");
    }

    #[test]
    fn ages() {
        assert_eq!(ago(Timestamp(0), Timestamp(59_000)), "59s");
        assert_eq!(ago(Timestamp(0), Timestamp(3_600_000)), "1h");
        assert_eq!(ago(Timestamp(5), Timestamp(0)), "0s");
    }
}
