//! What the three binaries share on their command lines and in `main`: the multi-letter short
//! flags of the user's contract (`-st`, `-sct`, shown so in `--help`), `--flag=value`,
//! `--version`, the log level (`--log-level`, else `RUST_LOG`), the logger, the daemons' common
//! flags (`daemon_args!`) and the daemons' common start and end (`daemon_main`, `serve`).
//!
//! argh takes one-letter short flags only, so the arguments are rewritten before argh sees them,
//! and has no flattening, so the daemons' common flags are appended by a macro.

use crate::auth::{self, Token};
use crate::control::error_chain;
use crate::http::{Limits, Server, Service};
use crate::signals::TerminationSignals;
use crate::store::{MemoryStore, SqliteStore, Store};
use log::LevelFilter;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

/// Multi-letter short flags and the long flags they stand for.
pub const SHORT_FLAGS: [(&str, &str); 2] = [("-st", "--storage"), ("-sct", "--scheduler")];

/// Rewrites `-st`/`-sct` (also `-st=x`) into their long forms and splits `--flag=value` into two
/// arguments. Nothing after a `--` is touched.
pub fn normalize_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for arg in args {
        if rest {
            out.push(arg.clone());
            continue;
        }
        if arg == "--" {
            rest = true;
            out.push(arg.clone());
            continue;
        }
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        let long = SHORT_FLAGS.iter().find(|(short, _)| *short == flag).map(|(_, long)| *long);
        match (long, value) {
            (Some(long), None) => out.push(long.to_string()),
            (Some(long), Some(v)) => out.extend([long.to_string(), v.to_string()]),
            (None, Some(v)) if flag.starts_with("--") => out.extend([flag.to_string(), v.to_string()]),
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// True when `--version` (or `-V`) is asked for, before any `--`.
pub fn wants_version(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| a == "--version" || a == "-V")
}

/// argh's help with the multi-letter short forms the user is told about: `-st, --storage` in
/// the options (in argh's 20-column layout) and `-st` in the usage line.
pub fn with_short_forms(help: &str) -> String {
    const COLUMN: usize = 20;
    let mut out = Vec::new();
    for line in help.lines() {
        let mut line = line.to_string();
        for (short, long) in SHORT_FLAGS {
            line = line.replace(&format!("[{long} <"), &format!("[{short} <"));
            let Some(description) = line.strip_prefix(&format!("  {long}")) else { continue };
            if !description.is_empty() && !description.starts_with(' ') {
                continue; // a longer flag that starts the same
            }
            let name = format!("  {short}, {long}");
            let description = description.trim_start();
            line = if description.is_empty() {
                name
            } else if name.len() < COLUMN {
                format!("{name:<COLUMN$}{description}")
            } else {
                format!("{name}\n{:COLUMN$}{description}", "")
            };
        }
        out.push(line);
    }
    out.join("\n")
}

/// Parses the process's arguments into `T`, printing help or errors the way argh does and
/// exiting (0 for help and version, 2 for usage errors).
pub fn parse_args<T: argh::FromArgs>(program: &str) -> T {
    parse_args_from(program, std::env::args().skip(1).collect())
}

/// `parse_args` over these arguments (the program's name left out).
pub fn parse_args_from<T: argh::FromArgs>(program: &str, raw: Vec<String>) -> T {
    if wants_version(&raw) {
        print_and_exit(&format!("{program} {}", env!("CARGO_PKG_VERSION")));
    }
    let args = normalize_args(&raw);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match T::from_args(&[program], &refs) {
        Ok(parsed) => parsed,
        Err(early) => {
            if early.status.is_ok() {
                print_and_exit(&with_short_forms(&early.output));
            }
            eprintln!("{}", early.output);
            std::process::exit(2);
        }
    }
}

/// Prints help or the version to stdout and exits 0. Written without `println!`, which panics when
/// the reader has gone (`manager --help | grep -q …` closes the pipe at the first match): a closed
/// pipe is the reader's choice, not an error worth a backtrace.
fn print_and_exit(text: &str) -> ! {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    crate::control::best_effort(writeln!(out, "{text}").and_then(|()| out.flush()));
    std::process::exit(0);
}

/// A log level as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub LevelFilter);

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<LogLevel, String> {
        LevelFilter::from_str(s)
            .map(LogLevel)
            .map_err(|_| format!("{s:?} is not a log level (off, error, warn, info, debug, trace)"))
    }
}

/// Our log targets: the library and the three binaries.
const TARGETS: [&str; 4] = ["skiff", "manager", "worker", "client"];

/// The level from a `RUST_LOG`-style value: a bare level (`debug`) applies, and so does one
/// given for one of our targets (`skiff=debug`, `worker=trace`); a later directive wins. Other
/// crates' directives are ignored (their lines are never written). `None` if nothing applies.
pub fn level_from_env(value: &str) -> Option<LogLevel> {
    let mut level = None;
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let named = match directive.split_once('=') {
            None => directive,
            Some((target, l)) if TARGETS.contains(&target) => l,
            Some(_) => continue,
        };
        if let Ok(l) = named.parse::<LogLevel>() {
            level = Some(l);
        }
    }
    level
}

/// The level in force: `--log-level` if given, else `RUST_LOG`, else the binary's default.
pub fn log_level(flag: Option<LogLevel>, env: Option<&str>, default: LogLevel) -> LogLevel {
    flag.or_else(|| env.and_then(level_from_env)).unwrap_or(default)
}

/// Logs to stderr: `TIME [LEVEL] message key=value ...`, the level from `--log-level`, else
/// `RUST_LOG`, else `default`. Call once, before any thread starts.
pub fn init_logging(flag: Option<LogLevel>, default: LogLevel) {
    let level = log_level(flag, std::env::var("RUST_LOG").ok().as_deref(), default);
    // our own lines only: the HTTP client's debug chatter would drown them
    let config = simplelog::ConfigBuilder::new()
        // a 24-character UTC time, milliseconds included: the APIs' timestamps
        .set_time_format_custom(crate::time::FORMAT)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .add_filter_allow_str(TARGETS[0])
        .add_filter_allow_str(TARGETS[1])
        .add_filter_allow_str(TARGETS[2])
        .add_filter_allow_str(TARGETS[3])
        .build();
    crate::control::best_effort(simplelog::WriteLogger::init(level.0, config, std::io::stderr()));
}

/// The cluster token and the address to listen on, as both daemons decide them: the token from
/// `--token-file` or `SKIFF_TOKEN`; with it all interfaces unless `--bind` narrows them, without
/// it loopback only (and saying so).
pub fn token_and_bind(
    token_file: Option<&Path>,
    bind: Option<std::net::IpAddr>,
) -> Result<(Option<Token>, std::net::IpAddr), String> {
    let token = auth::load(token_file, std::env::var(auth::TOKEN_ENV).ok())?;
    let ip = auth::bind_address(bind, token.is_some())?;
    if token.is_none() {
        log::warn!("no token ({} or --token-file): listening on loopback only", auth::TOKEN_ENV);
    }
    Ok((token, ip))
}

/// Raises the soft limit on open files to the hard one (at most 65,536): a daemon holds a file
/// descriptor per waiting connection, and running out of them would also cut it off its engine
/// and its store. Returns the limit in force.
/// Makes the allocator give memory back: large blocks (request bodies, lists) are mapped and
/// unmapped each time instead of kept in the heap after a burst (glibc otherwise raises its
/// mapping threshold to the largest block freed), and threads share two arenas rather than one
/// each. A burst of large requests then leaves the resident size where it was.
pub fn tame_allocator() {
    // SAFETY: mallopt only sets allocator parameters; it is called before the daemon's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = lim.rlim_max.min(65_536);
        if lim.rlim_cur < want {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want as u64;
            }
        }
        lim.rlim_cur as u64
    }
}

/// `HOST:PORT` with a port number; hosts are resolved when they are called.
pub fn check_address(addr: &str) -> Result<(), String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{addr:?} is not HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{addr:?} is not HOST:PORT with a port from 1 to 65535"));
    }
    Ok(())
}

/// Where persisted stores live unless `--data-dir` says otherwise: `/var/lib/skiff` for root,
/// else `$XDG_STATE_HOME/skiff`, else `~/.local/state/skiff`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    data_dir_for(root, std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn data_dir_for(root: bool, xdg_state: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> PathBuf {
    if root {
        return PathBuf::from("/var/lib/skiff");
    }
    match (xdg_state.filter(|x| !x.is_empty()), home.filter(|h| !h.is_empty())) {
        (Some(state), _) => PathBuf::from(state).join("skiff"),
        (None, Some(home)) => PathBuf::from(home).join(".local/state/skiff"),
        (None, None) => PathBuf::from("/var/lib/skiff"),
    }
}

/// Opens the store `-st` asks for: `memory`, or `persisted` in `dir/file` (the directory is
/// created if needed). Every failure is an error for the user, never a silent fresh start.
pub fn open_store(storage: &str, dir: &Path, file: &str) -> Result<Box<dyn Store>, String> {
    match storage {
        "memory" => Ok(Box::new(MemoryStore::new())),
        "persisted" => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
            let path = dir.join(file);
            let store = SqliteStore::open(&path)
                .map_err(|e| format!("cannot open the store {}: {}", path.display(), error_chain(&e)))?;
            Ok(Box::new(store))
        }
        other => Err(format!("-st {other:?}: storage is memory or persisted")),
    }
}

/// The flags both daemons have, after their own: `daemon_args!` appends them to a struct.
pub struct DaemonFlags<'a> {
    pub port: u16,
    pub storage: &'a str,
    pub data_dir: Option<&'a Path>,
    pub bind: Option<IpAddr>,
    pub token_file: Option<&'a Path>,
    pub log_level: Option<LogLevel>,
}

/// A daemon's arguments: its own, and the common ones.
pub trait DaemonArgs: argh::FromArgs {
    fn flags(&self) -> DaemonFlags<'_>;
}

/// Declares a daemon's `argh` arguments with the flags both daemons share appended (port,
/// storage, data directory, bind address, token file, log level, version), and implements
/// `DaemonArgs` for them.
#[macro_export]
macro_rules! daemon_args {
    // the field types are taken apart (`Option<u64>` as `Option` and `u64`) because argh looks
    // for `Option` and `Vec` by name, which it cannot see in an opaque `ty` fragment
    ($(#[$meta:meta])* struct $name:ident {
        $($(#[$fmeta:meta])* $field:ident: $outer:ident $(<$inner:ty>)?,)*
    }) => {
        $(#[$meta])*
        #[derive(argh::FromArgs)]
        struct $name {
            $($(#[$fmeta])* $field: $outer $(<$inner>)?,)*
            /// port to serve the API on
            #[argh(option, short = 'p')]
            port: u16,
            /// where tasks are kept: memory (default) or persisted (SQLite in --data-dir)
            #[argh(option, default = "String::from(\"memory\")")]
            storage: String,
            /// directory of the persisted store (default /var/lib/skiff for root, else
            /// ~/.local/state/skiff)
            #[argh(option)]
            data_dir: Option<std::path::PathBuf>,
            /// address to listen on (default: 0.0.0.0 with a token, 127.0.0.1 without; without a
            /// token only loopback addresses are allowed)
            #[argh(option)]
            bind: Option<std::net::IpAddr>,
            /// a file holding the cluster token (mode 600); default: the SKIFF_TOKEN environment
            /// variable
            #[argh(option)]
            token_file: Option<std::path::PathBuf>,
            /// log level: off, error, warn, info, debug, trace (default: RUST_LOG, else info)
            #[argh(option)]
            log_level: Option<$crate::cli::LogLevel>,
            /// print the version and exit
            #[argh(switch, short = 'V')]
            #[allow(dead_code, reason = "declared for --help; `cli::wants_version` reads the flag before argh parses")]
            version: bool,
        }

        impl $crate::cli::DaemonArgs for $name {
            fn flags(&self) -> $crate::cli::DaemonFlags<'_> {
                $crate::cli::DaemonFlags {
                    port: self.port,
                    storage: &self.storage,
                    data_dir: self.data_dir.as_deref(),
                    bind: self.bind,
                    token_file: self.token_file.as_deref(),
                    log_level: self.log_level,
                }
            }
        }
    };
}

/// A daemon's `main`: its arguments, the logger, `run`, and one exit path that prints the error
/// once (`program: message`) and exits 1.
pub fn daemon_main<T: DaemonArgs>(program: &str, run: impl FnOnce(T) -> Result<(), String>) -> ExitCode {
    let args: T = parse_args(program);
    init_logging(args.flags().log_level, LogLevel(LevelFilter::Info));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What a daemon has once its common flags are applied: the token, its socket, its store, and
/// SIGINT/SIGTERM blocked (so call this before starting any thread).
pub struct Prepared {
    pub token: Option<Token>,
    pub listener: TcpListener,
    pub store: Box<dyn Store>,
    pub signals: TerminationSignals,
}

/// Applies the common flags: the store (`store_file` in the data directory when persisted), the
/// token and the address, the open-files limit, the signals, the listening socket.
pub fn prepare(flags: &DaemonFlags<'_>, store_file: &str) -> Result<Prepared, String> {
    tame_allocator();
    let data_dir = flags.data_dir.map_or_else(default_data_dir, Path::to_path_buf);
    // every write counted for `GET /v1/metrics`
    let store = Box::new(crate::metrics::MeteredStore::new(open_store(flags.storage, &data_dir, store_file)?));
    let (token, bind) = token_and_bind(flags.token_file, flags.bind)?;
    let files = raise_fd_limit();
    log::debug!("open files limit={files}");
    let signals = TerminationSignals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let addr = SocketAddr::new(bind, flags.port);
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(Prepared { token, listener, store, signals })
}

/// Serves `handler` on the prepared socket until SIGINT or SIGTERM, then stops the server (the
/// requests in flight are answered). `listening` is told the address once it serves. Returns
/// the signal's name; the caller then stops its daemon.
pub fn serve(
    listener: TcpListener,
    signals: &TerminationSignals,
    service: Service,
    limits: Limits,
    listening: impl FnOnce(SocketAddr),
) -> Result<&'static str, String> {
    let server =
        Server::start_service(listener, limits, service).map_err(|e| format!("cannot start the API server: {e}"))?;
    listening(server.local_addr());
    let signal = signals.wait();
    log::info!("shutting down signal={signal}");
    server.shutdown();
    Ok(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn maps_multi_letter_short_flags() {
        let args = strings(&["-p", "8080", "-st", "persisted", "-sct", "epvm", "-w", "worker1:80"]);
        assert_eq!(
            normalize_args(&args),
            strings(&["-p", "8080", "--storage", "persisted", "--scheduler", "epvm", "-w", "worker1:80"])
        );
    }

    #[test]
    fn splits_equals_forms() {
        let args = strings(&["-st=memory", "--port=7001", "--name", "a=b"]);
        assert_eq!(normalize_args(&args), strings(&["--storage", "memory", "--port", "7001", "--name", "a=b"]));
    }

    #[test]
    fn leaves_values_and_rest_alone() {
        let args = strings(&["-n", "-st", "--", "-st", "--x=1"]);
        assert_eq!(normalize_args(&args), strings(&["-n", "--storage", "--", "-st", "--x=1"]));
    }

    #[test]
    fn version_flag() {
        assert!(wants_version(&strings(&["-p", "1", "--version"])));
        assert!(!wants_version(&strings(&["--", "--version"])));
    }

    #[test]
    fn addresses() {
        assert!(check_address("worker1:80").is_ok());
        assert!(check_address("127.0.0.1:7001").is_ok());
        for bad in ["worker1", ":80", "w:0", "w:x", "w:70000"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_dir_defaults() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(data_dir_for(true, os("/x"), os("/home/a")), PathBuf::from("/var/lib/skiff"));
        assert_eq!(data_dir_for(false, os("/x"), os("/home/a")), PathBuf::from("/x/skiff"));
        assert_eq!(data_dir_for(false, None, os("/home/a")), PathBuf::from("/home/a/.local/state/skiff"));
        assert_eq!(data_dir_for(false, os(""), None), PathBuf::from("/var/lib/skiff"));
    }

    #[test]
    fn store_choice() {
        assert!(open_store("memory", Path::new("/nonexistent"), "x.db").is_ok());
        assert!(open_store("disk", Path::new("/tmp"), "x.db").is_err());
        let e = open_store("persisted", Path::new("/etc/passwd/sub"), "x.db").err().expect("refused");
        assert!(e.contains("cannot create the data directory"), "{e}");
    }

    #[test]
    fn log_levels() {
        assert_eq!("debug".parse::<LogLevel>(), Ok(LogLevel(LevelFilter::Debug)));
        assert!("loud".parse::<LogLevel>().is_err());
    }

    #[test]
    fn the_flag_wins_over_rust_log_which_wins_over_the_default() {
        let l = |f: LevelFilter| LogLevel(f);
        let info = l(LevelFilter::Info);
        assert_eq!(log_level(None, None, info), info);
        assert_eq!(log_level(None, Some("debug"), info), l(LevelFilter::Debug));
        assert_eq!(log_level(Some(l(LevelFilter::Warn)), Some("debug"), info), l(LevelFilter::Warn));
        assert_eq!(log_level(None, Some("ureq=trace,skiff=debug"), info), l(LevelFilter::Debug));
        assert_eq!(log_level(None, Some("worker=trace"), info), l(LevelFilter::Trace));
        assert_eq!(log_level(None, Some("ureq=trace"), info), info, "other crates' levels are not ours");
        assert_eq!(log_level(None, Some("loud"), info), info);
        assert_eq!(log_level(None, Some("error,skiff=off"), info), l(LevelFilter::Off));
    }

    #[test]
    fn help_shows_the_multi_letter_short_forms() {
        let help = "Usage: manager -p <port> [--storage <storage>] [--scheduler <scheduler>]\n\nOptions:\n  -p, --port        port to serve the API on\n  --storage         where tasks are kept: memory (default) or persisted (SQLite\n                    in --data-dir)\n  --scheduler       placement: roundrobin (default) or epvm\n  --storage-extra   not the same flag";
        let shown = with_short_forms(help);
        assert!(shown.starts_with("Usage: manager -p <port> [-st <storage>] [-sct <scheduler>]"), "{shown}");
        assert!(shown.contains("\n  -st, --storage    where tasks are kept"), "{shown}");
        assert!(shown.contains("\n                    in --data-dir)"), "{shown}");
        assert!(shown.contains("\n  -sct, --scheduler placement"), "{shown}");
        assert!(shown.contains("\n  --storage-extra   not the same flag"), "{shown}");
    }
}
