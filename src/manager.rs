//! The manager: the desired state of every task, the node table, placement, and the application
//! of the reconcile plan, behind a handle the HTTP layer calls.
//!
//! One control thread owns the task table, the store, the node table and the scheduler
//! (`manager::state`, with what it does on answers and on the plan in `manager::apply`). It never
//! waits on a worker: each node has its own dispatcher threads (`manager::node`) that make the
//! calls through a `WorkerLink` and send back what happened, so a slow or dead worker delays
//! nothing but itself. Time comes from the `Clock` in the config, so tests move it by hand.
//!
//! This file owns the manager's public face: the link to a worker, the config, the errors, the
//! handle and spawning. Must not speak HTTP or build URLs: `http.rs` implements `WorkerLink` and
//! turns API requests into calls on `ManagerHandle`.

mod apply;
mod drain;
mod images;
mod join;
mod node;
mod publish;
mod services;
mod state;
mod tables;
mod view;

pub use images::{copy_image, Copied, CopyError};
pub use publish::{IngressMaker, PublishConfig};
pub use services::{ReplicaSummary, ServiceCommandError, ServiceView};

use crate::api::{ChangesCursor, DryRun, ManagerHealth, NodeInfo, StartTask, TaskChanges, WorkerHealth};
use crate::clock::{self, Clock};
use crate::control::{self, ControlThread, SpawnError};
use crate::events::{ClusterEvent, EventQuery};
use crate::sched::SchedulerKind;
use crate::stats::NodeStats;
use crate::store::{Store, StoreError};
use crate::task::{SpecError, Task, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use crossbeam_channel::{tick, unbounded, Receiver, Sender};
use node::Node;
use state::State;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A failed call from the manager to a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkError {
    /// The request never reached the worker (connection refused, no route): safe to send elsewhere.
    Unreachable(String),
    /// The exchange broke off after the request was sent (timeout, reset): it may have happened.
    Lost(String),
    /// The worker answered with an error status.
    Refused { status: u16, message: String },
    /// The worker's answer could not be understood.
    BadAnswer(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Unreachable(why) => write!(f, "unreachable: {why}"),
            LinkError::Lost(why) => write!(f, "no answer: {why}"),
            LinkError::Refused { status, message } => write!(f, "refused ({status}): {message}"),
            LinkError::BadAnswer(why) => write!(f, "bad answer: {why}"),
        }
    }
}

impl std::error::Error for LinkError {}

/// How the manager reaches one worker. `http.rs` implements it over HTTP; tests fake it.
pub trait WorkerLink: Send + Sync {
    /// `HOST:PORT`, as given on the command line.
    fn address(&self) -> &str;
    /// Starts a task; answers once its container runs or has failed.
    fn start(&self, req: &StartTask) -> Result<Task, LinkError>;
    /// Stops a task; answers once its container is gone.
    fn stop(&self, id: TaskId) -> Result<Task, LinkError>;
    /// The worker's task records changed since `since` (all of them without it), one page.
    fn changes(&self, since: Option<&ChangesCursor>) -> Result<TaskChanges, LinkError>;
    fn health(&self) -> Result<WorkerHealth, LinkError>;
    fn stats(&self) -> Result<NodeStats, LinkError>;
    /// Opens the worker's export of an image Skiff built (a `docker save` tar): its bytes as
    /// they come, and a way to end the read from another thread (`manager/images.rs` copies it).
    fn export_image(&self, reference: &str) -> Result<ImageSource, LinkError> {
        Err(LinkError::Refused { status: 501, message: format!("this link cannot export {reference}") })
    }
    /// Sends a `docker save` tar, read from `tar` as it is sent, to be loaded by the worker's
    /// engine; a failed read of `tar` ends the upload unfinished, so that nothing is loaded.
    fn import_image(&self, _tar: &mut dyn std::io::Read) -> Result<crate::api::ImagesLoaded, LinkError> {
        Err(LinkError::Refused { status: 501, message: "this link cannot import images".into() })
    }
}

/// An image being read from a worker, and what ends the read from another thread.
pub struct ImageSource {
    pub reader: Box<dyn std::io::Read + Send>,
    pub close: Box<dyn FnOnce() + Send>,
}

#[derive(Clone)]
pub struct ManagerConfig {
    pub scheduler: SchedulerKind,
    /// How often every worker is polled.
    pub poll_interval: Duration,
    /// A worker not heard from for this long is down.
    pub node_timeout: Duration,
    /// Calls in flight to one worker at once (starts and stops; polls have their own thread).
    pub dispatch_threads: usize,
    /// A container no task owns is stopped after this (see `PlanConfig`).
    pub orphan_grace: Duration,
    /// Finished tasks kept; beyond, the longest finished are forgotten (table and store).
    pub keep_finished: usize,
    /// Where the control loop reads the time (the system's, but for tests).
    pub clock: Arc<dyn Clock>,
    /// How to reach a worker that joins by itself (`POST /v1/nodes`); without it, joins are
    /// refused.
    pub links: Option<LinkMaker>,
    /// The ingress services are published through (`--ingress-admin`); none without it.
    pub publish: Option<PublishConfig>,
    /// A stall of the manager's own loop (a SIGSTOP, a machine that starved it) is not held
    /// against the workers: the silence it caused is forgiven. Off in tests that move the
    /// clock in leaps to make nodes silent.
    pub forgive_stalls: bool,
}

/// Makes the link to a worker at an address.
pub type LinkMaker = Arc<dyn Fn(&str) -> Arc<dyn WorkerLink> + Send + Sync>;

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            scheduler: SchedulerKind::RoundRobin,
            poll_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(4),
            dispatch_threads: 8,
            orphan_grace: Duration::from_secs(30),
            keep_finished: 1000,
            clock: clock::system(),
            links: None,
            publish: None,
            forgive_stalls: true,
        }
    }
}

impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the clock has nothing worth showing
        f.debug_struct("ManagerConfig")
            .field("scheduler", &self.scheduler)
            .field("poll_interval", &self.poll_interval)
            .field("node_timeout", &self.node_timeout)
            .field("dispatch_threads", &self.dispatch_threads)
            .field("orphan_grace", &self.orphan_grace)
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

/// Which tasks a list shows: those that match every filter given, oldest first, after the
/// cursor of an earlier page, at most `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQuery {
    pub limit: usize,
    /// Where the last page ended (its `next`).
    pub after: Option<Cursor>,
    pub state: Option<TaskState>,
    pub node: Option<String>,
    pub name: Option<String>,
    pub service: Option<String>,
}

impl TaskQuery {
    /// A page holds this many tasks unless the caller asks for fewer.
    pub const DEFAULT_LIMIT: usize = 500;
    /// And never more than this.
    pub const MAX_LIMIT: usize = 1000;
    /// A page's records take at most this many bytes of JSON (the first record always goes
    /// in): a page ends early rather than grow with its records, so 16 handler threads answering
    /// lists at once hold about 64 MiB, not a gigabyte. Its cursor is then its last record's, so
    /// a client walking the pages still sees every task.
    pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
}

impl Default for TaskQuery {
    fn default() -> TaskQuery {
        TaskQuery { limit: TaskQuery::DEFAULT_LIMIT, after: None, state: None, node: None, name: None, service: None }
    }
}

/// A place in the list's order (by submission time, then id): a page goes on after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub Timestamp, pub TaskId);

impl Cursor {
    pub fn of(task: &Task) -> Cursor {
        Cursor(task.created_at, task.id)
    }

    /// `MILLIS.UUID`, as the list hands it out.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (ms, id) = text.split_once('.')?;
        Some(Cursor(Timestamp(ms.parse().ok()?), id.parse().ok()?))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0.millis(), self.1)
    }
}

/// One page of a list, and where the next one starts if there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next: Option<Cursor>,
}

/// Why a manager request failed.
#[derive(Debug)]
pub enum ManagerError {
    NotFound(TaskId),
    AlreadyFinished {
        id: TaskId,
        state: TaskState,
    },
    InvalidSpec(SpecError),
    /// The change could not be committed, so it was not made.
    Store(StoreError),
    /// One of the manager's threads could not be started: the manager cannot run.
    Spawn(SpawnError),
    /// The control loop did not answer (shutting down or overloaded).
    Unavailable,
    /// A service request that cannot be done (`services.rs`).
    Service(ServiceCommandError),
    /// A worker may not join under this name or at this address (the reason says why).
    JoinRefused(String),
    /// This manager takes no joins (it was given no way to reach workers that join).
    NoJoins,
    /// No node has this name.
    NoNode(String),
    /// The node cannot be removed now (the reason says why and what to do).
    NodeBusy(String),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::NotFound(id) => write!(f, "no task {id}"),
            ManagerError::AlreadyFinished { id, state } => {
                write!(f, "task {id} is already finished ({state}); nothing to stop")
            }
            ManagerError::InvalidSpec(e) => write!(f, "{e}"),
            ManagerError::Store(_) => f.write_str("the manager's store failed; the change was not made"),
            ManagerError::Spawn(_) => f.write_str("the manager could not start its threads"),
            ManagerError::Unavailable => f.write_str("the manager is not answering; retry"),
            ManagerError::Service(e) => write!(f, "{e}"),
            ManagerError::JoinRefused(why) => f.write_str(why),
            ManagerError::NoJoins => f.write_str("this manager takes no joins"),
            ManagerError::NoNode(name) => write!(f, "no node {name}"),
            ManagerError::NodeBusy(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManagerError::Store(e) => Some(e),
            ManagerError::InvalidSpec(e) => Some(e),
            ManagerError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

type Reply<T> = Sender<Result<T, ManagerError>>;

/// What the handle asks of the control thread.
enum Command {
    Submit { spec: TaskSpec, reply: Reply<Task> },
    DryRun { spec: TaskSpec, reply: Reply<DryRun> },
    Events { query: EventQuery, reply: Reply<Vec<ClusterEvent>> },
    Join { name: String, address: String, reply: Reply<NodeInfo> },
    Stop { id: TaskId, reply: Reply<Task> },
    Drain { name: String, reply: Reply<NodeInfo> },
    Activate { name: String, reply: Reply<NodeInfo> },
    RemoveNode { name: String, reply: Reply<NodeInfo> },
    Service(services::ServiceCommand),
    Shutdown,
}

impl Command {
    /// Whether answering it changes nothing: then no plan needs to run after it (a read must
    /// not pay for a pass over every task).
    fn is_read(&self) -> bool {
        matches!(
            self,
            Command::DryRun { .. }
                | Command::Events { .. }
                | Command::Service(services::ServiceCommand::Get { .. } | services::ServiceCommand::List { .. })
        )
    }
}

/// How the HTTP layer talks to the control thread. Cheap to clone.
#[derive(Clone)]
pub struct ManagerHandle {
    tx: Sender<Command>,
    /// Reads are served from here, never through the control thread (`view.rs`).
    view: Arc<view::View>,
}

const ANSWER_WAIT: Duration = Duration::from_secs(10);

impl ManagerHandle {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ManagerError> {
        // gone or too slow: either way the caller may retry, and a write that timed out may
        // still be committed (the record will say)
        control::ask(&self.tx, make, ANSWER_WAIT).map_err(|_| ManagerError::Unavailable)?
    }

    /// Accepts a task and places it if a node can take it; the record comes back at once.
    pub fn submit(&self, spec: TaskSpec) -> Result<Task, ManagerError> {
        self.ask(|reply| Command::Submit { spec, reply })
    }

    /// Where the task would be placed, and why every other node would not take it; nothing
    /// is recorded or placed.
    pub fn dry_run(&self, spec: TaskSpec) -> Result<DryRun, ManagerError> {
        self.ask(|reply| Command::DryRun { spec, reply })
    }

    pub fn get(&self, id: TaskId) -> Result<Task, ManagerError> {
        self.view.get(&id).ok_or(ManagerError::NotFound(id))
    }

    /// Registers a worker that joins by itself (idempotent: the same worker again changes
    /// nothing); its node as the manager now knows it.
    pub fn join(&self, name: String, address: String) -> Result<NodeInfo, ManagerError> {
        self.ask(|reply| Command::Join { name, address, reply })
    }

    /// The matching events of the cluster's recent history, oldest first.
    pub fn events(&self, query: EventQuery) -> Result<Vec<ClusterEvent>, ManagerError> {
        self.ask(|reply| Command::Events { query, reply })
    }

    /// One page of the tasks that match, oldest first.
    pub fn list(&self, query: TaskQuery) -> Result<TaskPage, ManagerError> {
        Ok(self.view.page(&query))
    }

    /// `list` as the API sends it (a JSON array), and where the next page starts.
    pub fn list_json(&self, query: TaskQuery) -> (Vec<u8>, Option<Cursor>) {
        self.view.page_json(&query)
    }

    /// `get` as the API sends it.
    pub fn get_json(&self, id: TaskId) -> Result<Arc<[u8]>, ManagerError> {
        self.view.get_json(&id).ok_or(ManagerError::NotFound(id))
    }

    /// Records that the task is wanted stopped and sets the stop going; the record comes back at once.
    pub fn stop(&self, id: TaskId) -> Result<Task, ManagerError> {
        self.ask(|reply| Command::Stop { id, reply })
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ManagerError> {
        Ok(self.view.nodes().to_vec())
    }

    /// Stops placement on a node and moves its tasks elsewhere, one at a time.
    pub fn drain(&self, name: String) -> Result<NodeInfo, ManagerError> {
        self.ask(|reply| Command::Drain { name, reply })
    }

    /// Lets a drained (or draining) node take tasks again.
    pub fn activate(&self, name: String) -> Result<NodeInfo, ManagerError> {
        self.ask(|reply| Command::Activate { name, reply })
    }

    /// Forgets a node that runs nothing and is not up; answers with what it was.
    pub fn remove_node(&self, name: String) -> Result<NodeInfo, ManagerError> {
        self.ask(|reply| Command::RemoveNode { name, reply })
    }

    /// The summary as last published; `Unavailable` until the control thread has started.
    pub fn health(&self) -> Result<ManagerHealth, ManagerError> {
        self.view.health().ok_or(ManagerError::Unavailable)
    }
}
/// A running manager.
pub struct Manager {
    handle: ManagerHandle,
    control: ControlThread<Command>,
}

impl Manager {
    pub fn handle(&self) -> ManagerHandle {
        self.handle.clone()
    }

    /// Stops the control loop and waits for it (dropping the manager does the same). Workers and
    /// their containers are untouched.
    pub fn shutdown(mut self) {
        self.control.stop();
    }
}

/// Starts the manager's threads over the tasks already in `store`.
pub fn spawn(
    config: ManagerConfig,
    store: Box<dyn Store>,
    links: Vec<Arc<dyn WorkerLink>>,
) -> Result<Manager, ManagerError> {
    let ticks = tick(config.poll_interval);
    spawn_with_ticks(config, store, links, ticks)
}

/// `spawn`, with the ticks that drive polling given by the caller (tests send them by hand).
pub fn spawn_with_ticks(
    config: ManagerConfig,
    store: Box<dyn Store>,
    links: Vec<Arc<dyn WorkerLink>>,
    ticks: Receiver<Instant>,
) -> Result<Manager, ManagerError> {
    let (cmd_tx, cmd_rx) = unbounded();
    let (obs_tx, obs_rx) = unbounded();
    let mut nodes = Vec::with_capacity(links.len());
    for (index, link) in links.into_iter().enumerate() {
        let since = config.clock.now();
        // threads already started end when their queues, dropped with `nodes`, disconnect
        nodes.push(
            Node::spawn(index, link, config.dispatch_threads, obs_tx.clone(), since).map_err(ManagerError::Spawn)?,
        );
    }
    // the control thread keeps a sender so its observation channel never disconnects (with no
    // workers, a disconnected channel would be ready forever and spin the loop)
    let view = Arc::new(view::View::default());
    let mut state = State::new(config, store, nodes, obs_tx, view.clone())?;
    // reads find the nodes (not yet heard from) and the health from the start
    state.publish();
    // not logged here: the caller has the error, its cause included, to print once
    let join = control::spawn_thread("manager-control", move || state.run(cmd_rx, obs_rx, ticks))
        .map_err(ManagerError::Spawn)?;
    Ok(Manager {
        handle: ManagerHandle { tx: cmd_tx.clone(), view },
        control: ControlThread::new(cmd_tx, Command::Shutdown, join),
    })
}

#[cfg(test)]
mod tests {
    //! The control loop driven by hand: fake workers, ticks sent by the test, time moved on a
    //! manual clock, and a store that can be made to fail.
    use super::*;
    use crate::api::{EngineStatus, NodeStatus};
    use crate::clock::ManualClock;
    use crate::stats::Resources;
    use crate::store::{FlakyStore, MemoryStore, NodeRecord};
    use crate::task::DesiredState;
    use crate::time::Timestamp;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    mod burst;
    mod drain;
    mod publish;
    mod services;

    const NODE_TIMEOUT: Duration = Duration::from_secs(3);
    const NO_IMAGE: &str = "no such image";
    const ORPHAN_GRACE: Duration = Duration::from_secs(30);

    /// A worker in memory: runs whatever it is given, can be made unreachable, can hold its
    /// starts until told, or refuse them.
    struct FakeWorker {
        name: String,
        address: String,
        tasks: Mutex<HashMap<TaskId, Task>>,
        reachable: Mutex<bool>,
        synced: Mutex<bool>,
        stops: Mutex<Vec<TaskId>>,
        capacity: Mutex<Resources>,
        /// Polls begun (each asks for health first).
        polls: AtomicUsize,
        /// While true, starts wait.
        hold_starts: Mutex<bool>,
        /// Polls wait (as a slow worker's would) until released.
        hold_polls: Mutex<bool>,
        released: Condvar,
        /// A status to refuse starts with, and the words (`NO_IMAGE` unless set).
        refuse_starts: Mutex<Option<u16>>,
        refusal: Mutex<String>,
        /// Starts asked (refused ones included).
        starts: AtomicUsize,
        /// Task lists come back unusable (too big, malformed).
        garbled: AtomicBool,
        /// The changes feed as a worker keeps it: the last version answered and what that
        /// answer left the reader with (tests change `tasks` directly; the feed is their
        /// difference).
        feed: Mutex<(u64, HashMap<TaskId, Task>)>,
    }

    impl FakeWorker {
        fn new(name: &str) -> Arc<FakeWorker> {
            Arc::new(FakeWorker {
                name: name.into(),
                address: format!("{name}:80"),
                tasks: Mutex::new(HashMap::new()),
                reachable: Mutex::new(true),
                synced: Mutex::new(true),
                stops: Mutex::new(Vec::new()),
                capacity: Mutex::new(Resources { cpus: 64.0, memory_mb: 1 << 20, disk_mb: 1 << 20 }),
                polls: AtomicUsize::new(0),
                hold_starts: Mutex::new(false),
                hold_polls: Mutex::new(false),
                released: Condvar::new(),
                refuse_starts: Mutex::new(None),
                refusal: Mutex::new(NO_IMAGE.to_string()),
                starts: AtomicUsize::new(0),
                garbled: AtomicBool::new(false),
                feed: Mutex::new((0, HashMap::new())),
            })
        }

        fn check(&self) -> Result<(), LinkError> {
            if *self.reachable.lock().expect("lock") {
                Ok(())
            } else {
                Err(LinkError::Unreachable("connection refused".into()))
            }
        }

        fn set_reachable(&self, reachable: bool) {
            *self.reachable.lock().expect("lock") = reachable;
        }

        fn has(&self, id: TaskId) -> bool {
            self.tasks.lock().expect("lock").contains_key(&id)
        }

        fn was_stopped(&self, id: TaskId) -> bool {
            self.stops.lock().expect("lock").contains(&id)
        }

        fn hold_polls(&self, hold: bool) {
            *self.hold_polls.lock().expect("lock") = hold;
            self.released.notify_all();
        }

        fn hold_starts(&self, hold: bool) {
            *self.hold_starts.lock().expect("lock") = hold;
            self.released.notify_all();
        }

        /// Puts a running copy of `task` here, as if started behind the manager's back.
        fn run_copy(&self, task: &Task) {
            let mut copy = task.clone();
            copy.state = TaskState::Running;
            copy.node = Some(self.name.clone());
            self.tasks.lock().expect("lock").insert(copy.id, copy);
        }
    }

    impl WorkerLink for FakeWorker {
        fn address(&self) -> &str {
            &self.address
        }
        fn start(&self, req: &StartTask) -> Result<Task, LinkError> {
            let mut held = self.hold_starts.lock().expect("lock");
            while *held {
                held = self.released.wait(held).expect("lock");
            }
            drop(held);
            self.check()?;
            self.starts.fetch_add(1, Ordering::SeqCst);
            if let Some(status) = *self.refuse_starts.lock().expect("lock") {
                return Err(LinkError::Refused { status, message: self.refusal.lock().expect("lock").clone() });
            }
            let mut t = Task::new(req.id, req.spec.clone(), Timestamp(1));
            t.state = TaskState::Running;
            t.node = Some(self.name.clone());
            t.container_id = Some(format!("c-{}", req.id.short()));
            // engine-chosen host ports: one of its own per start, as an engine gives them
            let next = 30_000 + self.starts.load(Ordering::SeqCst) as u16;
            t.ports = req
                .spec
                .ports
                .iter()
                .map(|p| crate::task::PortBinding {
                    container: p.container,
                    protocol: p.protocol,
                    host_ip: "0.0.0.0".into(),
                    host: p.host.filter(|&h| h != 0).unwrap_or(next),
                })
                .collect();
            self.tasks.lock().expect("lock").insert(t.id, t.clone());
            Ok(t)
        }
        fn stop(&self, id: TaskId) -> Result<Task, LinkError> {
            self.check()?;
            self.stops.lock().expect("lock").push(id);
            let mut tasks = self.tasks.lock().expect("lock");
            let t = tasks.get_mut(&id).ok_or(LinkError::Refused { status: 404, message: "no task".into() })?;
            t.state = TaskState::Stopped;
            Ok(t.clone())
        }
        /// What changed since the reader's cursor (everything for a reader without one, or one
        /// that is not where the last answer left it), as a worker's feed answers.
        fn changes(&self, since: Option<&ChangesCursor>) -> Result<TaskChanges, LinkError> {
            if self.garbled.load(Ordering::SeqCst) {
                self.check()?;
                return Err(LinkError::BadAnswer("response body exceeds the limit".into()));
            }
            self.check()?;
            let now = self.tasks.lock().expect("lock").clone();
            let mut feed = self.feed.lock().expect("lock");
            let full = since.is_none_or(|c| c.instance != "fake" || c.version != feed.0);
            let (tasks, removed) = if full {
                (now.values().cloned().collect(), Vec::new())
            } else {
                let changed = now.values().filter(|t| feed.1.get(&t.id) != Some(*t)).cloned().collect();
                (changed, feed.1.keys().filter(|id| !now.contains_key(id)).copied().collect())
            };
            feed.0 += 1;
            feed.1 = now;
            Ok(TaskChanges {
                instance: "fake".into(),
                version: feed.0,
                full,
                more: false,
                removals_from: feed.0,
                synced: true,
                tasks,
                removed,
            })
        }
        fn health(&self) -> Result<WorkerHealth, LinkError> {
            let mut held = self.hold_polls.lock().expect("lock");
            while *held {
                held = self.released.wait(held).expect("lock");
            }
            drop(held);
            self.polls.fetch_add(1, Ordering::SeqCst);
            self.check()?;
            Ok(WorkerHealth {
                status: "ok".into(),
                name: self.name.clone(),
                version: "test".into(),
                engine: EngineStatus { reachable: true, version: None, api_version: None, error: None },
                synced: *self.synced.lock().expect("lock"),
                sync_error: None,
                tasks: 0,
            })
        }
        fn stats(&self) -> Result<NodeStats, LinkError> {
            self.check()?;
            let capacity = *self.capacity.lock().expect("lock");
            Ok(NodeStats {
                node: self.name.clone(),
                sampled_at: Timestamp(1),
                cpu_count: capacity.cpus as u32,
                cpu_usage_pct: 0.0,
                load_1: 0.0,
                load_5: 0.0,
                load_15: 0.0,
                memory_total_mb: capacity.memory_mb,
                memory_available_mb: capacity.memory_mb,
                disk_path: "/".into(),
                disk_total_mb: capacity.disk_mb,
                disk_free_mb: capacity.disk_mb,
                capacity,
                tasks: 0,
            })
        }
    }

    fn manual_clock() -> ManualClock {
        ManualClock::new(Timestamp(1_795_000_000_000))
    }

    fn config(scheduler: SchedulerKind, clock: &ManualClock) -> ManagerConfig {
        ManagerConfig {
            node_timeout: NODE_TIMEOUT,
            orphan_grace: ORPHAN_GRACE,
            scheduler,
            clock: Arc::new(clock.clone()),
            forgive_stalls: false,
            ..ManagerConfig::default()
        }
    }

    fn spec(name: &str) -> TaskSpec {
        TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"b"}}"#).as_bytes()).expect("valid")
    }

    struct Rig {
        manager: Manager,
        ticks: Sender<Instant>,
        workers: Vec<Arc<FakeWorker>>,
        clock: ManualClock,
        store: FlakyStore,
    }

    fn rig(names: &[&str]) -> Rig {
        rig_with(names, SchedulerKind::RoundRobin, None)
    }

    /// A rig whose workers offer `memory_mb` each, if given.
    fn rig_with(names: &[&str], scheduler: SchedulerKind, memory_mb: Option<u64>) -> Rig {
        rig_on(names, scheduler, memory_mb, FlakyStore::new(), 1000)
    }

    fn rig_on(
        names: &[&str],
        scheduler: SchedulerKind,
        memory_mb: Option<u64>,
        store: FlakyStore,
        keep_finished: usize,
    ) -> Rig {
        let workers: Vec<Arc<FakeWorker>> = names.iter().map(|n| FakeWorker::new(n)).collect();
        if let Some(mb) = memory_mb {
            for w in &workers {
                w.capacity.lock().expect("lock").memory_mb = mb;
            }
        }
        let links = workers.iter().map(|w| w.clone() as Arc<dyn WorkerLink>).collect();
        let (ticks, rx) = unbounded();
        let clock = manual_clock();
        let config = ManagerConfig { keep_finished, ..config(scheduler, &clock) };
        let manager = spawn_with_ticks(config, Box::new(store.clone()), links, rx).expect("spawns");
        let rig = Rig { manager, ticks, workers, clock, store };
        rig.until("every node up", |h| h.nodes().ok()?.iter().all(|n| n.status == NodeStatus::Up).then_some(()));
        rig
    }

    /// Asks `check` until it says yes, sending a tick before each new try (each tick polls every
    /// worker once); a real deadline only bounds a broken test.
    fn until<T>(
        handle: &ManagerHandle,
        ticks: &Sender<Instant>,
        what: &str,
        check: impl Fn(&ManagerHandle) -> Option<T>,
    ) -> T {
        // generous: it only bounds a broken test, and the machine may be loaded
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = check(handle) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            ticks.send(Instant::now()).expect("the control thread takes ticks");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    impl Rig {
        fn handle(&self) -> ManagerHandle {
            self.manager.handle()
        }

        fn until<T>(&self, what: &str, check: impl Fn(&ManagerHandle) -> Option<T>) -> T {
            until(&self.handle(), &self.ticks, what, check)
        }

        /// Waits until a poll of worker `w` begun now has been taken in: a poll is sent only once
        /// the one before is answered, so two polls begun means one complete.
        fn one_poll_of(&self, w: usize) {
            let before = self.workers[w].polls.load(Ordering::SeqCst);
            self.until("a poll", |_| (self.workers[w].polls.load(Ordering::SeqCst) >= before + 2).then_some(()));
        }

        fn submit(&self, name: &str) -> Task {
            self.handle().submit(spec(name)).expect("accepted")
        }

        fn submit_mb(&self, name: &str, memory_mb: u64) -> Task {
            let text = format!(r#"{{"name":"{name}","image":"b","memory_mb":{memory_mb}}}"#);
            let spec = TaskSpec::from_json(text.as_bytes()).expect("valid");
            self.handle().submit(spec).expect("accepted")
        }

        fn running(&self, id: TaskId) -> Task {
            self.until("the task to run", |h| h.get(id).ok().filter(|t| t.state == TaskState::Running))
        }

        /// The index of the worker (of two) a task was placed on, and of the other one.
        fn on_and_other(&self, placed: &Task) -> (usize, usize) {
            if placed.node.as_deref() == Some(self.workers[0].name.as_str()) {
                (0, 1)
            } else {
                (1, 0)
            }
        }

        fn state_of(&self, id: TaskId) -> (TaskState, Option<String>) {
            let t = self.handle().get(id).expect("known");
            (t.state, t.node)
        }
    }

    #[test]
    fn the_start_answer_makes_a_task_running_without_a_poll() {
        let r = rig(&["w1", "w2"]);
        let a = r.submit("a");
        let b = r.submit("b");
        // no tick is sent: the answers to the starts are enough
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.state_of(a.id).0 != TaskState::Running || r.state_of(b.id).0 != TaskState::Running {
            assert!(Instant::now() < deadline, "never Running");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_ne!(r.state_of(a.id).1, r.state_of(b.id).1, "round-robin over the two nodes");
    }

    #[test]
    fn the_history_tells_a_task_from_acceptance_to_running_and_its_node_coming_up() {
        let r = rig(&["w1"]);
        let a = r.submit("a");
        r.running(a.id);
        let h = r.handle();
        let events = h.events(crate::events::EventQuery { task: Some(a.id), ..Default::default() }).expect("events");
        let moves: Vec<(Option<&str>, &str)> = events.iter().map(|e| (e.from.as_deref(), e.to.as_str())).collect();
        assert_eq!(moves, [(None, "Pending"), (Some("Pending"), "Scheduled"), (Some("Scheduled"), "Running")]);
        assert_eq!(events[1].reason, "placed on w1");
        let nodes = r.until("the node's event", |h| {
            let all = h.events(crate::events::EventQuery { node: Some("w1".into()), ..Default::default() }).ok()?;
            all.iter().any(|e| e.subject == crate::events::Subject::Node && e.to == "up").then_some(all)
        });
        assert!(nodes.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
        let dry = h.dry_run(spec("b")).expect("dry run");
        assert_eq!(dry.chosen.as_deref(), Some("w1"));
        assert_eq!(h.events(Default::default()).expect("events").len(), events.len() + 1, "a dry run adds nothing");
    }

    #[test]
    fn a_task_that_fits_nowhere_waits_with_its_reason_and_runs_when_room_appears() {
        let r = rig_with(&["w1"], SchedulerKind::Epvm, Some(512));
        r.until("statistics", |h| h.nodes().ok()?[0].capacity);
        let big = r.submit_mb("big", 400);
        r.running(big.id);
        let late = r.submit_mb("late", 300);
        assert_eq!(late.state, TaskState::Pending, "accepted all the same");
        assert_eq!(late.error.as_deref(), Some("no node fits: w1 memory 400/512 MB allocated, needs 300"));
        // the node list is published after the pass that placed it
        r.until("the allocation listed", |h| (h.nodes().ok()?[0].allocated.memory_mb == 400).then_some(()));
        r.handle().stop(big.id).expect("stop accepted");
        let placed = r.running(late.id);
        assert_eq!((placed.node.as_deref(), placed.error), (Some("w1"), None));
    }

    #[test]
    fn epvm_sends_new_tasks_to_the_node_with_room() {
        let r = rig_with(&["w1", "w2"], SchedulerKind::Epvm, Some(512));
        r.until("statistics", |h| h.nodes().ok()?.iter().all(|n| n.capacity.is_some()).then_some(()));
        let fill = r.submit_mb("fill", 480);
        let filled = r.running(fill.id);
        for i in 0..3 {
            let t = r.submit_mb(&format!("small{i}"), 16);
            let t = r.running(t.id);
            assert_ne!(t.node, filled.node, "E-PVM avoids the filled node");
        }
    }

    #[test]
    fn a_restart_with_a_worker_briefly_away_moves_nothing_before_the_timeout() {
        // the store says: a task Running on w1, whose address is known
        let w1 = FakeWorker::new("w1");
        let w2 = FakeWorker::new("w2");
        let mut task = Task::new(TaskId::new_v4(), spec("a"), Timestamp(1));
        task.state = TaskState::Running;
        task.node = Some("w1".into());
        w1.run_copy(&task);
        let mut store = MemoryStore::new();
        store.put_task(&task).expect("put");
        store.put_node(&NodeRecord { address: "w1:80".into(), name: Some("w1".into()), draining: false }).expect("put");
        store.put_node(&NodeRecord { address: "w2:80".into(), name: Some("w2".into()), draining: false }).expect("put");
        w1.set_reachable(false);
        let (ticks, rx) = unbounded();
        let clock = manual_clock();
        let links: Vec<Arc<dyn WorkerLink>> = vec![w1.clone(), w2.clone()];
        let m =
            spawn_with_ticks(config(SchedulerKind::RoundRobin, &clock), Box::new(store), links, rx).expect("spawns");
        let h = m.handle();
        // failed polls of w1, all within its timeout (the clock stands still)
        until(&h, &ticks, "w1 polled", |h| h.nodes().ok()?[0].error.clone());
        let before = w1.polls.load(Ordering::SeqCst);
        until(&h, &ticks, "more polls", |_| (w1.polls.load(Ordering::SeqCst) >= before + 3).then_some(()));
        let t = h.get(task.id).expect("known");
        assert_eq!((t.state, t.node.as_deref()), (TaskState::Running, Some("w1")), "not moved before the timeout");
        assert!(w2.tasks.lock().expect("lock").is_empty());
        // once the timeout has passed, it moves
        clock.advance(NODE_TIMEOUT + Duration::from_secs(1));
        let moved = until(&h, &ticks, "the move", |h| {
            h.get(task.id).ok().filter(|t| t.state == TaskState::Running && t.node.as_deref() == Some("w2"))
        });
        assert!(moved.events.iter().any(|e| e.reason.starts_with("node w1 lost")), "{:?}", moved.events);
    }

    #[test]
    fn a_node_that_answers_with_something_unusable_is_not_down_and_keeps_its_tasks() {
        let r = rig(&["w1", "w2"]);
        let t = r.submit("a");
        let placed = r.running(t.id);
        let from = if placed.node.as_deref() == Some("w1") { 0 } else { 1 };
        r.workers[from].garbled.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            r.clock.advance(NODE_TIMEOUT);
            r.one_poll_of(0);
            r.one_poll_of(1);
        }
        let node = r.until("the bad answer listed", |h| {
            h.nodes()
                .ok()?
                .into_iter()
                .nth(from)
                .filter(|n| n.error.as_deref().is_some_and(|e| e.starts_with("bad answer")))
        });
        assert_eq!(node.status, NodeStatus::Up);
        assert_eq!(r.state_of(t.id), (TaskState::Running, placed.node), "not moved");
    }

    #[test]
    fn lists_come_in_pages_that_filter_and_go_on_where_the_last_ended() {
        let r = rig(&["w1"]);
        let ids: Vec<TaskId> = (0..5)
            .map(|i| {
                r.clock.advance(Duration::from_millis(10));
                r.submit(if i % 2 == 0 { "even" } else { "odd" }).id
            })
            .collect();
        for id in &ids {
            r.running(*id);
        }
        let h = r.handle();
        let first = h.list(TaskQuery { limit: 2, ..TaskQuery::default() }).expect("page");
        assert_eq!(first.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids[..2]);
        let cursor = first.next.expect("more");
        let rest = h.list(TaskQuery { after: Some(cursor), ..TaskQuery::default() }).expect("page");
        assert_eq!(rest.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids[2..]);
        assert_eq!(rest.next, None, "the last page says so");
        let evens = h.list(TaskQuery { name: Some("even".into()), ..TaskQuery::default() }).expect("page");
        assert_eq!(evens.tasks.len(), 3);
        let on_w1 =
            h.list(TaskQuery { node: Some("w1".into()), state: Some(TaskState::Running), ..TaskQuery::default() });
        assert_eq!(on_w1.expect("page").tasks.len(), 5);
        let none = h.list(TaskQuery { state: Some(TaskState::Failed), ..TaskQuery::default() }).expect("page");
        assert!(none.tasks.is_empty());
        assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
    }

    #[test]
    fn finished_tasks_beyond_the_bound_are_forgotten_longest_finished_first() {
        let r = rig_on(&["w1"], SchedulerKind::RoundRobin, None, FlakyStore::new(), 2);
        let ids: Vec<TaskId> = (0..4).map(|i| r.submit(&format!("t{i}")).id).collect();
        for id in &ids {
            r.running(*id);
        }
        for id in &ids {
            r.clock.advance(Duration::from_secs(1));
            r.handle().stop(*id).expect("stop");
            r.until("stopped", |h| h.get(*id).ok().filter(|t| t.state == TaskState::Stopped).map(|_| ()));
        }
        r.until("the two longest finished forgotten", |h| h.get(ids[1]).is_err().then_some(()));
        assert!(r.handle().get(ids[0]).is_err());
        assert_eq!(r.handle().get(ids[3]).expect("kept").state, TaskState::Stopped);
        assert_eq!(r.store.get_task(&ids[0]).expect("read"), None, "gone from the store too");
        assert!(r.store.get_task(&ids[2]).expect("read").is_some());
    }

    #[test]
    fn after_every_node_was_down_a_task_is_taken_back_where_it_runs_not_by_the_first_to_answer() {
        let r = rig(&["w1", "w2"]);
        let t = r.submit("a");
        let placed = r.running(t.id);
        let (home, first) = if placed.node.as_deref() == Some("w1") { (0, 1) } else { (1, 0) };
        for w in &r.workers {
            w.set_reachable(false);
        }
        r.clock.advance(NODE_TIMEOUT + Duration::from_millis(1));
        r.until("the task waiting for a node", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Pending));
        // both come back; the node that does not run it answers first
        r.workers[home].hold_polls(true);
        r.workers[home].set_reachable(true);
        r.workers[first].set_reachable(true);
        r.one_poll_of(first);
        r.one_poll_of(first);
        assert_eq!(r.state_of(t.id).0, TaskState::Pending, "not placed on the first node to answer");
        r.workers[home].hold_polls(false);
        let back = r.until("the task taken back", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Running));
        assert_eq!(back.node, placed.node);
        assert!(!r.workers[first].has(t.id), "no second copy was started");
    }

    #[test]
    fn a_task_stopped_while_it_waited_for_a_node_says_no_more_why_it_waited() {
        let r = rig(&["w1"]);
        r.workers[0].set_reachable(false);
        r.clock.advance(NODE_TIMEOUT * 2);
        let t = r.submit("a");
        let waiting = r.until("a reason", |h| h.get(t.id).ok().filter(|t| t.error.is_some()));
        assert_eq!(waiting.state, TaskState::Pending);
        let stopped = r.handle().stop(t.id).expect("stop");
        assert_eq!((stopped.state, stopped.error), (TaskState::Stopped, None));
    }

    #[test]
    fn a_node_silent_past_the_timeout_is_down_and_its_tasks_move() {
        let r = rig(&["w1", "w2"]);
        let t = r.submit("a");
        let placed = r.running(t.id);
        let (from, to) = r.on_and_other(&placed);
        r.workers[from].set_reachable(false);
        r.one_poll_of(from);
        let nodes = r.handle().nodes().expect("nodes");
        assert_eq!(nodes[from].status, NodeStatus::Up, "silent, but not for long yet");
        assert_eq!(r.state_of(t.id), (TaskState::Running, placed.node.clone()));
        r.clock.advance(NODE_TIMEOUT + Duration::from_millis(1));
        r.until("the node down", |h| (h.nodes().ok()?[from].status == NodeStatus::Down).then_some(()));
        let moved = r.until("the task on the other node", |h| {
            h.get(t.id)
                .ok()
                .filter(|t| t.state == TaskState::Running && t.node.as_deref() == Some(&*r.workers[to].name))
        });
        assert_eq!(moved.restart_count, 0, "a move is not a restart");
    }

    #[test]
    fn a_stall_of_the_manager_itself_moves_nothing() {
        // the manager's own loop stopped for 30 s (a SIGSTOP): when it goes on, its workers'
        // silence over that time is not theirs
        let workers: Vec<Arc<FakeWorker>> = ["w1", "w2"].iter().map(|n| FakeWorker::new(n)).collect();
        let links = workers.iter().map(|w| w.clone() as Arc<dyn WorkerLink>).collect();
        let (ticks, rx) = unbounded();
        let clock = manual_clock();
        let store = FlakyStore::new();
        let config = ManagerConfig { forgive_stalls: true, ..config(SchedulerKind::RoundRobin, &clock) };
        let manager = spawn_with_ticks(config, Box::new(store.clone()), links, rx).expect("spawns");
        let r = Rig { manager, ticks, workers, clock, store };
        r.until("every node up", |h| h.nodes().ok()?.iter().all(|n| n.status == NodeStatus::Up).then_some(()));
        let t = r.submit("a");
        let placed = r.running(t.id);
        let (from, to) = r.on_and_other(&placed);
        let starts: usize = r.workers.iter().map(|w| w.starts.load(Ordering::SeqCst)).sum();
        // the task's own node answers its first poll after the stall last
        r.workers[from].hold_polls(true);
        r.clock.advance(Duration::from_secs(30));
        r.one_poll_of(to);
        let nodes = r.handle().nodes().expect("nodes");
        assert!(nodes.iter().all(|n| n.status == NodeStatus::Up), "{nodes:?}");
        assert_eq!(r.state_of(t.id), (TaskState::Running, placed.node.clone()));
        let after: usize = r.workers.iter().map(|w| w.starts.load(Ordering::SeqCst)).sum();
        assert_eq!(after, starts, "nothing started again");
        r.workers[from].hold_polls(false);
    }

    #[test]
    fn a_start_that_never_arrived_is_placed_on_another_node() {
        let r = rig(&["w1", "w2"]);
        r.workers[0].set_reachable(false);
        let t = r.submit("a");
        let placed = r.running(t.id);
        assert_eq!(placed.node.as_deref(), Some("w2"));
    }

    #[test]
    fn a_start_the_worker_refuses_fails_the_task_with_its_reason() {
        let r = rig(&["w1"]);
        *r.workers[0].refuse_starts.lock().expect("lock") = Some(400);
        let t = r.submit("a");
        let failed = r.until("Failed", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Failed));
        assert_eq!(failed.error.as_deref(), Some("w1 refused the task: no such image"));
        assert!(failed.finished_at.is_some());
        // a finished task is not placed again, however often the plan runs
        r.one_poll_of(0);
        assert_eq!(r.state_of(t.id).0, TaskState::Failed);
    }

    #[test]
    fn a_start_refused_while_the_worker_cleans_up_is_made_again_there() {
        let r = rig(&["w1"]);
        *r.workers[0].refuse_starts.lock().expect("lock") = Some(409);
        let t = r.submit("a");
        r.one_poll_of(0);
        r.one_poll_of(0);
        let (state, _) = r.state_of(t.id);
        assert!(matches!(state, TaskState::Scheduled | TaskState::Pending), "a conflict is not a failure: {state}");
        *r.workers[0].refuse_starts.lock().expect("lock") = None;
        r.clock.advance(Duration::from_secs(2));
        let running = r.running(t.id);
        assert_eq!(running.node.as_deref(), Some("w1"));
    }

    /// A worker whose engine is down says so in its 503's words: the node is no candidate until
    /// a poll says its engine answers again.
    #[test]
    fn a_start_refused_for_a_dead_engine_waits_for_a_poll_that_says_the_engine_answers() {
        let r = rig(&["w1"]);
        r.workers[0].hold_polls(true);
        // the words the worker's own error gives
        let down = crate::worker::WorkerError::EngineUnreachable("connection refused".into());
        *r.workers[0].refusal.lock().expect("lock") = down.to_string();
        *r.workers[0].refuse_starts.lock().expect("lock") = Some(503);
        let t = r.submit("a");
        r.until("the engine called down", |h| (h.nodes().ok()?[0].engine_reachable == Some(false)).then_some(()));
        *r.workers[0].refuse_starts.lock().expect("lock") = None;
        // placed again at once, and w1 is no candidate: the reason is its engine
        let waiting = r.until("the reason", |h| {
            h.get(t.id).ok().filter(|t| t.error.as_deref().is_some_and(|e| e.contains("engine unreachable")))
        });
        assert_eq!(waiting.state, TaskState::Pending);
        assert_eq!(r.workers[0].starts.load(Ordering::SeqCst), 1, "no start on a node whose engine is down");
        r.workers[0].hold_polls(false);
        let running = r.running(t.id);
        assert_eq!(running.node.as_deref(), Some("w1"));
    }

    /// A 503 that does not speak of the engine (the worker is shutting down, not ready, too
    /// busy) says nothing of the engine: the task is placed again after a moment, and the node
    /// stays a candidate without a poll.
    #[test]
    fn a_start_a_worker_does_not_take_for_now_is_placed_again_later_with_its_engine_not_called_down() {
        use crate::worker::WorkerError;
        let busy = "too many request bodies in flight; retry".to_string();
        for words in [WorkerError::ShuttingDown.to_string(), WorkerError::NotReady.to_string(), busy] {
            let r = rig(&["w1"]);
            r.workers[0].hold_polls(true);
            *r.workers[0].refusal.lock().expect("lock") = words.clone();
            *r.workers[0].refuse_starts.lock().expect("lock") = Some(503);
            let t = r.submit("a");
            let waiting = r.until("placed again", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Pending));
            assert!(waiting.error.as_deref().is_some_and(|e| e.contains(&words)), "{words}: {:?}", waiting.error);
            assert_eq!(r.handle().nodes().expect("nodes")[0].engine_reachable, Some(true), "{words}");
            assert_eq!(r.workers[0].starts.load(Ordering::SeqCst), 1, "{words}: not again before the back-off");
            *r.workers[0].refuse_starts.lock().expect("lock") = None;
            r.clock.advance(Duration::from_secs(2));
            // no poll is taken in meanwhile: the node is a candidate as it stood
            let running = r.running(t.id);
            assert_eq!(running.node.as_deref(), Some("w1"), "{words}");
            r.workers[0].hold_polls(false);
        }
    }

    #[test]
    fn a_copy_on_the_wrong_node_is_stopped_there_every_time_it_appears() {
        let r = rig(&["w1", "w2"]);
        let t = r.submit("a");
        let placed = r.running(t.id);
        let other = if placed.node.as_deref() == Some("w1") { 1 } else { 0 };
        let stops = |w: usize| r.workers[w].stops.lock().expect("lock").iter().filter(|id| **id == t.id).count();
        for round in 1..=3 {
            r.workers[other].run_copy(&placed);
            r.until("the stray stopped again", |_| (stops(other) == round).then_some(()));
            // the copy is gone from the node's next reports
            r.one_poll_of(other);
            r.one_poll_of(other);
        }
        assert_eq!(r.state_of(t.id), (TaskState::Running, placed.node), "the real one is untouched");
    }

    #[test]
    fn a_copy_on_the_wrong_node_is_stopped_there() {
        let r = rig(&["w1", "w2"]);
        let t = r.submit("a");
        let placed = r.running(t.id);
        let other = if placed.node.as_deref() == Some("w1") { 1 } else { 0 };
        r.workers[other].run_copy(&placed);
        r.until("the stray to be stopped", |_| r.workers[other].was_stopped(t.id).then_some(()));
        assert_eq!(r.state_of(t.id), (TaskState::Running, placed.node), "the real one is untouched");
    }

    #[test]
    fn with_a_persisted_store_a_container_no_task_owns_is_stopped_after_the_grace_period() {
        let r = rig_on(&["w1"], SchedulerKind::RoundRobin, None, FlakyStore::persisted(), 1000);
        let orphan = Task::new(TaskId::new_v4(), spec("orphan"), Timestamp(1));
        r.workers[0].run_copy(&orphan);
        // seen, and polled again, within the grace period: left alone
        r.one_poll_of(0);
        r.one_poll_of(0);
        r.clock.advance(ORPHAN_GRACE - Duration::from_secs(1));
        r.one_poll_of(0);
        assert!(!r.workers[0].was_stopped(orphan.id), "not before the grace period");
        r.clock.advance(Duration::from_secs(1));
        r.until("the orphan to be stopped", |_| r.workers[0].was_stopped(orphan.id).then_some(()));
        assert!(r.handle().get(orphan.id).is_err(), "not taken into the table");
    }

    #[test]
    fn with_a_memory_store_a_running_task_a_worker_reports_is_taken_in_as_it_runs() {
        let r = rig(&["w1", "w2"]);
        let mut known = Task::new(TaskId::new_v4(), spec("survivor"), Timestamp(1));
        known.set_state(TaskState::Scheduled, Timestamp(2)).expect("allowed");
        known.set_state(TaskState::Running, Timestamp(3)).expect("allowed");
        r.workers[0].run_copy(&known);
        // the same task on a second node: one copy is kept, the other is a stray
        r.workers[1].run_copy(&known);
        let adopted = r.until("the task in the table", |h| h.get(known.id).ok());
        assert_eq!((adopted.state, adopted.spec.clone()), (TaskState::Running, known.spec.clone()));
        let home = adopted.node.clone().expect("a node");
        // past the orphan grace, with both nodes answering all along
        for _ in 0..ORPHAN_GRACE.as_secs() + 5 {
            r.clock.advance(Duration::from_secs(1));
            r.one_poll_of(0);
            r.one_poll_of(1);
        }
        let (at_home, other) = if home == "w1" { (0, 1) } else { (1, 0) };
        assert!(!r.workers[at_home].was_stopped(known.id), "the adopted copy keeps running");
        r.until("the second copy stopped", |_| r.workers[other].was_stopped(known.id).then_some(()));
        assert_eq!(r.state_of(known.id), (TaskState::Running, Some(home)));
    }

    #[test]
    fn tasks_missing_from_an_unsynced_worker_are_not_placed_again() {
        let r = rig(&["w1"]);
        let t = r.submit("a");
        r.running(t.id);
        // the worker restarts with nothing in its table and has not checked its containers yet
        *r.workers[0].synced.lock().expect("lock") = false;
        r.workers[0].tasks.lock().expect("lock").clear();
        for _ in 0..3 {
            r.one_poll_of(0);
        }
        assert_eq!(r.state_of(t.id).0, TaskState::Running);
        assert!(!r.workers[0].has(t.id), "not started again");
        // once it has checked, a task it does not have is placed again
        *r.workers[0].synced.lock().expect("lock") = true;
        r.until("the task to be started again", |_| r.workers[0].has(t.id).then_some(()));
        r.running(t.id);
    }

    #[test]
    fn a_stop_for_a_task_on_a_down_node_takes_effect() {
        let r = rig(&["w1"]);
        let t = r.submit("a");
        r.running(t.id);
        r.workers[0].set_reachable(false);
        r.one_poll_of(0);
        r.clock.advance(NODE_TIMEOUT + Duration::from_millis(1));
        r.until("the node to be down", |h| (h.nodes().ok()?[0].status == NodeStatus::Down).then_some(()));
        let answer = r.handle().stop(t.id).expect("accepted");
        assert_eq!(answer.desired_state, DesiredState::Stopped);
        r.until("Stopped", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Stopped));
        // when the node returns, the copy it still runs is stopped
        r.workers[0].set_reachable(true);
        r.until("the copy to be stopped", |_| r.workers[0].was_stopped(t.id).then_some(()));
    }

    #[test]
    fn a_stop_the_worker_has_no_task_for_marks_the_task_stopped() {
        let r = rig(&["w1"]);
        let t = r.submit("a");
        r.running(t.id);
        // the worker lost the task but has not checked its containers: its report says nothing
        *r.workers[0].synced.lock().expect("lock") = false;
        r.workers[0].tasks.lock().expect("lock").clear();
        r.handle().stop(t.id).expect("accepted");
        let stopped = r.until("Stopped", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Stopped));
        assert!(r.workers[0].was_stopped(t.id), "the stop was sent");
        assert_eq!(stopped.events.last().map(|e| e.reason.as_str()), Some("stopped as asked"));
    }

    #[test]
    fn stopping_an_unknown_or_finished_task_is_refused() {
        let r = rig(&["w1"]);
        let unknown = TaskId::new_v4();
        assert!(matches!(r.handle().stop(unknown), Err(ManagerError::NotFound(id)) if id == unknown));
        // a Pending task (no node can take it) is stopped at once
        r.workers[0].set_reachable(false);
        r.one_poll_of(0);
        let t = r.submit("a");
        assert_eq!(t.state, TaskState::Pending, "{:?}", t.error);
        let stopped = r.handle().stop(t.id).expect("accepted");
        assert_eq!(stopped.state, TaskState::Stopped);
        let again = r.handle().stop(t.id);
        assert!(matches!(again, Err(ManagerError::AlreadyFinished { state: TaskState::Stopped, .. })), "{again:?}");
    }

    #[test]
    fn health_counts_the_nodes_up_and_the_unfinished_tasks() {
        let r = rig(&["w1", "w2"]);
        let a = r.submit("a");
        r.submit("b");
        r.handle().stop(a.id).expect("accepted");
        r.until("a stopped", |h| h.get(a.id).ok().filter(|t| t.is_terminal()));
        // health is published with the node list, after the pass that saw the change
        let health = r.until("health to count one task", |h| h.health().ok().filter(|x| x.tasks == 1));
        assert_eq!((health.nodes_up, health.nodes_total, health.tasks), (2, 2, 1));
        assert_eq!((health.scheduler.as_str(), health.storage.as_str()), ("roundrobin", "memory"));
    }

    #[test]
    fn a_submit_the_store_cannot_commit_is_refused_and_not_kept() {
        let r = rig(&["w1"]);
        r.store.fail_writes(true);
        let refused = r.handle().submit(spec("a"));
        assert!(matches!(refused, Err(ManagerError::Store(_))), "{refused:?}");
        assert!(r.handle().list(TaskQuery::default()).expect("list").tasks.is_empty(), "nothing claimed");
        r.one_poll_of(0);
        assert!(r.workers[0].tasks.lock().expect("lock").is_empty(), "nothing started");
        r.store.fail_writes(false);
        let t = r.submit("a");
        r.running(t.id);
    }

    #[test]
    fn a_stop_the_store_cannot_commit_is_refused_and_not_made() {
        let r = rig(&["w1"]);
        let t = r.submit("a");
        r.running(t.id);
        r.store.fail_writes(true);
        let refused = r.handle().stop(t.id);
        assert!(matches!(refused, Err(ManagerError::Store(_))), "{refused:?}");
        r.one_poll_of(0);
        let kept = r.handle().get(t.id).expect("known");
        assert_eq!((kept.state, kept.desired_state), (TaskState::Running, DesiredState::Running));
        assert!(!r.workers[0].was_stopped(t.id), "no stop sent for a change not made");
        r.store.fail_writes(false);
        r.handle().stop(t.id).expect("accepted");
        r.until("Stopped", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Stopped));
    }

    #[test]
    fn a_change_the_store_cannot_commit_is_not_shown_and_is_taken_in_later() {
        let r = rig(&["w1"]);
        r.workers[0].hold_starts(true);
        let t = r.submit("a");
        assert_eq!(t.state, TaskState::Scheduled, "placed at once, the start awaited");
        r.store.fail_writes(true);
        r.workers[0].hold_starts(false);
        r.until("the start done", |_| r.workers[0].has(t.id).then_some(()));
        // the answer, then a report, both say Running: neither can be committed
        r.one_poll_of(0);
        r.one_poll_of(0);
        assert_eq!(r.state_of(t.id).0, TaskState::Scheduled, "not claimed before it is stored");
        r.store.fail_writes(false);
        r.running(t.id);
    }

    #[test]
    fn a_node_name_the_store_refused_is_written_again_at_a_later_poll() {
        let mut store = FlakyStore::new();
        store.put_node(&NodeRecord { address: "w1:80".into(), name: None, draining: false }).expect("put");
        store.fail_writes(true);
        let w1 = FakeWorker::new("w1");
        let (ticks, rx) = unbounded();
        let clock = manual_clock();
        let links: Vec<Arc<dyn WorkerLink>> = vec![w1.clone()];
        let m = spawn_with_ticks(config(SchedulerKind::RoundRobin, &clock), Box::new(store.clone()), links, rx)
            .expect("spawns: the worker's address is known already");
        let h = m.handle();
        until(&h, &ticks, "the name reported", |h| (h.nodes().ok()?[0].name == "w1").then_some(()));
        let names = || store.list_nodes().expect("list").into_iter().map(|n| n.name).collect::<Vec<_>>();
        assert_eq!(names(), vec![None], "the write failed");
        store.fail_writes(false);
        until(&h, &ticks, "the name stored", |_| (names() == vec![Some("w1".to_string())]).then_some(()));
    }

    #[test]
    fn a_replica_a_host_port_keeps_off_a_node_says_so_in_the_service_and_the_cluster_history() {
        let r = rig(&["w1", "w2"]);
        let h = r.handle();
        let port_spec = |name: &str| {
            let text = format!(r#"{{"name":"{name}","image":"b","ports":[{{"container":80,"host":9000}}]}}"#);
            TaskSpec::from_json(text.as_bytes()).expect("valid")
        };
        let single = h.submit(port_spec("single")).expect("accepted");
        let single = r.running(single.id);
        assert_eq!(single.node.as_deref(), Some("w1"), "round-robin starts at the first node");
        let body = serde_json::json!({"name": "web", "template": {"name": "web", "image": "b",
            "ports": [{"container": 80, "host": 9000}]}});
        let created = h.create_service(crate::service::ServiceSpec::from_value(body, None).expect("valid"));
        assert!(created.is_ok(), "{created:?}");
        let replica = r.until("the replica running", |h| {
            let v = h.get_service("web".into()).ok()?;
            v.tasks.into_iter().find(|t| t.state == TaskState::Running)
        });
        assert_eq!(replica.node.as_deref(), Some("w2"), "not where another task holds its port");
        let said = "not on w1 (host port 9000 taken by another task)";
        let events = h.get_service("web".into()).expect("known").service.events;
        assert!(events.iter().any(|e| e.message.contains(said)), "{events:?}");
        let q = crate::events::EventQuery { service: Some("web".into()), ..Default::default() };
        let history = h.events(q).expect("events");
        let reasons: Vec<(&str, &str)> = history.iter().map(|e| (e.to.as_str(), e.reason.as_str())).collect();
        assert_eq!(reasons.first().map(|r| r.0), Some("created"), "{reasons:?}");
        assert!(history.iter().all(|e| e.subject == crate::events::Subject::Service), "{history:?}");
        assert!(reasons.iter().any(|(_, why)| why.contains(said)), "{reasons:?}");
    }

    #[test]
    fn spawn_fails_when_the_store_cannot_record_the_workers() {
        let store = FlakyStore::new();
        store.fail_writes(true);
        let links: Vec<Arc<dyn WorkerLink>> = vec![FakeWorker::new("w1")];
        let (_ticks, rx) = unbounded();
        let clock = manual_clock();
        let result = spawn_with_ticks(config(SchedulerKind::RoundRobin, &clock), Box::new(store), links, rx);
        assert!(matches!(result, Err(ManagerError::Store(_))));
    }

    #[test]
    fn a_thread_that_cannot_start_is_an_internal_error_with_its_cause() {
        let e = ManagerError::Spawn(SpawnError { thread: "poll-0".into(), source: std::io::Error::other("no memory") });
        assert_eq!(
            control::error_chain(&e),
            "the manager could not start its threads: cannot start the poll-0 thread: no memory"
        );
    }
}
