//! What the three binaries share on their command lines: the multi-letter short flags of the
//! user's contract (`-st`, `-sct`), `--flag=value`, `--version`, the log level, and the logger.
//!
//! argh takes one-letter short flags only, so the arguments are rewritten before argh sees them.

use crate::auth::{self, Token};
use crate::control::error_chain;
use crate::store::{MemoryStore, SqliteStore, Store};
use log::LevelFilter;
use std::path::{Path, PathBuf};
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

/// Parses the process's arguments into `T`, printing help or errors the way argh does and
/// exiting (0 for help and version, 2 for usage errors).
pub fn parse_args<T: argh::FromArgs>(program: &str) -> T {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if wants_version(&raw) {
        println!("{program} {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    let args = normalize_args(&raw);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match T::from_args(&[program], &refs) {
        Ok(parsed) => parsed,
        Err(early) => {
            if early.status.is_ok() {
                println!("{}", early.output);
                std::process::exit(0);
            }
            eprintln!("{}", early.output);
            std::process::exit(2);
        }
    }
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

/// Logs to stderr with UTC RFC 3339 times. Call once, before any thread starts.
pub fn init_logging(level: LogLevel) {
    // our own lines only: the HTTP client's debug chatter would drown them
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .add_filter_allow_str("skiff")
        .add_filter_allow_str("manager")
        .add_filter_allow_str("worker")
        .add_filter_allow_str("client")
        .build();
    let _ = simplelog::WriteLogger::init(level.0, config, std::io::stderr());
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
}
