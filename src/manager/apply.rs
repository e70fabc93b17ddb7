//! What the control thread does with what it learns: the dispatchers' answers to starts and
//! stops, the polls of every worker (their changes applied in place), and the actions of the
//! reconcile plan it runs after each event that can change what it sees (`reconcile::plan`, a
//! pure function; here it is only applied).
//!
//! Methods of `State` (see `state.rs`); like the rest of the control thread they must not block
//! or read the system's time. Every state change goes through the transition table: a change
//! the table refuses is either ruled out by a check here first, or logged and not made.

use super::node::{self, Job, Observation, Poll};
use super::state::{move_task, State, RETRY_AFTER_MS};

/// How a node's error starts while its polls bring answers that cannot be used.
const BAD_ANSWER: &str = "bad answer to a poll";
use super::LinkError;
use crate::api::{NodeStatus, ENGINE_UNREACHABLE};
use crate::control::error_chain;
use crate::logfmt::q;
use crate::reconcile::{self, Action, NodeObs, PlanConfig, Report, TaskView};
use crate::store::NodeRecord;
use crate::task::{Task, TaskId, TaskState};
use crate::time::Timestamp;
use log::{debug, error, info, warn};

impl State {
    pub(super) fn on_observation(&mut self, obs: Observation) {
        if let Observation::Ingress(report) = obs {
            if let Some(p) = self.publisher.as_mut() {
                p.on_report(report);
            }
            return;
        }
        let now = self.now();
        let from = match &obs {
            Observation::Started { node, .. }
            | Observation::Stopped { node, .. }
            | Observation::StrayStopped { node, .. }
            | Observation::Polled { node, .. } => *node,
            Observation::Ingress(_) => return,
        };
        if self.nodes[from].removed {
            return; // an answer still under way when the node was removed
        }
        if let Observation::Polled { generation, .. } = &obs {
            if *generation != self.nodes[from].generation {
                return; // a poll of the node a join took over: not this one's picture
            }
        }
        match obs {
            Observation::Started { node, id, result } => {
                if !self.on_move_started(node, id, &result) {
                    self.on_started(node, id, result, now)
                }
            }
            Observation::Stopped { node, id, result } => self.on_stopped(node, id, result, now),
            Observation::Ingress(_) => {}
            Observation::StrayStopped { node, id, result } => {
                // stays in `stray_stops` until a report asked for after this answer: the one in
                // hand still lists the copy, and must not make the plan ask again; a later one
                // shows whether it is gone (or, if the stop failed, lets the plan ask again)
                let epoch = self.epoch;
                self.nodes[node].stray_answered.insert(id, epoch);
                let n = &self.nodes[node];
                match result {
                    Ok(_) | Err(LinkError::Refused { status: 404 | 409, .. }) => {
                        info!("stray copy stopped task_id={id} node={}", n.display_name())
                    }
                    Err(e) => {
                        warn!("stray copy not stopped task_id={id} node={} error={e}", n.display_name(), e = q(&e))
                    }
                }
            }
            Observation::Polled { node, epoch, result, .. } => self.on_polled(node, epoch, result, now),
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
        Some(Task::clone(&t.task))
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
            Err(e @ LinkError::Unreachable(_)) => {
                warn!("task start not delivered task_id={id} node={node_name} error={e}", e = q(&e));
                self.nodes[node].unreachable = true;
                self.requeue(task, format!("could not start on {node_name}: {e}"), now);
            }
            Err(ref e @ LinkError::Refused { status: 503, ref message }) if message.starts_with(ENGINE_UNREACHABLE) => {
                warn!("task start not delivered, engine down task_id={id} node={node_name} error={e}", e = q(e));
                self.nodes[node].engine_reachable = Some(false);
                self.requeue(task, format!("could not start on {node_name}: {e}"), now);
            }
            // the worker did not take it for now (shutting down, not ready, too busy): its engine
            // may well answer, so the node stays a candidate, and the task waits a moment
            Err(e @ LinkError::Refused { status: 503, .. }) => {
                warn!("task start not taken task_id={id} node={node_name} error={e}", e = q(&e));
                self.requeue(task, format!("could not start on {node_name}: {e}"), now);
                self.retry_later(id, now);
            }
            // the worker is still cleaning up the task's previous run there: the same start, later
            Err(LinkError::Refused { status: 409, message }) if !task.is_terminal() => {
                debug!("task start must wait task_id={id} node={node_name} error={message}", message = q(&message));
                self.retry_later(id, now);
            }
            // stopped meanwhile (on a node gone down): the refusal changes nothing
            Err(LinkError::Refused { status, message }) if (400..500).contains(&status) && task.is_terminal() => {
                debug!(
                    "start refused for a finished task task_id={id} node={node_name} status={status} error={message}",
                    message = q(&message)
                );
            }
            Err(LinkError::Refused { status, message }) if (400..500).contains(&status) => {
                let mut task = task;
                task.error = Some(format!("{node_name} refused the task: {message}"));
                if move_task(&mut task, TaskState::Failed, now) {
                    self.commit_quietly(task);
                }
            }
            Err(e) => {
                // it may have started: the node's next report says
                warn!("task start unanswered task_id={id} node={node_name} error={e}", e = q(&e));
                self.retry_later(id, now);
            }
        }
    }

    /// Takes a placed task off its node to place it again; a task in any other state stays.
    fn requeue(&mut self, mut task: Task, reason: String, now: Timestamp) {
        if let Some(t) = self.tasks.get_mut(&task.id) {
            // an answer still awaited from the old node no longer holds the task back
            t.op_on = None;
        }
        if matches!(task.state, TaskState::Scheduled | TaskState::Running)
            && move_task(&mut task, TaskState::Pending, now)
        {
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
            // the worker has no such task: nothing runs, so it is stopped, unless it had
            // finished already (then it keeps how it ended)
            Err(LinkError::Refused { status: 404, .. }) if task.is_terminal() => {}
            Err(LinkError::Refused { status: 404, .. }) => {
                let mut task = task;
                if move_task(&mut task, TaskState::Stopped, now) {
                    self.commit_quietly(task);
                }
            }
            Err(e) => {
                // finished meanwhile (409) or not done: the node's next report settles it
                debug!("task stop not done task_id={id} node={node_name} error={e}", e = q(&e));
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
                .any(|(i, n)| i != index && !n.removed && n.name.as_deref() == Some(health.name.as_str())),
            Err(_) => false,
        };
        let heard_at = self.clock.now();
        let was_up = self.status_of(&self.nodes[index]) == NodeStatus::Up;
        let node = &mut self.nodes[index];
        node.poll_in_flight = false;
        node.polled_epoch = node.polled_epoch.max(epoch);
        match result {
            Ok(_) if clash => {
                if !node.unreachable {
                    error!("two workers report the same name address={}", node.address);
                }
                node.unreachable = true;
                node.contact.ever_failed = true;
                node.error = Some("another worker already uses this name; give each worker its own -n".into());
            }
            Ok(poll) => {
                let (caught_up, synced) = (poll.caught_up(), poll.synced());
                let Poll { health, changes, stats } = poll;
                // what the plan would see differently after this poll, beyond statistics (which
                // the next tick's plan takes up)
                let nothing_new = changes.iter().all(|c| !c.full && c.tasks.is_empty() && c.removed.is_empty());
                let steady = was_up
                    && !node.unreachable
                    && node.error.is_none()
                    && node.name.as_deref() == Some(health.name.as_str())
                    && node.engine_reachable == Some(health.engine.reachable)
                    && health.engine.error.is_none()
                    && node.report.as_ref().is_some_and(|r| r.complete == (synced && caught_up))
                    && node.stray_answered.is_empty();
                node.stats = stats;
                if node.unreachable || node.last_contact.is_none() {
                    info!("worker answers address={} name={}", node.address, health.name);
                }
                // the name maps tasks to the node after a restart: written when it changes, and
                // again at every poll after a failed write (logged when failing starts and ends)
                let renamed = node.name.as_deref() != Some(health.name.as_str());
                if renamed || !node.name_stored {
                    let record = NodeRecord {
                        address: node.address.clone(),
                        name: Some(health.name.clone()),
                        draining: node.draining,
                    };
                    match self.store.put_node(&record) {
                        Ok(()) if !node.name_stored => {
                            info!("node name stored again address={} name={}", record.address, health.name);
                            node.name_stored = true;
                        }
                        Ok(()) => {}
                        Err(e) => {
                            if node.name_stored || renamed {
                                error!("store write failed address={} error={}", record.address, q(&error_chain(&e)));
                            }
                            node.name_stored = false;
                        }
                    }
                }
                node.name = Some(health.name);
                node.last_contact = Some(now);
                node.contact.heard = Some(heard_at);
                node.unreachable = false;
                node.engine_reachable = Some(health.engine.reachable);
                node.error = health.engine.error.map(|e| format!("engine unreachable: {e}"));
                // the picture is updated in place with what changed since the last poll; one
                // cut short by the page bound keeps the epoch of the last complete one, so that
                // none of its records passes for newer than it is
                let previous = node.report.take().unwrap_or_default();
                let (mut report, before) = (previous.tasks, previous.epoch);
                node.cursor = node::apply_changes(&mut report, changes).or(node.cursor.take());
                let known = &self.tasks;
                node.orphans
                    .retain(|id, _| report.get(id).is_some_and(|t| !t.is_terminal()) && !known.contains_key(id));
                node.report = Some(if caught_up {
                    Report { epoch, complete: synced, tasks: report }
                } else {
                    Report { epoch: before, complete: false, tasks: report }
                });
                // stray stops answered before this report was asked for are settled by it: a
                // copy it still lists (a second move of the task, a stop that failed) is stopped
                // again by the plan; a picture cut short may not show the stop yet, and settles
                // nothing
                let settled: Vec<TaskId> = match caught_up {
                    true => node.stray_answered.iter().filter(|(_, at)| **at < epoch).map(|(id, _)| *id).collect(),
                    false => Vec::new(),
                };
                for id in settled {
                    node.stray_answered.remove(&id);
                    node.stray_stops.remove(&id);
                }
                self.quiet_poll = nothing_new && steady;
            }
            // It answered, with something too big or malformed: a bad answer, not a lost node.
            // Only unreachability and silence make a node down (and its tasks move); the last
            // good report stands until a poll brings a better one.
            Err(LinkError::BadAnswer(why)) => {
                if !node.error.as_deref().is_some_and(|e| e.starts_with(BAD_ANSWER)) {
                    warn!(
                        "worker answers a poll with something unusable address={} error={why}",
                        node.address,
                        why = q(&why)
                    );
                }
                node.contact.heard = Some(heard_at);
                node.last_contact = Some(now);
                node.error = Some(format!("{BAD_ANSWER}: {why}"));
            }
            Err(e) => {
                if !node.unreachable {
                    warn!("worker not answering address={} error={e}", node.address, e = q(&e));
                }
                node.unreachable = true;
                node.contact.ever_failed = true;
                node.error = Some(e.to_string());
            }
        }
    }

    /// Runs the plan and applies its actions.
    pub(super) fn reconcile(&mut self) {
        self.reconcile_services();
        let now = self.now();
        let actions = {
            let mut views: Vec<TaskView> = self
                .tasks
                .values()
                .map(|t| TaskView {
                    task: &t.task,
                    op_in_flight: t.op_on.is_some(),
                    settled_epoch: t.settled_epoch,
                    not_before: t.not_before,
                    moving_to: self.moving_to(&t.task.id),
                })
                .collect();
            // oldest first: placement order is submission order
            views.sort_by_key(|v| (v.task.created_at, v.task.id));
            let instant = self.clock.now();
            let nodes: Vec<NodeObs> = self
                .nodes
                .iter()
                .filter(|n| !n.removed)
                .map(|n| NodeObs {
                    name: n.name.as_deref(),
                    reachable: !n.unreachable,
                    down: self.status_of(n) == NodeStatus::Down,
                    report: n.report.as_ref(),
                    stopping: &n.stray_stops,
                    orphans: &n.orphans,
                    silent_ms: n.contact.silent(instant).as_millis() as u64,
                })
                .collect();
            let config = PlanConfig {
                orphan_grace_ms: self.config.orphan_grace.as_millis() as u64,
                // a memory store starts empty: what the workers run is the truth to rebuild from
                adopt_unknown: self.store.kind() == "memory",
                forgotten: &self.forgotten.set,
            };
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
        // After every node was down at once (the manager cut off from them all, or stalled), the
        // first to answer again must not take every waiting task while the others, which most
        // likely still run them, have not reported yet: a task that lost its node waits until
        // every node has answered a poll asked for since (or failed to), at most two polls, to
        // be taken back where it runs.
        let instant = self.clock.now();
        let up = self.nodes.iter().filter(|n| !n.removed && self.status_of(n) == NodeStatus::Up).count();
        if up == 0 && self.nodes_up_last > 0 {
            self.all_down = true;
        }
        let live = self.nodes.iter().filter(|n| !n.removed).count();
        if up > 0 && std::mem::take(&mut self.all_down) && live > 1 {
            self.settle = Some((self.epoch, instant + self.config.poll_interval * 2));
        }
        self.nodes_up_last = up;
        if let Some((since, until)) = self.settle {
            if instant >= until || self.nodes.iter().all(|n| n.removed || n.polled_epoch > since) {
                self.settle = None;
            } else {
                let tasks = &self.tasks;
                places.retain(|id| !tasks.get(id).is_some_and(|t| t.lost_node));
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
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.lost_node = true;
                    warn!("task lost by its node task_id={id} reason={reason}", reason = q(&reason));
                    crate::metrics::manager().moved(crate::metrics::Move::Lost);
                    let task = Task::clone(&t.task);
                    self.requeue(task, reason, now);
                }
            }
            Action::Place(id) => self.place(&[id]),
            Action::MarkStopped(id) => {
                // the plan marks only unfinished tasks, and every one may become Stopped
                if let Some(t) = self.tasks.get(&id) {
                    let mut task = Task::clone(&t.task);
                    let was_pending = task.state == TaskState::Pending;
                    if move_task(&mut task, TaskState::Stopped, now) {
                        if was_pending {
                            task.error = None; // why it was waiting for a node no longer applies
                        }
                        self.commit_quietly(task);
                    }
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
                let mut task = Task::clone(&t.task);
                if !move_task(&mut task, TaskState::Scheduled, now) {
                    return;
                }
                task.node = Some(node.clone());
                task.error = None;
                let task = reconcile::merge_report(&task, &seen, now).unwrap_or(task);
                info!("task found running where it was task_id={} node={node}", seen.id);
                self.commit_quietly(task);
            }
            Action::Adopt { node, seen } => {
                if self.tasks.contains_key(&seen.id) {
                    return;
                }
                let mut task = *seen;
                task.node = Some(node.clone());
                info!("task adopted from its worker task_id={} node={node} state={}", task.id, task.state);
                let state = task.state;
                task.record(Some(state), format!("taken back from {node}'s report after a manager restart"), now);
                self.commit_quietly(task);
            }
            Action::NoteOrphan { node, id } => {
                if let Some(index) = self.node_index(&node) {
                    warn!("a container no task owns, stopped after the grace period task_id={id} node={node}");
                    self.nodes[index].orphans.insert(id, now);
                }
            }
            Action::SendStop { id, node } => {
                let Some(index) = self.node_index(&node) else { return };
                if self.stop_held(id) {
                    return; // the next pass asks again, once the route no longer has it
                }
                if self.nodes[index].stops.send(Job::Stop(id)).is_ok() {
                    if let Some(t) = self.tasks.get_mut(&id) {
                        t.op_on = Some(index);
                    }
                }
            }
        }
    }
}
