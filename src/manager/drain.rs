//! Draining, activating and removing nodes, on the control thread: the operator's commands, the
//! moves a drain makes (chosen and judged by the pure `crate::drain`), and each node's
//! availability and drain progress as `GET /v1/nodes` shows them.
//!
//! A move starts the task's new copy on the target through the target's start queue while the
//! old copy runs; the answer comes back as a `Started` observation from the target, which
//! `on_move_started` takes before the usual handling. Methods of `State`; like the rest of the
//! control thread they must not block or read the system's time.

use super::node::Job;
use super::state::State;
use super::{LinkError, ManagerError};
use crate::api::{Availability, DrainProgress, NodeInfo, NodeStatus, StartTask, StuckTask};
use crate::drain::{self, DrainNode, DrainTask, MoveCheck, STUCK_RETRY_MS};
use crate::events::Subject;
use crate::logfmt::q;
use crate::sched::Request;
use crate::store::NodeRecord;
use crate::task::{Task, TaskId, TaskState};
use crate::time::Timestamp;
use log::{info, warn};

/// A move under way: the new copy of a task started on `to` while the old one runs on `from`.
pub(super) struct Move {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) started_at: Timestamp,
    /// The start's answer is in (with the new copy as the target saw it, if it succeeded), and
    /// the manager's epoch then: reports asked for later say more.
    pub(super) answered: Option<(u64, Option<Task>)>,
}

/// A task a drain could not move lately, why, and when it is tried again.
pub(super) struct Stuck {
    pub(super) reason: String,
    pub(super) until: Timestamp,
}

impl State {
    /// A node as `GET /v1/nodes` names it: by the name it reported, or by its address until it
    /// has reported one (a `-w` address that never answered can be removed too).
    fn live_node(&self, name: &str) -> Result<usize, ManagerError> {
        self.node_index(name)
            .or_else(|| self.nodes.iter().position(|n| !n.removed && n.name.is_none() && n.address == name))
            .ok_or_else(|| ManagerError::NoNode(name.to_string()))
    }

    /// Writes a node's drain flag, then keeps it; on a store failure nothing changes.
    fn set_draining(&mut self, index: usize, draining: bool) -> Result<(), ManagerError> {
        let node = &self.nodes[index];
        let record = NodeRecord { address: node.address.clone(), name: node.name.clone(), draining };
        self.store.put_node(&record).map_err(ManagerError::Store)?;
        let node = &mut self.nodes[index];
        node.draining = draining;
        node.moved = 0;
        Ok(())
    }

    /// `drain NODE`: nothing new is placed there, and its tasks move elsewhere one at a time.
    pub(super) fn drain(&mut self, name: &str) -> Result<usize, ManagerError> {
        let index = self.live_node(name)?;
        if !self.nodes[index].draining {
            self.set_draining(index, true)?;
            info!("node draining node={}", q(name));
            let now = self.now();
            let reason = "drained by an operator: its tasks move elsewhere, one at a time".to_string();
            self.note_event(now, Subject::Node, None, Some(name.into()), None, "draining".into(), reason);
        }
        Ok(index)
    }

    /// `activate NODE`: the node takes tasks again; moves off it not yet done are given up (their
    /// new copies are strays, stopped by the plan).
    pub(super) fn activate(&mut self, name: &str) -> Result<usize, ManagerError> {
        let index = self.live_node(name)?;
        if self.nodes[index].draining {
            self.set_draining(index, false)?;
            self.moves.retain(|_, m| m.from != index);
            let tasks = &self.tasks;
            self.stuck.retain(|id, _| tasks.get(id).is_some_and(|t| t.task.node.as_deref() != Some(name)));
            info!("node active node={}", q(name));
            let now = self.now();
            let reason = "activated by an operator: it takes tasks again".to_string();
            self.note_event(now, Subject::Node, None, Some(name.into()), None, "active".into(), reason);
        }
        Ok(index)
    }

    /// `remove-node NAME`: forgets a node that runs nothing and is not up (a worker still running
    /// would be polled, or join again).
    pub(super) fn remove_node(&mut self, name: &str) -> Result<NodeInfo, ManagerError> {
        let index = self.live_node(name)?;
        let (_, tasks) = self.allocations().get(name).copied().unwrap_or_default();
        let moving = self.moves.values().any(|m| m.from == index || m.to == index);
        if moving {
            return Err(ManagerError::NodeBusy(format!(
                "a task is moving to or from node {name}; remove it once the move is over"
            )));
        }
        if tasks > 0 {
            return Err(ManagerError::NodeBusy(format!(
                "node {name} has {tasks} unfinished task(s); drain it first (drain {name}) and remove it once drained"
            )));
        }
        if self.status_of(&self.nodes[index]) == NodeStatus::Up {
            let timeout = self.config.node_timeout.as_secs_f64();
            return Err(ManagerError::NodeBusy(format!(
                "node {name} is up; stop its worker first (a running worker is polled, and one started with \
                 --join joins again), then remove it once it reads down ({timeout:.0} s after its last answer)"
            )));
        }
        let address = self.nodes[index].address.clone();
        let was = self.node_info(index);
        self.store.delete_node(&address).map_err(ManagerError::Store)?;
        self.nodes[index].retire();
        info!("node removed node={} address={}", q(name), q(&address));
        let now = self.now();
        let reason = format!("removed by an operator (was at {address})");
        self.note_event(now, Subject::Node, None, Some(name.into()), None, "removed".into(), reason);
        Ok(was)
    }

    pub(super) fn availability(&self, index: usize) -> Availability {
        let node = &self.nodes[index];
        if !node.draining {
            return Availability::Active;
        }
        let name = node.display_name();
        let left = self.tasks.values().any(|t| !t.task.is_terminal() && t.task.node.as_deref() == Some(name));
        if left || self.moves.values().any(|m| m.from == index) {
            Availability::Draining
        } else {
            Availability::Drained
        }
    }

    pub(super) fn drain_progress(&self, index: usize) -> Option<DrainProgress> {
        let node = &self.nodes[index];
        if !node.draining {
            return None;
        }
        let name = node.display_name();
        let on_it: Vec<&Task> = self
            .tasks
            .values()
            .map(|t| &*t.task)
            .filter(|t| !t.is_terminal() && t.node.as_deref() == Some(name))
            .collect();
        let mut stuck: Vec<StuckTask> = on_it
            .iter()
            .filter_map(|t| self.stuck.get(&t.id).map(|s| StuckTask { task: t.id, reason: s.reason.clone() }))
            .collect();
        stuck.sort_by_key(|s| s.task.to_string());
        let moving = self.moves.iter().find(|(_, m)| m.from == index).map(|(id, _)| *id);
        Some(DrainProgress { moved: node.moved, remaining: on_it.len(), moving, stuck })
    }

    /// The node a drain is moving a task to, for the plan.
    pub(super) fn moving_to(&self, id: &TaskId) -> Option<&str> {
        self.moves.get(id).map(|m| self.nodes[m.to].display_name())
    }

    /// The answer to a move's start; false when the answer is not a move's (the usual handling
    /// then takes it).
    pub(super) fn on_move_started(&mut self, node: usize, id: TaskId, result: &Result<Task, LinkError>) -> bool {
        let epoch = self.epoch;
        let Some(m) = self.moves.get_mut(&id).filter(|m| m.to == node && m.answered.is_none()) else {
            return false;
        };
        match result {
            Ok(seen) => m.answered = Some((epoch, Some(seen.clone()))),
            Err(e) => {
                let to = self.nodes[node].display_name();
                let reason = format!("could not start its new copy on {to}: {e}");
                warn!("move failed task_id={id} to={} error={}", q(to), q(&reason));
                self.give_up_move(id, reason);
            }
        }
        true
    }

    fn give_up_move(&mut self, id: TaskId, reason: String) {
        let Some(m) = self.moves.remove(&id) else { return };
        let now = self.now();
        let from = self.nodes[m.from].display_name().to_string();
        self.stuck.insert(id, Stuck { reason: reason.clone(), until: Timestamp(now.millis() + STUCK_RETRY_MS) });
        self.note_event(now, Subject::Task, Some(id), Some(from), None, "move failed".into(), reason);
    }

    /// Judges the moves under way and starts the next ones; runs after every plan.
    pub(super) fn drain_step(&mut self) {
        if !self.nodes.iter().any(|n| n.draining) && self.moves.is_empty() {
            return;
        }
        let now = self.now();
        let ids: Vec<TaskId> = self.moves.keys().copied().collect();
        for id in ids {
            self.judge_move(id, now);
        }
        let up: Vec<bool> =
            self.nodes.iter().map(|n| self.status_of(n) == NodeStatus::Up && !n.unreachable && !n.removed).collect();
        let wanted = {
            let nodes: Vec<DrainNode> = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| DrainNode {
                    name: n.display_name(),
                    draining: n.draining,
                    up: up[i],
                    moving: self.moves.values().any(|m| m.from == i),
                })
                .collect();
            let tasks: Vec<DrainTask> = self
                .tasks
                .values()
                .filter(|t| !t.task.is_terminal())
                .map(|t| DrainTask {
                    task: &t.task,
                    op_in_flight: t.op_on.is_some(),
                    stuck_until: self.stuck.get(&t.task.id).map(|s| s.until),
                })
                .collect();
            drain::next_moves(&tasks, &nodes, now)
        };
        for id in wanted {
            self.start_move(id, now);
        }
        // what was stuck on tasks that are gone or finished is dropped
        let tasks = &self.tasks;
        self.stuck.retain(|id, _| tasks.get(id).is_some_and(|t| !t.task.is_terminal()));
    }

    fn start_move(&mut self, id: TaskId, now: Timestamp) {
        let Some(t) = self.tasks.get(&id) else { return };
        let task = Task::clone(&t.task);
        let Some(from) = task.node.as_deref().and_then(|n| self.node_index(n)) else { return };
        let to = match self.move_target(&task) {
            Ok(to) => to,
            Err(why) => {
                let reason = format!("fits nowhere else: {why}");
                if self.stuck.get(&id).is_none_or(|s| s.reason != reason) {
                    info!("task cannot move task_id={id} reason={}", q(&reason));
                }
                self.stuck.insert(id, Stuck { reason, until: Timestamp(now.millis() + STUCK_RETRY_MS) });
                return;
            }
        };
        let start = StartTask {
            id,
            spec: task.spec.clone(),
            restart_count: task.restart_count,
            service: task.service.clone(),
            service_version: task.service_version,
        };
        if self.nodes[to].starts.send(Job::Start(Box::new(start))).is_err() {
            return;
        }
        let (from_name, to_name) = (self.nodes[from].display_name().to_string(), self.nodes[to].display_name());
        info!("moving a task task_id={id} from={} to={}", q(&from_name), q(to_name));
        let reason = format!("moving to {to_name}: {from_name} is draining");
        self.moves.insert(id, Move { from, to, started_at: now, answered: None });
        self.stuck.remove(&id);
        self.note_event(now, Subject::Task, Some(id), Some(from_name), None, "moving".into(), reason);
    }

    /// Where a task's new copy goes: the scheduler's pick among the nodes that can take it, with
    /// what a plain placement does not know ruled out: a node still stopping an earlier copy of
    /// the task, a node where a fixed host port it needs is taken, and, for a replica, nodes with
    /// more replicas of its service than others (spread first, as its placement does).
    fn move_target(&mut self, task: &Task) -> Result<usize, String> {
        let req = Request::of(&task.spec);
        let fixed: Vec<(u16, crate::task::Protocol)> =
            task.spec.ports.iter().filter_map(|p| p.host.filter(|&h| h != 0).map(|h| (h, p.protocol))).collect();
        let others = || self.tasks.values().map(|t| &*t.task).filter(|t| !t.is_terminal() && t.id != task.id);
        let mut replicas: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        if let Some(service) = task.service.as_deref() {
            for t in others().filter(|t| t.service.as_deref() == Some(service)) {
                if let Some(node) = &t.node {
                    *replicas.entry(node.clone()).or_default() += 1;
                }
            }
        }
        let full = self.node_table();
        let states: Vec<crate::sched::NodeState> = full
            .nodes()
            .iter()
            .zip(&self.nodes)
            .map(|(state, node)| {
                let mut state = state.clone();
                let copy_here = node.stray_stops.contains(&task.id)
                    || node.report.as_ref().and_then(|r| r.tasks.get(&task.id)).is_some_and(|t| !t.is_terminal());
                let port_taken = fixed.iter().find(|want| {
                    others()
                        .filter(|t| t.node.as_deref() == Some(state.name.as_str()))
                        .any(|t| t.spec.ports.iter().any(|p| p.host == Some(want.0) && p.protocol == want.1))
                });
                if state.unavailable.is_none() {
                    if copy_here {
                        state.unavailable = Some("still stopping an earlier copy of the task".into());
                    } else if let Some((port, _)) = port_taken {
                        state.unavailable = Some(format!("host port {port} taken"));
                    }
                }
                state
            })
            .collect();
        // spread: the fewest replicas of the service first (every node is one group for a task)
        let mut counts: Vec<u32> = states.iter().map(|n| replicas.get(n.name.as_str()).copied().unwrap_or(0)).collect();
        counts.sort_unstable();
        counts.dedup();
        let mut why = String::new();
        for count in counts {
            let group = states
                .iter()
                .map(|n| {
                    let mut n = n.clone();
                    if n.unavailable.is_none() && replicas.get(n.name.as_str()).copied().unwrap_or(0) != count {
                        n.unavailable = Some("holds more replicas of the service".into());
                    }
                    n
                })
                .collect();
            match self.scheduler.pick(&req, &crate::sched::NodeTable::new(group)) {
                Ok(index) => return Ok(index),
                // the group with the fewest replicas says best why: every node is in it or has
                // more replicas, never fewer
                Err(e) if why.is_empty() => why = e.to_string(),
                Err(_) => {}
            }
        }
        Err(why)
    }

    fn judge_move(&mut self, id: TaskId, now: Timestamp) {
        let Some(m) = self.moves.get(&id) else { return };
        let Some(t) = self.tasks.get(&id) else {
            self.moves.remove(&id);
            return;
        };
        let (from, to) = (self.nodes[m.from].display_name(), self.nodes[m.to].display_name());
        // The target's word on the copy: a report asked for after the start's answer; until one
        // comes, the answer can only say the copy failed, not that it runs (a worker answers a
        // start without looking again, so an exit at once shows in its next report).
        let mut absent = false;
        let seen = m.answered.as_ref().and_then(|(epoch, answer)| {
            match self.nodes[m.to].report.as_ref().filter(|r| r.epoch > *epoch) {
                Some(report) => {
                    let copy = report.tasks.get(&id);
                    absent = copy.is_none() && report.complete;
                    copy
                }
                None => answer.as_ref().filter(|a| a.is_terminal()),
            }
        });
        let verdict = if absent {
            MoveCheck::Fail(format!("the new copy is not on {to} any more"))
        } else {
            drain::check_move(&t.task, from, to, seen, m.started_at, now)
        };
        let (seen, from, to) = (seen.cloned(), from.to_string(), to.to_string());
        match verdict {
            MoveCheck::Wait => {}
            MoveCheck::Abandon => {
                self.moves.remove(&id);
            }
            MoveCheck::Fail(reason) => {
                warn!("move given up task_id={id} from={} to={} reason={}", q(&from), q(&to), q(&reason));
                self.give_up_move(id, reason);
            }
            MoveCheck::Switch => {
                if let Some(seen) = seen {
                    self.switch(id, seen, now);
                }
            }
        }
    }

    /// The new copy runs: the task's record goes over to it. The old copy, now on a node the task
    /// is not on, is a stray there and stopped by the plan.
    fn switch(&mut self, id: TaskId, seen: Task, now: Timestamp) {
        let Some(m) = self.moves.get(&id) else { return };
        let (from_i, to_i) = (m.from, m.to);
        let Some(t) = self.tasks.get(&id) else { return };
        let (from, to) = (self.nodes[from_i].display_name().to_string(), self.nodes[to_i].display_name().to_string());
        let mut task = Task::clone(&t.task);
        task.node = Some(to.clone());
        task.container_id = seen.container_id;
        task.ports = seen.ports;
        task.started_at = seen.started_at.or(task.started_at);
        // the new copy's health is its own, counted from now
        task.healthy = None;
        task.take_health(seen.healthy, now);
        task.error = None;
        let reason = format!("moved from {from} to {to}: {from} is draining");
        task.record(Some(TaskState::Running), reason.clone(), now);
        if self.commit(task).is_err() {
            // the store failed: the old copy stays the task's, and the move is given up (its new
            // copy becomes a stray) to be tried again after the back-off
            self.give_up_move(id, format!("the move to {to} could not be recorded (the store failed)"));
            return;
        }
        self.moves.remove(&id);
        let epoch = self.epoch;
        if let Some(t) = self.tasks.get_mut(&id) {
            // a report asked for before the switch does not know the task is here
            t.settled_epoch = epoch;
        }
        self.nodes[from_i].moved += 1;
        crate::metrics::manager().moved(crate::metrics::Move::Drain);
        self.stuck.remove(&id);
        info!("task moved task_id={id} from={} to={}", q(&from), q(&to));
        self.note_event(now, Subject::Task, Some(id), Some(to), Some(from), "moved".into(), reason);
    }

    /// Records in the history each node that became drained since it was last told.
    pub(super) fn note_availability_changes(&mut self) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            if self.nodes[i].removed {
                continue;
            }
            let drained = self.availability(i) == Availability::Drained;
            if drained == self.nodes[i].drained_told {
                continue;
            }
            self.nodes[i].drained_told = drained;
            if drained {
                let name = self.nodes[i].display_name().to_string();
                let reason = format!("nothing left to move ({} task(s) moved)", self.nodes[i].moved);
                info!("node drained node={}", q(&name));
                self.note_event(
                    now,
                    Subject::Node,
                    None,
                    Some(name),
                    Some("draining".into()),
                    "drained".into(),
                    reason,
                );
            }
        }
    }
}
