//! The sync and the worker's own restarts on the fake engine: missed exits, vanished
//! containers, copies by another hand, adoption, orphans, and what a restarted worker does with
//! what it finds.

use super::*;

// ---- the sync

#[test]
fn a_sync_finds_an_exit_that_no_event_brought() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.exit(&rig.container(task.id), 4, false);
    rig.tick();
    let t = rig.task(task.id);
    assert_eq!((t.state, t.exit_code), (TaskState::Failed, Some(4)));
}

#[test]
fn a_container_removed_behind_the_workers_back_fails_its_task() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.lose(&rig.container(task.id));
    rig.tick();
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.error.as_deref().is_some_and(|e| e.contains("disappeared")));
}

/// The labels and name a worker of node w1 gives the container of a task named "web".
fn skiff_labels(id: TaskId) -> (String, BTreeMap<String, String>) {
    let spec = TaskSpec::from_json(spec("web", "").as_bytes()).expect("spec");
    let task = Task::new(id, spec, Timestamp(5));
    (crate::worker::decide::container_name("w1", "web", &id), crate::worker::ops::labels_for(&task, "w1"))
}

#[test]
fn a_copy_of_a_task_by_another_hand_is_removed_after_the_grace_and_the_recorded_one_kept() {
    let mut rig = Rig::new();
    let task = rig.start();
    let cid = rig.container(task.id);
    let (_, labels) = skiff_labels(task.id);
    let copy = rig.engine.add_foreign("hand-made", labels, true);
    rig.tick();
    assert!(rig.engine.container(&copy).is_some(), "removed with no grace");
    rig.clock.advance(rig.cfg.orphan_grace);
    rig.tick();
    assert!(rig.engine.container(&copy).is_none(), "the copy is removed after the grace");
    assert!(rig.engine.container(&cid).is_some(), "the recorded one stays");
    let t = rig.task(task.id);
    assert_eq!((t.state, t.container_id.as_deref()), (TaskState::Running, Some(cid.as_str())));
    assert!(t.events.iter().any(|e| e.reason.contains("carried this task's labels")), "{:?}", t.events);
}

#[test]
fn an_exit_of_a_copy_by_another_hand_never_changes_the_task() {
    let mut rig = Rig::new();
    let task = rig.start();
    let cid = rig.container(task.id);
    let (_, labels) = skiff_labels(task.id);
    let copy = rig.engine.add_foreign("spoof", labels, true);
    rig.engine.exit(&copy, 7, false);
    rig.state.on_event(EngineEvent::Died { container_id: copy, task_id: Some(task.id) });
    rig.pump();
    rig.tick();
    let t = rig.task(task.id);
    assert_eq!((t.state, t.exit_code), (TaskState::Running, None));
    assert_eq!(rig.engine.container(&cid).expect("the real one").status, "running");
}

#[test]
fn a_copy_of_a_task_whose_container_is_gone_does_not_take_its_place() {
    let mut rig = Rig::new();
    let task = rig.start();
    let (_, labels) = skiff_labels(task.id);
    rig.engine.lose(&rig.container(task.id));
    rig.engine.add_foreign("spoof", labels, true);
    rig.tick();
    assert_eq!(rig.task(task.id).state, TaskState::Failed);
}

#[test]
fn a_container_of_an_unknown_task_with_its_name_and_labels_is_adopted() {
    let engine = Arc::new(FakeEngine::with_images(&[IMAGE]));
    let id = TaskId::new_v4();
    let (name, labels) = skiff_labels(id);
    let cid = engine.add_foreign(&name, labels.clone(), true);
    let spoof = engine.add_foreign("spoof", labels, true);
    let rig = Rig::on(engine, FlakyStore::new(), ManualClock::new(Timestamp(0)));
    let t = rig.task(id);
    assert_eq!((t.state, t.container_id.as_deref()), (TaskState::Running, Some(cid.as_str())));
    assert_eq!(rig.engine.count("start"), 0, "an adopted container is not restarted");
    assert!(rig.engine.container(&spoof).is_some(), "a suspect waits for its grace");
}

#[test]
fn an_adopted_replica_keeps_its_service_from_the_labels() {
    let engine = Arc::new(FakeEngine::with_images(&[IMAGE]));
    let id = TaskId::new_v4();
    let spec = TaskSpec::from_json(spec("web", "").as_bytes()).expect("spec");
    let mut task = Task::new(id, spec, Timestamp(5));
    (task.service, task.service_version) = (Some("web".into()), Some(3));
    let labels = crate::worker::ops::labels_for(&task, "w1");
    assert_eq!(labels.get("skiff.service-version").map(String::as_str), Some("3"));
    engine.add_foreign(&crate::worker::decide::container_name("w1", "web", &id), labels, true);
    let rig = Rig::on(engine, FlakyStore::new(), ManualClock::new(Timestamp(0)));
    let t = rig.task(id);
    assert_eq!((t.service.as_deref(), t.service_version), (Some("web"), Some(3)));
}

#[test]
fn an_exited_container_of_an_unknown_task_is_adopted_as_finished_and_cleaned_up() {
    let engine = Arc::new(FakeEngine::with_images(&[IMAGE]));
    let id = TaskId::new_v4();
    let (name, labels) = skiff_labels(id);
    engine.add_foreign(&name, labels, false);
    let mut rig = Rig::on(engine, FlakyStore::new(), ManualClock::new(Timestamp(0)));
    assert_eq!(rig.task(id).state, TaskState::Completed);
    assert_eq!(rig.engine.containers().len(), 1, "kept for its output");
    rig.clock.advance(rig.cfg.retention.age + Duration::from_secs(1200));
    rig.tick();
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn a_container_without_every_skiff_label_is_never_removed() {
    let mut rig = Rig::new();
    let labelled = rig.engine.add_foreign("x", BTreeMap::from([(LABEL_NODE.to_string(), "w1".to_string())]), true);
    let (_, mut labels) = skiff_labels(TaskId::new_v4());
    labels.remove(LABEL_SPEC);
    let partial = rig.engine.add_foreign("y", labels, true);
    for _ in 0..3 {
        rig.clock.advance(rig.cfg.orphan_grace);
        rig.tick();
    }
    assert!(rig.engine.container(&labelled).is_some());
    assert!(rig.engine.container(&partial).is_some());
}

#[test]
fn a_container_of_another_node_is_left_alone() {
    let mut rig = Rig::new();
    let other = rig.engine.add_foreign("z", BTreeMap::from([(LABEL_NODE.to_string(), "w2".to_string())]), true);
    rig.clock.advance(Duration::from_secs(3_600));
    rig.tick();
    rig.tick();
    assert!(rig.engine.container(&other).is_some());
}

// ---- restarts of the worker

#[test]
fn a_restarted_worker_keeps_running_containers_as_they_are() {
    let mut rig = Rig::new();
    let task = rig.start();
    let cid = rig.container(task.id);
    let rig = rig.restarted();
    assert_eq!(rig.task(task.id).state, TaskState::Running);
    assert_eq!(rig.container(task.id), cid);
    assert_eq!(rig.engine.count("start"), 1, "nothing started again");
    let touched: Vec<String> =
        rig.engine.calls().into_iter().filter(|c| c.starts_with("stop ") || c.starts_with("remove ")).collect();
    assert!(touched.is_empty(), "{touched:?}");
}

#[test]
fn a_restarted_worker_resumes_a_start_cut_off_between_create_and_start() {
    let mut rig = Rig::new();
    let id = TaskId::new_v4();
    let _answer = rig.send_start(&spec("web", ""), id);
    // the worker dies while the start is in the engine's hands: create done, nothing more
    let op = rig.take_op().expect("the start op");
    let Op::Start { spec: s, container_name, labels, .. } = op else { panic!("not a start") };
    rig.engine.create(&CreateOptionsFor { name: &container_name, spec: &s, labels: &labels }.get()).expect("create");
    let rig = rig.restarted();
    assert_eq!(rig.task(id).state, TaskState::Running);
    assert_eq!(rig.containers_of(id), 1);
}

#[test]
fn an_exit_while_the_worker_was_away_is_recorded_after_its_restart() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.exit(&rig.container(task.id), 9, false);
    let rig = rig.restarted();
    let t = rig.task(task.id);
    assert_eq!((t.state, t.exit_code), (TaskState::Failed, Some(9)));
}

#[test]
fn with_a_memory_store_a_restarted_worker_rebuilds_its_table_from_labels() {
    let mut rig = Rig::new();
    let task = rig.start();
    let (engine, clock) = (rig.engine.clone(), rig.clock.clone());
    let rig = Rig::on(engine, FlakyStore::new(), clock);
    let t = rig.task(task.id);
    assert_eq!((t.state, t.spec.clone()), (TaskState::Running, task.spec));
}
