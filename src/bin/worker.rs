//! `worker -n worker1 -p 80 -st memory`: runs tasks' containers on this node's Docker Engine
//! and serves its API. Wiring only: flags, logging, threads, exit codes.

use argh::FromArgs;
use skiff::cli::{self, LogLevel};
use skiff::control::error_chain;
use skiff::docker_cli::{self, Docker};
use skiff::http::{self, Limits, Server};
use skiff::signals::TerminationSignals;
use skiff::stats::Caps;
use skiff::task::check_name;
use skiff::worker::{self, WorkerConfig};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Skiff worker: runs containers on this node's Docker Engine for the manager.
#[derive(FromArgs)]
struct Args {
    /// this node's name, unique in the cluster; it labels every container (letters, digits, _ . -)
    #[argh(option, short = 'n')]
    name: String,
    /// port to serve the API on
    #[argh(option, short = 'p')]
    port: u16,
    /// where tasks are kept: memory (default) or persisted (SQLite in --data-dir)
    #[argh(option, default = "String::from(\"memory\")")]
    storage: String,
    /// directory of the persisted store (default /var/lib/skiff for root, else ~/.local/state/skiff)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// address to listen on (default: 0.0.0.0 with a token, 127.0.0.1 without; without a token
    /// only loopback addresses are allowed)
    #[argh(option)]
    bind: Option<IpAddr>,
    /// a file holding the cluster token (mode 600); default: the SKIFF_TOKEN environment variable
    #[argh(option)]
    token_file: Option<PathBuf>,
    /// the Docker Engine's socket (default: DOCKER_HOST if unix://, else /var/run/docker.sock)
    #[argh(option)]
    docker_socket: Option<PathBuf>,
    /// milliseconds between checks of the table against the engine, the safety net behind the
    /// engine's event stream (default 5000)
    #[argh(option, default = "5000")]
    sync_interval_ms: u64,
    /// cores Skiff may place on this node (default: all of them)
    #[argh(option)]
    max_cpus: Option<f64>,
    /// megabytes of memory Skiff may place on this node (default: all of it)
    #[argh(option)]
    max_memory_mb: Option<u64>,
    /// megabytes of the engine's disk Skiff may place on this node (default: all of it)
    #[argh(option)]
    max_disk_mb: Option<u64>,
    /// the longest back-off between restarts in place, in seconds (it starts at 1 and doubles;
    /// default 30)
    #[argh(option, default = "30")]
    restart_backoff_max_s: u64,
    /// seconds a stopped container gets between SIGTERM and SIGKILL (default 10)
    #[argh(option, default = "10")]
    stop_grace_s: u64,
    /// log level: error, warn, info (default), debug, trace
    #[argh(option, default = "LogLevel(log::LevelFilter::Info)")]
    log_level: LogLevel,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    #[allow(dead_code)]
    version: bool,
}

fn main() -> ExitCode {
    let args: Args = cli::parse_args("worker");
    cli::init_logging(args.log_level);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("worker: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    check_name(&args.name).map_err(|m| format!("-n {:?}: {m}", args.name))?;
    let data_dir = args.data_dir.clone().unwrap_or_else(cli::default_data_dir);
    let store = cli::open_store(&args.storage, &data_dir, &format!("worker-{}.db", args.name))?;
    let socket = docker_cli::socket_path(args.docker_socket.as_deref(), std::env::var("DOCKER_HOST").ok().as_deref())?;
    let (token, bind) = cli::token_and_bind(args.token_file.as_deref(), args.bind)?;
    let files = cli::raise_fd_limit();
    log::debug!("open files limit={files}");
    let signals = TerminationSignals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let docker = Arc::new(Docker::new(socket.clone()));
    match docker.version() {
        Ok((version, api)) => log::info!("engine found socket={} version={version} api={api}", socket.display()),
        // not fatal: the worker reports the engine as unreachable and recovers when it answers
        Err(e) => log::warn!("engine not answering yet socket={} error={}", socket.display(), error_chain(&e)),
    }
    let addr = SocketAddr::new(bind, args.port);
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let mut config = WorkerConfig::new(&args.name);
    config.stop_grace = Duration::from_secs(args.stop_grace_s);
    if args.sync_interval_ms == 0 {
        return Err("--sync-interval-ms must be above 0".into());
    }
    config.sync_interval = Duration::from_millis(args.sync_interval_ms);
    if args.max_cpus.is_some_and(|c| !c.is_finite() || c <= 0.0) {
        return Err("--max-cpus must be more than 0".into());
    }
    config.restart_backoff_max = Duration::from_secs(args.restart_backoff_max_s.max(1));
    config.caps = Caps { cpus: args.max_cpus, memory_mb: args.max_memory_mb, disk_mb: args.max_disk_mb };
    let worker = worker::spawn(config, docker, store).map_err(|e| error_chain(&e))?;
    let server = Server::start(listener, Limits::default(), http::worker_handler(worker.handle(), token))
        .map_err(|e| format!("cannot start the API server: {e}"))?;
    log::info!("worker listening name={} addr={} storage={}", args.name, server.local_addr(), args.storage);
    let signal = signals.wait();
    log::info!("shutting down signal={signal}; containers keep running");
    server.shutdown();
    worker.shutdown();
    Ok(())
}
