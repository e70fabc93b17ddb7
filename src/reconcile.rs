//! The manager's reconcile plan: a pure function from what is wanted (the task table) and what is
//! observed (the workers' last reports) to the actions that bring the two together.
//!
//! The manager's control thread applies the actions; this module does no I/O and reads no clock
//! (`now` comes in), so every rule is tested from tables below.

use crate::task::{DesiredState, Task, TaskId, TaskState};
use crate::time::Timestamp;
use std::collections::{HashMap, HashSet};

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
    /// A drain is moving it to this node: the copy started there is the move's, not a stray.
    pub moving_to: Option<&'a str>,
}

/// What the manager knows of a worker's tasks: a picture built up from the worker's changes
/// feed, poll after poll.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The manager's event counter when the poll that last brought the picture up to date was
    /// asked for (a poll cut short by its page bound leaves it as it was).
    pub epoch: u64,
    /// The worker had checked its containers: a task it does not list is not there.
    pub complete: bool,
    pub tasks: HashMap<TaskId, Task>,
}

/// A node as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct NodeObs<'a> {
    /// The name it reported (or was known by before a restart); `None` until then.
    pub name: Option<&'a str>,
    /// Its last poll succeeded: calls to it are worth making.
    pub reachable: bool,
    /// Not heard from for longer than the node timeout.
    pub down: bool,
    pub report: Option<&'a Report>,
    /// Tasks whose stray copy on this node is being stopped already.
    pub stopping: &'a HashSet<TaskId>,
    /// Tasks this node runs that no task of the manager owns, with when they were first seen.
    pub orphans: &'a HashMap<TaskId, Timestamp>,
    /// How long the node has not answered, for the reason of a move.
    pub silent_ms: u64,
}

/// The plan's settings.
#[derive(Debug, Clone, Copy)]
pub struct PlanConfig<'a> {
    /// A container no task owns is left alone this long before it is stopped: a start whose
    /// answer was lost must not be killed before its task shows up.
    pub orphan_grace_ms: u64,
    /// The manager's table does not outlive it (a memory store): a running task a worker
    /// reports that the manager does not know is taken into the table as it runs, not stopped.
    pub adopt_unknown: bool,
    /// Tasks the manager forgot (finished, then pruned): never adopted again, even with a
    /// memory store; a copy of one a node still runs is an orphan like any other.
    pub forgotten: &'a HashSet<TaskId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The worker knows more about this task: take its picture (already merged).
    Update(Box<Task>),
    /// The task's node does not have it: place it again.
    Requeue { id: TaskId, reason: String },
    /// Choose a node and send the task there.
    Place(TaskId),
    /// The task is stopped as far as anyone can tell (never placed, gone from its node, or its
    /// node is down: a copy found there later is a stray).
    MarkStopped(TaskId),
    /// Ask the task's node to stop it.
    SendStop { id: TaskId, node: String },
    /// A node runs a copy of a task that belongs elsewhere or is finished: stop that copy.
    StopStray { id: TaskId, node: String },
    /// A node runs a task the manager does not know, and the manager's table is rebuilt from
    /// what workers report: take the task in as the node reports it.
    Adopt { node: String, seen: Box<Task> },
    /// A node runs a task no task of the manager owns: note when it was first seen; after the
    /// grace period it is stopped (`StopStray`).
    NoteOrphan { node: String, id: TaskId },
    /// A task waiting to be placed again runs on a node that came back: keep that container
    /// rather than stop it and start another (the worker's picture comes along).
    Reclaim { node: String, seen: Box<Task> },
}

/// Everything to do now, in order: take in reports first, then act on the updated picture.
pub fn plan(tasks: &[TaskView], nodes: &[NodeObs], now: Timestamp, config: &PlanConfig) -> Vec<Action> {
    let mut actions = Vec::new();
    let node_of = |name: &str| nodes.iter().find(|n| n.name == Some(name));
    let all_named = nodes.iter().all(|n| n.name.is_some());
    for view in tasks {
        let t = view.task;
        if t.is_terminal() {
            continue;
        }
        let ready = !view.op_in_flight && now >= view.not_before;
        let stopped_wanted = t.desired_state == DesiredState::Stopped;
        match t.state {
            TaskState::Pending => match t.desired_state {
                DesiredState::Stopped => actions.push(Action::MarkStopped(t.id)),
                DesiredState::Running if ready => actions.push(Action::Place(t.id)),
                DesiredState::Running => {}
            },
            TaskState::Scheduled | TaskState::Running => {
                let Some(name) = t.node.as_deref() else { continue };
                let Some(node) = node_of(name) else {
                    // its node is no longer one of ours (gone from -w, or renamed)
                    if stopped_wanted {
                        actions.push(Action::MarkStopped(t.id));
                    } else if all_named && ready {
                        let reason = format!("node {name} is no longer a worker of this manager; placing it again");
                        actions.push(Action::Requeue { id: t.id, reason });
                    }
                    continue;
                };
                if node.down && !stopped_wanted {
                    // the node is lost: its tasks go elsewhere with a new container (a copy it
                    // still runs when it returns is a stray); a start still awaited there too
                    let reason =
                        format!("node {name} lost (no answer for {} s); placing the task again", node.silent_ms / 1000);
                    actions.push(Action::Requeue { id: t.id, reason });
                    continue;
                }
                let fresh = node.report.filter(|r| r.epoch > view.settled_epoch && !view.op_in_flight);
                if let Some(report) = fresh {
                    match report.tasks.get(&t.id) {
                        Some(seen) => {
                            if let Some(merged) = merge_report(t, seen, now) {
                                let stop_after = merged.desired_state == DesiredState::Stopped && !merged.is_terminal();
                                actions.push(Action::Update(Box::new(merged)));
                                if stop_after && ready && node.reachable {
                                    actions.push(Action::SendStop { id: t.id, node: name.to_string() });
                                }
                                continue;
                            }
                        }
                        None if !report.complete => {}
                        None if stopped_wanted => {
                            // nothing runs there: the stop is done
                            actions.push(Action::MarkStopped(t.id));
                            continue;
                        }
                        None => {
                            let reason = format!("node {name} does not have the task; placing it again");
                            actions.push(Action::Requeue { id: t.id, reason });
                            continue;
                        }
                    }
                }
                if stopped_wanted && node.down {
                    // nobody can stop it now; a copy found there when the node returns is a stray
                    actions.push(Action::MarkStopped(t.id));
                } else if stopped_wanted && ready && node.reachable {
                    actions.push(Action::SendStop { id: t.id, node: name.to_string() });
                }
            }
            TaskState::Stopped | TaskState::Completed | TaskState::Failed => {}
        }
    }
    strays(tasks, nodes, now, config, &mut actions);
    actions
}

/// Copies that nodes run but should not: of tasks placed on another node, or finished; and,
/// after a grace period, containers of tasks the manager does not know at all.
fn strays(tasks: &[TaskView], nodes: &[NodeObs], now: Timestamp, config: &PlanConfig, actions: &mut Vec<Action>) {
    let by_id: HashMap<TaskId, &TaskView> = tasks.iter().map(|v| (v.task.id, v)).collect();
    let mut reclaimed: HashSet<TaskId> = HashSet::new();
    let mut adopted: HashSet<TaskId> = HashSet::new();
    for node in nodes {
        let (Some(name), Some(report)) = (node.name, node.report) else { continue };
        if !node.reachable || node.down {
            continue;
        }
        let mut running: Vec<&Task> = report.tasks.values().filter(|t| !t.is_terminal()).collect();
        running.sort_by_key(|t| (t.created_at, t.id));
        for theirs in running {
            match by_id.get(&theirs.id) {
                // the new copy of a task being moved here by a drain
                Some(ours) if ours.moving_to == Some(name) && !ours.task.is_terminal() => {}
                // one copy is adopted; a copy on another node is a stray once the task is known
                None if config.adopt_unknown && !config.forgotten.contains(&theirs.id) => {
                    if adopted.insert(theirs.id) {
                        actions.push(Action::Adopt { node: name.to_string(), seen: Box::new(theirs.clone()) });
                    }
                }
                None => match node.orphans.get(&theirs.id) {
                    None => actions.push(Action::NoteOrphan { node: name.to_string(), id: theirs.id }),
                    Some(since)
                        if now.since(*since) >= config.orphan_grace_ms && !node.stopping.contains(&theirs.id) =>
                    {
                        actions.push(Action::StopStray { id: theirs.id, node: name.to_string() })
                    }
                    Some(_) => {}
                },
                Some(ours)
                    if ours.task.state == TaskState::Pending
                        && ours.task.desired_state == DesiredState::Running
                        && !ours.op_in_flight
                        && reclaimed.insert(theirs.id) =>
                {
                    actions.push(Action::Reclaim { node: name.to_string(), seen: Box::new(theirs.clone()) });
                }
                Some(ours) if reclaimed.contains(&theirs.id) && ours.task.state == TaskState::Pending => {
                    // taken back from another node in this plan: this copy is a stray
                    if !node.stopping.contains(&theirs.id) {
                        actions.push(Action::StopStray { id: theirs.id, node: name.to_string() });
                    }
                }
                Some(ours) => {
                    let elsewhere = ours.task.node.as_deref() != Some(name);
                    // a copy on the right node is only a stray once the manager has settled the
                    // task as finished after this report was asked for
                    let finished_here = !elsewhere && ours.task.is_terminal() && report.epoch > ours.settled_epoch;
                    if (elsewhere || finished_here) && !node.stopping.contains(&theirs.id) {
                        actions.push(Action::StopStray { id: theirs.id, node: name.to_string() });
                    }
                }
            }
        }
    }
}

/// The manager's record with the worker's picture of the task taken in, or `None` if the
/// worker says nothing new. The worker owns state, container, ports, exit code and times; the
/// manager owns identity, spec, node and desired state.
pub fn merge_report(ours: &Task, seen: &Task, now: Timestamp) -> Option<Task> {
    let mut merged = ours.clone();
    // the worker's state is taken where the table allows the move; one it refuses (a late report
    // reviving a finished task) keeps ours, and Pending is the manager's to decide, not a worker's
    if seen.state != TaskState::Pending && ours.state.can_become(seen.state) {
        merged.set_state(seen.state, now).expect("the move was checked against the table");
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
    // the worker counts restarts in place; it was told the count so far when the task came
    merged.restart_count = merged.restart_count.max(seen.restart_count);
    // a new run (restarted in place, or started again) is healthy only from its own verdicts
    if merged.restart_count != ours.restart_count || merged.started_at != ours.started_at {
        merged.healthy = None;
    }
    merged.take_health(seen.healthy, now);
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
        TaskView { task: t, op_in_flight: false, settled_epoch: 0, not_before: Timestamp(0), moving_to: None }
    }

    fn report(epoch: u64, tasks: &[Task]) -> Report {
        Report { epoch, complete: true, tasks: tasks.iter().map(|t| (t.id, t.clone())).collect() }
    }

    static NONE: std::sync::LazyLock<HashSet<TaskId>> = std::sync::LazyLock::new(HashSet::new);
    static NO_ORPHANS: std::sync::LazyLock<HashMap<TaskId, Timestamp>> = std::sync::LazyLock::new(HashMap::new);

    fn node<'a>(name: &'a str, report: Option<&'a Report>) -> NodeObs<'a> {
        NodeObs {
            name: Some(name),
            reachable: true,
            down: false,
            report,
            stopping: &NONE,
            orphans: &NO_ORPHANS,
            silent_ms: 0,
        }
    }

    fn plan(tasks: &[TaskView], nodes: &[NodeObs], now: Timestamp) -> Vec<Action> {
        super::plan(
            tasks,
            nodes,
            now,
            &PlanConfig { orphan_grace_ms: 1000, adopt_unknown: false, forgotten: &HashSet::new() },
        )
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
    fn an_incomplete_report_proves_nothing_missing() {
        let t = task(TaskState::Running, Some("w1"));
        let r = Report { complete: false, ..report(5, &[]) };
        assert_eq!(plan(&[view(&t)], &[node("w1", Some(&r))], Timestamp(10)), vec![]);
    }

    #[test]
    fn stop_wanted_on_a_down_node_is_marked_stopped() {
        let mut t = task(TaskState::Running, Some("w1"));
        t.desired_state = DesiredState::Stopped;
        let down = NodeObs { reachable: false, down: true, ..node("w1", None) };
        assert_eq!(plan(&[view(&t)], &[down], Timestamp(10)), vec![Action::MarkStopped(t.id)]);
    }

    #[test]
    fn task_of_a_node_no_longer_listed_is_placed_again_once_names_are_known() {
        let t = task(TaskState::Running, Some("gone"));
        let actions = plan(&[view(&t)], &[node("w1", None)], Timestamp(10));
        assert!(matches!(actions.as_slice(), [Action::Requeue { id, .. }] if *id == t.id), "{actions:?}");
        let unnamed = NodeObs { name: None, ..node("w1", None) };
        assert_eq!(plan(&[view(&t)], &[unnamed], Timestamp(10)), vec![], "an unnamed node may be it");
        let mut stopping = t.clone();
        stopping.desired_state = DesiredState::Stopped;
        assert_eq!(plan(&[view(&stopping)], &[unnamed], Timestamp(10)), vec![Action::MarkStopped(t.id)]);
    }

    #[test]
    fn copies_on_the_wrong_node_are_strays() {
        let ours = task(TaskState::Running, Some("w2"));
        let copy = ours.clone();
        let r = report(5, &[copy]);
        let r2 = report(5, std::slice::from_ref(&ours));
        let actions = plan(&[view(&ours)], &[node("w1", Some(&r)), node("w2", Some(&r2))], Timestamp(10));
        assert_eq!(actions, vec![Action::StopStray { id: ours.id, node: "w1".into() }]);
        // a stray already being stopped is not stopped twice
        let stopping: HashSet<TaskId> = [ours.id].into();
        let w1 = NodeObs { stopping: &stopping, ..node("w1", Some(&r)) };
        assert_eq!(plan(&[view(&ours)], &[w1, node("w2", Some(&r2))], Timestamp(10)), vec![]);
    }

    #[test]
    fn containers_no_task_owns_are_stopped_after_a_grace_period() {
        let unknown = task(TaskState::Running, Some("w1"));
        let r = report(5, std::slice::from_ref(&unknown));
        // first seen: noted, not touched
        assert_eq!(
            plan(&[], &[node("w1", Some(&r))], Timestamp(10)),
            vec![Action::NoteOrphan { node: "w1".into(), id: unknown.id }]
        );
        // within the grace period: left alone (a start whose answer was lost may own it)
        let seen: HashMap<TaskId, Timestamp> = [(unknown.id, Timestamp(10))].into();
        let w1 = NodeObs { orphans: &seen, ..node("w1", Some(&r)) };
        assert_eq!(plan(&[], &[w1], Timestamp(500)), vec![]);
        // after it: stopped and removed
        assert_eq!(plan(&[], &[w1], Timestamp(1010)), vec![Action::StopStray { id: unknown.id, node: "w1".into() }]);
    }

    #[test]
    fn with_a_table_rebuilt_from_reports_an_unknown_running_task_is_adopted_once() {
        let unknown = task(TaskState::Running, Some("w1"));
        let finished = task(TaskState::Completed, Some("w1"));
        let r1 = report(5, &[unknown.clone(), finished]);
        let r2 = report(5, std::slice::from_ref(&unknown));
        let none = HashSet::new();
        let config = PlanConfig { orphan_grace_ms: 1000, adopt_unknown: true, forgotten: &none };
        let actions = super::plan(&[], &[node("w1", Some(&r1)), node("w2", Some(&r2))], Timestamp(10), &config);
        assert_eq!(actions, vec![Action::Adopt { node: "w1".into(), seen: Box::new(unknown.clone()) }]);
        // long after the grace, still adopted, never stopped
        let actions = super::plan(&[], &[node("w1", Some(&r1))], Timestamp(1_000_000), &config);
        assert_eq!(actions, vec![Action::Adopt { node: "w1".into(), seen: Box::new(unknown.clone()) }]);
        // unless the manager forgot it (finished and pruned): then it is an orphan
        let forgotten: HashSet<TaskId> = [unknown.id].into();
        let config = PlanConfig { forgotten: &forgotten, ..config };
        let actions = super::plan(&[], &[node("w1", Some(&r1))], Timestamp(10), &config);
        assert_eq!(actions, vec![Action::NoteOrphan { node: "w1".into(), id: unknown.id }]);
    }

    #[test]
    fn tasks_of_a_lost_node_are_placed_again_and_stops_there_are_done() {
        let running = task(TaskState::Running, Some("w1"));
        let scheduled = task(TaskState::Scheduled, Some("w1"));
        let mut stopping = task(TaskState::Running, Some("w1"));
        stopping.desired_state = DesiredState::Stopped;
        let r = report(5, &[running.clone(), scheduled.clone(), stopping.clone()]);
        let lost = NodeObs { down: true, reachable: false, silent_ms: 4200, ..node("w1", Some(&r)) };
        // a start still awaited on the lost node does not hold the task back
        let awaited = TaskView { op_in_flight: true, ..view(&scheduled) };
        let actions = plan(&[view(&running), awaited, view(&stopping)], &[lost], Timestamp(10));
        let reason = "node w1 lost (no answer for 4 s); placing the task again".to_string();
        assert_eq!(
            actions,
            vec![
                Action::Requeue { id: running.id, reason: reason.clone() },
                Action::Requeue { id: scheduled.id, reason },
                Action::MarkStopped(stopping.id),
            ]
        );
    }

    #[test]
    fn a_task_waiting_for_a_node_is_taken_back_where_it_still_runs() {
        let waiting = task(TaskState::Pending, None);
        let mut there = waiting.clone();
        there.state = TaskState::Running;
        there.node = Some("w1".into());
        let r1 = report(5, std::slice::from_ref(&there));
        let r2 = report(5, std::slice::from_ref(&there));
        let actions = plan(&[view(&waiting)], &[node("w1", Some(&r1)), node("w2", Some(&r2))], Timestamp(10));
        assert_eq!(
            actions,
            vec![
                Action::Place(waiting.id),
                Action::Reclaim { node: "w1".into(), seen: Box::new(there.clone()) },
                Action::StopStray { id: waiting.id, node: "w2".into() },
            ]
        );
    }

    #[test]
    fn a_copy_of_a_task_finished_here_is_a_stray_only_on_a_newer_report() {
        let mut ours = task(TaskState::Running, Some("w1"));
        let copy = ours.clone();
        ours.state = TaskState::Stopped;
        let r = report(5, &[copy]);
        let settled_before = TaskView { settled_epoch: 4, ..view(&ours) };
        assert_eq!(
            plan(&[settled_before], &[node("w1", Some(&r))], Timestamp(10)),
            vec![Action::StopStray { id: ours.id, node: "w1".into() }]
        );
        let settled_after = TaskView { settled_epoch: 5, ..view(&ours) };
        assert_eq!(plan(&[settled_after], &[node("w1", Some(&r))], Timestamp(10)), vec![]);
    }

    #[test]
    fn the_copy_a_drain_is_moving_a_task_to_is_not_a_stray_but_others_are() {
        let ours = task(TaskState::Running, Some("w1"));
        let copy = ours.clone();
        let one = std::slice::from_ref(&copy);
        let (r1, r2, r3) = (report(5, one), report(5, one), report(5, one));
        let moving = TaskView { moving_to: Some("w2"), ..view(&ours) };
        let nodes = [node("w1", Some(&r1)), node("w2", Some(&r2)), node("w3", Some(&r3))];
        assert_eq!(plan(&[moving], &nodes, Timestamp(10)), vec![Action::StopStray { id: ours.id, node: "w3".into() }]);
        // once the move is over (given up), the copy there is a stray like any other
        let strays = plan(&[view(&ours)], &nodes, Timestamp(10));
        assert_eq!(strays.len(), 2, "{strays:?}");
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
    fn healthy_since_is_the_first_passing_verdict_seen_and_a_break_or_a_new_run_starts_it_again() {
        let mut ours = task(TaskState::Running, Some("w1"));
        ours.started_at = Some(Timestamp(1));
        let mut seen = ours.clone();
        seen.healthy = Some(true);
        let first = merge_report(&ours, &seen, Timestamp(10)).expect("changed");
        assert_eq!(first.healthy_since, Some(Timestamp(10)));
        // still passing at the next poll: the same start, and nothing to write
        assert_eq!(merge_report(&first, &seen, Timestamp(20)), None);
        // a failing verdict, then a passing one: counted again from the latter
        seen.healthy = Some(false);
        let failing = merge_report(&first, &seen, Timestamp(30)).expect("changed");
        assert_eq!(failing.healthy_since, None);
        seen.healthy = Some(true);
        let again = merge_report(&failing, &seen, Timestamp(40)).expect("changed");
        assert_eq!(again.healthy_since, Some(Timestamp(40)));
        // a restart in place whose first verdict passes before a poll sees it missing: a new run
        seen.restart_count = 1;
        seen.started_at = Some(Timestamp(45));
        let restarted = merge_report(&again, &seen, Timestamp(50)).expect("changed");
        assert_eq!(restarted.healthy_since, Some(Timestamp(50)));
    }

    #[test]
    fn merge_never_breaks_the_transition_table() {
        let ours = task(TaskState::Completed, Some("w1"));
        let mut seen = ours.clone();
        seen.state = TaskState::Running;
        let merged = merge_report(&ours, &seen, Timestamp(10));
        assert!(merged.is_none_or(|m| m.state == TaskState::Completed));
        let ours = task(TaskState::Running, Some("w1"));
        let mut seen = ours.clone();
        seen.state = TaskState::Pending;
        let merged = merge_report(&ours, &seen, Timestamp(10));
        assert!(merged.is_none_or(|m| m.state == TaskState::Running), "a worker does not send a task back");
    }
}
