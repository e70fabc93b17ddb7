//! The worker's control loop: the table of the tasks this node runs, kept true against the Docker
//! Engine.
//!
//! One control thread owns the table and the store. It never calls the engine itself: engine calls
//! (`Op`s) run on a small pool of threads and come back as `OpResult` messages; a further thread
//! follows the engine's event stream so that a container's exit is seen at once, and a periodic
//! sync (list by label, inspect what is not running) is the safety net. The engine's labels
//! (`skiff.task-id`, `skiff.node`, `skiff.spec`) are the truth of what runs: a restarted worker
//! adopts the containers that carry its name.
//!
//! Must not speak HTTP: `http.rs` turns requests into calls on `WorkerHandle`.

use crate::api::{EngineStatus, StartTask, WorkerHealth};
use crate::control::{error_chain, survive};
use crate::docker_cli::{ContainerInfo, ContainerSummary, CreateOptions, Docker, DockerError};
use crate::stats::{self, Caps, CpuTicks, NodeStats, ProcSample};
use crate::store::{Store, StoreError};
use crate::task::{DesiredState, HealthCheck, RestartMode, Task, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use crossbeam_channel::{bounded, select, tick, unbounded, Receiver, Sender};
use log::{debug, error, info, warn};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const LABEL_TASK_ID: &str = "skiff.task-id";
pub const LABEL_NODE: &str = "skiff.node";
pub const LABEL_NAME: &str = "skiff.name";
pub const LABEL_SPEC: &str = "skiff.spec";
pub const LABEL_CREATED: &str = "skiff.created-at";
/// How a task's error starts while its node's engine does not answer.
const ENGINE_AWAY: &str = "engine unreachable, state not confirmed";

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The node's name: it labels every container and is how the manager knows the node.
    pub name: String,
    /// SIGTERM, then SIGKILL after this.
    pub stop_grace: Duration,
    /// How often the table is checked against the engine (events make it prompt; this is the net).
    pub sync_interval: Duration,
    pub engine_threads: usize,
    pub pull_timeout: Duration,
    /// How long finished tasks stay listed for the manager to see.
    pub keep_finished: Duration,
    /// How long an HTTP thread waits for a start to finish before answering 504.
    pub start_wait: Duration,
    /// How often the node's statistics are sampled (CPU usage is measured between samples).
    pub stats_interval: Duration,
    /// What the operator lets Skiff use of this node.
    pub caps: Caps,
    /// Back-off before the first restart in place; it doubles with each restart, up to the cap.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// A run this long without trouble gives a task its restart budget and back-off back.
    pub restart_reset_after: Duration,
}

impl WorkerConfig {
    pub fn new(name: &str) -> WorkerConfig {
        WorkerConfig {
            name: name.to_string(),
            stop_grace: Duration::from_secs(10),
            sync_interval: Duration::from_secs(5),
            engine_threads: 4,
            pull_timeout: Duration::from_secs(300),
            // long enough for a manager cut off for a while to still learn how a task ended
            keep_finished: Duration::from_secs(24 * 3600),
            start_wait: Duration::from_secs(330),
            stats_interval: Duration::from_secs(2),
            caps: Caps::default(),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
            restart_reset_after: Duration::from_secs(60),
        }
    }
}

/// Why a worker request failed.
#[derive(Debug)]
pub enum WorkerError {
    NotFound(TaskId),
    AlreadyFinished {
        id: TaskId,
        state: TaskState,
    },
    /// The engine could not be reached; the task was not started.
    EngineUnreachable(String),
    /// The answer did not come in time; the operation may still complete.
    TimedOut,
    /// The engine stopped answering mid-way: whether the container runs is not known yet (the
    /// worker finds out and carries on by itself).
    OutcomeUnknown(String),
    /// The worker has not checked its containers since it started, so it cannot say yet that
    /// it does not have a task.
    NotReady,
    ShuttingDown,
    Store(StoreError),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::NotFound(id) => write!(f, "no task {id} on this worker"),
            WorkerError::AlreadyFinished { id, state } => write!(f, "task {id} is already finished ({state})"),
            WorkerError::EngineUnreachable(why) => write!(f, "{why}"),
            WorkerError::TimedOut => f.write_str("the worker did not finish in time; the operation goes on"),
            WorkerError::OutcomeUnknown(why) => {
                write!(f, "the engine stopped answering mid-way ({why}); the worker carries on")
            }
            WorkerError::NotReady => f.write_str("the worker has not checked its containers since it started; retry"),
            WorkerError::ShuttingDown => f.write_str("the worker is shutting down"),
            WorkerError::Store(_) => f.write_str("the worker's store failed"),
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Store(e) => Some(e),
            _ => None,
        }
    }
}

type Reply<T> = Sender<Result<T, WorkerError>>;

enum Command {
    Start { req: Box<StartTask>, reply: Reply<(Task, bool)> },
    Stop { id: TaskId, reply: Reply<Task> },
    Get { id: TaskId, reply: Reply<Task> },
    List { reply: Reply<Vec<Task>> },
    Health { reply: Reply<WorkerHealth> },
    Stats { reply: Reply<NodeStats> },
    Shutdown,
}

/// How the HTTP layer talks to the control thread. Cheap to clone.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: Sender<Command>,
    start_wait: Duration,
    stop_wait: Duration,
}

const QUICK_WAIT: Duration = Duration::from_secs(5);

impl WorkerHandle {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command, wait: Duration) -> Result<T, WorkerError> {
        let (tx, rx) = bounded(1);
        self.tx.send(make(tx)).map_err(|_| WorkerError::ShuttingDown)?;
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(WorkerError::TimedOut),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(WorkerError::ShuttingDown),
        }
    }

    /// Starts a task (idempotent per id) and answers once its container runs or has failed;
    /// the flag says whether this call created it.
    pub fn start(&self, req: StartTask) -> Result<(Task, bool), WorkerError> {
        self.ask(|reply| Command::Start { req: Box::new(req), reply }, self.start_wait)
    }

    /// Stops a task and removes its container, answering when that is done.
    pub fn stop(&self, id: TaskId) -> Result<Task, WorkerError> {
        self.ask(|reply| Command::Stop { id, reply }, self.stop_wait)
    }

    pub fn get(&self, id: TaskId) -> Result<Task, WorkerError> {
        self.ask(|reply| Command::Get { id, reply }, QUICK_WAIT)
    }

    pub fn list(&self) -> Result<Vec<Task>, WorkerError> {
        self.ask(|reply| Command::List { reply }, QUICK_WAIT)
    }

    pub fn health(&self) -> Result<WorkerHealth, WorkerError> {
        self.ask(|reply| Command::Health { reply }, QUICK_WAIT)
    }

    /// The node's last statistics sample (cheap: no measurement happens in the call).
    pub fn stats(&self) -> Result<NodeStats, WorkerError> {
        self.ask(|reply| Command::Stats { reply }, QUICK_WAIT)
    }
}

/// A running worker: its handle and its threads.
pub struct Worker {
    handle: WorkerHandle,
    control: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// Stops the control loop (containers keep running) and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.tx.send(Command::Shutdown);
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the worker's threads. Tasks in `store` are loaded, then checked against the engine.
pub fn spawn(config: WorkerConfig, docker: Arc<Docker>, store: Box<dyn Store>) -> Result<Worker, WorkerError> {
    let (cmd_tx, cmd_rx) = unbounded();
    let (results_tx, results_rx) = unbounded::<OpResult>();
    // Starts may take minutes (an image pull): they have their own threads, so that stops,
    // removals, inspects and syncs never wait behind them.
    let starts = engine_pool("engine-start", config.engine_threads, &docker, &config, &results_tx)?;
    let others = engine_pool("engine", config.engine_threads, &docker, &config, &results_tx)?;
    let (samples_tx, samples_rx) = unbounded::<Sample>();
    let (disk_tx, disk_rx) = unbounded::<PathBuf>();
    let interval = config.stats_interval;
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || sample_node(interval, &disk_rx, &samples_tx))
        .map_err(|e| WorkerError::EngineUnreachable(format!("cannot start the stats thread: {e}")))?;
    let (events_tx, events_rx) = unbounded::<EngineEvent>();
    let (ev_docker, ev_name) = (docker.clone(), config.name.clone());
    std::thread::Builder::new()
        .name("engine-events".into())
        .spawn(move || follow_events(&ev_docker, &ev_name, &events_tx))
        .map_err(|e| WorkerError::EngineUnreachable(format!("cannot start the events thread: {e}")))?;

    let (health_tx, health_rx) = unbounded::<HealthResult>();
    let mut state = State::new(config.clone(), store, Pools { starts, others }, disk_tx, health_tx)?;
    let ticker = tick(config.sync_interval);
    let control = std::thread::Builder::new()
        .name("worker-control".into())
        .spawn(move || {
            state.send_op(Op::Version);
            state.resume();
            state.request_sync();
            loop {
                // restarts in place are due at their own times, not at the next tick
                let timer = state.next_restart().map_or_else(crossbeam_channel::never, crossbeam_channel::at);
                select! {
                    recv(cmd_rx) -> cmd => match cmd {
                        Ok(Command::Shutdown) | Err(_) => break,
                        Ok(cmd) => survive("a command", || state.on_command(cmd)),
                    },
                    recv(timer) -> _ => survive("a restart", || state.on_restart_due()),
                    recv(health_rx) -> h => if let Ok(h) = h { survive("a health check", || state.on_health(h)) },
                    recv(results_rx) -> res => if let Ok(res) = res { survive("an engine result", || state.on_result(res)) },
                    recv(events_rx) -> ev => if let Ok(ev) = ev { survive("an engine event", || state.on_event(ev)) },
                    recv(samples_rx) -> s => if let Ok(s) = s { survive("a stats sample", || state.on_sample(s)) },
                    recv(ticker) -> _ => survive("a tick", || state.on_tick()),
                }
            }
            info!("worker control loop stopped node={}", state.config.name);
        })
        .map_err(|e| WorkerError::EngineUnreachable(format!("cannot start the control thread: {e}")))?;
    let stop_wait = config.stop_grace + Duration::from_secs(60);
    Ok(Worker { handle: WorkerHandle { tx: cmd_tx, start_wait: config.start_wait, stop_wait }, control: Some(control) })
}

/// The two sets of engine threads: one for starts, one for everything else.
struct Pools {
    starts: Sender<Op>,
    others: Sender<Op>,
}

fn engine_pool(
    label: &str,
    threads: usize,
    docker: &Arc<Docker>,
    config: &WorkerConfig,
    results: &Sender<OpResult>,
) -> Result<Sender<Op>, WorkerError> {
    let (tx, rx) = unbounded::<Op>();
    for i in 0..threads.max(1) {
        let (rx, results, docker, cfg) = (rx.clone(), results.clone(), docker.clone(), config.clone());
        std::thread::Builder::new()
            .name(format!("{label}-{i}"))
            .spawn(move || {
                for op in rx.iter() {
                    let failed = op.failed();
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_op(&docker, &cfg, op)))
                        .unwrap_or(failed);
                    if results.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| WorkerError::EngineUnreachable(format!("cannot start engine threads: {e}")))?;
    }
    Ok(tx)
}

// ---------------------------------------------------------------------------------------------
// Engine operations, run on the pools

enum Op {
    Start {
        id: TaskId,
        spec: Box<TaskSpec>,
        container_name: String,
        labels: BTreeMap<String, String>,
    },
    /// Starts the task's exited container again (a restart in place); creates a new one if it
    /// is gone.
    Restart {
        id: TaskId,
        container_id: String,
        spec: Box<TaskSpec>,
        container_name: String,
        labels: BTreeMap<String, String>,
    },
    /// Stops a container that failed its health checks, then inspects it (answered as Inspected).
    Kill {
        id: TaskId,
        container_id: String,
    },
    Stop {
        id: TaskId,
        container_id: Option<String>,
    },
    Remove {
        id: TaskId,
        container_id: String,
    },
    Inspect {
        id: TaskId,
        container_id: String,
    },
    Sync {
        epoch: u64,
    },
    Version,
}

impl Op {
    /// The result to report if running this op panics (a bug): a failure that clears the op.
    fn failed(&self) -> OpResult {
        let e = || DockerError::Protocol("internal error during the engine call".into());
        match self {
            Op::Start { id, .. } => OpResult::Started { id: *id, result: Err(StartFailure::Unknown(e().to_string())) },
            Op::Restart { id, .. } => {
                OpResult::Started { id: *id, result: Err(StartFailure::Unknown(e().to_string())) }
            }
            Op::Kill { id, .. } => OpResult::Inspected { id: *id, result: Err(e()) },
            Op::Stop { id, .. } => OpResult::Stopped { id: *id, result: Err(e()) },
            Op::Remove { id, .. } => OpResult::Removed { id: *id, result: Err(e()) },
            Op::Inspect { id, .. } => OpResult::Inspected { id: *id, result: Err(e()) },
            Op::Sync { epoch } => OpResult::Synced { epoch: *epoch, result: Err(e()) },
            Op::Version => OpResult::Version { result: Err(e()) },
        }
    }
}

/// Why a start did not produce a running container.
enum StartFailure {
    /// The engine could not be reached before anything was created: nothing happened, and the
    /// task may be placed elsewhere.
    NotStarted(String),
    /// The engine refused (no such image, bad config, port taken): the task fails.
    Refused(String),
    /// The engine stopped answering once a container may exist: what runs is unknown until the
    /// next sync, and the start is made again (it adopts what the first attempt left).
    Unknown(String),
}

enum OpResult {
    Started {
        id: TaskId,
        result: Result<ContainerInfo, StartFailure>,
    },
    Stopped {
        id: TaskId,
        result: Result<(), DockerError>,
    },
    Removed {
        id: TaskId,
        result: Result<(), DockerError>,
    },
    Inspected {
        id: TaskId,
        result: Result<ContainerInfo, DockerError>,
    },
    Synced {
        epoch: u64,
        result: Result<Vec<Observed>, DockerError>,
    },
    /// The engine's version, the API version spoken, and its data root (if /info answered).
    Version {
        result: Result<(String, String, Option<PathBuf>), DockerError>,
    },
}

/// A labelled container as a sync saw it; `info` is filled for containers that are not running.
struct Observed {
    summary: ContainerSummary,
    info: Option<ContainerInfo>,
}

fn run_op(docker: &Docker, cfg: &WorkerConfig, op: Op) -> OpResult {
    match op {
        Op::Start { id, spec, container_name, labels } => {
            let result = start_container(docker, cfg, &spec, &container_name, &labels, &id);
            OpResult::Started { id, result }
        }
        Op::Restart { id, container_id, spec, container_name, labels } => {
            let result = match docker.start(&container_id) {
                // the container is gone: a new one
                Err(e) if e.is_not_found() => start_container(docker, cfg, &spec, &container_name, &labels, &id),
                other => other
                    .map_err(after_create)
                    .and_then(|_| docker.inspect(&container_id).map_err(|e| StartFailure::Unknown(error_chain(&e)))),
            };
            OpResult::Started { id, result }
        }
        Op::Kill { id, container_id } => {
            let result = docker.stop(&container_id, cfg.stop_grace).and_then(|_| docker.inspect(&container_id));
            OpResult::Inspected { id, result }
        }
        Op::Stop { id, container_id } => {
            let result = match container_id {
                Some(cid) => {
                    docker.stop(&cid, cfg.stop_grace).or_else(not_found_is_ok).and_then(|_| docker.remove(&cid))
                }
                None => Ok(()),
            };
            OpResult::Stopped { id, result }
        }
        Op::Remove { id, container_id } => OpResult::Removed { id, result: docker.remove(&container_id) },
        Op::Inspect { id, container_id } => OpResult::Inspected { id, result: docker.inspect(&container_id) },
        Op::Sync { epoch } => OpResult::Synced { epoch, result: observe(docker, &cfg.name) },
        Op::Version => {
            OpResult::Version { result: docker.version().map(|(version, api)| (version, api, docker.root_dir().ok())) }
        }
    }
}

fn not_found_is_ok(e: DockerError) -> Result<(), DockerError> {
    if e.is_not_found() {
        Ok(())
    } else {
        Err(e)
    }
}

/// A failure before any container exists: an engine out of reach means nothing happened.
fn before_create(e: DockerError) -> StartFailure {
    if e.is_engine_down() {
        StartFailure::NotStarted(error_chain(&e))
    } else {
        StartFailure::Refused(error_chain(&e))
    }
}

/// A failure once a container may exist: an engine out of reach leaves the outcome unknown.
fn after_create(e: DockerError) -> StartFailure {
    if e.is_engine_down() {
        StartFailure::Unknown(error_chain(&e))
    } else {
        StartFailure::Refused(error_chain(&e))
    }
}

/// Image check (and pull if absent), create, start, inspect. A container left by an earlier
/// attempt for the same task is adopted if it runs and replaced if not.
fn start_container(
    docker: &Docker,
    cfg: &WorkerConfig,
    spec: &TaskSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
    id: &TaskId,
) -> Result<ContainerInfo, StartFailure> {
    if !docker.image_exists(&spec.image).map_err(before_create)? {
        // No registry may be reachable: a pull failure is the task's failure, with the engine's words.
        if let Err(e) = docker.pull(&spec.image, cfg.pull_timeout) {
            if e.is_engine_down() {
                return Err(StartFailure::NotStarted(error_chain(&e)));
            }
            let message = match &e {
                DockerError::Api { message, .. } => message.clone(),
                other => error_chain(other),
            };
            return Err(StartFailure::Refused(format!(
                "image {} is not on node {} and could not be pulled: {message}",
                spec.image, cfg.name
            )));
        }
    }
    let opts = CreateOptions { name, spec, labels };
    let container_id = match docker.create(&opts) {
        Ok(cid) => cid,
        Err(DockerError::Api { status: 409, .. }) => {
            let existing = docker.inspect(name).map_err(after_create)?;
            let ours = existing.labels.get(LABEL_TASK_ID).map(String::as_str) == Some(id.to_string().as_str());
            if ours && existing.running {
                return Ok(existing);
            }
            if !ours {
                return Err(StartFailure::Refused(format!(
                    "a container named {name} exists and does not belong to this task"
                )));
            }
            docker.remove(&existing.id).map_err(after_create)?;
            docker.create(&opts).map_err(after_create)?
        }
        // the request never arrived: nothing was created
        Err(e @ DockerError::Unreachable { .. }) => return Err(before_create(e)),
        Err(e) => return Err(after_create(e)),
    };
    if let Err(e) = docker.start(&container_id) {
        let failure = after_create(e);
        if let StartFailure::Refused(_) = failure {
            // leave nothing behind; if this fails too, the sync removes it later
            let _ = docker.remove(&container_id);
        }
        return Err(failure);
    }
    docker.inspect(&container_id).map_err(|e| StartFailure::Unknown(error_chain(&e)))
}

/// Every container labelled with this node, with inspect details for those not running.
fn observe(docker: &Docker, node: &str) -> Result<Vec<Observed>, DockerError> {
    let list = docker.list(&[format!("{LABEL_NODE}={node}")])?;
    let mut seen = Vec::with_capacity(list.len());
    for summary in list {
        let info = if summary.state == "running" {
            None
        } else {
            match docker.inspect(&summary.id) {
                Ok(i) => Some(i),
                Err(e) if e.is_not_found() => continue, // removed since the list
                Err(e) => return Err(e),
            }
        };
        seen.push(Observed { summary, info });
    }
    Ok(seen)
}

/// One reading of the node, taken on the stats thread.
struct Sample {
    at: Timestamp,
    proc: Result<ProcSample, String>,
    disk_path: PathBuf,
    disk: Result<(u64, u64), String>,
}

/// Samples /proc and the engine's disk every `interval`, on its own thread (reading /proc is I/O,
/// however quick, and a statvfs on a hung filesystem could block).
fn sample_node(interval: Duration, disk_path: &Receiver<PathBuf>, out: &Sender<Sample>) {
    let ticker = tick(interval);
    let mut path = PathBuf::from("/");
    loop {
        while let Ok(p) = disk_path.try_recv() {
            path = p;
        }
        let sample = Sample {
            at: Timestamp::now(),
            proc: stats::read_proc(),
            disk: stats::disk(&path),
            disk_path: path.clone(),
        };
        if out.send(sample).is_err() || ticker.recv().is_err() {
            return;
        }
    }
}

/// A health checker's verdict on one check of one run of a task's container.
struct HealthResult {
    id: TaskId,
    run: u64,
    ok: bool,
    detail: String,
}

/// Checks one run of a container every `interval_s` until told to stop (its sender dropped): an
/// HTTP GET of the path on the published host port, from this host, within `timeout_s`; a 2xx or
/// 3xx answer is healthy. One thread per checked container, so a slow one delays no other.
fn health_loop(id: TaskId, run: u64, check: &HealthCheck, port: u16, stop: &Receiver<()>, out: &Sender<HealthResult>) {
    let url = format!("http://127.0.0.1:{port}{}", check.path);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(u64::from(check.timeout_s))))
        .build()
        .new_agent();
    let interval = Duration::from_secs(u64::from(check.interval_s));
    loop {
        match stop.recv_timeout(interval) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let (ok, detail) = match agent.get(&url).call() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                ((200..400).contains(&status), format!("{url} answered {status}"))
            }
            Err(e) => (false, format!("{url}: {e}")),
        };
        if out.send(HealthResult { id, run, ok, detail }).is_err() {
            return;
        }
    }
}

/// Why a container stopped, in words.
fn exit_reason(info: &ContainerInfo, unhealthy_after: Option<u32>) -> String {
    if let Some(n) = unhealthy_after {
        format!("unhealthy after {n} failed health checks")
    } else if info.status == "created" {
        if info.error.is_empty() {
            "container was created but never started".into()
        } else {
            info.error.clone()
        }
    } else if info.oom_killed {
        format!("killed for using more than its memory limit (exit code {})", info.exit_code)
    } else if !info.error.is_empty() {
        format!("exited with code {}: {}", info.exit_code, info.error)
    } else {
        format!("exited with code {}", info.exit_code)
    }
}

enum EngineEvent {
    /// The stream is (re)connected: events may have been missed, so check everything.
    Connected,
    Died {
        container_id: String,
        task_id: Option<TaskId>,
    },
}

/// Follows the engine's event stream for this node's containers, reconnecting with back-off.
fn follow_events(docker: &Docker, node: &str, tx: &Sender<EngineEvent>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match docker.events(&[format!("{LABEL_NODE}={node}")]) {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                if tx.send(EngineEvent::Connected).is_err() {
                    return;
                }
                for ev in stream {
                    match ev {
                        Ok(ev) if ev.action == "die" => {
                            let task_id = ev.labels.get(LABEL_TASK_ID).and_then(|v| v.parse().ok());
                            if tx.send(EngineEvent::Died { container_id: ev.id, task_id }).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            debug!("engine event stream broke error={}", error_chain(&e));
                            break;
                        }
                    }
                }
            }
            Err(e) => debug!("engine event stream unavailable error={}", error_chain(&e)),
        }
        // retry pacing while the engine is away, not synchronisation
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------------
// The control thread's state

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Start,
    Stop,
    Remove,
    Inspect,
}

struct Entry {
    task: Task,
    op: Option<OpKind>,
    start_waiters: Vec<(Reply<(Task, bool)>, bool)>,
    stop_waiters: Vec<Reply<Task>>,
    /// A container may still exist for this task (to be removed once it is finished).
    container_present: bool,
    /// The epoch of the last op result that changed this entry; syncs older than it are ignored.
    changed_epoch: u64,
    /// The last op failed: follow-ups wait for the next tick instead of retrying at once.
    backoff: bool,
    /// Its container died while an op was under way; inspect it when the op is done.
    exit_seen: bool,
    /// Digest of the record as last written to the store.
    saved: Option<u64>,
    /// A restart in place is due at this time (the container exited; the policy says again).
    restart_at: Option<std::time::Instant>,
    /// When the current run of the container began.
    run_started: Option<std::time::Instant>,
    /// Counts runs, so that health results of an earlier run are told apart.
    run: u64,
    /// The running health checker of the current run (dropping it stops the checker).
    checker: Option<Sender<()>>,
    /// Consecutive failed health checks in the current run.
    health_failures: u32,
    /// The container is being stopped because it failed its health checks.
    unhealthy: bool,
}

impl Entry {
    fn new(task: Task, op: Option<OpKind>, container_present: bool, changed_epoch: u64) -> Entry {
        Entry {
            task,
            op,
            start_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            container_present,
            changed_epoch,
            backoff: false,
            exit_seen: false,
            saved: None,
            restart_at: None,
            run_started: None,
            run: 0,
            checker: None,
            health_failures: 0,
            unhealthy: false,
        }
    }
}

struct State {
    config: WorkerConfig,
    store: Box<dyn Store>,
    pools: Pools,
    entries: HashMap<TaskId, Entry>,
    engine: EngineStatus,
    sync_in_flight: bool,
    epoch: u64,
    /// A sync has completed since start: the table holds every container of this node, so "not
    /// in the table" means "not here".
    synced: bool,
    /// Where the stats thread should measure the disk (the engine's data root, once known).
    disk_path: Sender<PathBuf>,
    last_cpu: Option<CpuTicks>,
    stats: Option<NodeStats>,
    /// Where health checkers send their verdicts.
    health: Sender<HealthResult>,
}

impl State {
    fn new(
        config: WorkerConfig,
        store: Box<dyn Store>,
        pools: Pools,
        disk_path: Sender<PathBuf>,
        health: Sender<HealthResult>,
    ) -> Result<State, WorkerError> {
        let mut entries = HashMap::new();
        for task in store.list_tasks().map_err(WorkerError::Store)? {
            let container_present = task.container_id.is_some();
            let saved = Some(record_digest(&task));
            let id = task.id;
            let mut entry = Entry::new(task, None, container_present, 0);
            entry.saved = saved;
            entries.insert(id, entry);
        }
        let engine = EngineStatus { reachable: false, version: None, api_version: None, error: None };
        Ok(State {
            config,
            store,
            pools,
            entries,
            engine,
            sync_in_flight: false,
            epoch: 1,
            synced: false,
            disk_path,
            last_cpu: None,
            stats: None,
            health,
        })
    }

    fn send_op(&self, op: Op) {
        // the pools outlive the control loop, so this cannot fail while we run
        let pool =
            if matches!(op, Op::Start { .. } | Op::Restart { .. }) { &self.pools.starts } else { &self.pools.others };
        let _ = pool.send(op);
    }

    fn request_sync(&mut self) {
        if !self.sync_in_flight {
            self.sync_in_flight = true;
            self.send_op(Op::Sync { epoch: self.epoch });
        }
    }

    /// Writes the entry's record if it changed since it was last written (nothing is written
    /// when nothing changes).
    fn persist(&mut self, id: &TaskId) {
        let Some(e) = self.entries.get_mut(id) else { return };
        let digest = record_digest(&e.task);
        if e.saved == Some(digest) {
            return;
        }
        match self.store.put_task(&e.task) {
            Ok(()) => e.saved = Some(digest),
            Err(err) => error!("store write failed task_id={id} error={}", error_chain(&err)),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { req, reply } => self.start(req, reply),
            Command::Stop { id, reply } => self.stop(id, reply),
            Command::Get { id, reply } => {
                let r = self.entries.get(&id).map(|e| e.task.clone()).ok_or_else(|| self.missing(id));
                let _ = reply.send(r);
            }
            Command::List { reply } => {
                let mut tasks: Vec<Task> = self.entries.values().map(|e| e.task.clone()).collect();
                tasks.sort_by_key(|t| (t.created_at, t.id));
                let _ = reply.send(Ok(tasks));
            }
            Command::Health { reply } => {
                let tasks = self.unfinished();
                let status = if self.engine.reachable { "ok" } else { "degraded" };
                let _ = reply.send(Ok(WorkerHealth {
                    status: status.into(),
                    name: self.config.name.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    engine: self.engine.clone(),
                    synced: self.synced,
                    tasks,
                }));
            }
            Command::Stats { reply } => {
                let tasks = self.unfinished();
                let answer = self.stats.clone().map(|s| NodeStats { tasks, ..s }).ok_or(WorkerError::NotReady);
                let _ = reply.send(answer);
            }
            Command::Shutdown => {}
        }
    }

    fn unfinished(&self) -> usize {
        self.entries.values().filter(|e| !e.task.is_terminal()).count()
    }

    /// Keeps the latest statistics; CPU usage is measured against the previous sample.
    fn on_sample(&mut self, s: Sample) {
        let proc = match s.proc {
            Ok(p) => p,
            Err(e) => {
                if self.stats.is_some() {
                    warn!("node statistics unreadable error={e}");
                }
                self.stats = None;
                return;
            }
        };
        let usage = self.last_cpu.map_or(0.0, |before| stats::cpu_usage_pct(before, proc.cpu));
        self.last_cpu = Some(proc.cpu);
        let (disk_total_mb, disk_free_mb) = s.disk.unwrap_or((0, 0));
        let capacity = stats::capacity(self.config.caps, proc.cpu.count, proc.memory_total_mb, disk_total_mb);
        self.stats = Some(NodeStats {
            node: self.config.name.clone(),
            sampled_at: s.at,
            cpu_count: proc.cpu.count,
            cpu_usage_pct: (usage * 10.0).round() / 10.0,
            load_1: proc.load[0],
            load_5: proc.load[1],
            load_15: proc.load[2],
            memory_total_mb: proc.memory_total_mb,
            memory_available_mb: proc.memory_available_mb,
            disk_path: s.disk_path.display().to_string(),
            disk_total_mb,
            disk_free_mb,
            capacity,
            tasks: self.unfinished(),
        });
    }

    fn start(&mut self, req: Box<StartTask>, reply: Reply<(Task, bool)>) {
        let req = *req;
        if let Some(entry) = self.entries.get_mut(&req.id) {
            if !entry.task.is_terminal() {
                if entry.op == Some(OpKind::Start) {
                    entry.start_waiters.push((reply, false));
                } else {
                    let _ = reply.send(Ok((entry.task.clone(), false)));
                }
                return;
            }
            if entry.op.is_some() || entry.container_present {
                // the old container of this task is still being removed; a new run waits for that
                let _ = reply.send(Err(WorkerError::EngineUnreachable(
                    "the previous run of this task is still being cleaned up; retry".into(),
                )));
                return;
            }
        }
        let now = Timestamp::now();
        let mut task = Task::new(req.id, req.spec, now);
        task.node = Some(self.config.name.clone());
        task.restart_count = req.restart_count;
        // "sent to a node": on the worker a new task starts as Scheduled
        let _ = task.set_state(TaskState::Scheduled, now);
        info!("starting task task_id={} name={} image={}", task.id, task.name, task.spec.image);
        self.send_op(start_op(&task, &self.config.name));
        let id = task.id;
        let mut entry = Entry::new(task, Some(OpKind::Start), true, self.epoch);
        entry.start_waiters.push((reply, true));
        self.entries.insert(id, entry);
        self.persist(&id);
    }

    /// The error for an id the table does not hold: not found, once the table is known complete.
    fn missing(&self, id: TaskId) -> WorkerError {
        if self.synced {
            WorkerError::NotFound(id)
        } else {
            WorkerError::NotReady
        }
    }

    fn stop(&mut self, id: TaskId, reply: Reply<Task>) {
        let missing = self.missing(id);
        let Some(entry) = self.entries.get_mut(&id) else {
            let _ = reply.send(Err(missing));
            return;
        };
        if entry.task.is_terminal() {
            let state = entry.task.state;
            let _ = reply.send(Err(WorkerError::AlreadyFinished { id, state }));
            return;
        }
        entry.task.desired_state = DesiredState::Stopped;
        entry.stop_waiters.push(reply);
        if entry.op.is_none() {
            entry.op = Some(OpKind::Stop);
            let container_id = entry.task.container_id.clone();
            info!("stopping task task_id={id}");
            self.send_op(Op::Stop { id, container_id });
        }
        // otherwise the stop follows when the op in flight ends
        self.persist(&id);
    }

    fn on_result(&mut self, res: OpResult) {
        self.epoch += 1;
        let now = Timestamp::now();
        match res {
            OpResult::Started { id, result } => self.on_started(id, result, now),
            OpResult::Stopped { id, result } => self.on_stopped(id, result, now),
            OpResult::Removed { id, result } => {
                self.note_engine(result.as_ref().err());
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.op = None;
                    entry.changed_epoch = self.epoch;
                    match result {
                        Ok(()) => entry.container_present = false,
                        Err(e) => {
                            entry.backoff = true;
                            warn!("container removal failed task_id={id} error={}", error_chain(&e));
                        }
                    }
                    self.after_op(id);
                }
            }
            OpResult::Inspected { id, result } => {
                self.note_engine(result.as_ref().err());
                let epoch = self.epoch;
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.op = None;
                    entry.changed_epoch = epoch;
                    // no run followed yet (adopted, or after a restart of this worker), or a health
                    // kill that did not take: (re)start following it
                    let needs_checker = entry.task.spec.health_check.is_some() && entry.checker.is_none();
                    let follow = (entry.run_started.is_none() || needs_checker) && entry.restart_at.is_none();
                    match result {
                        Ok(info) if !info.running => self.on_exit(id, &info, now),
                        Ok(info) => {
                            // running: an adopted container's details, or a stop that did not take
                            entry.task.ports = info.ports.clone();
                            entry.task.started_at = info.started_at.or(entry.task.started_at);
                            entry.unhealthy = false;
                            if follow && entry.task.state == TaskState::Running {
                                self.begin_run(id);
                            }
                        }
                        Err(e) if e.is_not_found() => {
                            entry.unhealthy = false;
                            vanished(&mut entry.task, now)
                        }
                        Err(e) => {
                            entry.unhealthy = false;
                            debug!("inspect failed task_id={id} error={}", error_chain(&e))
                        }
                    }
                    self.after_op(id);
                }
            }
            OpResult::Synced { epoch, result } => {
                self.sync_in_flight = false;
                self.note_engine(result.as_ref().err());
                match result {
                    Ok(seen) => self.on_synced(epoch, seen, now),
                    Err(e) => debug!("sync failed error={}", error_chain(&e)),
                }
            }
            OpResult::Version { result } => match result {
                Ok((version, api, root)) => {
                    info!("engine answers version={version} api={api}");
                    if let Some(root) = root {
                        // the disk to measure is the one containers fill
                        let _ = self.disk_path.send(root);
                    }
                    self.engine.version = Some(version);
                    self.engine.api_version = Some(api);
                    self.note_engine(None);
                }
                Err(e) => self.note_engine(Some(&e)),
            },
        }
    }

    /// Keeps the engine's reachability, logging only when it changes.
    fn note_engine(&mut self, err: Option<&DockerError>) {
        match err {
            Some(e) if e.is_engine_down() || matches!(e, DockerError::UnsupportedEngine(_)) => {
                if self.engine.reachable || self.engine.error.is_none() {
                    error!("engine unreachable node={} error={}", self.config.name, error_chain(e));
                    self.mark_tasks(Some(&format!("{ENGINE_AWAY}: {}", error_chain(e))));
                }
                self.engine.reachable = false;
                self.engine.error = Some(error_chain(e));
            }
            Some(_) => {}
            None => {
                if !self.engine.reachable {
                    if self.engine.error.is_some() {
                        info!("engine reachable again node={}", self.config.name);
                        self.mark_tasks(None);
                    }
                    self.engine.reachable = true;
                    self.engine.error = None;
                    if self.engine.version.is_none() {
                        self.send_op(Op::Version);
                    }
                    // what happened while it was away
                    self.request_sync();
                }
            }
        }
    }

    /// While the engine is away, every unfinished task says so in its `error` (its state cannot
    /// be confirmed); when it answers again, those words go.
    fn mark_tasks(&mut self, away: Option<&str>) {
        let ids: Vec<TaskId> = self.entries.iter().filter(|(_, e)| !e.task.is_terminal()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            match away {
                Some(why) if entry.task.error.is_none() => entry.task.error = Some(why.to_string()),
                None if entry.task.error.as_deref().is_some_and(|e| e.starts_with(ENGINE_AWAY)) => {
                    entry.task.error = None
                }
                _ => continue,
            }
            self.persist(&id);
        }
    }

    fn on_started(&mut self, id: TaskId, result: Result<ContainerInfo, StartFailure>, now: Timestamp) {
        let epoch = self.epoch;
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.op = None;
        entry.changed_epoch = epoch;
        // a restart in place (the task was Running) never gives the task up for placement elsewhere
        let restarting = entry.task.state == TaskState::Running;
        let failure = match result {
            Ok(info) if info.running => {
                entry.task.container_id = Some(info.id.clone());
                entry.task.ports = info.ports.clone();
                let _ = entry.task.set_state(TaskState::Running, now);
                entry.task.started_at = info.started_at.or(Some(now));
                entry.task.error = None;
                info!("task running task_id={id} container={}", short_id(&info.id));
                self.begin_run(id);
                None
            }
            Ok(info) => {
                entry.task.container_id = Some(info.id.clone());
                entry.task.ports.clear();
                self.on_exit(id, &info, now);
                None
            }
            Err(StartFailure::Refused(why)) => {
                warn!("task failed to start task_id={id} error={why}");
                entry.task.error = Some(if restarting { format!("restart failed: {why}") } else { why });
                let _ = entry.task.set_state(TaskState::Failed, now);
                entry.container_present = restarting;
                None
            }
            Err(StartFailure::Unknown(why) | StartFailure::NotStarted(why)) if restarting => {
                // the engine is away: try the restart again later
                warn!("task restart not done task_id={id} error={why}");
                entry.task.error = Some(format!("restart not done yet: {why}"));
                entry.restart_at = Some(std::time::Instant::now() + self.config.sync_interval);
                None
            }
            Err(StartFailure::Unknown(why)) => {
                // Keep the task: the next tick makes the start again, which adopts a container
                // the first attempt left; the caller hears that the outcome is not known yet.
                warn!("task start outcome unknown task_id={id} error={why}");
                entry.backoff = true;
                Some(WorkerError::OutcomeUnknown(why))
            }
            Err(StartFailure::NotStarted(why)) => {
                // Nothing was created: forget the task so the manager can place it elsewhere.
                warn!("task not started, engine unreachable task_id={id} error={why}");
                let entry = self.entries.remove(&id).expect("entry exists: checked above");
                for (w, _) in entry.start_waiters {
                    let _ = w.send(Err(WorkerError::EngineUnreachable(why.clone())));
                }
                for w in entry.stop_waiters {
                    let _ = w.send(Err(WorkerError::EngineUnreachable(why.clone())));
                }
                if let Err(e) = self.store.delete_task(&id) {
                    error!("store delete failed task_id={id} error={}", error_chain(&e));
                }
                self.engine.reachable = false;
                self.engine.error = Some(why);
                return;
            }
        };
        let Some(entry) = self.entries.get_mut(&id) else { return };
        let task = entry.task.clone();
        let waiters = std::mem::take(&mut entry.start_waiters);
        // committed before it is acknowledged
        self.persist(&id);
        for (w, created) in waiters {
            let answer = match &failure {
                None => Ok((task.clone(), created)),
                Some(WorkerError::OutcomeUnknown(why)) => Err(WorkerError::OutcomeUnknown(why.clone())),
                Some(_) => Err(WorkerError::TimedOut),
            };
            let _ = w.send(answer);
        }
        self.after_op(id);
    }

    /// A new run of a task's container has begun: its health checks start over.
    fn begin_run(&mut self, id: TaskId) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.run += 1;
        entry.run_started = Some(std::time::Instant::now());
        entry.health_failures = 0;
        entry.unhealthy = false;
        entry.checker = None;
        entry.task.healthy = None;
        let Some(check) = entry.task.spec.health_check.clone() else { return };
        // the check goes to the published host port, from this host
        let port = entry
            .task
            .ports
            .iter()
            .find(|p| p.container == check.port && p.protocol == crate::task::Protocol::Tcp)
            .map(|p| p.host);
        let Some(port) = port else {
            warn!("no published port for the health check task_id={id} port={}", check.port);
            return;
        };
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (tx, run) = (self.health.clone(), entry.run);
        let spawned = std::thread::Builder::new()
            .name(format!("health-{}", id.short()))
            .spawn(move || health_loop(id, run, &check, port, &stop_rx, &tx));
        match spawned {
            Ok(_) => entry.checker = Some(stop_tx),
            Err(e) => error!("cannot start a health checker task_id={id} error={e}"),
        }
    }

    /// A container of a live task stopped by itself (or for failing its health checks): restart
    /// it in place if its policy says so and its budget allows, after a back-off; otherwise the
    /// task ends, Completed or Failed, with the reason.
    fn on_exit(&mut self, id: TaskId, info: &ContainerInfo, now: Timestamp) {
        let (backoff, backoff_max, reset_after) =
            (self.config.restart_backoff, self.config.restart_backoff_max, self.config.restart_reset_after);
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.exit_seen = false;
        entry.checker = None;
        let unhealthy = std::mem::take(&mut entry.unhealthy);
        let task = &mut entry.task;
        if task.is_terminal() {
            return;
        }
        if info.finished_at.is_some() && task.last_exit_at == info.finished_at {
            // this exit was handled already (before a restart of this worker, say): the restart
            // it called for is made again, without counting it twice
            if entry.restart_at.is_none() {
                entry.restart_at = Some(std::time::Instant::now() + backoff);
            }
            return;
        }
        task.last_exit_at = info.finished_at;
        task.exit_code = Some(info.exit_code);
        task.ports.clear();
        if task.desired_state == DesiredState::Stopped {
            finish_from(task, info, now);
            return;
        }
        let policy = task.spec.restart();
        let failed = unhealthy || info.exit_code != 0 || info.oom_killed || info.status == "created";
        let wanted = match policy.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => failed,
            RestartMode::Always => true,
        };
        if entry.run_started.is_some_and(|t| t.elapsed() >= reset_after) {
            task.recent_restarts = 0;
        }
        entry.run_started = None;
        let why = exit_reason(info, unhealthy.then_some(entry.health_failures));
        if wanted && task.recent_restarts < policy.max_restarts {
            task.recent_restarts += 1;
            task.restart_count += 1;
            let delay = backoff.saturating_mul(1 << (task.recent_restarts - 1).min(20)).min(backoff_max);
            task.error = Some(format!(
                "{why}; restart {} of {} in {} s",
                task.recent_restarts,
                policy.max_restarts,
                delay.as_secs_f64()
            ));
            task.healthy = None;
            entry.restart_at = Some(std::time::Instant::now() + delay);
            info!("task restarting task_id={id} in_ms={} restart={}", delay.as_millis(), task.restart_count);
            return;
        }
        let reason = if wanted { format!("{why}, {} restarts used", task.recent_restarts) } else { why };
        let finished = info.finished_at.unwrap_or(now);
        if failed {
            task.error = Some(reason);
            let _ = task.set_state(TaskState::Failed, finished);
        } else {
            let _ = task.set_state(TaskState::Completed, finished);
        }
        task.finished_at = Some(finished);
        info!("task ended task_id={id} state={}", task.state);
    }

    /// When the next restart in place is due, if any.
    fn next_restart(&self) -> Option<std::time::Instant> {
        self.entries.values().filter(|e| e.op.is_none()).filter_map(|e| e.restart_at).min()
    }

    /// Starts the containers whose restart is due.
    fn on_restart_due(&mut self) {
        let now = std::time::Instant::now();
        let due: Vec<TaskId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.op.is_none() && e.restart_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let name = self.config.name.clone();
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            entry.restart_at = None;
            if entry.task.desired_state == DesiredState::Stopped || entry.task.is_terminal() {
                continue;
            }
            let Op::Start { spec, container_name, labels, .. } = start_op(&entry.task, &name) else { continue };
            let Some(container_id) = entry.task.container_id.clone() else { continue };
            entry.op = Some(OpKind::Start);
            info!("restarting task task_id={id} restart={}", entry.task.restart_count);
            self.send_op(Op::Restart { id, container_id, spec, container_name, labels });
        }
    }

    /// A health checker's verdict: after `failures` failures in a row the container is stopped
    /// and its exit handled like any other (restart or failure).
    fn on_health(&mut self, h: HealthResult) {
        let Some(entry) = self.entries.get_mut(&h.id) else { return };
        if h.run != entry.run || entry.task.state != TaskState::Running || entry.unhealthy {
            return; // a verdict on an earlier run, or the container is already being stopped
        }
        let threshold = entry.task.spec.health_check.as_ref().map_or(u32::MAX, |c| c.failures);
        if h.ok {
            entry.health_failures = 0;
            entry.task.healthy = Some(true);
        } else {
            entry.health_failures += 1;
            entry.task.healthy = Some(false);
            debug!("health check failed task_id={} failures={} detail={}", h.id, entry.health_failures, h.detail);
        }
        if entry.health_failures >= threshold && entry.op.is_none() {
            if let Some(container_id) = entry.task.container_id.clone() {
                warn!("task unhealthy task_id={} failures={} detail={}", h.id, entry.health_failures, h.detail);
                entry.unhealthy = true;
                entry.checker = None;
                entry.op = Some(OpKind::Inspect);
                self.send_op(Op::Kill { id: h.id, container_id });
            }
        }
        self.persist(&h.id);
    }

    fn on_stopped(&mut self, id: TaskId, result: Result<(), DockerError>, now: Timestamp) {
        self.note_engine(result.as_ref().err());
        let epoch = self.epoch;
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.op = None;
        entry.changed_epoch = epoch;
        match result {
            Ok(()) => {
                entry.container_present = false;
                let _ = entry.task.set_state(TaskState::Stopped, now);
                info!("task stopped task_id={id}");
                let task = entry.task.clone();
                let waiters = std::mem::take(&mut entry.stop_waiters);
                // committed before it is acknowledged
                self.persist(&id);
                for w in waiters {
                    let _ = w.send(Ok(task.clone()));
                }
            }
            Err(e) => {
                let why = error_chain(&e);
                warn!("stop failed task_id={id} error={why}");
                entry.backoff = true;
                entry.task.error = Some(format!("stop failed: {why}"));
                for w in entry.stop_waiters.drain(..) {
                    let _ = w.send(Err(WorkerError::EngineUnreachable(why.clone())));
                }
            }
        }
        self.after_op(id);
    }

    /// What follows an op: persist, then a pending stop, or the removal of a finished container.
    fn after_op(&mut self, id: TaskId) {
        if let Some(e) = self.entries.get_mut(&id).filter(|e| e.task.is_terminal()) {
            e.checker = None; // a finished task is checked no more
        }
        self.persist(&id);
        if self.entries.get(&id).is_some_and(|e| !e.backoff) {
            self.follow_up(id);
        }
    }

    /// The op an idle entry needs next, if any: a stop that is wanted, or the removal of a
    /// finished task's container.
    fn follow_up(&mut self, id: TaskId) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        if entry.op.is_some() {
            return;
        }
        let wants_stop = entry.task.desired_state == DesiredState::Stopped && !entry.task.is_terminal();
        if wants_stop {
            entry.op = Some(OpKind::Stop);
            let container_id = entry.task.container_id.clone();
            self.send_op(Op::Stop { id, container_id });
        } else if entry.exit_seen && entry.task.state == TaskState::Running {
            // its container died while another op was under way
            entry.exit_seen = false;
            if let Some(container_id) = entry.task.container_id.clone() {
                entry.op = Some(OpKind::Inspect);
                self.send_op(Op::Inspect { id, container_id });
            }
        } else if entry.task.state == TaskState::Scheduled {
            // a start whose outcome was unknown (or cut off by a restart): make it again
            entry.op = Some(OpKind::Start);
            let op = start_op(&entry.task, &self.config.name);
            self.send_op(op);
        } else if entry.task.is_terminal() {
            for w in entry.stop_waiters.drain(..) {
                let state = entry.task.state;
                let _ = w.send(Err(WorkerError::AlreadyFinished { id, state }));
            }
            if entry.container_present {
                if let Some(cid) = entry.task.container_id.clone() {
                    entry.op = Some(OpKind::Remove);
                    self.send_op(Op::Remove { id, container_id: cid });
                } else {
                    entry.container_present = false;
                }
            }
        }
    }

    fn on_event(&mut self, ev: EngineEvent) {
        match ev {
            EngineEvent::Connected => {
                self.note_engine(None);
                self.request_sync();
            }
            EngineEvent::Died { container_id, task_id } => {
                // by the task's label: a start in flight has not recorded the container id yet
                let Some(id) = task_id.or_else(|| {
                    self.entries
                        .iter()
                        .find(|(_, e)| e.task.container_id.as_deref() == Some(container_id.as_str()))
                        .map(|(id, _)| *id)
                }) else {
                    return;
                };
                let Some(entry) = self.entries.get_mut(&id) else { return };
                if entry.restart_at.is_some() {
                    // the exit is known and a restart is due
                } else if entry.op.is_some() {
                    entry.exit_seen = true;
                } else if entry.task.state == TaskState::Running {
                    entry.op = Some(OpKind::Inspect);
                    self.send_op(Op::Inspect { id, container_id });
                }
            }
        }
    }

    /// Carries on after a restart: starts that were cut off are made again (the start op adopts
    /// a container the first attempt left), then every entry gets its follow-up.
    fn resume(&mut self) {
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            let entry = self.entries.get_mut(&id).expect("id taken from the map");
            if entry.task.state == TaskState::Scheduled && entry.task.desired_state == DesiredState::Running {
                entry.op = Some(OpKind::Start);
                let op = start_op(&entry.task, &self.config.name);
                info!("resuming start task_id={id}");
                self.send_op(op);
            } else {
                self.follow_up(id);
            }
        }
    }

    fn on_tick(&mut self) {
        if !self.engine.reachable {
            self.send_op(Op::Version);
        }
        self.request_sync();
        // retry what failed since the last tick
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            if let Some(e) = self.entries.get_mut(&id) {
                e.backoff = false;
            }
            self.follow_up(id);
        }
        // forget finished tasks once the manager has had ample time to see them
        let now = Timestamp::now();
        let keep = self.config.keep_finished.as_millis() as u64;
        let expired: Vec<TaskId> = self
            .entries
            .values()
            .filter(|e| e.task.is_terminal() && e.op.is_none() && !e.container_present)
            .filter(|e| now.since(e.task.finished_at.unwrap_or(now)) > keep)
            .map(|e| e.task.id)
            .collect();
        for id in expired {
            self.entries.remove(&id);
            if let Err(e) = self.store.delete_task(&id) {
                error!("store delete failed task_id={id} error={}", error_chain(&e));
            }
        }
    }

    /// Brings the table in line with what the engine has: exits that were missed, containers
    /// that vanished, and labelled containers the table does not know (adopted or removed).
    fn on_synced(&mut self, sync_epoch: u64, seen: Vec<Observed>, now: Timestamp) {
        let mut by_task: HashMap<TaskId, Observed> = HashMap::new();
        let mut strays: Vec<Observed> = Vec::new();
        for o in seen {
            let Some(id) = o.summary.labels.get(LABEL_TASK_ID).and_then(|v| v.parse::<TaskId>().ok()) else {
                strays.push(o);
                continue;
            };
            // two containers for one task: keep the one the table knows, remove the other
            let known = self.entries.get(&id).and_then(|e| e.task.container_id.as_deref());
            match by_task.remove(&id) {
                None => {
                    by_task.insert(id, o);
                }
                Some(first) if known == Some(o.summary.id.as_str()) => {
                    strays.push(first);
                    by_task.insert(id, o);
                }
                Some(first) => {
                    strays.push(o);
                    by_task.insert(id, first);
                }
            }
        }
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            let seen_now = by_task.remove(&id);
            let entry = self.entries.get_mut(&id).expect("id taken from the map");
            if entry.op.is_some() || entry.changed_epoch >= sync_epoch || entry.restart_at.is_some() {
                continue; // the sync's picture is older than what we know, or the exit is handled
            }
            let before = (entry.task.state, entry.container_present);
            match seen_now {
                // a start to be made again (its follow-up does it) unless the container runs
                Some(o) if entry.task.state == TaskState::Scheduled => {
                    if o.info.is_none() {
                        let _ = entry.task.set_state(TaskState::Running, now);
                        entry.task.container_id = Some(o.summary.id.clone());
                    }
                }
                None if entry.task.state == TaskState::Scheduled => {}
                Some(o) if entry.task.is_terminal() => {
                    // finished, yet its container is still there: remove it
                    entry.container_present = true;
                    if entry.task.container_id.is_none() {
                        entry.task.container_id = Some(o.summary.id.clone());
                    }
                }
                Some(o) => match &o.info {
                    None => {
                        if entry.task.state != TaskState::Running {
                            let _ = entry.task.set_state(TaskState::Running, now);
                        }
                        entry.task.container_id = Some(o.summary.id.clone());
                    }
                    Some(info) => {
                        // an exit the event stream did not bring (the engine was away, say)
                        entry.task.container_id = Some(info.id.clone());
                        let info = info.clone();
                        self.on_exit(id, &info, now);
                        self.after_op(id);
                        continue;
                    }
                },
                None if !entry.task.is_terminal() => {
                    vanished(&mut entry.task, now);
                    entry.container_present = false;
                }
                None => entry.container_present = false,
            }
            // a running container this worker has not begun a run for (it restarted, or a start's
            // outcome was unknown): read its ports and start its health checks
            let unfollowed = entry.task.state == TaskState::Running
                && entry.run_started.is_none()
                && entry.op.is_none()
                && entry.task.container_id.is_some();
            if before != (entry.task.state, entry.container_present) {
                self.after_op(id);
            }
            if unfollowed {
                if let Some(entry) = self.entries.get_mut(&id).filter(|e| e.op.is_none()) {
                    if let Some(container_id) = entry.task.container_id.clone() {
                        entry.op = Some(OpKind::Inspect);
                        self.send_op(Op::Inspect { id, container_id });
                    }
                }
            }
        }
        // labelled containers that no entry owns
        for (id, o) in by_task {
            self.adopt(id, o, now);
        }
        for o in strays {
            warn!("removing a container no task owns container={}", short_id(&o.summary.id));
            self.send_op(Op::Remove { id: TaskId::new_v4(), container_id: o.summary.id });
        }
        if !self.synced {
            info!("containers checked node={} tasks={}", self.config.name, self.entries.len());
            self.synced = true;
        }
    }

    /// Takes a labelled container the table does not know back into it (after a restart of the
    /// worker with a memory store, or a start whose answer was lost).
    fn adopt(&mut self, id: TaskId, o: Observed, now: Timestamp) {
        let labels = &o.summary.labels;
        let spec = labels.get(LABEL_SPEC).and_then(|s| TaskSpec::from_json(s.as_bytes()).ok());
        let Some(spec) = spec else {
            warn!("removing labelled container without a readable spec container={}", short_id(&o.summary.id));
            self.send_op(Op::Remove { id, container_id: o.summary.id });
            return;
        };
        let created = labels.get(LABEL_CREATED).and_then(|c| Timestamp::parse(c)).unwrap_or(o.summary.created);
        let mut task = Task::new(id, spec, created);
        task.node = Some(self.config.name.clone());
        task.container_id = Some(o.summary.id.clone());
        let _ = task.set_state(TaskState::Scheduled, now);
        match &o.info {
            None => {
                let _ = task.set_state(TaskState::Running, now);
                info!("adopted running container task_id={id} container={}", short_id(&o.summary.id));
            }
            Some(info) => finish_from(&mut task, info, now),
        }
        if let Some(info) = &o.info {
            task.ports = info.ports.clone();
        }
        self.entries.insert(id, Entry::new(task, None, true, self.epoch));
        if o.info.is_none() {
            // a running container: ask for its details (ports, start time)
            let entry = self.entries.get_mut(&id).expect("just inserted");
            entry.op = Some(OpKind::Inspect);
            self.send_op(Op::Inspect { id, container_id: o.summary.id });
            self.persist(&id);
        } else {
            self.after_op(id);
        }
    }
}

/// The op that starts a task's container (also used to resume a start cut off by a restart).
fn start_op(task: &Task, node: &str) -> Op {
    Op::Start {
        id: task.id,
        spec: Box::new(task.spec.clone()),
        container_name: format!("skiff-{node}-{}-{}", task.name, task.id.short()),
        labels: labels_for(task, node),
    }
}

/// A digest of a record, to tell whether it changed since it was written.
fn record_digest(task: &Task) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(task).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// The labels every container of ours carries; with them a worker can rebuild its table.
fn labels_for(task: &Task, node: &str) -> BTreeMap<String, String> {
    let spec = serde_json::to_string(&task.spec).unwrap_or_default();
    BTreeMap::from([
        (LABEL_TASK_ID.to_string(), task.id.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_NAME.to_string(), task.name.clone()),
        (LABEL_SPEC.to_string(), spec),
        (LABEL_CREATED.to_string(), task.created_at.to_string()),
    ])
}

/// Records how a container ended, with no restart: exit 0 is Completed, anything else Failed
/// with the reason. A task being stopped ends Stopped.
fn finish_from(task: &mut Task, info: &ContainerInfo, now: Timestamp) {
    if task.is_terminal() {
        return;
    }
    task.exit_code = Some(info.exit_code);
    if task.state == TaskState::Running && task.desired_state == DesiredState::Stopped {
        // it ended while we were stopping it
        let _ = task.set_state(TaskState::Stopped, now);
        return;
    }
    let finished = info.finished_at.unwrap_or(now);
    if info.exit_code == 0 && !info.oom_killed && info.status != "created" {
        let _ = task.set_state(TaskState::Completed, finished);
    } else {
        task.error = Some(exit_reason(info, None));
        let _ = task.set_state(TaskState::Failed, finished);
    }
    task.finished_at = Some(finished);
}

/// The container of a live task is gone (removed behind our back).
fn vanished(task: &mut Task, now: Timestamp) {
    if task.is_terminal() {
        return;
    }
    if task.desired_state == DesiredState::Stopped {
        let _ = task.set_state(TaskState::Stopped, now);
    } else {
        task.error = Some("its container disappeared (removed outside skiff)".into());
        let _ = task.set_state(TaskState::Failed, now);
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(status: &str, exit_code: i64, oom: bool) -> ContainerInfo {
        ContainerInfo {
            id: "c".into(),
            name: "n".into(),
            image: "i".into(),
            status: status.into(),
            running: status == "running",
            exit_code,
            error: String::new(),
            oom_killed: oom,
            started_at: Some(Timestamp(5)),
            finished_at: Some(Timestamp(9)),
            labels: BTreeMap::new(),
            ports: vec![],
        }
    }

    fn running_task() -> Task {
        let spec = TaskSpec::from_json(br#"{"name":"a","image":"skiff/busybox"}"#).expect("valid");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(1));
        t.set_state(TaskState::Scheduled, Timestamp(2)).expect("allowed");
        t.set_state(TaskState::Running, Timestamp(3)).expect("allowed");
        t
    }

    #[test]
    fn exit_zero_completes_and_non_zero_fails_with_code() {
        let mut t = running_task();
        finish_from(&mut t, &info("exited", 0, false), Timestamp(10));
        assert_eq!((t.state, t.exit_code, t.finished_at), (TaskState::Completed, Some(0), Some(Timestamp(9))));
        let mut t = running_task();
        finish_from(&mut t, &info("exited", 3, false), Timestamp(10));
        assert_eq!((t.state, t.exit_code), (TaskState::Failed, Some(3)));
        assert_eq!(t.error.as_deref(), Some("exited with code 3"));
        let mut t = running_task();
        finish_from(&mut t, &info("exited", 137, true), Timestamp(10));
        assert!(t.error.as_deref().is_some_and(|e| e.contains("memory limit")), "{:?}", t.error);
    }

    #[test]
    fn exit_while_stopping_is_a_stop() {
        let mut t = running_task();
        t.desired_state = DesiredState::Stopped;
        finish_from(&mut t, &info("exited", 143, false), Timestamp(10));
        assert_eq!(t.state, TaskState::Stopped);
    }

    #[test]
    fn vanished_container_fails_a_live_task() {
        let mut t = running_task();
        vanished(&mut t, Timestamp(10));
        assert_eq!(t.state, TaskState::Failed);
        assert!(t.error.is_some());
    }

    #[test]
    fn labels_carry_enough_to_rebuild_the_task() {
        let t = running_task();
        let labels = labels_for(&t, "w1");
        assert_eq!(labels[LABEL_TASK_ID], t.id.to_string());
        assert_eq!(labels[LABEL_NODE], "w1");
        let spec = TaskSpec::from_json(labels[LABEL_SPEC].as_bytes()).expect("spec label parses");
        assert_eq!(spec, t.spec);
        assert_eq!(Timestamp::parse(&labels[LABEL_CREATED]), Some(t.created_at));
    }
}
