//! `manager -p 8080 -st memory -sct roundrobin -w worker1:80 -w worker2:80`: keeps the desired
//! state of tasks, places them on workers and follows them. Wiring only.

use argh::FromArgs;
use skiff::cli::{self, LogLevel};
use skiff::control::error_chain;
use skiff::http::{self, HttpWorkerLink, Limits, Server};
use skiff::manager::{self, ManagerConfig, WorkerLink};
use skiff::sched::SchedulerKind;
use skiff::signals::TerminationSignals;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Skiff manager: keeps tasks' desired state, schedules them on workers, follows them.
#[derive(FromArgs)]
struct Args {
    /// port to serve the API on
    #[argh(option, short = 'p')]
    port: u16,
    /// where tasks are kept: memory (default) or persisted (SQLite in --data-dir)
    #[argh(option, default = "String::from(\"memory\")")]
    storage: String,
    /// directory of the persisted store (default /var/lib/skiff for root, else ~/.local/state/skiff)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// placement: roundrobin (default) or epvm (least marginal cost over CPU, memory and tasks)
    #[argh(option, default = "String::from(\"roundrobin\")")]
    scheduler: String,
    /// a worker's HOST:PORT; repeat for each worker (with a persisted store and no -w, the
    /// workers of the last run)
    #[argh(option, short = 'w')]
    worker: Vec<String>,
    /// address to listen on (default: 0.0.0.0 with a token, 127.0.0.1 without; without a token
    /// only loopback addresses are allowed)
    #[argh(option)]
    bind: Option<IpAddr>,
    /// a file holding the cluster token (mode 600); default: the SKIFF_TOKEN environment variable
    #[argh(option)]
    token_file: Option<PathBuf>,
    /// milliseconds between polls of each worker (default 1000)
    #[argh(option, default = "1000")]
    poll_interval_ms: u64,
    /// milliseconds without an answer after which a worker is down and its tasks are placed
    /// elsewhere (default 4000)
    #[argh(option, default = "4000")]
    node_timeout_ms: u64,
    /// seconds a container no task owns is left alone before it is stopped (default 30)
    #[argh(option, default = "30")]
    orphan_grace_s: u64,
    /// log level: error, warn, info (default), debug, trace
    #[argh(option, default = "LogLevel(log::LevelFilter::Info)")]
    log_level: LogLevel,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    #[allow(dead_code)]
    version: bool,
}

fn main() -> ExitCode {
    let args: Args = cli::parse_args("manager");
    cli::init_logging(args.log_level);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("manager: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let scheduler = SchedulerKind::parse(&args.scheduler)
        .ok_or_else(|| format!("-sct {:?}: the scheduler is roundrobin or epvm", args.scheduler))?;
    for w in &args.worker {
        cli::check_address(w).map_err(|m| format!("-w: {m}"))?;
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(cli::default_data_dir);
    let store = cli::open_store(&args.storage, &data_dir, "manager.db")?;
    let mut workers = args.worker.clone();
    if workers.is_empty() {
        workers = store.list_nodes().map_err(|e| error_chain(&e))?.into_iter().map(|n| n.address).collect();
        if !workers.is_empty() {
            log::info!("no -w given: using the workers of the last run workers={}", workers.join(","));
        }
    }
    if workers.is_empty() {
        log::warn!("no workers given (-w HOST:PORT): tasks will stay Pending");
    }
    if args.poll_interval_ms == 0 || args.node_timeout_ms < args.poll_interval_ms {
        return Err("--poll-interval-ms must be above 0 and --node-timeout-ms at least as long".into());
    }
    let (token, bind) = cli::token_and_bind(args.token_file.as_deref(), args.bind)?;
    let files = cli::raise_fd_limit();
    log::debug!("open files limit={files}");
    let signals = TerminationSignals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let addr = SocketAddr::new(bind, args.port);
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let links: Vec<Arc<dyn WorkerLink>> =
        workers.iter().map(|w| Arc::new(HttpWorkerLink::new(w, token.as_ref())) as Arc<dyn WorkerLink>).collect();
    let config = ManagerConfig {
        scheduler,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        node_timeout: Duration::from_millis(args.node_timeout_ms),
        orphan_grace: Duration::from_secs(args.orphan_grace_s),
        ..ManagerConfig::default()
    };
    let manager = manager::spawn(config, store, links).map_err(|e| error_chain(&e))?;
    let server = Server::start(listener, Limits::default(), http::manager_handler(manager.handle(), token))
        .map_err(|e| format!("cannot start the API server: {e}"))?;
    log::info!(
        "manager listening addr={} storage={} scheduler={} workers={}",
        server.local_addr(),
        args.storage,
        args.scheduler,
        workers.join(",")
    );
    let signal = signals.wait();
    log::info!("shutting down signal={signal}");
    server.shutdown();
    manager.shutdown();
    Ok(())
}
