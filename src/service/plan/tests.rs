//! The service plan from tables: a service, its tasks and nodes in; the steps out.
use super::*;
use crate::service::{FailureAction, ServiceSpec, UpdatePolicy};
use serde_json::json;

const NOW: Timestamp = Timestamp(100_000);

fn spec(image: &str, port: Option<u16>, health: bool) -> TaskSpec {
    let mut v = json!({"name": "web", "image": image});
    if let Some(p) = port {
        v["ports"] = json!([{"container": 8080, "host": p}]);
    }
    if health {
        v["health_check"] = json!({"path": "/", "port": 8080});
    }
    TaskSpec::from_value(v).expect("valid")
}

/// A service at version 1 with `replicas`, or in an update 1 → 2 when `updating`.
fn service(replicas: u32, updating: Option<UpdateState>, policy: UpdatePolicy, port: Option<u16>) -> Service {
    let s = ServiceSpec { name: "web".into(), template: spec("v1", port, false), replicas, policy, publish: None };
    let mut svc = Service::new(s.clone(), Timestamp(1));
    if let Some(state) = updating {
        svc.deploy(ServiceSpec { template: spec("v2", port, false), ..s }, Timestamp(50_000));
        let u = svc.update.as_mut().expect("update");
        u.state = state;
        if state == UpdateState::RollingBack {
            svc.version = 1;
        }
    }
    svc
}

fn nodes(names: &[&str]) -> Vec<PlanNode> {
    names.iter().map(|n| PlanNode { name: n.to_string(), unavailable: None, ports_taken: Vec::new() }).collect()
}

/// A replica: version, state, node, created at (seconds), started at (seconds).
fn task(version: u32, state: TaskState, node: Option<&str>, created_s: u64, port: Option<u16>) -> Task {
    let mut t = Task::new(TaskId::new_v4(), spec(&format!("v{version}"), port, false), Timestamp(created_s * 1000));
    t.service = Some("web".into());
    t.service_version = Some(version);
    t.state = state;
    t.node = node.map(str::to_string);
    if state == TaskState::Running {
        t.started_at = Some(Timestamp(created_s * 1000 + 1000));
    }
    t
}

fn run(svc: &Service, tasks: &[Task], nodes: &[PlanNode]) -> Vec<Step> {
    let refs: Vec<&Task> = tasks.iter().collect();
    plan(svc, &refs, nodes, NOW)
}

fn starts(steps: &[Step]) -> Vec<(u32, Vec<&str>)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Start { version, candidates, .. } => {
                Some((*version, candidates.iter().map(|c| c.node.as_str()).collect()))
            }
            _ => None,
        })
        .collect()
}

fn stops(steps: &[Step]) -> Vec<TaskId> {
    steps.iter().filter_map(|s| if let Step::Stop { id, .. } = s { Some(*id) } else { None }).collect()
}

fn transitions(steps: &[Step]) -> Vec<UpdateState> {
    steps.iter().filter_map(|s| if let Step::Transition { state, .. } = s { Some(*state) } else { None }).collect()
}

use TaskState::*;

#[test]
fn a_new_service_spreads_its_replicas_fewest_first() {
    let svc = service(3, None, UpdatePolicy::default(), None);
    let steps = run(&svc, &[], &nodes(&["a", "b"]));
    // 2/1: the first goes to a (ties by name), the second to b, the third to a or b again
    assert_eq!(starts(&steps), vec![(1, vec!["a", "b"]), (1, vec!["b", "a"]), (1, vec!["a", "b"])]);
    // one already on a: the next ones prefer b
    let steps = run(&svc, &[task(1, Running, Some("a"), 1, None)], &nodes(&["a", "b"]));
    assert_eq!(starts(&steps), vec![(1, vec!["b", "a"]), (1, vec!["a", "b"])]);
}

#[test]
fn nodes_that_cannot_take_tasks_are_left_out_and_no_node_leaves_the_reason() {
    let svc = service(1, None, UpdatePolicy::default(), None);
    let mut ns = nodes(&["a", "b"]);
    ns[0].unavailable = Some("down".into());
    assert_eq!(starts(&run(&svc, &[], &ns)), vec![(1, vec!["b"])]);
    ns[1].unavailable = Some("not heard from yet".into());
    let steps = run(&svc, &[], &ns);
    let Step::Start { candidates, why, .. } = &steps[0] else { panic!("{steps:?}") };
    assert!(candidates.is_empty());
    let why = why.as_deref().expect("a reason");
    assert!(why.contains("a: down") && why.contains("b: not heard from yet"), "{why}");
}

#[test]
fn keeping_the_count_table() {
    // (replicas, tasks as (state, node, created_s), expected starts, expected stopped indices)
    type Row = (u32, Vec<(TaskState, Option<&'static str>, u64)>, usize, Vec<usize>);
    let rows: Vec<Row> = vec![
        (2, vec![(Running, Some("a"), 1), (Running, Some("b"), 2)], 0, vec![]),
        // a replica failed for good: a new one replaces it
        (2, vec![(Running, Some("a"), 1), (Failed, Some("b"), 2)], 1, vec![]),
        // stopped and completed ones do not count either
        (2, vec![(Stopped, Some("a"), 1), (Completed, Some("b"), 2)], 2, vec![]),
        // scale down: newest first
        (1, vec![(Running, Some("a"), 1), (Running, Some("b"), 3), (Running, Some("a"), 2)], 0, vec![1, 2]),
        // scale to zero
        (0, vec![(Running, Some("a"), 1)], 0, vec![0]),
        // scheduled and pending ones count as replicas
        (2, vec![(Scheduled, Some("a"), 1), (Pending, None, 2)], 0, vec![]),
    ];
    for (replicas, tasks, n_starts, stopped) in rows {
        let svc = service(replicas, None, UpdatePolicy::default(), None);
        let tasks: Vec<Task> = tasks.iter().map(|&(s, n, c)| task(1, s, n, c, None)).collect();
        let steps = run(&svc, &tasks, &nodes(&["a", "b"]));
        assert_eq!(starts(&steps).len(), n_starts, "{replicas} {steps:?}");
        let want: Vec<TaskId> = stopped.iter().map(|&i| tasks[i].id).collect();
        assert_eq!(stops(&steps), want, "{replicas} {steps:?}");
    }
}

#[test]
fn a_pending_replica_is_placed_again_spread_first() {
    let svc = service(2, None, UpdatePolicy::default(), None);
    let tasks = [task(1, Running, Some("a"), 1, None), task(1, Pending, None, 2, None)];
    let steps = run(&svc, &tasks, &nodes(&["a", "b"]));
    assert_eq!(steps.len(), 1, "{steps:?}");
    let Step::Place { id, candidates, .. } = &steps[0] else { panic!("{steps:?}") };
    assert_eq!(*id, tasks[1].id);
    assert_eq!(candidates[0], Candidate { node: "b".into(), replicas: 0 });
}

#[test]
fn start_first_starts_new_then_stops_old_only_when_the_new_one_has_been_ready_long_enough() {
    let policy = UpdatePolicy { monitor_s: 5, ..UpdatePolicy::default() };
    let svc = service(2, Some(UpdateState::Updating), policy, None);
    let old = [task(1, Running, Some("a"), 1, None), task(1, Running, Some("b"), 2, None)];
    // step 1: one new (parallelism 1), nothing stopped
    let steps = run(&svc, &old, &nodes(&["a", "b"]));
    assert_eq!((starts(&steps).len(), stops(&steps)), (1, vec![]), "{steps:?}");
    // the new one runs, but for less than monitor_s: wait
    let mut new = task(2, Running, Some("a"), 60, None);
    new.started_at = Some(Timestamp(NOW.0 - 4_000));
    let all = [old[0].clone(), old[1].clone(), new.clone()];
    let steps = run(&svc, &all, &nodes(&["a", "b"]));
    assert!(steps.is_empty(), "{steps:?}");
    // ready: the oldest old one goes; the next new one starts
    new.started_at = Some(Timestamp(NOW.0 - 5_000));
    let all = [old[0].clone(), old[1].clone(), new.clone()];
    let steps = run(&svc, &all, &nodes(&["a", "b"]));
    assert_eq!(stops(&steps), vec![old[0].id], "{steps:?}");
    assert_eq!(starts(&steps).len(), 0, "no room above replicas + parallelism yet: {steps:?}");
    // with the old one stopping (desired Stopped), the next new one starts
    let mut stopping = old[0].clone();
    stopping.desired_state = DesiredState::Stopped;
    let all = [stopping, old[1].clone(), new.clone()];
    let steps = run(&svc, &all, &nodes(&["a", "b"]));
    assert_eq!(starts(&steps).len(), 1, "{steps:?}");
    assert!(stops(&steps).is_empty(), "{steps:?}");
}

#[test]
fn never_fewer_than_replicas_ready_during_a_start_first_update() {
    // at every point of a simulated update, Running old + ready new ≥ replicas after the steps
    let policy = UpdatePolicy { monitor_s: 0, parallelism: 2, ..UpdatePolicy::default() };
    let mut svc = service(3, Some(UpdateState::Updating), policy, None);
    let mut tasks: Vec<Task> = (0..3).map(|i| task(1, Running, Some(["a", "b"][i % 2]), i as u64, None)).collect();
    for round in 0..10 {
        let steps = run(&svc, &tasks, &nodes(&["a", "b"]));
        for s in &steps {
            match s {
                Step::Start { version, candidates, .. } => {
                    let mut t = task(*version, Running, Some(&candidates[0].node), 70 + round, None);
                    t.started_at = Some(Timestamp(0));
                    tasks.push(t);
                }
                Step::Stop { id, .. } => {
                    let t = tasks.iter_mut().find(|t| t.id == *id).expect("known");
                    t.desired_state = DesiredState::Stopped;
                    t.state = Stopped;
                }
                Step::Transition { state, .. } => {
                    svc.update.as_mut().expect("update").state = *state;
                }
                other => panic!("{other:?}"),
            }
        }
        let running = tasks.iter().filter(|t| t.state == Running && t.desired_state == DesiredState::Running);
        assert!(running.count() >= 3, "round {round}: {tasks:?}");
    }
    assert_eq!(svc.update.as_ref().expect("update").state, UpdateState::Completed);
    let new: Vec<&Task> = tasks.iter().filter(|t| t.state == Running).collect();
    assert_eq!(new.len(), 3);
    assert!(new.iter().all(|t| t.service_version == Some(2)));
}

#[test]
fn stop_first_stops_then_starts() {
    let policy = UpdatePolicy { order: UpdateOrder::StopFirst, monitor_s: 0, ..UpdatePolicy::default() };
    let svc = service(2, Some(UpdateState::Updating), policy, None);
    let old = [task(1, Running, Some("a"), 1, None), task(1, Running, Some("b"), 2, None)];
    let steps = run(&svc, &old, &nodes(&["a", "b"]));
    assert_eq!((starts(&steps).len(), stops(&steps)), (1, vec![old[0].id]), "{steps:?}");
    // the stopped one gone and its replacement still starting: nothing more goes down
    let replacement = task(2, Scheduled, Some("a"), 60, None);
    let steps = run(&svc, &[old[1].clone(), replacement], &nodes(&["a", "b"]));
    assert!(stops(&steps).is_empty(), "a second replica down: {steps:?}");
    // with one old stopping: a new one starts, on the node that is free of replicas
    let mut stopping = old[0].clone();
    stopping.desired_state = DesiredState::Stopped;
    let steps = run(&svc, &[stopping.clone(), old[1].clone()], &nodes(&["a", "b"]));
    assert_eq!(starts(&steps), vec![(2, vec!["a", "b"])], "{steps:?}");
    // the new one not ready yet: nothing more is stopped
    let new = task(2, Scheduled, Some("a"), 60, None);
    let steps = run(&svc, &[stopping, old[1].clone(), new], &nodes(&["a", "b"]));
    assert!(steps.is_empty(), "{steps:?}");
}

#[test]
fn an_update_is_done_when_only_ready_new_replicas_are_left() {
    let policy = UpdatePolicy { monitor_s: 0, ..UpdatePolicy::default() };
    for (state, done) in
        [(UpdateState::Updating, UpdateState::Completed), (UpdateState::RollingBack, UpdateState::RolledBack)]
    {
        let svc = service(2, Some(state), policy, None);
        let v = svc.version;
        let tasks = [task(v, Running, Some("a"), 60, None), task(v, Running, Some("b"), 61, None)];
        assert_eq!(transitions(&run(&svc, &tasks, &nodes(&["a", "b"]))), vec![done]);
        // one still starting: not yet
        let tasks = [task(v, Running, Some("a"), 60, None), task(v, Scheduled, Some("b"), 61, None)];
        assert!(transitions(&run(&svc, &tasks, &nodes(&["a", "b"]))).is_empty());
    }
}

#[test]
fn a_failing_new_version_rolls_back_or_pauses_and_says_why() {
    // (policy's failure action, update state, the new task's state and restarts, expected)
    let rows = [
        (FailureAction::Rollback, UpdateState::Updating, Failed, 0, Some(UpdateState::RollingBack)),
        (FailureAction::Pause, UpdateState::Updating, Failed, 0, Some(UpdateState::Paused)),
        (FailureAction::Rollback, UpdateState::Updating, Completed, 0, Some(UpdateState::RollingBack)),
        (FailureAction::Rollback, UpdateState::Updating, Running, 1, Some(UpdateState::RollingBack)),
        // a rollback that fails too pauses rather than loop
        (FailureAction::Rollback, UpdateState::RollingBack, Failed, 0, Some(UpdateState::Paused)),
        (FailureAction::Rollback, UpdateState::Updating, Running, 0, None),
    ];
    for (action, state, task_state, restarts, want) in rows {
        let policy = UpdatePolicy { failure_action: action, ..UpdatePolicy::default() };
        let svc = service(1, Some(state), policy, None);
        let mut bad = task(svc.version, task_state, Some("a"), 60, None);
        bad.restart_count = restarts;
        bad.error = Some("exited with code 1".into());
        let steps = run(
            &svc,
            &[task(if svc.version == 1 { 2 } else { 1 }, Running, Some("b"), 1, None), bad],
            &nodes(&["a", "b"]),
        );
        let got = steps.iter().find_map(|s| match s {
            Step::Transition { state, reason } => Some((*state, reason.clone())),
            _ => None,
        });
        assert_eq!(got.as_ref().map(|g| g.0), want, "{action:?} {state:?} {task_state:?}: {steps:?}");
        if let Some((_, reason)) = got {
            let reason = reason.expect("a reason");
            assert!(reason.contains(&format!("version {}", svc.version)), "{reason}");
            assert_eq!(steps.len(), 1, "a failure is the only step of its plan: {steps:?}");
        }
    }
}

#[test]
fn a_failure_from_before_the_update_step_does_not_count() {
    let svc = service(1, Some(UpdateState::Updating), UpdatePolicy::default(), None);
    // a version-2 task that failed before this update began (an earlier attempt)
    let old_failure = task(2, Failed, Some("a"), 10, None);
    let steps = run(&svc, &[task(1, Running, Some("b"), 1, None), old_failure], &nodes(&["a", "b"]));
    assert!(transitions(&steps).is_empty(), "{steps:?}");
}

#[test]
fn a_paused_update_keeps_the_count_with_the_old_version() {
    let svc = service(2, Some(UpdateState::Paused), UpdatePolicy::default(), None);
    let steps = run(&svc, &[task(1, Running, Some("a"), 1, None)], &nodes(&["a", "b"]));
    assert_eq!(starts(&steps), vec![(1, vec!["b", "a"])]);
}

#[test]
fn a_fixed_host_port_moves_the_replica_or_forces_stop_first_and_says_so() {
    let policy = UpdatePolicy { monitor_s: 0, ..UpdatePolicy::default() };
    // one old replica on a, b free: the new one must go to b
    let svc = service(1, Some(UpdateState::Updating), policy, Some(8080));
    let old = task(1, Running, Some("a"), 1, Some(8080));
    let steps = run(&svc, std::slice::from_ref(&old), &nodes(&["a", "b"]));
    assert_eq!(starts(&steps), vec![(2, vec!["b"])], "{steps:?}");
    // old ones hold the port on both nodes: stop one first, with a note
    let svc = service(2, Some(UpdateState::Updating), policy, Some(8080));
    let olds = [task(1, Running, Some("a"), 1, Some(8080)), task(1, Running, Some("b"), 2, Some(8080))];
    let steps = run(&svc, &olds, &nodes(&["a", "b"]));
    assert!(starts(&steps).is_empty(), "{steps:?}");
    assert_eq!(stops(&steps), vec![olds[0].id], "{steps:?}");
    assert!(steps.iter().any(|s| matches!(s, Step::Note(n) if n.contains("host port 8080"))), "{steps:?}");
    // while that one is being stopped, nothing more is stopped; once it is gone, the new one
    // goes where the port is free
    let mut stopping = olds[0].clone();
    stopping.desired_state = DesiredState::Stopped;
    let steps = run(&svc, &[stopping.clone(), olds[1].clone()], &nodes(&["a", "b"]));
    assert!(stops(&steps).is_empty() && starts(&steps).is_empty(), "{steps:?}");
    stopping.state = Stopped;
    let steps = run(&svc, &[stopping, olds[1].clone()], &nodes(&["a", "b"]));
    assert_eq!(starts(&steps), vec![(2, vec!["a"])], "{steps:?}");
}

#[test]
fn a_health_check_must_pass_before_a_new_replica_counts() {
    let policy = UpdatePolicy { monitor_s: 0, ..UpdatePolicy::default() };
    let svc = service(1, Some(UpdateState::Updating), policy, None);
    let old = task(1, Running, Some("a"), 1, None);
    let mut new = task(2, Running, Some("b"), 60, None);
    new.spec.health_check = spec("x", Some(0), true).health_check;
    for (healthy, stopped) in [(None, false), (Some(false), false), (Some(true), true)] {
        new.healthy = healthy;
        new.healthy_since = (healthy == Some(true)).then_some(NOW);
        let steps = run(&svc, &[old.clone(), new.clone()], &nodes(&["a", "b"]));
        assert_eq!(!stops(&steps).is_empty(), stopped, "{healthy:?}: {steps:?}");
    }
}

#[test]
fn monitor_s_counts_from_the_first_healthy_verdict_for_a_checked_replica() {
    // (health check, started s before now, healthy since s before now, ready with monitor_s 5)
    let rows = [
        // long started, but healthy only for 2 s: not yet
        (true, 60, Some(2), false),
        (true, 60, Some(5), true),
        // healthy, but the record does not say since when: not counted
        (true, 60, None, false),
        // no health check: the container's start counts
        (false, 5, None, true),
        (false, 4, None, false),
    ];
    let policy = UpdatePolicy { monitor_s: 5, ..UpdatePolicy::default() };
    let svc = service(1, Some(UpdateState::Updating), policy, None);
    let old = task(1, Running, Some("a"), 1, None);
    for (checked, started_s, healthy_s, ready) in rows {
        let mut new = task(2, Running, Some("b"), 60, None);
        if checked {
            new.spec.health_check = spec("x", Some(0), true).health_check;
            new.healthy = Some(true);
        }
        new.started_at = Some(Timestamp(NOW.0 - started_s * 1000));
        new.healthy_since = healthy_s.map(|s| Timestamp(NOW.0 - s * 1000));
        let steps = run(&svc, &[old.clone(), new], &nodes(&["a", "b"]));
        assert_eq!(stops(&steps) == vec![old.id], ready, "{checked} {started_s} {healthy_s:?}: {steps:?}");
    }
}

#[test]
fn replicas_that_keep_failing_are_replaced_after_a_back_off() {
    let svc = service(2, None, UpdatePolicy::default(), None);
    let v = svc.version;
    let running = task(v, Running, Some("a"), 1, None);
    let mut failed = task(v, Failed, Some("b"), 2, None);
    failed.finished_at = Some(Timestamp(NOW.millis() - 500));
    // half a second after the failure: not yet (1 s for the first)
    let steps = run(&svc, &[running.clone(), failed.clone()], &nodes(&["a", "b"]));
    assert!(starts(&steps).is_empty(), "{steps:?}");
    // after the back-off: replaced
    failed.finished_at = Some(Timestamp(NOW.millis() - 1500));
    let steps = run(&svc, &[running, failed], &nodes(&["a", "b"]));
    assert_eq!(starts(&steps).len(), 1, "{steps:?}");
}

#[test]
fn a_host_port_another_task_holds_keeps_a_replica_off_that_node() {
    let svc = service(1, None, UpdatePolicy::default(), Some(9000));
    let mut nodes = nodes(&["a", "b"]);
    nodes[0].ports_taken = vec![(9000, crate::task::Protocol::Tcp)];
    let steps = run(&svc, &[], &nodes);
    let placed = starts(&steps);
    assert_eq!(placed.len(), 1, "{steps:?}");
    assert!(!placed[0].1.contains(&"a"), "the replica is not sent where its port is taken: {steps:?}");
}

/// A service updating 1 → 2 where each version's template has its own fixed host port.
fn updating_with_ports(replicas: u32, v1: Option<u16>, v2: Option<u16>) -> Service {
    let policy = UpdatePolicy { monitor_s: 0, ..UpdatePolicy::default() };
    let s = ServiceSpec { name: "web".into(), template: spec("v1", v1, false), replicas, policy, publish: None };
    let mut svc = Service::new(s.clone(), Timestamp(1));
    svc.deploy(ServiceSpec { template: spec("v2", v2, false), ..s }, Timestamp(50_000));
    svc
}

fn held(ns: &mut [PlanNode], node: &str, port: u16) {
    let n = ns.iter_mut().find(|n| n.name == node).expect("a node of the table");
    n.ports_taken.push((port, crate::task::Protocol::Tcp));
}

#[test]
fn only_the_service_s_own_old_replicas_holding_a_port_force_stop_first() {
    // (nodes, v1's port, v2's port, old replicas' nodes, ports other tasks hold, expected: the
    // indices of the old replicas stopped, whether the new one starts with no node, the note)
    type Row = (&'static [&'static str], Option<u16>, Option<u16>, Vec<&'static str>, Vec<(&'static str, u16)>);
    let rows: Vec<(Row, Vec<usize>, bool, bool)> = vec![
        // the old version holds the port everywhere: one old replica stops first
        ((&["a", "b"], Some(8080), Some(8080), vec!["a", "b"], vec![]), vec![0], false, true),
        // another task holds it everywhere: nothing old is stopped, the new one waits for a node
        ((&["a", "b"], None, Some(8080), vec!["a", "b"], vec![("a", 8080), ("b", 8080)]), vec![], true, false),
        // old on a, another task on b: only a can be freed, so the one on a stops first
        ((&["a", "b"], Some(8080), Some(8080), vec!["a"], vec![("b", 8080)]), vec![0], false, true),
        // three nodes, the third's port another task's: the old version's are still the way out
        ((&["a", "b", "c"], Some(8080), Some(8080), vec!["b", "a"], vec![("c", 8080)]), vec![0], false, true),
        // the old version holds another port than the new one's: no reason to stop it
        ((&["a"], Some(9090), Some(8080), vec!["a"], vec![("a", 8080)]), vec![], true, false),
    ];
    for ((names, v1, v2, olds, others), want_stopped, want_waiting, want_note) in rows {
        let svc = updating_with_ports(olds.len() as u32, v1, v2);
        let mut ns = nodes(names);
        for (node, port) in &others {
            held(&mut ns, node, *port);
        }
        let old: Vec<Task> =
            olds.iter().enumerate().map(|(i, n)| task(1, Running, Some(n), 1 + i as u64, v1)).collect();
        let steps = run(&svc, &old, &ns);
        let want: Vec<TaskId> = want_stopped.iter().map(|&i| old[i].id).collect();
        assert_eq!(stops(&steps), want, "{names:?} {others:?}: {steps:?}");
        let waiting = steps.iter().any(|s| matches!(s, Step::Start { candidates, .. } if candidates.is_empty()));
        assert_eq!(waiting, want_waiting, "{names:?} {others:?}: {steps:?}");
        let note = steps.iter().find_map(|s| if let Step::Note(n) = s { Some(n.as_str()) } else { None });
        assert_eq!(note.is_some(), want_note, "{names:?} {others:?}: {steps:?}");
        if let Some(note) = note {
            assert!(note.contains("host port 8080") && note.contains("old version"), "{note}");
        }
        if want_waiting {
            let why = steps.iter().find_map(|s| match s {
                Step::Start { why, .. } => why.clone(),
                _ => None,
            });
            let why = why.expect("a reason to wait");
            assert!(why.contains("taken by another task"), "the reason names the holder: {why}");
        }
    }
}

#[test]
fn a_port_another_task_holds_everywhere_never_drains_the_service() {
    // the bug this guards against: each pass stopped one more old replica for a new one that
    // could go nowhere, down to zero
    let svc = updating_with_ports(2, None, Some(8080));
    let mut ns = nodes(&["a", "b"]);
    held(&mut ns, "a", 8080);
    held(&mut ns, "b", 8080);
    let mut tasks = vec![task(1, Running, Some("a"), 1, None), task(1, Running, Some("b"), 2, None)];
    for round in 0..6u64 {
        for step in run(&svc, &tasks, &ns) {
            match step {
                Step::Start { version, candidates, why, .. } => {
                    assert!(candidates.is_empty(), "{candidates:?}");
                    let mut t = task(version, Pending, None, 60 + round, Some(8080));
                    t.error = why;
                    tasks.push(t);
                }
                Step::Stop { id, .. } => {
                    let t = tasks.iter_mut().find(|t| t.id == id).expect("known");
                    t.desired_state = DesiredState::Stopped;
                    t.state = Stopped;
                }
                Step::Place { candidates, .. } => assert!(candidates.is_empty(), "{candidates:?}"),
                other => panic!("round {round}: {other:?}"),
            }
        }
        let old_up = tasks.iter().filter(|t| t.service_version == Some(1) && t.state == Running).count();
        assert_eq!(old_up, 2, "round {round}: {tasks:?}");
    }
    let waiting: Vec<&Task> = tasks.iter().filter(|t| t.state == Pending).collect();
    assert_eq!(waiting.len(), 1, "parallelism 1: one new replica waits, no more: {tasks:?}");
    assert!(waiting[0].error.as_deref().is_some_and(|e| e.contains("a: host port 8080 taken by another task")));
}

#[test]
fn a_node_freed_for_a_replacement_then_lost_costs_no_second_old_replica() {
    // pass 1 stops the old replica on a to free its host port; then a is lost to the
    // replacement (drained, down, or another task takes the port there): the old replica on b
    // must keep serving while the replacement waits, since one replica is down already
    for lost in ["unavailable", "taken"] {
        let svc = updating_with_ports(2, Some(8080), Some(8080));
        let mut ns = nodes(&["a", "b"]);
        let (o1, o2) = (task(1, Running, Some("a"), 1, Some(8080)), task(1, Running, Some("b"), 2, Some(8080)));
        assert_eq!(stops(&run(&svc, &[o1.clone(), o2.clone()], &ns)), vec![o1.id]);
        match lost {
            "unavailable" => ns[0].unavailable = Some("draining".into()),
            _ => held(&mut ns, "a", 8080),
        }
        let mut tasks = vec![o2.clone()];
        for round in 0..4u64 {
            for step in run(&svc, &tasks, &ns) {
                match step {
                    Step::Stop { id, .. } => panic!("{lost}, round {round}: stopped {id} with a replica down"),
                    Step::Start { version, candidates, why, .. } => {
                        assert!(candidates.is_empty(), "{lost}: {candidates:?}");
                        let mut t = task(version, Pending, None, 60 + round, Some(8080));
                        t.error = why;
                        tasks.push(t);
                    }
                    _ => {}
                }
            }
        }
        let waiting = tasks.iter().filter(|t| t.state == Pending).count();
        assert_eq!(waiting, 1, "{lost}: the replacement waits, with its reason: {tasks:?}");
    }
}

#[test]
fn a_new_replica_waiting_for_a_node_the_old_version_can_free_gets_it() {
    // a new replica went Pending while no node could be freed; now the old one on a is the only
    // holder there: it is stopped for the waiting one (no new start is added)
    let svc = updating_with_ports(1, Some(8080), Some(8080));
    let ns = nodes(&["a"]);
    let old = task(1, Running, Some("a"), 1, Some(8080));
    let waiting = task(2, Pending, None, 60, Some(8080));
    let steps = run(&svc, &[old.clone(), waiting], &ns);
    assert_eq!(stops(&steps), vec![old.id], "{steps:?}");
    assert!(starts(&steps).is_empty(), "{steps:?}");
}

#[test]
fn a_step_says_when_a_fixed_host_port_moved_its_replica() {
    let moved = |steps: &[Step]| -> Vec<Option<String>> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Start { moved, .. } | Step::Place { moved, .. } => Some(moved.clone()),
                _ => None,
            })
            .collect()
    };
    // another task holds the port on a, where spread would have sent the replica (ties by name)
    let svc = service(1, None, UpdatePolicy::default(), Some(9000));
    let mut ns = nodes(&["a", "b"]);
    held(&mut ns, "a", 9000);
    let steps = run(&svc, &[], &ns);
    assert_eq!(starts(&steps), vec![(1, vec!["b"])]);
    let note = moved(&steps).remove(0).expect("a note");
    assert!(note.contains("a (host port 9000 taken by another task)"), "{note}");
    // the same for a Pending replica placed again
    let steps = run(&svc, &[task(1, Pending, None, 2, Some(9000))], &ns);
    assert!(moved(&steps)[0].as_deref().is_some_and(|n| n.contains("a (host port 9000")), "{steps:?}");
    // ordinary spread is no move: the second replica avoids a for holding more replicas anyway
    let svc = service(2, None, UpdatePolicy::default(), Some(9000));
    let steps = run(&svc, &[], &nodes(&["a", "b"]));
    assert_eq!(starts(&steps), vec![(1, vec!["a", "b"]), (1, vec!["b"])]);
    assert_eq!(moved(&steps), vec![None, None], "{steps:?}");
    // start-first past the old replica's node: b was chosen for its count, not for the port
    let svc = updating_with_ports(1, Some(8080), Some(8080));
    let steps = run(&svc, &[task(1, Running, Some("a"), 1, Some(8080))], &nodes(&["a", "b"]));
    assert_eq!(moved(&steps), vec![None], "{steps:?}");
}
