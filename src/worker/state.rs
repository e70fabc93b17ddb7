//! The worker's control thread: its task table and its store, and the application of every
//! decision (from `decide`) to them. It hands engine work to the pools as `Op`s and learns the
//! outcome from `OpResult`s, engine events, health verdicts and stats samples.
//!
//! Must not call the engine, sleep or block: everything slow happens on other threads. A change
//! is answered to a caller only once it is in the store.

use super::handle::{Command, Reply};
use super::ops::{start_op, start_op_unsynced, Op, OpResult, Pools};
use super::watch::HealthResult;
use super::{WorkerConfig, WorkerError};
use crate::api::{EngineStatus, StartTask, WorkerHealth};
use crate::control::{answer, error_chain};
use crate::docker_cli::{ContainerInfo, DockerError};
use crate::logfmt::q;
use crate::stats::{CpuTicks, NodeStats};
use crate::store::{Store, StoreError};
use crate::task::{DesiredState, Task, TaskId, TaskState};
use crate::time::Timestamp;
use crossbeam_channel::Sender;
use log::{debug, error, info, warn};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

mod changes;
mod reach;
mod runs;
mod sync;

use super::retention::{self, Kept};

use sync::vanished;

/// How a task's error starts while its node's engine does not answer.
const ENGINE_AWAY: &str = "engine unreachable, state not confirmed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Waiting for its image on the pull lane (no container exists yet).
    Pull,
    Start,
    Stop,
    Remove,
    Inspect,
}

pub struct Entry {
    pub task: Task,
    pub op: Option<OpKind>,
    start_waiters: Vec<(Reply<(Task, bool)>, bool)>,
    stop_waiters: Vec<Reply<Task>>,
    /// A container may still exist for this task (to be removed once it is finished).
    pub container_present: bool,
    /// The epoch of the last op result that changed this entry; syncs older than it are ignored.
    changed_epoch: u64,
    /// The last op failed: follow-ups wait for the next tick instead of retrying at once.
    backoff: bool,
    /// Its container died while an op was under way; inspect it when the op is done.
    exit_seen: bool,
    /// Digest of the record as last written to the store.
    saved: Option<u64>,
    /// Digest of the record at its last version, and that version (`changes.rs`).
    versioned: Option<u64>,
    version: u64,
    /// A restart in place is due at this time (the container exited; the policy says again).
    pub restart_at: Option<Instant>,
    /// When the current run of the container began.
    run_started: Option<Instant>,
    /// Counts runs, so that health results of an earlier run are told apart.
    pub run: u64,
    /// The running health checker of the current run (dropping it stops the checker).
    checker: Option<Sender<()>>,
    /// Its image was pulled for the start under way (a second "no such image" is a failure).
    pulled: bool,
    /// Consecutive failed health checks in the current run.
    health_failures: u32,
    /// The container is being stopped because it failed its health checks.
    unhealthy: bool,
    /// A finished task's container is past the node's retention bound: remove it.
    release_container: bool,
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
            versioned: None,
            version: 0,
            restart_at: None,
            run_started: None,
            run: 0,
            checker: None,
            health_failures: 0,
            unhealthy: false,
            pulled: false,
            release_container: false,
        }
    }
}

pub struct State {
    config: WorkerConfig,
    store: Box<dyn Store>,
    pools: Pools,
    pub entries: HashMap<TaskId, Entry>,
    /// The versions of the records, for the changes feed.
    versions: changes::Versions,
    pub engine: EngineStatus,
    sync_in_flight: bool,
    epoch: u64,
    /// A sync has completed since start: the table holds every container of this node, so "not
    /// in the table" means "not here".
    pub synced: bool,
    /// Containers with this node's label that no task can own, and when each was first seen.
    suspects: HashMap<String, Instant>,
    /// A version question is out to the engine.
    version_asked: bool,
    /// Why the sync keeps failing, and how many times in a row, while it does.
    sync_failing: Option<(String, u32)>,
    /// Images being pulled, and the tasks whose start waits for each (one pull per image).
    pulls: HashMap<String, Vec<TaskId>>,
    /// Where the stats thread should measure the disk (the engine's data root, once known).
    disk_path: Sender<PathBuf>,
    last_cpu: Option<CpuTicks>,
    stats: Option<NodeStats>,
    /// Where health checkers send their verdicts.
    health: Sender<HealthResult>,
}

/// Moves a task to a new state; a move the table does not allow is a bug, logged with what it
/// was (and a failure in tests), and the task is left as it was.
pub(super) fn transition(task: &mut Task, to: TaskState, now: Timestamp) {
    let from = task.state;
    if let Err(e) = task.set_state(to, now) {
        error!("refused state change task_id={} from={from} to={to} error={e}", task.id, e = q(&e));
        debug_assert!(false, "refused state change of {}: {e}", task.id);
    }
}

impl State {
    pub fn new(
        config: WorkerConfig,
        store: Box<dyn Store>,
        pools: Pools,
        disk_path: Sender<PathBuf>,
        health: Sender<HealthResult>,
    ) -> Result<State, WorkerError> {
        let mut entries = HashMap::new();
        let mut versions = changes::Versions::new();
        for task in store.list_tasks().map_err(WorkerError::Store)? {
            let container_present = task.container_id.is_some();
            let saved = Some(record_digest(&task));
            let id = task.id;
            let mut entry = Entry::new(task, None, container_present, 0);
            (entry.saved, entry.versioned, entry.version) = (saved, saved, versions.bump());
            entries.insert(id, entry);
        }
        let engine = EngineStatus { reachable: false, version: None, api_version: None, error: None };
        Ok(State {
            config,
            store,
            pools,
            entries,
            versions,
            engine,
            sync_in_flight: false,
            epoch: 1,
            synced: false,
            suspects: HashMap::new(),
            pulls: HashMap::new(),
            sync_failing: None,
            version_asked: false,
            disk_path,
            last_cpu: None,
            stats: None,
            health,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn now(&self) -> Timestamp {
        self.config.clock.wall()
    }

    fn instant(&self) -> Instant {
        self.config.clock.now()
    }

    /// The first steps of the control thread: ask the engine who it is, carry on with what the
    /// store holds, and check the table against the engine.
    pub fn begin(&mut self) {
        self.ask_version();
        self.resume();
        self.request_sync();
    }

    /// Asks the engine who it is, unless a question is already out.
    fn ask_version(&mut self) {
        if !std::mem::replace(&mut self.version_asked, true) {
            self.pools.send(Op::Version);
        }
    }

    fn request_sync(&mut self) {
        if !self.sync_in_flight {
            self.sync_in_flight = true;
            self.pools.send(Op::Sync { epoch: self.epoch });
        }
    }

    /// Writes the entry's record if it changed since it was last written (nothing is written
    /// when nothing changes). A failed write is logged and tried again at the next change or
    /// tick; the caller decides whether the change may be acknowledged. A changed record gets
    /// a new version for the changes feed, written or not (it is what the table holds).
    fn persist(&mut self, id: &TaskId) -> Result<(), StoreError> {
        let Some(e) = self.entries.get_mut(id) else { return Ok(()) };
        let digest = record_digest(&e.task);
        if e.versioned != Some(digest) {
            (e.versioned, e.version) = (Some(digest), self.versions.bump());
        }
        if e.saved == Some(digest) {
            return Ok(());
        }
        match self.store.put_task(&e.task) {
            Ok(()) => {
                e.saved = Some(digest);
                Ok(())
            }
            Err(err) => {
                error!("store write failed task_id={id} error={}", q(&error_chain(&err)));
                Err(err)
            }
        }
    }

    /// `persist` where no caller waits for the answer: a failure is logged and retried.
    fn persist_quietly(&mut self, id: &TaskId) {
        if self.persist(id).is_err() {
            debug!("record kept in memory until the store takes it task_id={id}");
        }
    }

    pub fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { req, reply } => self.start(*req, reply),
            Command::Stop { id, reply } => self.stop(id, reply),
            Command::Get { id, reply } => {
                let r = self.entries.get(&id).map(|e| e.task.clone()).ok_or_else(|| self.missing(id));
                answer(&reply, r);
            }
            Command::List { reply } => {
                let mut tasks: Vec<Task> = self.entries.values().map(|e| e.task.clone()).collect();
                tasks.sort_by_key(|t| (t.created_at, t.id));
                answer(&reply, Ok(tasks));
            }
            Command::Changes { since, limit, reply } => answer(&reply, Ok(self.changes(since.as_ref(), limit))),
            Command::Health { reply } => {
                let tasks = self.unfinished();
                let status = if self.engine.reachable { "ok" } else { "degraded" };
                answer(
                    &reply,
                    Ok(WorkerHealth {
                        status: status.into(),
                        name: self.config.name.clone(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        engine: self.engine.clone(),
                        synced: self.synced,
                        sync_error: self.sync_failing.as_ref().map(|(why, _)| why.clone()),
                        tasks,
                    }),
                );
            }
            Command::Stats { reply } => {
                let tasks = self.unfinished();
                let stats = self.stats.clone().map(|s| NodeStats { tasks, ..s }).ok_or(WorkerError::NotReady);
                answer(&reply, stats);
            }
            Command::Shutdown => {}
        }
    }

    fn unfinished(&self) -> usize {
        self.entries.values().filter(|e| !e.task.is_terminal()).count()
    }

    fn start(&mut self, req: StartTask, reply: Reply<(Task, bool)>) {
        if let Some(entry) = self.entries.get_mut(&req.id) {
            if !entry.task.is_terminal() {
                if entry.op == Some(OpKind::Start) {
                    entry.start_waiters.push((reply, false));
                } else {
                    answer(&reply, Ok((entry.task.clone(), false)));
                }
                return;
            }
            if entry.op.is_some() || entry.container_present {
                // the old container of this task is still being removed; a new run waits for that
                answer(&reply, Err(WorkerError::CleaningUp(req.id)));
                return;
            }
        }
        let now = self.now();
        let mut task = Task::new(req.id, req.spec, now);
        task.node = Some(self.config.name.clone());
        task.restart_count = req.restart_count;
        (task.service, task.service_version) = (req.service, req.service_version);
        // "sent to a node": on the worker a new task starts as Scheduled
        transition(&mut task, TaskState::Scheduled, now);
        let id = task.id;
        let previous = self.entries.remove(&id);
        self.entries.insert(id, Entry::new(task, None, true, self.epoch));
        // recorded before anything is created, so that a crash leaves a record to resume from
        if let Err(e) = self.persist(&id) {
            self.entries.remove(&id);
            if let Some(previous) = previous {
                self.entries.insert(id, previous);
            }
            answer(&reply, Err(WorkerError::Store(e)));
            return;
        }
        let Some(entry) = self.entries.get_mut(&id) else { return };
        info!("starting task task_id={id} name={} image={}", entry.task.name, entry.task.spec.image);
        entry.op = Some(OpKind::Start);
        entry.start_waiters.push((reply, true));
        let op = if self.synced { start_op } else { start_op_unsynced }(&entry.task, &self.config.name);
        self.pools.send(op);
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
            answer(&reply, Err(missing));
            return;
        };
        if entry.task.is_terminal() {
            let state = entry.task.state;
            answer(&reply, Err(WorkerError::AlreadyFinished { id, state }));
            return;
        }
        entry.task.desired_state = DesiredState::Stopped;
        entry.stop_waiters.push(reply);
        if entry.op == Some(OpKind::Pull) {
            // nothing was created yet: the stop is done at once, and the pull goes on alone
            self.stop_before_create(id);
            return;
        }
        if entry.op.is_none() {
            entry.op = Some(OpKind::Stop);
            let container_id = entry.task.container_id.clone();
            info!("stopping task task_id={id}");
            self.pools.send(Op::Stop { id, container_id });
        }
        // otherwise the stop follows when the op in flight ends
        self.persist_quietly(&id);
    }

    pub fn on_result(&mut self, res: OpResult) {
        self.epoch += 1;
        let now = self.now();
        match res {
            OpResult::Started { id, result } => self.on_started(id, result, now),
            OpResult::Stopped { id, result } => self.on_stopped(id, result, now),
            OpResult::Removed { id, result } => self.on_removed(id, result),
            OpResult::Pulled { image, result } => self.on_pulled(image, result, now),
            OpResult::Swept { container_id, result } => {
                self.note_engine(result.as_ref().err());
                match result {
                    Ok(()) => {
                        self.suspects.remove(&container_id);
                    }
                    Err(e) => {
                        warn!("removal of an orphan failed container={container_id} error={}", q(&error_chain(&e)))
                    }
                }
            }
            OpResult::Inspected { id, result } => self.on_inspected(id, result, now),
            OpResult::Synced { epoch, result } => {
                self.sync_in_flight = false;
                self.note_engine(result.as_ref().err());
                match result {
                    Ok(seen) => {
                        if let Some((why, failures)) = self.sync_failing.take() {
                            info!(
                                "container sync works again node={} failures={failures} last_error={why}",
                                self.config.name,
                                why = q(&why)
                            );
                        }
                        self.on_synced(epoch, seen, now)
                    }
                    Err(e) => {
                        // said when it starts and when it ends, not at every tick
                        let why = error_chain(&e);
                        match &mut self.sync_failing {
                            Some((last, failures)) => {
                                *failures += 1;
                                *last = why;
                            }
                            None => {
                                warn!("container sync failing node={} error={why}", self.config.name, why = q(&why));
                                self.sync_failing = Some((why, 1));
                            }
                        }
                    }
                }
            }
            OpResult::Version { result } => {
                self.version_asked = false;
                self.on_version(result);
            }
        }
    }

    fn on_removed(&mut self, id: TaskId, result: Result<(), DockerError>) {
        self.note_engine(result.as_ref().err());
        let epoch = self.epoch;
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.op = None;
        entry.changed_epoch = epoch;
        match result {
            Ok(()) => entry.container_present = false,
            Err(e) => {
                entry.backoff = true;
                warn!("container removal failed task_id={id} error={}", q(&error_chain(&e)));
            }
        }
        self.after_op(id);
    }

    fn on_inspected(&mut self, id: TaskId, result: Result<ContainerInfo, DockerError>, now: Timestamp) {
        self.note_engine(result.as_ref().err());
        let epoch = self.epoch;
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.op = None;
        entry.changed_epoch = epoch;
        // no run followed yet (adopted, or after a restart of this worker), or a health kill
        // that did not take: (re)start following it
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
                debug!("inspect failed task_id={id} error={}", q(&error_chain(&e)))
            }
        }
        self.after_op(id);
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
                transition(&mut entry.task, TaskState::Stopped, now);
                info!("task stopped task_id={id}");
                let task = entry.task.clone();
                let waiters = std::mem::take(&mut entry.stop_waiters);
                // committed before it is acknowledged
                let committed = self.persist(&id);
                for w in waiters {
                    let reply = match &committed {
                        Ok(()) => Ok(task.clone()),
                        Err(e) => Err(WorkerError::Store(store_error_copy(e))),
                    };
                    answer(&w, reply);
                }
            }
            Err(e) => {
                let why = error_chain(&e);
                warn!("stop failed task_id={id} error={why}", why = q(&why));
                entry.backoff = true;
                entry.task.error = Some(format!("stop failed: {why}"));
                // not reached: nothing happened; cut off mid-way: it may have; else the engine said no
                let reply = |why: &str| match &e {
                    DockerError::Unreachable { .. } | DockerError::UnsupportedEngine(_) => {
                        WorkerError::EngineUnreachable(why.to_string())
                    }
                    DockerError::Io(_) | DockerError::Protocol(_) => WorkerError::OutcomeUnknown(why.to_string()),
                    DockerError::Api { .. } => WorkerError::StopRefused(why.to_string()),
                };
                for w in entry.stop_waiters.drain(..) {
                    answer(&w, Err(reply(&why)));
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
        self.persist_quietly(&id);
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
            self.pools.send(Op::Stop { id, container_id });
        } else if entry.exit_seen && entry.task.state == TaskState::Running {
            // its container died while another op was under way
            entry.exit_seen = false;
            if let Some(container_id) = entry.task.container_id.clone() {
                entry.op = Some(OpKind::Inspect);
                self.pools.send(Op::Inspect { id, container_id });
            }
        } else if entry.task.state == TaskState::Scheduled {
            // a start whose outcome was unknown (or cut off by a restart): make it again
            entry.op = Some(OpKind::Start);
            let op = start_op(&entry.task, &self.config.name);
            self.pools.send(op);
        } else if entry.task.is_terminal() {
            for w in entry.stop_waiters.drain(..) {
                let state = entry.task.state;
                answer(&w, Err(WorkerError::AlreadyFinished { id, state }));
            }
            // Completed and Failed tasks keep their container for their output, within the
            // node's retention bound (`on_tick`); a user's stop gives it up at once
            let user_stopped =
                entry.task.state == TaskState::Stopped || entry.task.desired_state == DesiredState::Stopped;
            if entry.container_present && (user_stopped || entry.release_container) {
                if let Some(cid) = entry.task.container_id.clone() {
                    entry.op = Some(OpKind::Remove);
                    self.pools.send(Op::Remove { id, container_id: cid });
                } else {
                    entry.container_present = false;
                }
            }
        }
    }

    pub fn on_tick(&mut self) {
        if !self.engine.reachable {
            self.ask_version();
        }
        self.request_sync();
        // retry what failed since the last tick: follow-ups and writes the store refused
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            if let Some(e) = self.entries.get_mut(&id) {
                e.backoff = false;
            }
            self.persist_quietly(&id);
            self.follow_up(id);
        }
        let now = self.now();
        self.apply_retention(now);
        // forget finished tasks once the manager has had ample time to see them
        let keep = self.config.keep_finished.as_millis() as u64;
        let mut finished: Vec<(Timestamp, TaskId)> = self
            .entries
            .values()
            .filter(|e| e.task.is_terminal() && e.op.is_none() && !e.container_present)
            .map(|e| (e.task.finished_at.unwrap_or(now), e.task.id))
            .collect();
        finished.sort();
        let over = finished.len().saturating_sub(self.config.keep_finished_count);
        let expired: Vec<TaskId> = finished
            .iter()
            .enumerate()
            .filter(|(i, (at, _))| *i < over || now.since(*at) > keep)
            .map(|(_, (_, id))| *id)
            .collect();
        for id in expired {
            match self.store.delete_task(&id) {
                Ok(_) => {
                    self.forget(&id);
                }
                Err(e) => error!("store delete failed task_id={id} error={}", q(&error_chain(&e))),
            }
        }
    }
}

impl State {
    /// Marks the finished tasks whose container is past the retention bound, and removes them.
    fn apply_retention(&mut self, now: Timestamp) {
        let kept: Vec<Kept> = self
            .entries
            .values()
            .filter(|e| e.task.is_terminal() && e.container_present && !e.release_container)
            .map(|e| Kept {
                id: e.task.id,
                finished_at: e.task.finished_at.unwrap_or(now),
                stopped: e.task.state == TaskState::Stopped || e.task.desired_state == DesiredState::Stopped,
            })
            .collect();
        for id in retention::release(&kept, self.config.retention, now) {
            if let Some(e) = self.entries.get_mut(&id) {
                e.release_container = true;
            }
            self.follow_up(id);
        }
    }
}

/// A store error for each waiter of the same failed write (the original goes to the log).
fn store_error_copy(e: &StoreError) -> StoreError {
    StoreError::Io(error_chain(e).into())
}

/// A digest of a record, to tell whether it changed since it was written.
fn record_digest(task: &Task) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(task).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
