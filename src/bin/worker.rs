//! `worker -n worker1 -p 80 -st memory`: runs tasks' containers on this node's Docker Engine
//! and serves its API. Wiring only: flags, logging, threads, exit codes.

use skiff::cli::{self, DaemonArgs};
use skiff::control::error_chain;
use skiff::deploy::BuildConfig;
use skiff::docker_cli::{self, Docker, LogRotation};
use skiff::http;
use skiff::logfmt::q;
use skiff::metrics::Metered;
use skiff::stats::Caps;
use skiff::task::check_name;
use skiff::worker::{self, Retention, WorkerConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

skiff::daemon_args! {
    /// Skiff worker: runs containers on this node's Docker Engine for the manager.
    struct Args {
        /// this node's name, unique in the cluster; it labels every container (letters, digits, _ . -)
        #[argh(option, short = 'n')]
        name: String,
        /// the Docker Engine's socket (default: DOCKER_HOST if unix://, else /var/run/docker.sock)
        #[argh(option)]
        docker_socket: Option<PathBuf>,
        /// milliseconds between checks of the table against the engine, the safety net behind the
        /// engine's event stream (default 5000)
        #[argh(option, default = "5000")]
        sync_interval_ms: u64,
        /// finished tasks kept listed (for the manager to see how they ended); older ones are
        /// forgotten, as are any older than a day (default 1000)
        #[argh(option, default = "1000")]
        keep_finished: usize,
        /// seconds a container with this node's labels that is no task's own is left alone
        /// before it is removed (default 30)
        #[argh(option, default = "30")]
        orphan_grace_s: u64,
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
        /// containers of Completed and Failed tasks kept on this node for their output, the most
        /// recently finished first (default 20)
        #[argh(option, default = "20")]
        keep_containers: usize,
        /// seconds a finished task's container is kept for its output (default 3600)
        #[argh(option, default = "3600")]
        keep_containers_s: u64,
        /// megabytes of a container's log file before the engine rotates it (default 10)
        #[argh(option, default = "10")]
        log_max_size_mb: u64,
        /// the manager to join, HOST:PORT: the worker registers there (with the cluster token) and
        /// keeps registering, so that either side may restart
        #[argh(option)]
        join: Option<String>,
        /// with --join, the HOST:PORT the manager should dial (default: the --bind address when it
        /// is a specific one, else the address this worker reaches the manager from, with its own port)
        #[argh(option)]
        advertise: Option<String>,
        /// log files kept per container, the current one included (default 3)
        #[argh(option, default = "3")]
        log_max_files: u32,
        /// where builds unpack or clone their sources and where uploaded contexts are spooled
        /// (default: the system's temporary directory)
        #[argh(option)]
        build_dir: Option<PathBuf>,
        /// the base image of generated Dockerfiles for static sites (default busybox:stable)
        #[argh(option)]
        static_image: Option<String>,
        /// the base image of generated Dockerfiles for Python (default python:3-slim)
        #[argh(option)]
        python_image: Option<String>,
        /// the base image of generated Dockerfiles for Node.js (default node:lts-slim)
        #[argh(option)]
        node_image: Option<String>,
        /// the image Go apps are compiled in (default golang:1)
        #[argh(option)]
        go_image: Option<String>,
        /// the image Go binaries run in (default busybox:stable)
        #[argh(option)]
        go_runtime_image: Option<String>,
    }
}

/// The base images of generated Dockerfiles: the flags given, the defaults for the others.
fn build_config(args: &Args) -> BuildConfig {
    let mut config = BuildConfig::default();
    for (flag, field) in [
        (&args.static_image, &mut config.static_image),
        (&args.python_image, &mut config.python_image),
        (&args.node_image, &mut config.node_image),
        (&args.go_image, &mut config.go_image),
        (&args.go_runtime_image, &mut config.go_runtime_image),
    ] {
        if let Some(image) = flag {
            field.clone_from(image);
        }
    }
    config
}

fn main() -> ExitCode {
    cli::daemon_main("worker", run)
}

fn run(args: Args) -> Result<(), String> {
    check_name(&args.name).map_err(|m| format!("-n {:?}: {m}", args.name))?;
    for (flag, addr) in [("--join", &args.join), ("--advertise", &args.advertise)] {
        if let Some(a) = addr {
            cli::check_address(a).map_err(|m| format!("{flag}: {m}"))?;
        }
    }
    if args.advertise.is_some() && args.join.is_none() {
        // only a joining worker tells the manager an address; a `-w` manager dials what it was given
        return Err("--advertise needs --join".into());
    }
    if args.sync_interval_ms == 0 {
        return Err("--sync-interval-ms must be above 0".into());
    }
    if args.max_cpus.is_some_and(|c| !c.is_finite() || c <= 0.0) {
        return Err("--max-cpus must be more than 0".into());
    }
    let socket = docker_cli::socket_path(args.docker_socket.as_deref(), std::env::var("DOCKER_HOST").ok().as_deref())?;
    let ready = cli::prepare(&args.flags(), &format!("worker-{}.db", args.name))?;
    if args.log_max_size_mb == 0 || args.log_max_files == 0 {
        return Err("--log-max-size-mb and --log-max-files must be above 0".into());
    }
    let rotation = LogRotation { max_size_mb: args.log_max_size_mb, max_files: args.log_max_files };
    // every engine call counted for `GET /v1/metrics`
    let docker = Arc::new(Metered::new(Docker::new(socket.clone()).with_log_rotation(rotation)));
    // The engine's version is asked on the worker's own threads ("engine answers", or the engine
    // reported unreachable until it answers), not here before listening: Podman takes a second
    // or more to answer /version (it runs conmon and the OCI runtime to report theirs), and a
    // worker that listens late is taken for a lost node by a manager already polling it.
    log::info!("engine socket={}", q(&socket.display().to_string()));
    let mut config = WorkerConfig::new(&args.name);
    config.stop_grace = Duration::from_secs(args.stop_grace_s);
    config.sync_interval = Duration::from_millis(args.sync_interval_ms);
    config.keep_finished_count = args.keep_finished;
    config.retention = Retention { count: args.keep_containers, age: Duration::from_secs(args.keep_containers_s) };
    config.orphan_grace = Duration::from_secs(args.orphan_grace_s);
    config.restart_backoff_max = Duration::from_secs(args.restart_backoff_max_s.max(1));
    config.caps = Caps { cpus: args.max_cpus, memory_mb: args.max_memory_mb, disk_mb: args.max_disk_mb };
    let worker = worker::spawn(config, docker, ready.store).map_err(|e| error_chain(&e))?;
    let (stop_join, join_stop) = crossbeam_channel::bounded::<()>(1);
    if let Some(manager) = args.join.clone() {
        let bound = ready.listener.local_addr().map_err(|e| e.to_string())?;
        let own_port = bound.port();
        let advertise = args.advertise.clone().or_else(|| http::join::bound_advertise(bound));
        let (name, token) = (args.name.clone(), ready.token.clone());
        std::thread::Builder::new()
            .name("join".into())
            .spawn(move || http::join::join_loop(manager, name, advertise, own_port, token, join_stop))
            .map_err(|e| format!("cannot start the join thread: {e}"))?;
    }
    let build_dir = args.build_dir.clone().unwrap_or_else(std::env::temp_dir);
    if !build_dir.is_dir() {
        return Err(format!("--build-dir {}: not a directory", build_dir.display()));
    }
    let builds = http::builds::Builds::new(Arc::new(Docker::new(socket)), build_config(&args), build_dir.clone());
    let handler = http::worker_handler(worker.handle(), ready.token, Arc::new(builds));
    let limits = http::Limits {
        // room for two image loads of `MAX_IMAGE_BODY` at once (on disk, not in memory)
        spool: http::SpoolLimits {
            dir: build_dir,
            max_bytes_in_flight: 2 * http::images::MAX_IMAGE_BODY,
            ..http::SpoolLimits::default()
        },
        ..http::Limits::default()
    };
    cli::serve(ready.listener, &ready.signals, handler, limits, |addr| {
        log::info!("worker listening name={} addr={addr} storage={}", q(&args.name), q(&args.storage));
    })?;
    drop(stop_join);
    worker.shutdown();
    log::info!("worker stopped; its containers keep running name={}", q(&args.name));
    Ok(())
}
