//! The worker on an engine that answers as Podman 4.3 does (`FakeEngine::podman`): a name in use
//! is a 500, a missing init binary fails every create, `OOMKilled` is never set. The restart
//! budget across restarts of a worker that keeps no table, on both engines: `budget.rs`.

use super::*;

#[test]
fn a_create_cut_off_then_refused_with_podmans_500_replaces_the_container_left_behind() {
    let mut rig = podman_rig();
    rig.engine.fail_next("create", Fault::Hang);
    let id = TaskId::new_v4();
    let err = rig.start_id(&spec("web", ""), id).expect_err("outcome unknown");
    assert!(matches!(err, WorkerError::OutcomeUnknown(_)), "{err:?}");
    rig.tick();
    let t = rig.task(id);
    assert_eq!((t.state, t.error), (TaskState::Running, None));
    assert_eq!(rig.containers_of(id), 1);
    assert_eq!(rig.engine.count("create"), 3, "the clash, then the replacement: {:?}", rig.engine.calls());
}

#[test]
fn a_start_cut_off_then_refused_with_podmans_500_adopts_the_running_container() {
    let mut rig = podman_rig();
    rig.engine.fail_next("start", Fault::Hang);
    let id = TaskId::new_v4();
    rig.start_id(&spec("web", ""), id).expect_err("outcome unknown");
    let first = rig.engine.containers()[0].id.clone();
    rig.tick();
    assert_eq!((rig.task(id).state, rig.container(id)), (TaskState::Running, first));
    assert_eq!(rig.containers_of(id), 1);
}

#[test]
fn a_name_held_by_another_tasks_container_fails_the_start_on_podman_too() {
    let mut rig = podman_rig();
    let id = TaskId::new_v4();
    let other = BTreeMap::from([(LABEL_TASK_ID.to_string(), TaskId::new_v4().to_string())]);
    rig.engine.add_foreign(&format!("skiff-w1-web-{}", id.short()), other, true);
    let (task, _) = rig.start_id(&spec("web", ""), id).expect("answered");
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.error.as_deref().is_some_and(|e| e.contains("does not belong to this task")), "{:?}", task.error);
}

#[test]
fn without_an_init_binary_the_start_fails_saying_what_to_install() {
    let engine = Arc::new(FakeEngine::podman(&[IMAGE]).without_init());
    let mut rig = Rig::on(engine, FlakyStore::new(), ManualClock::new(Timestamp(1_000_000)));
    let (task, _) = rig.start_spec(&spec("web", "")).expect("answered");
    assert_eq!(task.state, TaskState::Failed);
    let error = task.error.expect("a reason");
    assert!(error.contains("install catatonit") && error.contains("apt-get install catatonit"), "{error}");
    assert!(error.contains("container-init binary not found"), "the engine's words are kept: {error}");
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn an_out_of_memory_kill_podman_does_not_mark_reads_as_likely_out_of_memory() {
    let mut rig = podman_rig();
    let (task, _) = rig.start_spec(&spec("hog", r#","memory_mb":16"#)).expect("started");
    let cid = rig.container(task.id);
    rig.engine.exit(&cid, 137, true);
    assert!(!rig.engine.container(&cid).expect("container").oom_killed, "podman never says");
    rig.state.on_event(EngineEvent::Died { container_id: cid, task_id: Some(task.id) });
    rig.pump();
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error.as_deref(), Some("exited with code 137 (SIGKILL), likely out of memory: limit 16 MB"));
}

#[test]
fn on_docker_a_sigkill_the_engine_did_not_mark_is_not_taken_for_out_of_memory() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&spec("hog", r#","memory_mb":16"#)).expect("started");
    let cid = rig.container(task.id);
    rig.engine.exit(&cid, 137, false);
    rig.state.on_event(EngineEvent::Died { container_id: cid, task_id: Some(task.id) });
    rig.pump();
    assert_eq!(rig.task(task.id).error.as_deref(), Some("exited with code 137 (SIGKILL)"));
}

#[test]
fn an_exited_container_without_a_restart_policy_is_still_adopted_as_finished() {
    for (engine, rig) in both_engines() {
        let mut rig = rig;
        let task = rig.start();
        let cid = rig.container(task.id);
        rig.engine.exit(&cid, 2, false);
        let rig = restarted_forgetting(rig);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.error.as_deref()), (TaskState::Failed, Some("exited with code 2")), "{engine}");
    }
}
