//! The manager's control loop: the desired state of every task, the node table, placement, and
//! the application of the reconcile plan.
//!
//! One control thread owns the task table, the store, the node table and the scheduler. It never
//! waits on a worker: each node has its own dispatcher threads that make the calls (through a
//! `WorkerLink`) and send back what happened. A slow or dead worker delays nothing but itself.
//!
//! Must not speak HTTP or build URLs: `http.rs` implements `WorkerLink` and turns API requests
//! into calls on `ManagerHandle`.

use crate::api::{ManagerHealth, NodeInfo, NodeStatus, StartTask, WorkerHealth};
use crate::control::error_chain;
use crate::control::survive;
use crate::reconcile::{self, Action, NodeObs, PlanConfig, Report, TaskView};
use crate::sched::{NodeState, NodeTable, Request, Scheduler, SchedulerKind, Usage};
use crate::stats::{NodeStats, Resources};
use crate::store::{NodeRecord, Store, StoreError};
use crate::task::{DesiredState, SpecError, Task, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use crossbeam_channel::{bounded, select, tick, unbounded, Receiver, Sender, TrySendError};
use log::{debug, error, info, warn};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
    fn tasks(&self) -> Result<Vec<Task>, LinkError>;
    fn health(&self) -> Result<WorkerHealth, LinkError>;
    fn stats(&self) -> Result<NodeStats, LinkError>;
}

#[derive(Debug, Clone)]
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
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            scheduler: SchedulerKind::RoundRobin,
            poll_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(4),
            dispatch_threads: 4,
            orphan_grace: Duration::from_secs(30),
        }
    }
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
    /// The control loop did not answer (shutting down or overloaded).
    Unavailable,
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
            ManagerError::Unavailable => f.write_str("the manager is not answering; retry"),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManagerError::Store(e) => Some(e),
            ManagerError::InvalidSpec(e) => Some(e),
            _ => None,
        }
    }
}

type Reply<T> = Sender<Result<T, ManagerError>>;

enum Command {
    Submit { spec: TaskSpec, reply: Reply<Task> },
    Get { id: TaskId, reply: Reply<Task> },
    List { reply: Reply<Vec<Task>> },
    Stop { id: TaskId, reply: Reply<Task> },
    Nodes { reply: Reply<Vec<NodeInfo>> },
    Health { reply: Reply<ManagerHealth> },
    Shutdown,
}

/// How the HTTP layer talks to the control thread. Cheap to clone.
#[derive(Clone)]
pub struct ManagerHandle {
    tx: Sender<Command>,
}

const ANSWER_WAIT: Duration = Duration::from_secs(10);

impl ManagerHandle {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ManagerError> {
        let (tx, rx) = bounded(1);
        self.tx.send(make(tx)).map_err(|_| ManagerError::Unavailable)?;
        rx.recv_timeout(ANSWER_WAIT).map_err(|_| ManagerError::Unavailable)?
    }

    /// Accepts a task and places it if a node can take it; the record comes back at once.
    pub fn submit(&self, spec: TaskSpec) -> Result<Task, ManagerError> {
        self.ask(|reply| Command::Submit { spec, reply })
    }

    pub fn get(&self, id: TaskId) -> Result<Task, ManagerError> {
        self.ask(|reply| Command::Get { id, reply })
    }

    pub fn list(&self) -> Result<Vec<Task>, ManagerError> {
        self.ask(|reply| Command::List { reply })
    }

    /// Records that the task is wanted stopped and sets the stop going; the record comes back at once.
    pub fn stop(&self, id: TaskId) -> Result<Task, ManagerError> {
        self.ask(|reply| Command::Stop { id, reply })
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ManagerError> {
        self.ask(|reply| Command::Nodes { reply })
    }

    pub fn health(&self) -> Result<ManagerHealth, ManagerError> {
        self.ask(|reply| Command::Health { reply })
    }
}

/// A running manager.
pub struct Manager {
    handle: ManagerHandle,
    control: Option<JoinHandle<()>>,
}

impl Manager {
    pub fn handle(&self) -> ManagerHandle {
        self.handle.clone()
    }

    /// Stops the control loop and waits for it. Workers and their containers are untouched.
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

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the dispatcher threads report back.
enum Observation {
    Started { node: usize, id: TaskId, result: Result<Task, LinkError> },
    Stopped { node: usize, id: TaskId, result: Result<Task, LinkError> },
    StrayStopped { node: usize, id: TaskId, result: Result<Task, LinkError> },
    Polled { node: usize, epoch: u64, result: Result<Poll, LinkError> },
}

/// What one poll of a worker brings back; statistics are optional (a worker without them still
/// runs its tasks).
struct Poll {
    health: WorkerHealth,
    tasks: Vec<Task>,
    stats: Option<NodeStats>,
}

enum Job {
    Start(Box<StartTask>),
    Stop(TaskId),
    StopStray(TaskId),
}

/// A call to a worker, with a panic (a bug) turned into an error rather than a lost answer.
fn guarded<T>(call: impl FnOnce() -> Result<T, LinkError>) -> Result<T, LinkError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|_| Err(LinkError::BadAnswer("internal error while calling the worker".into())))
}

/// Threads that take jobs from `rx` and report what happened.
fn dispatchers(
    label: &str,
    count: usize,
    rx: &Receiver<Job>,
    link: &Arc<dyn WorkerLink>,
    obs: &Sender<Observation>,
    index: usize,
) -> std::io::Result<()> {
    for t in 0..count.max(1) {
        let (rx, link, obs) = (rx.clone(), link.clone(), obs.clone());
        std::thread::Builder::new().name(format!("{label}-{index}-{t}")).spawn(move || {
            for job in rx.iter() {
                let observation = match job {
                    Job::Start(req) => {
                        Observation::Started { node: index, id: req.id, result: guarded(|| link.start(&req)) }
                    }
                    Job::Stop(id) => Observation::Stopped { node: index, id, result: guarded(|| link.stop(id)) },
                    Job::StopStray(id) => {
                        Observation::StrayStopped { node: index, id, result: guarded(|| link.stop(id)) }
                    }
                };
                if obs.send(observation).is_err() {
                    return;
                }
            }
        })?;
    }
    Ok(())
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
    ticks: Receiver<std::time::Instant>,
) -> Result<Manager, ManagerError> {
    let (cmd_tx, cmd_rx) = unbounded();
    let (obs_tx, obs_rx) = unbounded();
    let mut nodes = Vec::with_capacity(links.len());
    for (index, link) in links.into_iter().enumerate() {
        nodes.push(Node::spawn(index, link, config.dispatch_threads, obs_tx.clone()).map_err(|e| {
            error!("cannot start dispatcher threads error={e}");
            ManagerError::Unavailable
        })?);
    }
    let mut state = State::new(config.clone(), store, nodes)?;
    // the control thread keeps a sender so its observation channel never disconnects (with no
    // workers, a disconnected channel would be ready forever and spin the loop)
    state.observations = Some(obs_tx);
    let control = std::thread::Builder::new()
        .name("manager-control".into())
        .spawn(move || state.run(cmd_rx, obs_rx, ticks))
        .map_err(|_| ManagerError::Unavailable)?;
    Ok(Manager { handle: ManagerHandle { tx: cmd_tx }, control: Some(control) })
}

/// One worker: its link, the dispatcher's queues and what the manager knows of it.
struct Node {
    address: String,
    /// The name the worker reported; its address until then.
    name: Option<String>,
    /// Starts may take minutes (an image pull), so stops have their own queue and threads.
    starts: Sender<Job>,
    stops: Sender<Job>,
    polls: Sender<u64>,
    poll_in_flight: bool,
    last_contact: Option<Timestamp>,
    /// When it last answered, and when the manager started following it (monotonic).
    heard: Option<std::time::Instant>,
    since: std::time::Instant,
    /// The last poll failed (or the name clashes): no calls are worth making now.
    unreachable: bool,
    ever_failed: bool,
    engine_reachable: Option<bool>,
    error: Option<String>,
    report: Option<Report>,
    /// Tasks whose stray copy on this node is being stopped.
    stray_stops: HashSet<TaskId>,
    /// The worker's last statistics (capacity, usage).
    stats: Option<NodeStats>,
    /// Tasks this node runs that the manager does not know, and when each was first seen.
    orphans: HashMap<TaskId, Timestamp>,
}

impl Node {
    fn spawn(
        index: usize,
        link: Arc<dyn WorkerLink>,
        threads: usize,
        obs: Sender<Observation>,
    ) -> std::io::Result<Node> {
        let address = link.address().to_string();
        let (starts_tx, starts_rx) = unbounded::<Job>();
        dispatchers("start", threads, &starts_rx, &link, &obs, index)?;
        let (stops_tx, stops_rx) = unbounded::<Job>();
        dispatchers("stop", 2, &stops_rx, &link, &obs, index)?;
        // one poll at a time per node; the control thread skips a poll while one is in flight
        let (polls_tx, polls_rx) = bounded::<u64>(1);
        std::thread::Builder::new().name(format!("poll-{index}")).spawn(move || {
            for epoch in polls_rx.iter() {
                let result = guarded(|| {
                    let health = link.health()?;
                    let tasks = link.tasks()?;
                    let stats =
                        link.stats().map_err(|e| debug!("no statistics from {} error={e}", link.address())).ok();
                    Ok(Poll { health, tasks, stats })
                });
                if obs.send(Observation::Polled { node: index, epoch, result }).is_err() {
                    return;
                }
            }
        })?;
        Ok(Node {
            address,
            name: None,
            starts: starts_tx,
            stops: stops_tx,
            polls: polls_tx,
            poll_in_flight: false,
            last_contact: None,
            heard: None,
            since: std::time::Instant::now(),
            unreachable: false,
            ever_failed: false,
            engine_reachable: None,
            error: None,
            report: None,
            stray_stops: HashSet::new(),
            stats: None,
            orphans: HashMap::new(),
        })
    }

    fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }

    /// Up while heard from within the timeout; down once silent for longer (counted from the
    /// manager's start for a node never heard from, so that a restart with a worker briefly away
    /// does not move its tasks at once). Monotonic time: a step of the wall clock changes nothing.
    fn status(&self, timeout: Duration) -> NodeStatus {
        match self.heard {
            Some(t) if t.elapsed() <= timeout => NodeStatus::Up,
            Some(_) => NodeStatus::Down,
            None if self.ever_failed && self.since.elapsed() > timeout => NodeStatus::Down,
            None => NodeStatus::Unknown,
        }
    }

    /// How long the node has been silent.
    fn silent(&self) -> Duration {
        self.heard.unwrap_or(self.since).elapsed()
    }
}

/// The manager's own bookkeeping next to each task record.
struct Tracked {
    task: Task,
    /// The node a start or stop for it is under way on; its answer is awaited.
    op_on: Option<usize>,
    settled_epoch: u64,
    not_before: Timestamp,
}

/// Back-off after a failed call about a task.
const RETRY_AFTER_MS: u64 = 1000;

struct State {
    config: ManagerConfig,
    store: Box<dyn Store>,
    scheduler: Box<dyn Scheduler>,
    nodes: Vec<Node>,
    tasks: HashMap<TaskId, Tracked>,
    /// Counts events; tells reports requested before an answer from those requested after.
    epoch: u64,
    observations: Option<Sender<Observation>>,
}

impl State {
    fn new(config: ManagerConfig, mut store: Box<dyn Store>, mut nodes: Vec<Node>) -> Result<State, ManagerError> {
        // the names workers reported before a restart, so tasks map to their nodes at once
        let known = store.list_nodes().map_err(ManagerError::Store)?;
        for node in &mut nodes {
            match known.iter().find(|k| k.address == node.address) {
                Some(record) => node.name = record.name.clone(),
                None => store
                    .put_node(&NodeRecord { address: node.address.clone(), name: None })
                    .map_err(ManagerError::Store)?,
            }
        }
        let mut tasks = HashMap::new();
        for task in store.list_tasks().map_err(ManagerError::Store)? {
            tasks.insert(task.id, Tracked { task, op_on: None, settled_epoch: 0, not_before: Timestamp(0) });
        }
        let scheduler = config.scheduler.build();
        Ok(State { config, store, scheduler, nodes, tasks, epoch: 1, observations: None })
    }

    fn run(&mut self, cmd_rx: Receiver<Command>, obs_rx: Receiver<Observation>, ticker: Receiver<std::time::Instant>) {
        self.poll_all();
        loop {
            select! {
                recv(cmd_rx) -> cmd => match cmd {
                    Ok(Command::Shutdown) | Err(_) => break,
                    Ok(cmd) => survive("a command", || self.on_command(cmd)),
                },
                recv(obs_rx) -> obs => if let Ok(obs) = obs { survive("an observation", || self.on_observation(obs)) },
                recv(ticker) -> _ => self.poll_all(),
            }
            self.epoch += 1;
            survive("the plan", || self.reconcile());
        }
        info!("manager control loop stopped");
    }

    fn now() -> Timestamp {
        Timestamp::now()
    }

    fn poll_all(&mut self) {
        let epoch = self.epoch;
        for node in &mut self.nodes {
            if node.poll_in_flight {
                continue;
            }
            match node.polls.try_send(epoch) {
                Ok(()) => node.poll_in_flight = true,
                Err(TrySendError::Full(_)) => node.poll_in_flight = true,
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    /// Writes a task's record, then keeps it in the table. On a store failure nothing changes.
    fn commit(&mut self, mut task: Task) -> Result<(), ManagerError> {
        let old = self.tasks.get(&task.id).map(|t| &t.task);
        if old == Some(&task) {
            return Ok(()); // nothing changed: nothing written
        }
        if let Some((from, reason)) = task.change_since(old) {
            task.record(from, reason, Self::now());
        }
        self.store.put_task(&task).map_err(|e| {
            error!("store write failed task_id={} error={}", task.id, error_chain(&e));
            ManagerError::Store(e)
        })?;
        match self.tasks.get_mut(&task.id) {
            Some(t) => t.task = task,
            None => {
                let id = task.id;
                self.tasks.insert(id, Tracked { task, op_on: None, settled_epoch: 0, not_before: Timestamp(0) });
            }
        }
        Ok(())
    }

    /// `commit` for changes the control loop makes on its own: a failure is logged there and the
    /// change retried by a later plan.
    fn commit_quietly(&mut self, task: Task) {
        let _ = self.commit(task);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit { spec, reply } => {
                let _ = reply.send(self.submit(spec));
            }
            Command::Get { id, reply } => {
                let _ = reply.send(self.tasks.get(&id).map(|t| t.task.clone()).ok_or(ManagerError::NotFound(id)));
            }
            Command::List { reply } => {
                let mut all: Vec<Task> = self.tasks.values().map(|t| t.task.clone()).collect();
                all.sort_by_key(|t| (t.created_at, t.id));
                let _ = reply.send(Ok(all));
            }
            Command::Stop { id, reply } => {
                let _ = reply.send(self.stop(id));
            }
            Command::Nodes { reply } => {
                let _ = reply.send(Ok(self.node_infos()));
            }
            Command::Health { reply } => {
                let up = self.nodes.iter().filter(|n| n.status(self.config.node_timeout) == NodeStatus::Up).count();
                let _ = reply.send(Ok(ManagerHealth {
                    status: "ok".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    scheduler: self.config.scheduler.name().into(),
                    storage: self.store.kind().into(),
                    nodes_up: up,
                    nodes_total: self.nodes.len(),
                    tasks: self.tasks.values().filter(|t| !t.task.is_terminal()).count(),
                }));
            }
            Command::Shutdown => {}
        }
    }

    fn submit(&mut self, spec: TaskSpec) -> Result<Task, ManagerError> {
        let task = Task::new(TaskId::new_v4(), spec, Self::now());
        let id = task.id;
        self.commit(task)?;
        info!("task accepted task_id={id}");
        // place it now rather than at the next tick
        self.place(&[id]);
        Ok(self.tasks[&id].task.clone())
    }

    fn stop(&mut self, id: TaskId) -> Result<Task, ManagerError> {
        let Some(t) = self.tasks.get(&id) else {
            return Err(ManagerError::NotFound(id));
        };
        if t.task.is_terminal() {
            return Err(ManagerError::AlreadyFinished { id, state: t.task.state });
        }
        let mut task = t.task.clone();
        task.desired_state = DesiredState::Stopped;
        if task.state == TaskState::Pending {
            let _ = task.set_state(TaskState::Stopped, Self::now());
        }
        self.commit(task)?;
        info!("task stop requested task_id={id}");
        // the stop itself is sent by the plan that runs after this command
        if let Some(t) = self.tasks.get_mut(&id) {
            t.not_before = Timestamp(0);
        }
        self.reconcile();
        Ok(self.tasks[&id].task.clone())
    }

    fn node_infos(&self) -> Vec<NodeInfo> {
        let allocations = self.allocations();
        self.nodes
            .iter()
            .map(|n| {
                let name = n.display_name().to_string();
                let (allocated, tasks) = allocations.get(name.as_str()).copied().unwrap_or_default();
                NodeInfo {
                    name,
                    address: n.address.clone(),
                    status: n.status(self.config.node_timeout),
                    last_contact: n.last_contact,
                    tasks: tasks as usize,
                    engine_reachable: n.engine_reachable,
                    error: n.error.clone(),
                    capacity: n.stats.as_ref().map(|s| s.capacity),
                    allocated,
                    stats: n.stats.clone(),
                }
            })
            .collect()
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name.as_deref() == Some(name))
    }

    /// What every node has placed on it: the requests of its unfinished tasks, and their count.
    fn allocations(&self) -> HashMap<&str, (Resources, u32)> {
        let mut by_node: HashMap<&str, (Resources, u32)> = HashMap::new();
        for t in self.tasks.values().filter(|t| !t.task.is_terminal()) {
            let Some(node) = t.task.node.as_deref() else { continue };
            let req = Request::of(&t.task.spec);
            let entry = by_node.entry(node).or_default();
            entry.0.cpus += req.cpus;
            entry.0.memory_mb += req.memory_mb;
            entry.0.disk_mb += req.disk_mb;
            entry.1 += 1;
        }
        by_node
    }

    /// The node table placement works on, built afresh from the node and task tables.
    fn node_table(&self) -> NodeTable {
        let allocations = self.allocations();
        let states = self
            .nodes
            .iter()
            .map(|n| {
                let unavailable = match n.status(self.config.node_timeout) {
                    NodeStatus::Unknown => Some("not heard from yet".to_string()),
                    NodeStatus::Down => Some("down".to_string()),
                    NodeStatus::Up if n.unreachable => Some("not answering".to_string()),
                    NodeStatus::Up if n.engine_reachable == Some(false) => Some("engine unreachable".to_string()),
                    NodeStatus::Up => None,
                };
                let name = n.display_name();
                let (allocated, tasks) = allocations.get(name).copied().unwrap_or_default();
                let usage = n.stats.as_ref().map_or(Usage::default(), |s| Usage {
                    cpu: s.cpu_usage_pct / 100.0,
                    memory: if s.memory_total_mb > 0 {
                        1.0 - s.memory_available_mb as f64 / s.memory_total_mb as f64
                    } else {
                        0.0
                    },
                });
                NodeState {
                    name: name.to_string(),
                    unavailable,
                    capacity: n.stats.as_ref().map(|s| s.capacity),
                    allocated,
                    usage,
                    tasks,
                    disk_free_mb: n.stats.as_ref().map(|s| s.disk_free_mb),
                }
            })
            .collect();
        NodeTable::new(states)
    }

    /// Chooses nodes for Pending tasks, oldest first, and sends them there; or records why no node
    /// can take a task. One table serves the whole batch, each placement counted in it.
    fn place(&mut self, ids: &[TaskId]) {
        let mut table: Option<NodeTable> = None;
        for &id in ids {
            let Some(t) = self.tasks.get(&id) else { continue };
            if t.task.state != TaskState::Pending || t.task.desired_state != DesiredState::Running || t.op_on.is_some()
            {
                continue;
            }
            let mut task = t.task.clone();
            let req = Request::of(&task.spec);
            let table = table.get_or_insert_with(|| self.node_table());
            match self.scheduler.pick(&req, table) {
                Ok(index) => {
                    let name = table.nodes()[index].name.clone();
                    let _ = task.set_state(TaskState::Scheduled, Self::now());
                    task.node = Some(name.clone());
                    task.error = None;
                    if self.commit(task.clone()).is_err() {
                        continue;
                    }
                    table.allocate(index, &req);
                    debug!("task placed task_id={id} node={name}");
                    // restarts in place carry over to the new node; the move itself is not one
                    let start = StartTask { id, spec: task.spec, restart_count: task.restart_count };
                    if self.nodes[index].starts.send(Job::Start(Box::new(start))).is_ok() {
                        if let Some(t) = self.tasks.get_mut(&id) {
                            t.op_on = Some(index);
                        }
                    }
                }
                Err(why) => {
                    let reason = why.to_string();
                    if task.error.as_deref() != Some(reason.as_str()) {
                        info!("task not placed task_id={id} reason={reason}");
                        task.error = Some(reason);
                        self.commit_quietly(task);
                    }
                }
            }
        }
    }

    fn on_observation(&mut self, obs: Observation) {
        let now = Self::now();
        match obs {
            Observation::Started { node, id, result } => self.on_started(node, id, result, now),
            Observation::Stopped { node, id, result } => self.on_stopped(node, id, result, now),
            Observation::StrayStopped { node, id, result } => {
                // stays in `stray_stops` until the node's next report: the one in hand still lists
                // the copy, and must not make the plan ask again
                let n = &self.nodes[node];
                match result {
                    Ok(_) | Err(LinkError::Refused { status: 404 | 409, .. }) => {
                        info!("stray copy stopped task_id={id} node={}", n.display_name())
                    }
                    Err(e) => warn!("stray copy not stopped task_id={id} node={} error={e}", n.display_name()),
                }
            }
            Observation::Polled { node, epoch, result } => self.on_polled(node, epoch, result, now),
        }
    }

    /// Marks a task's op as answered and returns a copy of it to work on; `None` when the answer
    /// comes from a node the task is no longer on (it was moved meanwhile: a copy there is a
    /// stray, found and stopped from that node's reports).
    fn settle(&mut self, id: TaskId, node: usize) -> Option<Task> {
        let epoch = self.epoch;
        let name = self.nodes[node].display_name().to_string();
        let t = self.tasks.get_mut(&id)?;
        if t.op_on == Some(node) {
            t.op_on = None;
        }
        if t.task.node.as_deref() != Some(name.as_str()) {
            debug!("late answer from a node the task left task_id={id} node={name}");
            return None;
        }
        t.settled_epoch = epoch;
        Some(t.task.clone())
    }

    fn retry_later(&mut self, id: TaskId, now: Timestamp) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.not_before = Timestamp(now.millis() + RETRY_AFTER_MS);
        }
    }

    fn on_started(&mut self, node: usize, id: TaskId, result: Result<Task, LinkError>, now: Timestamp) {
        let Some(task) = self.settle(id, node) else { return };
        let node_name = self.nodes[node].display_name().to_string();
        match result {
            Ok(seen) => {
                if let Some(merged) = reconcile::merge_report(&task, &seen, now) {
                    info!("task started task_id={id} node={node_name} state={}", merged.state);
                    self.commit_quietly(merged);
                }
            }
            // never reached the worker, or its engine is down: place it again (elsewhere if possible)
            Err(e @ (LinkError::Unreachable(_) | LinkError::Refused { status: 503, .. })) => {
                warn!("task start not delivered task_id={id} node={node_name} error={e}");
                if let LinkError::Refused { .. } = e {
                    self.nodes[node].engine_reachable = Some(false);
                } else {
                    self.nodes[node].unreachable = true;
                }
                self.requeue(task, format!("could not start on {node_name}: {e}"), now);
            }
            Err(LinkError::Refused { status, message }) if (400..500).contains(&status) => {
                let mut task = task;
                task.error = Some(format!("{node_name} refused the task: {message}"));
                let _ = task.set_state(TaskState::Failed, now);
                self.commit_quietly(task);
            }
            Err(e) => {
                // it may have started: the node's next report says
                warn!("task start unanswered task_id={id} node={node_name} error={e}");
                self.retry_later(id, now);
            }
        }
    }

    fn requeue(&mut self, mut task: Task, reason: String, now: Timestamp) {
        if let Some(t) = self.tasks.get_mut(&task.id) {
            // an answer still awaited from the old node no longer holds the task back
            t.op_on = None;
        }
        if task.state == TaskState::Scheduled || task.state == TaskState::Running {
            let _ = task.set_state(TaskState::Pending, now);
            task.node = None;
            task.container_id = None;
            task.ports.clear();
            task.error = Some(reason);
            self.commit_quietly(task);
        }
    }

    fn on_stopped(&mut self, node: usize, id: TaskId, result: Result<Task, LinkError>, now: Timestamp) {
        let Some(task) = self.settle(id, node) else { return };
        let node_name = self.nodes[node].display_name().to_string();
        match result {
            Ok(seen) => {
                if let Some(merged) = reconcile::merge_report(&task, &seen, now) {
                    info!("task stopped task_id={id} node={node_name} state={}", merged.state);
                    self.commit_quietly(merged);
                }
            }
            Err(LinkError::Refused { status: 404, .. }) => {
                let mut task = task;
                let _ = task.set_state(TaskState::Stopped, now);
                self.commit_quietly(task);
            }
            Err(e) => {
                // finished meanwhile (409) or not done: the node's next report settles it
                debug!("task stop not done task_id={id} node={node_name} error={e}");
                self.retry_later(id, now);
            }
        }
    }

    fn on_polled(&mut self, index: usize, epoch: u64, result: Result<Poll, LinkError>, now: Timestamp) {
        let clash = match &result {
            Ok(Poll { health, .. }) => self
                .nodes
                .iter()
                .enumerate()
                .any(|(i, n)| i != index && n.name.as_deref() == Some(health.name.as_str())),
            Err(_) => false,
        };
        let node = &mut self.nodes[index];
        node.poll_in_flight = false;
        match result {
            Ok(_) if clash => {
                if !node.unreachable {
                    error!("two workers report the same name address={}", node.address);
                }
                node.unreachable = true;
                node.ever_failed = true;
                node.error = Some("another worker already uses this name; give each worker its own -n".into());
            }
            Ok(Poll { health, tasks, stats }) => {
                node.stats = stats;
                if node.unreachable || node.last_contact.is_none() {
                    info!("worker answers address={} name={}", node.address, health.name);
                }
                if node.name.as_deref() != Some(health.name.as_str()) {
                    let record = NodeRecord { address: node.address.clone(), name: Some(health.name.clone()) };
                    if let Err(e) = self.store.put_node(&record) {
                        error!("store write failed address={} error={}", record.address, error_chain(&e));
                    }
                }
                node.name = Some(health.name);
                node.last_contact = Some(now);
                node.heard = Some(std::time::Instant::now());
                node.unreachable = false;
                node.engine_reachable = Some(health.engine.reachable);
                node.error = health.engine.error.map(|e| format!("engine unreachable: {e}"));
                let report: HashMap<TaskId, Task> = tasks.into_iter().map(|t| (t.id, t)).collect();
                let known = &self.tasks;
                node.orphans
                    .retain(|id, _| report.get(id).is_some_and(|t| !t.is_terminal()) && !known.contains_key(id));
                node.report = Some(Report { epoch, complete: health.synced, tasks: report });
            }
            Err(e) => {
                if !node.unreachable {
                    warn!("worker not answering address={} error={e}", node.address);
                }
                node.unreachable = true;
                node.ever_failed = true;
                node.error = Some(e.to_string());
            }
        }
    }

    /// Runs the plan and applies its actions.
    fn reconcile(&mut self) {
        let now = Self::now();
        let actions = {
            let mut views: Vec<TaskView> = self
                .tasks
                .values()
                .map(|t| TaskView {
                    task: &t.task,
                    op_in_flight: t.op_on.is_some(),
                    settled_epoch: t.settled_epoch,
                    not_before: t.not_before,
                })
                .collect();
            // oldest first: placement order is submission order
            views.sort_by_key(|v| (v.task.created_at, v.task.id));
            let timeout = self.config.node_timeout;
            let nodes: Vec<NodeObs> = self
                .nodes
                .iter()
                .map(|n| NodeObs {
                    name: n.name.as_deref(),
                    reachable: !n.unreachable,
                    down: n.status(timeout) == NodeStatus::Down,
                    report: n.report.as_ref(),
                    stopping: &n.stray_stops,
                    orphans: &n.orphans,
                    silent_ms: n.silent().as_millis() as u64,
                })
                .collect();
            let config = PlanConfig { orphan_grace_ms: self.config.orphan_grace.as_millis() as u64 };
            reconcile::plan(&views, &nodes, now, &config)
        };
        // placements last and together: one node table serves them all
        let mut places = Vec::new();
        for action in actions {
            match action {
                Action::Place(id) => places.push(id),
                other => self.apply(other, now),
            }
        }
        if !places.is_empty() {
            self.place(&places);
        }
    }

    fn apply(&mut self, action: Action, now: Timestamp) {
        match action {
            Action::Update(task) => {
                if task.state != self.tasks.get(&task.id).map(|t| t.task.state).unwrap_or(task.state) {
                    info!(
                        "task changed task_id={} node={} state={}",
                        task.id,
                        task.node.as_deref().unwrap_or("-"),
                        task.state
                    );
                }
                self.commit_quietly(*task);
            }
            Action::Requeue { id, reason } => {
                if let Some(t) = self.tasks.get(&id) {
                    warn!("task lost by its node task_id={id} reason={reason}");
                    let task = t.task.clone();
                    self.requeue(task, reason, now);
                }
            }
            Action::Place(id) => self.place(&[id]),
            Action::MarkStopped(id) => {
                if let Some(t) = self.tasks.get(&id) {
                    let mut task = t.task.clone();
                    let _ = task.set_state(TaskState::Stopped, now);
                    self.commit_quietly(task);
                }
            }
            Action::StopStray { id, node } => {
                let Some(index) = self.node_index(&node) else { return };
                warn!("stopping a stray copy task_id={id} node={node}");
                if self.nodes[index].stops.send(Job::StopStray(id)).is_ok() {
                    self.nodes[index].stray_stops.insert(id);
                }
            }
            Action::Reclaim { node, seen } => {
                let Some(t) = self.tasks.get(&seen.id) else { return };
                if t.task.state != TaskState::Pending || t.op_on.is_some() {
                    return;
                }
                let mut task = t.task.clone();
                let _ = task.set_state(TaskState::Scheduled, now);
                task.node = Some(node.clone());
                task.error = None;
                let task = reconcile::merge_report(&task, &seen, now).unwrap_or(task);
                info!("task found running where it was task_id={} node={node}", seen.id);
                self.commit_quietly(task);
            }
            Action::NoteOrphan { node, id } => {
                if let Some(index) = self.node_index(&node) {
                    warn!("a container no task owns task_id={id} node={node}; stopped after the grace period");
                    self.nodes[index].orphans.insert(id, now);
                }
            }
            Action::SendStop { id, node } => {
                let Some(index) = self.node_index(&node) else { return };
                if self.nodes[index].stops.send(Job::Stop(id)).is_ok() {
                    if let Some(t) = self.tasks.get_mut(&id) {
                        t.op_on = Some(index);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The control loop driven by hand: fake workers, ticks sent by the test.
    use super::*;
    use crate::api::EngineStatus;
    use crate::store::{MemoryStore, NodeRecord};
    use std::sync::Mutex;
    use std::time::Instant;

    /// A worker in memory: runs whatever it is given, can be made unreachable.
    struct FakeWorker {
        name: String,
        address: String,
        tasks: Mutex<HashMap<TaskId, Task>>,
        reachable: Mutex<bool>,
        synced: Mutex<bool>,
        stops: Mutex<Vec<TaskId>>,
        capacity: Mutex<Resources>,
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
            })
        }

        fn check(&self) -> Result<(), LinkError> {
            if *self.reachable.lock().expect("lock") {
                Ok(())
            } else {
                Err(LinkError::Unreachable("connection refused".into()))
            }
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
            self.check()?;
            let mut t = Task::new(req.id, req.spec.clone(), Timestamp::now());
            t.state = TaskState::Running;
            t.node = Some(self.name.clone());
            t.container_id = Some(format!("c-{}", req.id.short()));
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
        fn tasks(&self) -> Result<Vec<Task>, LinkError> {
            self.check()?;
            Ok(self.tasks.lock().expect("lock").values().cloned().collect())
        }
        fn health(&self) -> Result<WorkerHealth, LinkError> {
            self.check()?;
            Ok(WorkerHealth {
                status: "ok".into(),
                name: self.name.clone(),
                version: "test".into(),
                engine: EngineStatus { reachable: true, version: None, api_version: None, error: None },
                synced: *self.synced.lock().expect("lock"),
                tasks: 0,
            })
        }
        fn stats(&self) -> Result<NodeStats, LinkError> {
            self.check()?;
            let capacity = *self.capacity.lock().expect("lock");
            Ok(NodeStats {
                node: self.name.clone(),
                sampled_at: Timestamp::now(),
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

    struct Rig {
        manager: Manager,
        ticks: Sender<Instant>,
        workers: Vec<Arc<FakeWorker>>,
    }

    fn rig(names: &[&str]) -> Rig {
        rig_with(names, SchedulerKind::RoundRobin, None)
    }

    /// A rig whose workers offer `memory_mb` each, if given.
    fn rig_with(names: &[&str], scheduler: SchedulerKind, memory_mb: Option<u64>) -> Rig {
        let workers: Vec<Arc<FakeWorker>> = names.iter().map(|n| FakeWorker::new(n)).collect();
        if let Some(mb) = memory_mb {
            for w in &workers {
                w.capacity.lock().expect("lock").memory_mb = mb;
            }
        }
        let links = workers.iter().map(|w| w.clone() as Arc<dyn WorkerLink>).collect();
        let (ticks, rx) = unbounded();
        let config = ManagerConfig {
            node_timeout: Duration::from_millis(300),
            orphan_grace: Duration::from_millis(200),
            scheduler,
            ..ManagerConfig::default()
        };
        let manager = spawn_with_ticks(config, Box::new(MemoryStore::new()), links, rx).expect("spawns");
        let rig = Rig { manager, ticks, workers };
        rig.until("every node up", |h| h.nodes().ok()?.iter().all(|n| n.status == NodeStatus::Up).then_some(()));
        rig
    }

    impl Rig {
        fn handle(&self) -> ManagerHandle {
            self.manager.handle()
        }

        /// Sends ticks until `check` says yes (each tick polls every worker once).
        fn until<T>(&self, what: &str, check: impl Fn(&ManagerHandle) -> Option<T>) -> T {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(v) = check(&self.handle()) {
                    return v;
                }
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                let _ = self.ticks.send(Instant::now());
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn submit(&self, name: &str) -> Task {
            let spec = TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"b"}}"#).as_bytes()).expect("valid");
            self.handle().submit(spec).expect("accepted")
        }

        fn submit_mb(&self, name: &str, memory_mb: u64) -> Task {
            let text = format!(r#"{{"name":"{name}","image":"b","memory_mb":{memory_mb}}}"#);
            let spec = TaskSpec::from_json(text.as_bytes()).expect("valid");
            self.handle().submit(spec).expect("accepted")
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
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_ne!(r.state_of(a.id).1, r.state_of(b.id).1, "round-robin over the two nodes");
    }

    #[test]
    fn a_task_that_fits_nowhere_waits_with_its_reason_and_runs_when_room_appears() {
        let r = rig_with(&["w1"], SchedulerKind::Epvm, Some(512));
        r.until("statistics", |h| h.nodes().ok()?[0].capacity);
        let big = r.submit_mb("big", 400);
        r.until("big running", |h| h.get(big.id).ok().filter(|t| t.state == TaskState::Running));
        let late = r.submit_mb("late", 300);
        assert_eq!(late.state, TaskState::Pending, "accepted all the same");
        assert_eq!(late.error.as_deref(), Some("no node fits: w1 memory 400/512 MB allocated, needs 300"));
        let nodes = r.handle().nodes().expect("nodes");
        assert_eq!(nodes[0].allocated.memory_mb, 400);
        r.handle().stop(big.id).expect("stop accepted");
        let placed = r.until("late running", |h| h.get(late.id).ok().filter(|t| t.state == TaskState::Running));
        assert_eq!((placed.node.as_deref(), placed.error), (Some("w1"), None));
    }

    #[test]
    fn epvm_sends_new_tasks_to_the_node_with_room() {
        let r = rig_with(&["w1", "w2"], SchedulerKind::Epvm, Some(512));
        r.until("statistics", |h| h.nodes().ok()?.iter().all(|n| n.capacity.is_some()).then_some(()));
        let fill = r.submit_mb("fill", 480);
        let filled = r.until("fill running", |h| h.get(fill.id).ok().filter(|t| t.state == TaskState::Running));
        for i in 0..3 {
            let t = r.submit_mb(&format!("small{i}"), 16);
            let t = r.until("running", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Running));
            assert_ne!(t.node, filled.node, "E-PVM avoids the filled node");
        }
    }

    #[test]
    fn a_restart_with_a_worker_briefly_away_moves_nothing_before_the_timeout() {
        // the store says: a task Running on w1, whose address is known
        let w1 = FakeWorker::new("w1");
        let w2 = FakeWorker::new("w2");
        let spec = TaskSpec::from_json(br#"{"name":"a","image":"b"}"#).expect("valid");
        let mut task = Task::new(TaskId::new_v4(), spec, Timestamp::now());
        task.state = TaskState::Running;
        task.node = Some("w1".into());
        w1.run_copy(&task);
        let mut store = MemoryStore::new();
        store.put_task(&task).expect("put");
        store.put_node(&NodeRecord { address: "w1:80".into(), name: Some("w1".into()) }).expect("put");
        store.put_node(&NodeRecord { address: "w2:80".into(), name: Some("w2".into()) }).expect("put");
        *w1.reachable.lock().expect("lock") = false;
        let (ticks, rx) = unbounded();
        let config = ManagerConfig { node_timeout: Duration::from_secs(3), ..ManagerConfig::default() };
        let links: Vec<Arc<dyn WorkerLink>> = vec![w1.clone(), w2.clone()];
        let m = spawn_with_ticks(config, Box::new(store), links, rx).expect("spawns");
        // several failed polls of w1, well within its timeout
        for _ in 0..5 {
            ticks.send(Instant::now()).expect("tick");
        }
        let h = m.handle();
        let deadline = Instant::now() + Duration::from_secs(2);
        while h.nodes().expect("nodes")[0].error.is_none() {
            assert!(Instant::now() < deadline, "w1 was never polled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = h.get(task.id).expect("known");
        assert_eq!((t.state, t.node.as_deref()), (TaskState::Running, Some("w1")), "not moved before the timeout");
        assert!(w2.tasks.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_start_that_never_arrived_is_placed_on_another_node() {
        let r = rig(&["w1", "w2"]);
        *r.workers[0].reachable.lock().expect("lock") = false;
        let t = r.submit("a");
        let (state, node) = r.until("the task to run elsewhere", |h| {
            let t = h.get(t.id).ok()?;
            (t.state == TaskState::Running).then_some((t.state, t.node))
        });
        assert_eq!((state, node.as_deref()), (TaskState::Running, Some("w2")));
    }

    #[test]
    fn a_copy_on_the_wrong_node_is_stopped_there() {
        let r = rig(&["w1", "w2"]);
        let t = r.submit("a");
        let placed = r.until("running", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Running));
        let other = if placed.node.as_deref() == Some("w1") { 1 } else { 0 };
        r.workers[other].run_copy(&placed);
        r.until("the stray to be stopped", |_| {
            r.workers[other].stops.lock().expect("lock").contains(&t.id).then_some(())
        });
        assert_eq!(r.state_of(t.id), (TaskState::Running, placed.node), "the real one is untouched");
    }

    #[test]
    fn a_container_no_task_owns_is_stopped_after_the_grace_period() {
        let r = rig(&["w1"]);
        let spec = TaskSpec::from_json(br#"{"name":"orphan","image":"b"}"#).expect("valid");
        let orphan = Task::new(TaskId::new_v4(), spec, Timestamp::now());
        let seen_at = Instant::now();
        r.workers[0].run_copy(&orphan);
        r.until("the orphan to be stopped", |_| {
            r.workers[0].stops.lock().expect("lock").contains(&orphan.id).then_some(())
        });
        assert!(seen_at.elapsed() >= Duration::from_millis(200), "not before the grace period");
        assert!(r.handle().get(orphan.id).is_err(), "not taken into the table");
    }

    #[test]
    fn tasks_missing_from_an_unsynced_worker_are_not_placed_again() {
        let r = rig(&["w1"]);
        let t = r.submit("a");
        r.until("running", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Running));
        // the worker restarts with nothing in its table and has not checked its containers yet
        *r.workers[0].synced.lock().expect("lock") = false;
        r.workers[0].tasks.lock().expect("lock").clear();
        for _ in 0..3 {
            let before = r.handle().nodes().expect("nodes")[0].last_contact;
            r.until("a new poll", |h| h.nodes().ok()?.first()?.last_contact.filter(|t| Some(*t) != before));
        }
        assert_eq!(r.state_of(t.id).0, TaskState::Running);
        assert!(r.workers[0].tasks.lock().expect("lock").is_empty(), "not started again");
        // once it has checked, a task it does not have is placed again
        *r.workers[0].synced.lock().expect("lock") = true;
        r.until("the task to be started again", |_| r.workers[0].tasks.lock().expect("lock").get(&t.id).map(|_| ()));
        r.until("running again", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Running));
    }

    #[test]
    fn a_stop_for_a_task_on_a_down_node_takes_effect() {
        let r = rig(&["w1"]);
        let t = r.submit("a");
        r.until("running", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Running));
        *r.workers[0].reachable.lock().expect("lock") = false;
        r.until("the node to be down", |h| (h.nodes().ok()?[0].status == NodeStatus::Down).then_some(()));
        let answer = r.handle().stop(t.id).expect("accepted");
        assert_eq!(answer.desired_state, DesiredState::Stopped);
        r.until("Stopped", |h| h.get(t.id).ok().filter(|t| t.state == TaskState::Stopped));
        // when the node returns, the copy it still runs is stopped
        *r.workers[0].reachable.lock().expect("lock") = true;
        r.until("the copy to be stopped", |_| r.workers[0].stops.lock().expect("lock").contains(&t.id).then_some(()));
    }
}
