//! A container's runs on the fake engine: exits, restarts in place and their back-off, the
//! budget, health checks.

use super::*;

// ---- exits and restarts in place

#[test]
fn an_exit_zero_completes_the_task_and_keeps_its_container_for_the_retention_age() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.exits(task.id, 0);
    let t = rig.task(task.id);
    assert_eq!((t.state, t.exit_code, t.error), (TaskState::Completed, Some(0), None));
    assert_eq!(rig.engine.containers().len(), 1, "kept for its output");
    rig.clock.advance(rig.cfg.retention.age - Duration::from_secs(1));
    rig.tick();
    assert_eq!(rig.engine.containers().len(), 1, "still within the age");
    // the fake engine's finish times run ahead of the rig's clock by under 20 minutes
    rig.clock.advance(Duration::from_secs(1200));
    rig.tick();
    assert!(rig.engine.containers().is_empty(), "removed past the age");
    assert_eq!(rig.task(task.id).state, TaskState::Completed, "the record stays");
}

#[test]
fn only_the_most_recent_failures_keep_their_container_within_the_count() {
    let mut rig = Rig::new();
    rig.state.config.retention.count = 1;
    let first = rig.start();
    rig.exits(first.id, 1);
    rig.clock.advance(Duration::from_secs(1));
    let second = rig.start();
    rig.exits(second.id, 1);
    rig.tick();
    let left: Vec<String> = rig.engine.containers().into_iter().map(|c| c.id).collect();
    assert_eq!(left, vec![rig.task(second.id).container_id.expect("container")]);
}

#[test]
fn a_non_zero_exit_without_policy_fails_with_the_code() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.exits(task.id, 3);
    let t = rig.task(task.id);
    assert_eq!((t.state, t.exit_code), (TaskState::Failed, Some(3)));
    assert_eq!(t.error.as_deref(), Some("exited with code 3"));
}

#[test]
fn on_failure_restarts_the_same_container_after_the_back_off() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
    let cid = rig.container(task.id);
    rig.exits(task.id, 1);
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.error.as_deref(), Some("exited with code 1; restart 1 of 3 in 1 s"));
    rig.advance(Duration::from_millis(999));
    assert_eq!(rig.engine.container(&cid).expect("container").status, "exited", "restarted too early");
    rig.advance(Duration::from_millis(1));
    let t = rig.task(task.id);
    assert_eq!(rig.engine.container(&cid).expect("container").status, "running");
    assert_eq!((t.restart_count, t.container_id.as_deref(), t.error), (1, Some(cid.as_str()), None));
    assert_eq!(rig.containers_of(task.id), 1);
}

#[test]
fn the_back_off_doubles_with_each_restart() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(5)).expect("started");
    let mut waits = Vec::new();
    for _ in 0..3 {
        rig.exits(task.id, 1);
        let due = rig.state.entries[&task.id].restart_at.expect("a restart is due");
        waits.push(due - rig.clock.now());
        rig.advance(due - rig.clock.now());
    }
    assert_eq!(waits, [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)]);
}

#[test]
fn a_spent_budget_fails_the_task_with_the_reason() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(2)).expect("started");
    for _ in 0..2 {
        rig.exits(task.id, 1);
        rig.advance(Duration::from_secs(30));
    }
    rig.exits(task.id, 1);
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error.as_deref(), Some("exited with code 1, 2 restarts used"));
    assert_eq!(t.restart_count, 2);
}

#[test]
fn always_restarts_after_an_exit_zero() {
    let mut rig = Rig::new();
    let (task, _) =
        rig.start_spec(&spec("w", r#","restart_policy":{"mode":"always","max_restarts":1}"#)).expect("started");
    rig.exits(task.id, 0);
    assert_eq!(rig.task(task.id).state, TaskState::Running);
    assert!(rig.state.entries[&task.id].restart_at.is_some());
}

#[test]
fn a_long_run_gives_the_budget_back() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(1)).expect("started");
    rig.exits(task.id, 1);
    rig.advance(Duration::from_secs(1));
    // a minute of trouble-free running
    rig.clock.advance(Duration::from_secs(61));
    rig.exits(task.id, 1);
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Running, "{:?}", t.error);
    assert_eq!((t.recent_restarts, t.restart_count), (1, 2));
}

#[test]
fn an_out_of_memory_kill_says_so() {
    let mut rig = Rig::new();
    let task = rig.start();
    let cid = rig.container(task.id);
    rig.engine.exit(&cid, 137, true);
    rig.state.on_event(EngineEvent::Died { container_id: cid, task_id: Some(task.id) });
    rig.pump();
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.error.as_deref().is_some_and(|e| e.contains("memory limit")), "{:?}", t.error);
}

#[test]
fn a_stop_wins_over_a_due_restart() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
    rig.exits(task.id, 1);
    rig.stop(task.id).expect("stopped");
    rig.advance(Duration::from_secs(5));
    assert_eq!(rig.task(task.id).state, TaskState::Stopped);
    assert_eq!(rig.engine.count("start"), 1, "restarted after a stop");
}

#[test]
fn a_restart_with_the_engine_away_is_tried_again_later() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
    rig.exits(task.id, 1);
    rig.engine.fail_next("start", Fault::Down);
    rig.advance(Duration::from_secs(1));
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Running);
    assert!(t.error.as_deref().is_some_and(|e| e.starts_with("restart not done yet")), "{:?}", t.error);
    rig.advance(rig.cfg.sync_interval);
    assert_eq!(rig.engine.container(&rig.container(task.id)).expect("c").status, "running");
}

#[test]
fn an_exit_seen_during_another_op_is_handled_after_it() {
    let mut rig = Rig::new();
    let task = rig.start();
    let cid = rig.container(task.id);
    // an inspect is under way when the container dies
    rig.state.entries.get_mut(&task.id).expect("entry").op = Some(OpKind::Inspect);
    rig.engine.exit(&cid, 2, false);
    rig.state.on_event(EngineEvent::Died { container_id: cid.clone(), task_id: Some(task.id) });
    rig.state.on_result(OpResult::Inspected { id: task.id, result: Err(DockerError::Protocol("x".into())) });
    rig.pump();
    assert_eq!(rig.task(task.id).state, TaskState::Failed);
}

#[test]
fn an_event_for_a_container_the_worker_did_not_record_changes_nothing_for_other_tasks() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.state.on_event(EngineEvent::Died { container_id: "f00".into(), task_id: None });
    rig.pump();
    assert_eq!(rig.task(task.id).state, TaskState::Running);
}

// ---- health checks

#[test]
fn failed_health_checks_stop_the_container_and_restart_it() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&checked()).expect("started");
    assert!(rig.state.entries[&task.id].checker.is_some(), "a checker runs");
    rig.health(task.id, false);
    rig.health(task.id, false);
    assert_eq!(rig.engine.count("stop"), 0);
    rig.health(task.id, false);
    assert_eq!(rig.engine.count("stop"), 1);
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Running);
    assert!(
        t.error.as_deref().is_some_and(|e| e.starts_with("unhealthy after 3 failed health checks")),
        "{:?}",
        t.error
    );
    rig.advance(Duration::from_secs(1));
    assert_eq!(rig.task(task.id).restart_count, 1);
}

#[test]
fn a_passing_health_check_resets_the_count_and_reports_healthy() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&checked()).expect("started");
    rig.health(task.id, false);
    rig.health(task.id, false);
    rig.health(task.id, true);
    assert_eq!(rig.task(task.id).healthy, Some(true));
    rig.health(task.id, false);
    rig.health(task.id, false);
    assert_eq!(rig.engine.count("stop"), 0);
    assert_eq!(rig.task(task.id).healthy, Some(false));
}

#[test]
fn a_verdict_on_an_earlier_run_is_ignored() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&checked()).expect("started");
    let run = rig.state.entries[&task.id].run;
    rig.exits(task.id, 1);
    rig.advance(Duration::from_secs(1));
    for _ in 0..5 {
        rig.state.on_health(HealthResult { id: task.id, run, ok: false, detail: "old".into() });
    }
    rig.pump();
    assert_eq!(rig.engine.count("stop"), 0);
    assert_eq!(rig.task(task.id).healthy, None);
}

#[test]
fn a_finished_task_is_checked_no_more() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&checked()).expect("started");
    rig.stop(task.id).expect("stopped");
    assert!(rig.state.entries[&task.id].checker.is_none());
}
