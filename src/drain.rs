//! Draining a node, as pure decisions: which task to move next off each draining node, and, once
//! its new copy was started elsewhere, whether that copy is ready to take over, still coming up,
//! or has failed. The manager's control thread applies them (`manager::drain`).
//!
//! A move keeps the task's id: the new copy is started on the target while the old one runs, and
//! only once the new one runs (and is healthy, when the task has a health check) does the task's
//! record switch to the target; the old copy is then a stray on its node and stopped there. So a
//! service answering on the old copy keeps answering until the new one does.
//!
//! Must not do I/O or read a clock: `now` comes in, and every rule is tested from tables below.

use crate::task::{DesiredState, Task, TaskId, TaskState};
use crate::time::Timestamp;

/// How long a new copy may take to run (and pass its health check) before the move is given up.
pub const MOVE_TIMEOUT_MS: u64 = 60_000;

/// After a task could not move (nowhere to go, a failed start), it is tried again this much later.
pub const STUCK_RETRY_MS: u64 = 10_000;

/// A node as the drain sees it.
#[derive(Debug, Clone, Copy)]
pub struct DrainNode<'a> {
    pub name: &'a str,
    pub draining: bool,
    /// Up and answering: a node that is not has its tasks placed again by the plan, not moved.
    pub up: bool,
    /// A move off this node is under way: one at a time per node.
    pub moving: bool,
}

/// A task as the drain sees it.
#[derive(Debug, Clone, Copy)]
pub struct DrainTask<'a> {
    pub task: &'a Task,
    /// A start or stop for it is awaited.
    pub op_in_flight: bool,
    /// It could not move lately: not before this time.
    pub stuck_until: Option<Timestamp>,
}

/// The tasks to move now, at most one per draining node: the oldest of its running tasks that
/// wants to run, has nothing under way and is not waiting after a failed move.
pub fn next_moves(tasks: &[DrainTask], nodes: &[DrainNode], now: Timestamp) -> Vec<TaskId> {
    let mut moves = Vec::new();
    for node in nodes.iter().filter(|n| n.draining && n.up && !n.moving) {
        let next = tasks
            .iter()
            .filter(|t| t.task.node.as_deref() == Some(node.name))
            .filter(|t| t.task.state == TaskState::Running && t.task.desired_state == DesiredState::Running)
            .filter(|t| !t.op_in_flight && t.stuck_until.is_none_or(|until| now >= until))
            .min_by_key(|t| (t.task.created_at, t.task.id));
        if let Some(t) = next {
            moves.push(t.task.id);
        }
    }
    moves
}

/// What to do with a move whose new copy was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveCheck {
    /// The new copy is not ready yet.
    Wait,
    /// The new copy runs (and is healthy): the task's record goes over to it.
    Switch,
    /// The new copy will not do: the move is given up, with why; the task stays where it is.
    Fail(String),
    /// The task itself changed meanwhile (stopped, finished, or its node lost): the move no
    /// longer applies and is forgotten; the plan deals with the new copy like any other.
    Abandon,
}

/// Whether a move of `task` from `from` can complete, from what the target last said of the new
/// copy (`seen`: the start's answer or a later report), when it was started, and the time.
pub fn check_move(
    task: &Task,
    from: &str,
    target: &str,
    seen: Option<&Task>,
    started: Timestamp,
    now: Timestamp,
) -> MoveCheck {
    if task.desired_state != DesiredState::Running
        || task.state != TaskState::Running
        || task.node.as_deref() != Some(from)
    {
        return MoveCheck::Abandon;
    }
    let waited = now.since(started);
    let late = || MoveCheck::Fail(format!("the new copy on {target} was not ready after {} s", waited / 1000));
    let Some(seen) = seen else {
        return if waited >= MOVE_TIMEOUT_MS { late() } else { MoveCheck::Wait };
    };
    match seen.state {
        // a copy the target is stopping (a stray of an earlier move, still in its grace period)
        // is no copy to move to: it will be gone in a moment
        _ if seen.desired_state == DesiredState::Stopped && !seen.is_terminal() => {
            if waited >= MOVE_TIMEOUT_MS {
                late()
            } else {
                MoveCheck::Wait
            }
        }
        TaskState::Running if task.spec.health_check.is_none() || seen.healthy == Some(true) => MoveCheck::Switch,
        // not healthy yet: a copy that comes up slowly fails probes first, and the worker restarts
        // one that fails them for good (then it is no longer Running); wait, up to the timeout
        TaskState::Running if waited >= MOVE_TIMEOUT_MS => {
            MoveCheck::Fail(format!("the new copy on {target} was not healthy after {} s", waited / 1000))
        }
        _ if seen.is_terminal() => {
            let how = match (&seen.error, seen.exit_code) {
                (Some(e), _) => e.clone(),
                (None, Some(code)) => format!("exit code {code}"),
                (None, None) => seen.state.to_string(),
            };
            MoveCheck::Fail(format!("the new copy on {target} ended ({}): {how}", seen.state))
        }
        _ if waited >= MOVE_TIMEOUT_MS => late(),
        _ => MoveCheck::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskSpec;

    fn task(name: &str, node: &str, state: TaskState, created: u64) -> Task {
        let spec = TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"b"}}"#).as_bytes()).expect("valid");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(created));
        t.state = state;
        t.node = Some(node.into());
        t
    }

    fn node(name: &str, draining: bool, up: bool, moving: bool) -> DrainNode<'_> {
        DrainNode { name, draining, up, moving }
    }

    #[test]
    fn each_draining_node_moves_its_oldest_running_task_one_at_a_time() {
        let a_old = task("a-old", "a", TaskState::Running, 1);
        let a_new = task("a-new", "a", TaskState::Running, 2);
        let a_sched = task("a-sched", "a", TaskState::Scheduled, 0);
        let mut a_stopping = task("a-stopping", "a", TaskState::Running, 0);
        a_stopping.desired_state = DesiredState::Stopped;
        let b_one = task("b-one", "b", TaskState::Running, 1);
        let c_one = task("c-one", "c", TaskState::Running, 1);
        let d_one = task("d-one", "d", TaskState::Running, 1);
        let e_one = task("e-one", "e", TaskState::Running, 1);
        let view = |t| DrainTask { task: t, op_in_flight: false, stuck_until: None };
        let tasks: Vec<DrainTask> =
            [&a_new, &a_old, &a_sched, &a_stopping, &b_one, &c_one, &d_one, &e_one].into_iter().map(view).collect();
        let now = Timestamp(100);
        // (what, nodes, the moves wanted)
        let table: Vec<(&str, Vec<DrainNode>, Vec<TaskId>)> = vec![
            ("nothing drains", vec![node("a", false, true, false)], vec![]),
            ("the oldest running task that wants to run", vec![node("a", true, true, false)], vec![a_old.id]),
            ("one move at a time per node", vec![node("a", true, true, true)], vec![]),
            ("a node that is down is not drained by moves", vec![node("a", true, false, false)], vec![]),
            (
                "every draining node moves one",
                vec![node("a", true, true, false), node("b", true, true, false), node("c", false, true, false)],
                vec![a_old.id, b_one.id],
            ),
        ];
        for (what, nodes, want) in table {
            assert_eq!(next_moves(&tasks, &nodes, now), want, "{what}");
        }
        // a task with a call under way, or waiting after a failed move, is passed over
        let busy = [
            DrainTask { task: &a_old, op_in_flight: true, stuck_until: None },
            DrainTask { task: &a_new, op_in_flight: false, stuck_until: Some(Timestamp(200)) },
        ];
        assert_eq!(next_moves(&busy, &[node("a", true, true, false)], now), vec![]);
        assert_eq!(next_moves(&busy, &[node("a", true, true, false)], Timestamp(200)), vec![a_new.id], "tried again");
    }

    #[test]
    fn a_move_switches_once_the_new_copy_runs_and_is_healthy() {
        let old = task("web", "a", TaskState::Running, 1);
        let mut checked = old.clone();
        checked.spec.health_check = serde_json::from_str(r#"{"path":"/","port":80}"#).expect("a health check");
        let copy = |state: TaskState, healthy: Option<bool>| {
            let mut t = task("web", "b", state, 1);
            t.healthy = healthy;
            t
        };
        let (running, scheduled) = (copy(TaskState::Running, None), copy(TaskState::Scheduled, None));
        let (healthy, unhealthy) = (copy(TaskState::Running, Some(true)), copy(TaskState::Running, Some(false)));
        let mut stopping = copy(TaskState::Running, None);
        stopping.desired_state = DesiredState::Stopped;
        let mut failed = copy(TaskState::Failed, None);
        failed.exit_code = Some(3);
        let t0 = Timestamp(1_000);
        let soon = Timestamp(2_000);
        let late = Timestamp(1_000 + MOVE_TIMEOUT_MS);
        let table: Vec<(&str, &Task, Option<&Task>, Timestamp, MoveCheck)> = vec![
            ("no word yet", &old, None, soon, MoveCheck::Wait),
            ("no word for too long", &old, None, late, MoveCheck::Fail("not ready after 60 s".into())),
            ("still being started", &old, Some(&scheduled), soon, MoveCheck::Wait),
            ("running, no health check", &old, Some(&running), soon, MoveCheck::Switch),
            ("running, health not known yet", &checked, Some(&running), soon, MoveCheck::Wait),
            ("running and healthy", &checked, Some(&healthy), soon, MoveCheck::Switch),
            ("running, failing probes so far", &checked, Some(&unhealthy), soon, MoveCheck::Wait),
            ("unhealthy too long", &checked, Some(&unhealthy), late, MoveCheck::Fail("not healthy after 60 s".into())),
            ("a copy being stopped", &old, Some(&stopping), soon, MoveCheck::Wait),
            ("a copy being stopped, too long", &old, Some(&stopping), late, MoveCheck::Fail("not ready".into())),
            ("ended at once", &old, Some(&failed), soon, MoveCheck::Fail("ended (Failed): exit code 3".into())),
            ("health unknown too long", &checked, Some(&running), late, MoveCheck::Fail("not healthy".into())),
        ];
        for (what, ours, seen, now, want) in table {
            match (check_move(ours, "a", "b", seen, t0, now), want) {
                (MoveCheck::Fail(got), MoveCheck::Fail(part)) => assert!(got.contains(&part), "{what}: {got}"),
                (got, want) => assert_eq!(got, want, "{what}"),
            }
        }
    }

    #[test]
    fn a_move_of_a_task_that_changed_meanwhile_is_abandoned() {
        let running = task("web", "b", TaskState::Running, 1);
        let mut stopping = task("web", "a", TaskState::Running, 1);
        stopping.desired_state = DesiredState::Stopped;
        let requeued = task("web", "a", TaskState::Pending, 1);
        let elsewhere = task("web", "c", TaskState::Running, 1);
        let finished = task("web", "a", TaskState::Completed, 1);
        for (what, ours) in
            [("stop asked", &stopping), ("node lost", &requeued), ("moved", &elsewhere), ("finished", &finished)]
        {
            let got = check_move(ours, "a", "b", Some(&running), Timestamp(0), Timestamp(1));
            assert_eq!(got, MoveCheck::Abandon, "{what}");
        }
    }
}
