//! The manager's reconcile plan: a pure function from what is wanted (the task table) and what is
//! observed (the workers' last reports) to the actions that bring the two together.
//!
//! The manager's control thread applies the actions; this module does no I/O and reads no clock
//! (`now` comes in), so every rule is tested from tables below.

use crate::task::{DesiredState, Task, TaskId, TaskState};
use crate::time::Timestamp;
use std::collections::HashMap;

/// A task as the plan sees it, with the manager's bookkeeping.
#[derive(Debug, Clone, Copy)]
pub struct TaskView<'a> {
    pub task: &'a Task,
    /// A start or stop for it is under way; its answer will say more than any plan could.
    pub op_in_flight: bool,
    /// The manager's event counter when an answer about this task last arrived; a report
    /// requested before that is older than what the manager knows.
    pub settled_epoch: u64,
    /// After a failed attempt, nothing is retried before this time.
    pub not_before: Timestamp,
}

/// A worker's last report of its tasks.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The manager's event counter when the report was requested.
    pub epoch: u64,
    pub tasks: HashMap<TaskId, Task>,
}

/// A node as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct NodeObs<'a> {
    pub name: &'a str,
    /// Its last poll succeeded: calls to it are worth making.
    pub reachable: bool,
    pub report: Option<&'a Report>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The worker knows more about this task: take its picture (already merged).
    Update(Box<Task>),
    /// The task's node does not have it: place it again.
    Requeue { id: TaskId, reason: String },
    /// Choose a node and send the task there.
    Place(TaskId),
    /// A task stopped before it was placed.
    MarkStopped(TaskId),
    /// Ask the task's node to stop it.
    SendStop { id: TaskId, node: String },
}

/// Everything to do now, in order: take in reports first, then act on the updated picture.
pub fn plan(tasks: &[TaskView], nodes: &[NodeObs], now: Timestamp) -> Vec<Action> {
    let mut actions = Vec::new();
    let node_of = |name: &str| nodes.iter().find(|n| n.name == name);
    for view in tasks {
        let t = view.task;
        if t.is_terminal() {
            continue;
        }
        let ready = !view.op_in_flight && now >= view.not_before;
        match t.state {
            TaskState::Pending => match t.desired_state {
                DesiredState::Stopped => actions.push(Action::MarkStopped(t.id)),
                DesiredState::Running if ready => actions.push(Action::Place(t.id)),
                DesiredState::Running => {}
            },
            TaskState::Scheduled | TaskState::Running => {
                let Some(node) = t.node.as_deref().and_then(node_of) else {
                    continue;
                };
                let fresh = node.report.filter(|r| r.epoch > view.settled_epoch && !view.op_in_flight);
                if let Some(report) = fresh {
                    match report.tasks.get(&t.id) {
                        Some(seen) => {
                            if let Some(merged) = merge_report(t, seen, now) {
                                let stop_after = merged.desired_state == DesiredState::Stopped && !merged.is_terminal();
                                actions.push(Action::Update(Box::new(merged)));
                                if stop_after && ready && node.reachable {
                                    actions.push(Action::SendStop { id: t.id, node: node.name.to_string() });
                                }
                                continue;
                            }
                        }
                        None if t.desired_state == DesiredState::Stopped => {
                            // nothing runs there: the stop is done
                            actions.push(Action::MarkStopped(t.id));
                            continue;
                        }
                        None => {
                            let reason = format!("node {} does not have the task; placing it again", node.name);
                            actions.push(Action::Requeue { id: t.id, reason });
                            continue;
                        }
                    }
                }
                if t.desired_state == DesiredState::Stopped && ready && node.reachable {
                    actions.push(Action::SendStop { id: t.id, node: node.name.to_string() });
                }
            }
            TaskState::Stopped | TaskState::Completed | TaskState::Failed => {}
        }
    }
    actions
}

/// The manager's record with the worker's picture of the task taken in, or `None` if the
/// worker says nothing new. The worker owns state, container, ports, exit code and times; the
/// manager owns identity, spec, node and desired state.
pub fn merge_report(ours: &Task, seen: &Task, now: Timestamp) -> Option<Task> {
    let mut merged = ours.clone();
    if seen.state != ours.state && ours.state.can_become(seen.state) && seen.state != TaskState::Pending {
        let _ = merged.set_state(seen.state, now);
    }
    merged.container_id = seen.container_id.clone().or(merged.container_id);
    merged.ports = seen.ports.clone();
    merged.exit_code = seen.exit_code.or(merged.exit_code);
    if seen.error.is_some() {
        merged.error = seen.error.clone();
    } else if merged.state == TaskState::Running {
        // a reason for an earlier trouble (e.g. why it was pending) no longer applies
        merged.error = None;
    }
    merged.started_at = seen.started_at.or(merged.started_at);
    if merged.is_terminal() {
        merged.finished_at = seen.finished_at.or(merged.finished_at);
    }
    (merged != *ours).then_some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskSpec;

    fn task(state: TaskState, node: Option<&str>) -> Task {
        let spec = TaskSpec::from_json(br#"{"name":"a","image":"b"}"#).expect("valid");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(1));
        t.state = state;
        t.node = node.map(str::to_string);
        t
    }

    fn view(t: &Task) -> TaskView<'_> {
        TaskView { task: t, op_in_flight: false, settled_epoch: 0, not_before: Timestamp(0) }
    }

    fn report(epoch: u64, tasks: &[Task]) -> Report {
        Report { epoch, tasks: tasks.iter().map(|t| (t.id, t.clone())).collect() }
    }

    fn node<'a>(name: &'a str, report: Option<&'a Report>) -> NodeObs<'a> {
        NodeObs { name, reachable: true, report }
    }

    #[test]
    fn pending_tasks_are_placed_unless_waiting_or_busy() {
        let t = task(TaskState::Pending, None);
        assert_eq!(plan(&[view(&t)], &[], Timestamp(10)), vec![Action::Place(t.id)]);
        let waiting = TaskView { not_before: Timestamp(11), ..view(&t) };
        assert_eq!(plan(&[waiting], &[], Timestamp(10)), vec![]);
        let busy = TaskView { op_in_flight: true, ..view(&t) };
        assert_eq!(plan(&[busy], &[], Timestamp(10)), vec![]);
    }

    #[test]
    fn pending_task_wanted_stopped_is_marked_stopped() {
        let mut t = task(TaskState::Pending, None);
        t.desired_state = DesiredState::Stopped;
        assert_eq!(plan(&[view(&t)], &[], Timestamp(10)), vec![Action::MarkStopped(t.id)]);
    }

    #[test]
    fn finished_tasks_need_nothing() {
        for state in [TaskState::Stopped, TaskState::Completed, TaskState::Failed] {
            let t = task(state, Some("w1"));
            let r = report(5, &[]);
            assert_eq!(plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10)), vec![], "{state}");
        }
    }

    #[test]
    fn worker_report_updates_the_task() {
        let t = task(TaskState::Scheduled, Some("w1"));
        let mut seen = t.clone();
        seen.state = TaskState::Running;
        seen.container_id = Some("c1".into());
        let r = report(5, &[seen]);
        let actions = plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10));
        let [Action::Update(merged)] = actions.as_slice() else { panic!("{actions:?}") };
        assert_eq!((merged.state, merged.container_id.as_deref()), (TaskState::Running, Some("c1")));
        assert_eq!(merged.started_at, Some(Timestamp(10)));
    }

    #[test]
    fn identical_report_changes_nothing() {
        let t = task(TaskState::Running, Some("w1"));
        let r = report(5, std::slice::from_ref(&t));
        assert_eq!(plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10)), vec![]);
    }

    #[test]
    fn stale_reports_are_ignored() {
        let t = task(TaskState::Running, Some("w1"));
        let r = report(5, &[]);
        let settled_later = TaskView { settled_epoch: 5, ..view(&t) };
        assert_eq!(plan(&[settled_later], &[node("w1", Some(&r))], Timestamp(10)), vec![]);
        let busy = TaskView { op_in_flight: true, ..view(&t) };
        assert_eq!(plan(&[busy], &[node("w1", Some(&r))], Timestamp(10)), vec![]);
    }

    #[test]
    fn task_missing_from_its_node_is_placed_again() {
        for state in [TaskState::Scheduled, TaskState::Running] {
            let t = task(state, Some("w1"));
            let r = report(5, &[]);
            let actions = plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10));
            assert!(matches!(actions.as_slice(), [Action::Requeue { id, .. }] if *id == t.id), "{state}: {actions:?}");
        }
    }

    #[test]
    fn stop_is_sent_to_a_reachable_node_and_retried_later() {
        let mut t = task(TaskState::Running, Some("w1"));
        t.desired_state = DesiredState::Stopped;
        let r = report(5, std::slice::from_ref(&t));
        let expected = vec![Action::SendStop { id: t.id, node: "w1".into() }];
        assert_eq!(plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10)), expected);
        let unreachable = NodeObs { reachable: false, ..node("w1", Some(&r)) };
        assert_eq!(plan(&[view(&t)], &[unreachable], Timestamp(10)), vec![]);
        let waiting = TaskView { not_before: Timestamp(20), ..view(&t) };
        assert_eq!(plan(&[waiting], &[node("w1", Some(&r))], Timestamp(10)), vec![]);
    }

    #[test]
    fn stop_wanted_and_gone_from_the_node_is_stopped() {
        let mut t = task(TaskState::Running, Some("w1"));
        t.desired_state = DesiredState::Stopped;
        let r = report(5, &[]);
        assert_eq!(plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10)), vec![Action::MarkStopped(t.id)]);
    }

    #[test]
    fn merge_takes_the_workers_facts_and_keeps_ours() {
        let ours = task(TaskState::Running, Some("w1"));
        let mut seen = ours.clone();
        seen.state = TaskState::Failed;
        seen.exit_code = Some(3);
        seen.error = Some("exited with code 3".into());
        seen.finished_at = Some(Timestamp(9));
        seen.desired_state = DesiredState::Stopped; // not the worker's to decide
        seen.node = Some("elsewhere".into());
        let merged = merge_report(&ours, &seen, Timestamp(10)).expect("changed");
        assert_eq!((merged.state, merged.exit_code), (TaskState::Failed, Some(3)));
        assert_eq!(merged.finished_at, Some(Timestamp(9)));
        assert_eq!((merged.desired_state, merged.node.as_deref()), (DesiredState::Running, Some("w1")));
    }

    #[test]
    fn merge_never_breaks_the_transition_table() {
        let ours = task(TaskState::Completed, Some("w1"));
        let mut seen = ours.clone();
        seen.state = TaskState::Running;
        let merged = merge_report(&ours, &seen, Timestamp(10));
        assert!(merged.is_none_or(|m| m.state == TaskState::Completed));
    }
}
