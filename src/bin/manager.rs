//! `manager -p 8080 -st memory -sct roundrobin -w worker1:80 -w worker2:80`: keeps the desired
//! state of tasks, places them on workers and follows them. Wiring only.

use skiff::cli::{self, DaemonArgs};
use skiff::control::error_chain;
use skiff::http::{self, HttpWorkerLink};
use skiff::logfmt::q;
use skiff::manager::{self, ManagerConfig, WorkerLink};
use skiff::sched::SchedulerKind;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

skiff::daemon_args! {
    /// Skiff manager: keeps tasks' desired state, schedules them on workers, follows them.
    struct Args {
        /// placement: roundrobin (default) or epvm (least marginal cost over CPU, memory and tasks)
        #[argh(option, default = "String::from(\"roundrobin\")")]
        scheduler: String,
        /// a worker's HOST:PORT; repeat for each worker (with a persisted store and no -w, the
        /// workers of the last run)
        #[argh(option, short = 'w')]
        worker: Vec<String>,
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
        /// finished tasks kept in the table and the store; older ones are forgotten (default 1000)
        #[argh(option, default = "1000")]
        keep_finished: usize,
        /// caddy's admin API, HOST:PORT: published services get a route there (without it,
        /// no ingress: `service get` shows the replicas' direct URLs)
        #[argh(option)]
        ingress_admin: Option<String>,
        /// where caddy listens for apps, as caddy writes it (default :80)
        #[argh(option, default = "String::from(\":80\")")]
        ingress_listen: String,
        /// services are published at NAME.DOMAIN (default localhost)
        #[argh(option, default = "String::from(skiff::ingress::DEFAULT_DOMAIN)")]
        domain: String,
    }
}

fn main() -> ExitCode {
    cli::daemon_main("manager", run)
}

/// How the manager reaches a worker that joins: as one given with `-w`.
fn join_links(token: Option<skiff::auth::Token>) -> manager::LinkMaker {
    Arc::new(move |address: &str| Arc::new(HttpWorkerLink::new(address, token.as_ref())) as Arc<dyn WorkerLink>)
}

fn run(args: Args) -> Result<(), String> {
    let scheduler = SchedulerKind::parse(&args.scheduler)
        .ok_or_else(|| format!("-sct {:?}: the scheduler is roundrobin or epvm", args.scheduler))?;
    for w in &args.worker {
        cli::check_address(w).map_err(|m| format!("-w: {m}"))?;
    }
    if args.poll_interval_ms == 0 || args.node_timeout_ms < args.poll_interval_ms {
        return Err("--poll-interval-ms must be above 0 and --node-timeout-ms at least as long".into());
    }
    let publish = match &args.ingress_admin {
        Some(admin) => Some(manager::PublishConfig::from_flags(admin, &args.ingress_listen, &args.domain)?),
        None => None,
    };
    let ready = cli::prepare(&args.flags(), "manager.db")?;
    let mut workers = args.worker.clone();
    if workers.is_empty() {
        workers = ready.store.list_nodes().map_err(|e| error_chain(&e))?.into_iter().map(|n| n.address).collect();
        if !workers.is_empty() {
            log::info!("no -w given: using the workers of the last run workers={}", q(&workers.join(",")));
        }
    }
    if workers.is_empty() {
        log::warn!("no workers given (-w HOST:PORT): waiting for workers to join (worker --join)");
    }
    let links: Vec<Arc<dyn WorkerLink>> =
        workers.iter().map(|w| Arc::new(HttpWorkerLink::new(w, ready.token.as_ref())) as Arc<dyn WorkerLink>).collect();
    let config = ManagerConfig {
        scheduler,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        node_timeout: Duration::from_millis(args.node_timeout_ms),
        orphan_grace: Duration::from_secs(args.orphan_grace_s),
        keep_finished: args.keep_finished,
        links: Some(join_links(ready.token.clone())),
        publish,
        ..ManagerConfig::default()
    };
    let manager = manager::spawn(config, ready.store, links).map_err(|e| error_chain(&e))?;
    let handler = http::manager_handler(manager.handle(), ready.token);
    cli::serve(ready.listener, &ready.signals, handler, http::Limits::default(), |addr| {
        log::info!(
            "manager listening addr={addr} storage={} scheduler={} workers={} ingress={}",
            q(&args.storage),
            q(&args.scheduler),
            q(&workers.join(",")),
            q(args.ingress_admin.as_deref().unwrap_or("-"))
        );
    })?;
    manager.shutdown();
    Ok(())
}
