//! The control thread's state and its loop: the task table with the manager's bookkeeping, the
//! nodes, the store and the scheduler; the commands of the handle; committing records; and
//! placement. What it does with the dispatchers' answers, the polls and the plan's actions is in
//! `apply.rs`, on the same `State`.
//!
//! Must not block: every call to a worker goes to a node's queue (`node.rs`), and its answer comes
//! back as an observation. Must not read the system's time: it reads `ManagerConfig::clock`.
//! A change is kept in the table, and told to a caller, only once the store has it.

use super::join::{self, Join, Known};
use super::node::{Job, Node, Observation};
use super::{Command, ManagerConfig, ManagerError};
use crate::api::{DryRun, NodeInfo, NodeStatus, NodeVerdict, StartTask};
use crate::clock::Clock;
use crate::control::{answer, error_chain, survive};
use crate::events::{EventLog, Subject, DEFAULT_CAPACITY};
use crate::logfmt::q;
use crate::sched::{self, NodeTable, Request, Scheduler};
use crate::store::{NodeRecord, Store};
use crate::task::{DesiredState, Task, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use log::{debug, error, info};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// The manager's own bookkeeping next to each task record.
pub(super) struct Tracked {
    /// Shared with the published view (`view.rs`): a commit replaces it, nothing mutates it.
    pub(super) task: Arc<Task>,
    /// The node a start or stop for it is under way on; its answer is awaited.
    pub(super) op_on: Option<usize>,
    pub(super) settled_epoch: u64,
    pub(super) not_before: Timestamp,
    /// It waits to be placed again because its node was lost (not because it is new).
    pub(super) lost_node: bool,
}

impl Tracked {
    fn new(task: Arc<Task>) -> Tracked {
        Tracked { task, op_on: None, settled_epoch: 0, not_before: Timestamp(0), lost_node: false }
    }
}

/// The ids of the tasks forgotten last, at most `FORGOTTEN_KEPT`, oldest out first.
#[derive(Default)]
pub(super) struct Forgotten {
    pub(super) set: HashSet<TaskId>,
    order: std::collections::VecDeque<TaskId>,
}

const FORGOTTEN_KEPT: usize = 10_000;

impl Forgotten {
    fn insert(&mut self, id: TaskId) {
        if self.set.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > FORGOTTEN_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Back-off after a failed call about a task.
pub(super) const RETRY_AFTER_MS: u64 = 1000;

pub(super) struct State {
    pub(super) config: ManagerConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) store: Box<dyn Store>,
    pub(super) scheduler: Box<dyn Scheduler>,
    pub(super) nodes: Vec<Node>,
    pub(super) tasks: HashMap<TaskId, Tracked>,
    /// Services by name (`services.rs`).
    pub(super) services: std::collections::BTreeMap<String, crate::service::Service>,
    /// Counts events; tells reports requested before an answer from those requested after.
    pub(super) epoch: u64,
    /// Nodes up at the last plan, and, after every node was down and one came back, until when
    /// tasks that lost their node wait for the others to report (see `reconcile`).
    pub(super) nodes_up_last: usize,
    pub(super) all_down: bool,
    /// The tasks pruned lately, never to be adopted again (bounded).
    pub(super) forgotten: Forgotten,
    /// The epoch and the instant a settling began, and when it ends at the latest.
    pub(super) settle: Option<(u64, Instant)>,
    /// The cluster's recent history (`GET /v1/events`).
    pub(super) events: EventLog,
    /// Each node's status as the history last told it, to tell when it changes.
    node_seen: Vec<NodeStatus>,
    /// What reads are served from (`view.rs`).
    pub(super) view: Arc<super::view::View>,
    /// Loop passes since the node list and health were last published.
    pub(super) unpublished: u32,
    /// More commands wait behind the one being answered (a burst of submits).
    in_burst: bool,
    /// The poll just handled brought nothing the plan would see differently: no plan runs after
    /// it (the tick's does, once per poll interval, for time and statistics).
    pub(super) quiet_poll: bool,
    /// When the loop last took a message: a gap far beyond the poll interval is a stall of
    /// the manager itself.
    last_pass: Option<Instant>,
    /// The tasks submitted during the burst under way, not placed yet, oldest first.
    burst_submits: Vec<TaskId>,
    /// Drains' moves under way, by task (`drain.rs`).
    pub(super) moves: HashMap<TaskId, super::drain::Move>,
    /// Tasks a drain could not move lately, by task.
    pub(super) stuck: HashMap<TaskId, super::drain::Stuck>,
    /// The ingress's control-thread side, when services are published (`publish.rs`).
    pub(super) publisher: Option<super::publish::Publisher>,
    /// Kept so that the observation channel never disconnects (see `spawn_with_ticks`).
    _observations: Sender<Observation>,
}

/// Moves a task whose move the caller has checked the table allows. A refusal is a bug in that
/// check: it is logged with the move, the change is not made (the caller commits nothing), and
/// debug builds (tests) fail on it.
pub(super) fn move_task(task: &mut Task, to: TaskState, now: Timestamp) -> bool {
    match task.set_state(to, now) {
        Ok(()) => true,
        Err(e) => {
            error!("state change refused task_id={} from={} to={} error={e}", task.id, e.from, e.to, e = q(&e));
            debug_assert!(false, "state change refused task_id={}: {e}", task.id);
            false
        }
    }
}

impl State {
    pub(super) fn new(
        config: ManagerConfig,
        mut store: Box<dyn Store>,
        mut nodes: Vec<Node>,
        observations: Sender<Observation>,
        view: Arc<super::view::View>,
    ) -> Result<State, ManagerError> {
        // the names workers reported before a restart, so tasks map to their nodes at once
        let known = store.list_nodes().map_err(ManagerError::Store)?;
        for node in &mut nodes {
            match known.iter().find(|k| k.address == node.address) {
                Some(record) => {
                    node.name = record.name.clone();
                    node.draining = record.draining;
                }
                None => store
                    .put_node(&NodeRecord { address: node.address.clone(), name: None, draining: false })
                    .map_err(ManagerError::Store)?,
            }
        }
        let mut tasks = HashMap::new();
        for task in store.list_tasks().map_err(ManagerError::Store)? {
            let task = Arc::new(task);
            view.put(&task);
            tasks.insert(task.id, Tracked::new(task));
        }
        let services =
            store.list_services().map_err(ManagerError::Store)?.into_iter().map(|s| (s.name.clone(), s)).collect();
        let scheduler = config.scheduler.build();
        let clock = config.clock.clone();
        let node_seen = vec![NodeStatus::Unknown; nodes.len()];
        // the history of earlier runs, with a persisted store
        let events = EventLog::restore(DEFAULT_CAPACITY, store.list_events().map_err(ManagerError::Store)?);
        let publisher = match config.publish.clone() {
            Some(p) => Some(super::publish::Publisher::spawn(p, observations.clone()).map_err(ManagerError::Spawn)?),
            None => None,
        };
        Ok(State {
            config,
            clock,
            store,
            scheduler,
            nodes,
            tasks,
            services,
            epoch: 1,
            nodes_up_last: 0,
            all_down: false,
            forgotten: Forgotten::default(),
            settle: None,
            events,
            node_seen,
            view,
            unpublished: 0,
            in_burst: false,
            quiet_poll: false,
            last_pass: None,
            burst_submits: Vec::new(),
            moves: HashMap::new(),
            stuck: HashMap::new(),
            publisher,
            _observations: observations,
        })
    }

    pub(super) fn run(&mut self, cmd_rx: Receiver<Command>, obs_rx: Receiver<Observation>, ticker: Receiver<Instant>) {
        self.poll_all();
        // passes whose plan was left for the end of a burst of commands
        let mut deferred = 0;
        loop {
            let mut command = false;
            select! {
                recv(cmd_rx) -> cmd => {
                    self.forgive_stall();
                    match cmd {
                        Ok(Command::Shutdown) | Err(_) => break,
                        // a read changes nothing: answered, and no plan runs after it, unless a burst
                        // it ends left one to run
                        Ok(cmd) if cmd.is_read() => {
                            survive("a command", || self.on_command(cmd));
                            if cmd_rx.is_empty() && deferred > 0 {
                                deferred = 0;
                                self.after_changes(&cmd_rx, &obs_rx);
                            } else if self.unpublished > 0 && cmd_rx.is_empty() && obs_rx.is_empty() {
                                // a publish the pass before left for later (this read was waiting)
                                self.publish();
                            }
                            continue;
                        }
                        Ok(cmd) => {
                            command = true;
                            self.in_burst = !cmd_rx.is_empty();
                            survive("a command", || self.on_command(cmd));
                        }
                    }
                }
                recv(obs_rx) -> obs => {
                    self.forgive_stall();
                    if let Ok(obs) = obs { survive("an observation", || self.on_observation(obs)) }
                }
                recv(ticker) -> _ => {
                    self.forgive_stall();
                    self.poll_all();
                    survive("pruning", || self.prune_finished());
                }
            }
            self.epoch += 1;
            // A poll that brought nothing new costs no plan: with 10,000 tasks, a pass over
            // every task for each worker's every poll was most of the loop's work at rest.
            if std::mem::take(&mut self.quiet_poll) {
                continue;
            }
            // Through a burst of commands (100 submits at once), the plan (a pass over every
            // task) runs once the burst is in, not after each: the last submit then waits for
            // 99 commits, not for 99 plans. At most 32 commands go by without one.
            if command && !cmd_rx.is_empty() && deferred < 32 {
                deferred += 1;
                continue;
            }
            deferred = 0;
            self.after_changes(&cmd_rx, &obs_rx);
        }
        info!("manager control loop stopped");
    }

    /// A loop that took no message for much longer than the poll interval (whose ticker sends
    /// one every interval) was itself stopped or starved: the workers' silence over that time
    /// is the manager's, so it is forgiven, and nodes are judged by the polls that follow
    /// (a SIGSTOP of the manager for 30 s used to move tasks as soon as it went on).
    fn forgive_stall(&mut self) {
        let now = self.clock.now();
        let Some(last) = self.last_pass.replace(now) else { return };
        let gap = now.saturating_duration_since(last);
        let interval = self.config.poll_interval;
        if !self.config.forgive_stalls || gap <= (interval * 2).max(std::time::Duration::from_secs(1)) {
            return;
        }
        let credit = gap - interval;
        log::warn!(
            "the manager's loop stalled; the workers' silence meanwhile is forgiven stalled_ms={}",
            gap.as_millis()
        );
        for node in &mut self.nodes {
            node.contact.heard = node.contact.heard.map(|h| h + credit);
            node.contact.since += credit;
        }
    }

    /// What follows a change: the plan (placements included), the drains, the history of the
    /// nodes, and publishing for reads.
    fn after_changes(&mut self, cmd_rx: &Receiver<Command>, obs_rx: &Receiver<Observation>) {
        crate::metrics::manager().reconcile_pass(|| survive("the plan", || self.reconcile()));
        // the plan placed what a burst submitted
        self.burst_submits.clear();
        survive("the drains", || self.drain_step());
        survive("the routes", || self.offer_routes());
        self.note_node_changes();
        self.note_availability_changes();
        // the node list costs a pass over the tasks: published once the loop has caught up with
        // its input, and at least every 64 passes through a burst
        self.unpublished += 1;
        if (cmd_rx.is_empty() && obs_rx.is_empty()) || self.unpublished >= 64 {
            self.publish();
        }
    }

    /// Forgets the longest-finished tasks beyond `keep_finished`, so that neither the table nor
    /// a list grows with every task ever run.
    fn prune_finished(&mut self) {
        let mut finished: Vec<(Timestamp, TaskId)> = self
            .tasks
            .values()
            .filter(|t| t.task.is_terminal() && t.op_on.is_none())
            .map(|t| (t.task.finished_at.unwrap_or(t.task.created_at), t.task.id))
            .collect();
        if finished.len() <= self.config.keep_finished {
            return;
        }
        finished.sort();
        let extra = finished.len() - self.config.keep_finished;
        for (_, id) in finished.into_iter().take(extra) {
            if let Err(e) = self.store.delete_task(&id) {
                error!("store delete failed task_id={id} error={}", q(&error_chain(&e)));
                return; // tried again at the next tick
            }
            self.tasks.remove(&id);
            self.view.remove(&id);
            self.forgotten.insert(id);
        }
        debug!("finished tasks forgotten count={extra}");
    }

    /// Adds an event to the history and, with a persisted store, keeps it there (bounded). A
    /// failed write loses the event from the next run's history, nothing else: it is logged.
    #[allow(clippy::too_many_arguments, reason = "the fields of `EventLog::push`, passed on as they are")]
    pub(super) fn note_event(
        &mut self,
        at: Timestamp,
        subject: Subject,
        task: Option<TaskId>,
        node: Option<String>,
        from: Option<String>,
        to: String,
        reason: String,
    ) {
        let event = self.events.push(at, subject, task, node, from, to, reason).clone();
        if let Err(e) = self.store.put_event(&event, DEFAULT_CAPACITY as u64) {
            error!("store write of an event failed seq={} error={}", event.seq, q(&error_chain(&e)));
        }
    }

    /// Adds a service's event to the history, kept as `note_event` keeps the others.
    pub(super) fn note_service_event(
        &mut self,
        at: Timestamp,
        service: &str,
        from: Option<String>,
        to: String,
        reason: String,
    ) {
        let event = self.events.push_service(at, service.to_string(), from, to, reason).clone();
        if let Err(e) = self.store.put_event(&event, DEFAULT_CAPACITY as u64) {
            error!("store write of an event failed seq={} error={}", event.seq, q(&error_chain(&e)));
        }
    }

    /// Records in the history each node whose status changed since it was last told.
    fn note_node_changes(&mut self) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            if self.nodes[i].removed {
                continue;
            }
            let status = self.status_of(&self.nodes[i]);
            let before = self.node_seen.get(i).copied().unwrap_or(NodeStatus::Unknown);
            if status == before {
                continue;
            }
            if let Some(seen) = self.node_seen.get_mut(i) {
                *seen = status;
            }
            let node = &self.nodes[i];
            let reason = match status {
                NodeStatus::Up => format!("answering at {}", node.address),
                NodeStatus::Down => node.error.clone().unwrap_or_else(|| "silent past the node timeout".into()),
                NodeStatus::Unknown => "not heard from yet".into(),
            };
            let from = (before != NodeStatus::Unknown).then(|| before.as_str().to_string());
            let name = node.display_name().to_string();
            self.note_event(now, Subject::Node, None, Some(name), from, status.as_str().into(), reason);
        }
    }

    /// Wall-clock time, for records.
    pub(super) fn now(&self) -> Timestamp {
        self.clock.wall()
    }

    pub(super) fn status_of(&self, node: &Node) -> NodeStatus {
        node.contact.status(self.config.node_timeout, self.clock.now())
    }

    fn poll_all(&mut self) {
        let epoch = self.epoch;
        for node in &mut self.nodes {
            if node.poll_in_flight || node.removed {
                continue;
            }
            match node.polls.try_send((epoch, node.cursor.clone())) {
                Ok(()) => node.poll_in_flight = true,
                Err(TrySendError::Full(_)) => node.poll_in_flight = true,
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    /// Writes a task's record, then keeps it in the table. On a store failure nothing changes.
    pub(super) fn commit(&mut self, mut task: Task) -> Result<(), ManagerError> {
        let old = self.tasks.get(&task.id).map(|t| &*t.task);
        if old == Some(&task) {
            return Ok(()); // nothing changed: nothing written
        }
        let change = task.change_since(old);
        let restarts = old.map_or(0, |o| task.restart_count.saturating_sub(o.restart_count));
        if let Some((from, reason)) = &change {
            task.record(*from, reason.clone(), self.now());
        }
        self.store.put_task(&task).map_err(|e| {
            error!("store write failed task_id={} error={}", task.id, q(&error_chain(&e)));
            ManagerError::Store(e)
        })?;
        crate::metrics::manager().restarted(restarts);
        if let Some((from, reason)) = change {
            let (at, to, node) = (self.now(), task.state.to_string(), task.node.clone());
            self.note_event(at, Subject::Task, Some(task.id), node, from.map(|f| f.to_string()), to, reason);
        }
        let task = Arc::new(task);
        self.view.put(&task);
        match self.tasks.get_mut(&task.id) {
            Some(t) => {
                if task.state != TaskState::Pending {
                    t.lost_node = false;
                }
                t.task = task
            }
            None => {
                self.tasks.insert(task.id, Tracked::new(task));
            }
        }
        Ok(())
    }

    /// `commit` for changes the control loop makes on its own: a failure is logged there, nobody
    /// is told of the change, and a later plan tries again from what the workers report.
    pub(super) fn commit_quietly(&mut self, task: Task) {
        if self.commit(task).is_err() {
            debug!("change left for a later plan");
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit { spec, reply } => answer(&reply, self.submit(spec)),
            Command::DryRun { spec, reply } => answer(&reply, Ok(self.dry_run(&spec))),
            Command::Events { query, reply } => answer(&reply, Ok(self.events.query(&query))),
            Command::Join { name, address, reply } => {
                let done = self.join(name, address);
                self.publish();
                answer(&reply, done)
            }

            Command::Stop { id, reply } => answer(&reply, self.stop(id)),

            // these change what `GET /v1/nodes` shows: published before the answer, so that a
            // read right after it sees the change
            Command::Drain { name, reply } => {
                let done = self.drain(&name).map(|i| self.node_info(i));
                self.publish();
                answer(&reply, done)
            }
            Command::Activate { name, reply } => {
                let done = self.activate(&name).map(|i| self.node_info(i));
                self.publish();
                answer(&reply, done)
            }
            Command::RemoveNode { name, reply } => {
                let done = self.remove_node(&name);
                self.publish();
                answer(&reply, done)
            }

            Command::Service(cmd) => self.on_service_command(cmd),
            Command::Shutdown => {}
        }
    }

    fn submit(&mut self, spec: TaskSpec) -> Result<Task, ManagerError> {
        let task = Task::new(TaskId::new_v4(), spec, self.now());
        let id = task.id;
        self.commit(task)?;
        info!("task accepted task_id={id}");
        // placed now, so that the answer says where (or why nowhere); within a burst it is
        // answered Pending, and the submit that ends the burst places them all, oldest first, on
        // one table (or the plan after the burst does)
        self.burst_submits.push(id);
        if !self.in_burst {
            let ids = std::mem::take(&mut self.burst_submits);
            self.place(&ids);
        }
        Ok(Task::clone(&self.tasks[&id].task))
    }

    /// A worker joins: a new node, one known already, or a down node taken over by its name at
    /// a new address (`join::decide`). Answered once the node is in the store.
    fn join(&mut self, name: String, address: String) -> Result<NodeInfo, ManagerError> {
        let statuses: Vec<NodeStatus> = self.nodes.iter().map(|n| self.status_of(n)).collect();
        let known: Vec<Known> = self
            .nodes
            .iter()
            .zip(&statuses)
            .map(|(n, s)| match n.removed {
                // a removed node matches nothing: its index stays taken
                true => Known { name: None, address: "", status: NodeStatus::Down },
                false => Known { name: n.name.as_deref(), address: &n.address, status: *s },
            })
            .collect();
        let decision = join::decide(&known, &name, &address);
        let index = match decision {
            Join::Conflict(why) => return Err(ManagerError::JoinRefused(why)),
            Join::Known(i) => i,
            Join::Named(_) | Join::TakeOver(_) | Join::New => {
                let draining = match decision {
                    Join::Named(i) | Join::TakeOver(i) => self.nodes[i].draining,
                    _ => false,
                };
                self.store
                    .put_node(&NodeRecord { address: address.clone(), name: Some(name.clone()), draining })
                    .map_err(ManagerError::Store)?;
                if let Join::TakeOver(i) = decision {
                    // the old address is no longer this node's: a restart must not dial it
                    let old = self.nodes[i].address.clone();
                    if old != address {
                        if let Err(e) = self.store.delete_node(&old) {
                            error!("store delete failed address={} error={}", q(&old), q(&error_chain(&e)));
                        }
                    }
                }
                let i = match decision {
                    Join::Named(i) => i,
                    _ => {
                        let make = self.config.links.clone().ok_or(ManagerError::NoJoins)?;
                        let i = if let Join::TakeOver(i) = decision { i } else { self.nodes.len() };
                        let since = self.clock.now();
                        let threads = self.config.dispatch_threads;
                        let mut node = Node::spawn(i, make(&address), threads, self._observations.clone(), since)
                            .map_err(ManagerError::Spawn)?;
                        node.draining = draining;
                        if i == self.nodes.len() {
                            self.nodes.push(node);
                            self.node_seen.push(NodeStatus::Unknown);
                        } else {
                            // the old node's threads end as its queues, dropped here, disconnect
                            self.nodes[i] = node;
                        }
                        i
                    }
                };
                let node = &mut self.nodes[i];
                node.name = Some(name.clone());
                node.name_stored = true;
                let reason = match decision {
                    Join::TakeOver(_) => format!("took over the down node {name}, now at {address}"),
                    _ => format!("joined from {address}"),
                };
                info!("node joined node={} address={} how={}", q(&name), q(&address), q(&reason));
                let now = self.now();
                self.note_event(now, Subject::Node, None, Some(name.clone()), None, "joined".into(), reason);
                i
            }
        };
        self.poll_all();
        Ok(self.node_info(index))
    }

    fn dry_run(&self, spec: &TaskSpec) -> DryRun {
        let table = self.node_table();
        let p = sched::preview(&*self.scheduler, &Request::of(spec), &table);
        let removed: Vec<bool> = self.nodes.iter().map(|n| n.removed).collect();
        let nodes = table
            .nodes()
            .iter()
            .zip(p.verdicts)
            .zip(removed)
            .filter(|(_, removed)| !removed)
            .map(|((n, v), _)| match v {
                Ok(score) => NodeVerdict {
                    node: n.name.clone(),
                    fits: true,
                    score: score.is_finite().then_some(score),
                    reason: None,
                },
                Err(why) => NodeVerdict { node: n.name.clone(), fits: false, score: None, reason: Some(why) },
            })
            .collect();
        DryRun {
            scheduler: self.config.scheduler.name().into(),
            chosen: p.chosen.map(|i| table.nodes()[i].name.clone()),
            nodes,
        }
    }

    fn stop(&mut self, id: TaskId) -> Result<Task, ManagerError> {
        let Some(t) = self.tasks.get(&id) else {
            return Err(ManagerError::NotFound(id));
        };
        if t.task.is_terminal() {
            return Err(ManagerError::AlreadyFinished { id, state: t.task.state });
        }
        let mut task = Task::clone(&t.task);
        task.desired_state = DesiredState::Stopped;
        // never placed: nothing runs, so it is stopped at once (Pending → Stopped is in the table)
        if task.state == TaskState::Pending {
            let now = self.now();
            if move_task(&mut task, TaskState::Stopped, now) {
                // why it was waiting for a node no longer applies
                task.error = None;
            }
        }
        self.commit(task)?;
        info!("task stop requested task_id={id}");
        // the stop itself is sent by the plan that runs after this command
        if let Some(t) = self.tasks.get_mut(&id) {
            t.not_before = Timestamp(0);
        }
        self.reconcile();
        Ok(Task::clone(&self.tasks[&id].task))
    }

    /// Commits a Pending task as Scheduled on node `index` and sends its start there; false when
    /// nothing was done (the move refused or the store failed).
    pub(super) fn start_on(&mut self, mut task: Task, index: usize, name: &str, now: Timestamp) -> bool {
        let id = task.id;
        if !move_task(&mut task, TaskState::Scheduled, now) {
            return false;
        }
        task.node = Some(name.to_string());
        task.error = None;
        if self.commit(task.clone()).is_err() {
            return false;
        }
        debug!("task placed task_id={id} node={name}");
        crate::metrics::manager().placed();
        // restarts in place carry over to the new node; the move itself is not one
        let start = StartTask {
            id,
            spec: task.spec,
            restart_count: task.restart_count,
            service: task.service,
            service_version: task.service_version,
        };
        if self.nodes[index].starts.send(Job::Start(Box::new(start))).is_ok() {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.op_on = Some(index);
            }
        }
        true
    }

    /// Chooses nodes for Pending tasks, oldest first, and sends them there; or records why no node
    /// can take a task. One table serves the whole batch, each placement counted in it. A start is
    /// sent only once the placement is committed.
    pub(super) fn place(&mut self, ids: &[TaskId]) {
        let mut table: Option<NodeTable> = None;
        let now = self.now();
        for &id in ids {
            let Some(t) = self.tasks.get(&id) else { continue };
            if t.task.state != TaskState::Pending || t.task.desired_state != DesiredState::Running || t.op_on.is_some()
            {
                continue;
            }
            if t.task.service.is_some() {
                continue; // replicas are placed spread first, by `services.rs`
            }
            let mut task = Task::clone(&t.task);
            let req = Request::of(&task.spec);
            let table = table.get_or_insert_with(|| self.node_table());
            match self.scheduler.pick(&req, table) {
                Ok(index) => {
                    let name = table.nodes()[index].name.clone();
                    if self.start_on(task, index, &name, now) {
                        table.allocate(index, &req);
                    }
                }
                Err(why) => {
                    let reason = why.to_string();
                    if task.error.as_deref() != Some(reason.as_str()) {
                        info!("task not placed task_id={id} reason={reason}", reason = q(&reason));
                        crate::metrics::manager().placement_failed(&reason);
                        task.error = Some(reason);
                        self.commit_quietly(task);
                    }
                }
            }
        }
    }
}
