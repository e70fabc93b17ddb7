//! The restart budget across restarts of a worker that keeps no table (a memory store), on both
//! engines: each restart in place renames the container to carry the budget (`worker::budget`),
//! and a worker started afresh reads it back, wherever the last one died.

use super::*;
use crate::worker::budget::{self, Budget};
use crate::worker::decide::container_name;

fn base(id: TaskId) -> String {
    container_name("w1", "web", &id)
}

fn name(rig: &Rig, container_id: &str) -> String {
    rig.engine.container(container_id).expect("the container").name
}

#[test]
fn the_restart_budget_survives_a_restart_of_a_worker_with_a_memory_store() {
    for (engine, mut rig) in both_engines() {
        let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
        let cid = rig.container(task.id);
        for _ in 0..2 {
            rig.exits(task.id, 1);
            rig.advance(Duration::from_secs(30));
        }
        let before = rig.task(task.id);
        assert_eq!((before.restart_count, before.recent_restarts), (2, 2), "{engine}");
        let at = before.last_exit_at.expect("an exit time").millis();
        assert_eq!(name(&rig, &cid), format!("{}.r2.u2.e{at}", base(task.id)), "{engine}");
        let mut rig = restarted_forgetting(rig);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count, t.recent_restarts), (TaskState::Running, 2, 2), "{engine}");
        assert_eq!((t.last_exit_at, t.container_id.as_deref()), (before.last_exit_at, Some(cid.as_str())), "{engine}");
        rig.exits(task.id, 1);
        assert_eq!(rig.task(task.id).error.as_deref(), Some("exited with code 1; restart 3 of 3 in 4 s"), "{engine}");
        rig.advance(Duration::from_secs(30));
        rig.exits(task.id, 1);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count), (TaskState::Failed, 3), "{engine}");
        assert_eq!(t.error.as_deref(), Some("exited with code 1, 3 restarts used"), "{engine}");
        // and a worker started afresh once more still finds the budget spent
        let rig = restarted_forgetting(rig);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count), (TaskState::Failed, 3), "{engine}");
        assert_eq!(t.error.as_deref(), Some("exited with code 1, 3 restarts used"), "{engine}");
        assert_eq!((rig.engine.count("create"), rig.containers_of(task.id)), (1, 1), "in place: {engine}");
    }
}

#[test]
fn an_exit_no_worker_saw_is_counted_once_against_the_budget_in_the_name() {
    for (engine, mut rig) in both_engines() {
        let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
        rig.exits(task.id, 1);
        rig.advance(Duration::from_secs(1));
        // the second run ends while the worker is down: no event, no table
        let cid = rig.container(task.id);
        rig.engine.exit(&cid, 1, false);
        let mut rig = restarted_forgetting(rig);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count, t.recent_restarts), (TaskState::Running, 2, 2), "{engine}");
        assert_eq!(t.error.as_deref(), Some("exited with code 1; restart 2 of 3 in 2 s"), "{engine}");
        rig.advance(Duration::from_secs(2));
        let c = rig.engine.container(&cid).expect("the same container");
        assert_eq!(c.status, "running", "{engine}");
        assert_eq!(c.name, budget::renamed(&base(task.id), &Budget::of(&rig.task(task.id))), "{engine}");
        assert!(c.name.contains(".r2.u2.e"), "{engine}: {}", c.name);
        // and once more: the exit seen again is not counted twice
        let mut rig = restarted_forgetting(rig);
        assert_eq!(rig.task(task.id).restart_count, 2, "{engine}");
        rig.tick();
        assert_eq!(rig.task(task.id).restart_count, 2, "{engine}");
    }
}

/// A task restarted in place once (its container renamed `.r1.u1`), whose second run ended: the
/// second restart is due now.
fn second_restart_due(rig: &mut Rig) -> TaskId {
    let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
    rig.exits(task.id, 1);
    rig.advance(Duration::from_secs(1));
    rig.exits(task.id, 1);
    assert_eq!(rig.task(task.id).restart_count, 2);
    rig.clock.advance(Duration::from_secs(2));
    rig.state.on_restart_due();
    task.id
}

#[test]
fn a_worker_that_dies_between_the_rename_and_the_start_finds_the_exit_already_counted() {
    for (engine, mut rig) in both_engines() {
        let id = second_restart_due(&mut rig);
        let Some(Op::Restart { container_id, renamed, .. }) = rig.take_op() else { panic!("a restart op") };
        rig.engine.rename(&container_id, &renamed).expect("renamed");
        // the worker dies here: renamed, not started
        let mut rig = restarted_forgetting(rig);
        let t = rig.task(id);
        assert_eq!((t.state, t.restart_count, t.recent_restarts), (TaskState::Running, 2, 2), "{engine}");
        assert_eq!(rig.engine.container(&container_id).expect("container").status, "exited", "{engine}");
        rig.advance(Duration::from_secs(1));
        let t = rig.task(id);
        assert_eq!((t.restart_count, t.error.as_deref()), (2, None), "{engine}");
        let c = rig.engine.container(&container_id).expect("the same container");
        assert_eq!((c.status.as_str(), c.name.as_str()), ("running", renamed.as_str()), "{engine}");
        assert_eq!(rig.engine.count("rename"), 2, "a name already right is left as it is: {engine}");
        rig.exits(id, 1);
        assert_eq!(rig.task(id).error.as_deref(), Some("exited with code 1; restart 3 of 3 in 4 s"), "{engine}");
    }
}

#[test]
fn a_worker_that_dies_before_the_rename_counts_the_exit_then() {
    for (engine, mut rig) in both_engines() {
        let id = second_restart_due(&mut rig);
        let cid = rig.container(id);
        assert!(matches!(rig.take_op(), Some(Op::Restart { .. })), "{engine}");
        // the worker dies with the restart in its hands, before the engine saw it
        let mut rig = restarted_forgetting(rig);
        let t = rig.task(id);
        assert_eq!((t.restart_count, t.recent_restarts), (2, 2), "{engine}");
        assert_eq!(t.error.as_deref(), Some("exited with code 1; restart 2 of 3 in 2 s"), "{engine}");
        rig.advance(Duration::from_secs(2));
        let c = rig.engine.container(&cid).expect("the same container");
        assert_eq!(c.status, "running", "{engine}");
        assert!(c.name.starts_with(&format!("{}.r2.u2.e", base(id))), "{engine}: {}", c.name);
        assert_eq!(rig.task(id).restart_count, 2, "{engine}");
    }
}

#[test]
fn a_rename_the_engine_refuses_does_not_keep_the_task_from_running_again() {
    for (engine, mut rig) in both_engines() {
        let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
        let cid = rig.container(task.id);
        rig.exits(task.id, 1);
        // someone holds the name the budget would give the container
        let taken = budget::renamed(&base(task.id), &Budget::of(&rig.task(task.id)));
        let squatter = rig.engine.add_foreign(&taken, BTreeMap::new(), false);
        rig.advance(Duration::from_secs(1));
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count, t.error.as_deref()), (TaskState::Running, 1, None), "{engine}");
        let c = rig.engine.container(&cid).expect("the same container");
        assert_eq!((c.status.as_str(), c.name), ("running", base(task.id)), "{engine}");
        assert!(rig.engine.calls().iter().any(|c| c.starts_with("rename ")), "{engine}");
        assert!(rig.engine.container(&squatter).is_some(), "{engine}");
    }
}

#[test]
fn a_rename_cut_off_is_not_made_twice_and_the_restart_follows() {
    for (engine, mut rig) in both_engines() {
        let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
        let cid = rig.container(task.id);
        rig.exits(task.id, 1);
        // the engine renames, and its answer never comes
        rig.engine.fail_next("rename", Fault::Hang);
        rig.advance(Duration::from_secs(1));
        let t = rig.task(task.id);
        assert!(t.error.as_deref().is_some_and(|e| e.starts_with("restart not done yet")), "{engine}: {:?}", t.error);
        let renamed = budget::renamed(&base(task.id), &Budget::of(&t));
        assert_eq!(name(&rig, &cid), renamed, "{engine}");
        rig.advance(rig.cfg.sync_interval);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count, t.error.as_deref()), (TaskState::Running, 1, None), "{engine}");
        assert_eq!(rig.engine.container(&cid).expect("container").status, "running", "{engine}");
        assert_eq!(rig.engine.count("rename"), 1, "{engine}");
    }
}

#[test]
fn a_container_gone_at_its_restart_is_made_again_with_the_base_name_and_the_budget_in_its_labels() {
    for (engine, mut rig) in both_engines() {
        let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
        let cid = rig.container(task.id);
        rig.exits(task.id, 1);
        rig.engine.lose(&cid);
        rig.advance(Duration::from_secs(1));
        let new = rig.container(task.id);
        assert_ne!(new, cid, "{engine}");
        let c = rig.engine.container(&new).expect("the new container");
        assert_eq!((c.status.as_str(), c.name), ("running", base(task.id)), "{engine}");
        assert_eq!(budget::from_labels(&c.labels), Budget::of(&rig.task(task.id)), "{engine}");
        let rig = restarted_forgetting(rig);
        let t = rig.task(task.id);
        assert_eq!((t.state, t.restart_count, t.recent_restarts), (TaskState::Running, 1, 1), "{engine}");
    }
}

/// A task restarted in place once, its container renamed; then a worker started afresh with a
/// memory store is asked to start it before its first sync (a manager that placed it again).
fn start_before_the_first_sync(rig: Rig, exited: bool) -> (Rig, TaskId, String, Result<(Task, bool), WorkerError>) {
    let mut rig = rig;
    let (task, _) = rig.start_spec(&on_failure(3)).expect("started");
    let cid = rig.container(task.id);
    rig.exits(task.id, 1);
    rig.advance(Duration::from_secs(1));
    if exited {
        rig.exits(task.id, 1);
    }
    assert!(budget::in_name(&base(task.id), &name(&rig, &cid)).is_some());
    let mut rig = Rig::unsynced(rig.engine.clone(), FlakyStore::new(), rig.clock.clone());
    let answer = rig.send_start(&on_failure(3), task.id);
    rig.pump();
    let answer = answer.try_recv().expect("an answer to the start");
    (rig, task.id, cid, answer)
}

#[test]
fn a_start_before_the_first_sync_takes_the_running_container_a_restart_renamed() {
    for (engine, rig) in both_engines() {
        let (rig, id, cid, answer) = start_before_the_first_sync(rig, false);
        let (t, _) = answer.expect("started");
        assert_eq!((t.state, t.container_id.as_deref()), (TaskState::Running, Some(cid.as_str())), "{engine}");
        assert_eq!((rig.containers_of(id), rig.engine.count("create")), (1, 1), "no second container: {engine}");
        assert_eq!(rig.task(id).container_id.as_deref(), Some(cid.as_str()), "after the sync: {engine}");
    }
}

#[test]
fn a_start_before_the_first_sync_replaces_the_exited_container_a_restart_renamed() {
    for (engine, rig) in both_engines() {
        let (rig, id, cid, answer) = start_before_the_first_sync(rig, true);
        let (t, _) = answer.expect("started");
        let new = t.container_id.clone().expect("a container");
        assert_eq!(t.state, TaskState::Running, "{engine}");
        assert_ne!(new, cid, "{engine}");
        assert!(rig.engine.container(&cid).is_none(), "the exited one is gone: {engine}");
        assert_eq!((rig.containers_of(id), name(&rig, &new)), (1, base(id)), "{engine}");
    }
}

#[test]
fn a_start_after_the_first_sync_looks_for_no_renamed_container() {
    let mut rig = Rig::new();
    let lists = rig.engine.count("list");
    rig.start();
    assert_eq!(rig.engine.count("list"), lists, "{:?}", rig.engine.calls());
}

/// A task (on-failure, at most 2) that spent its budget, then ran well for two hours on both the
/// worker's and the engine's clocks (the budget comes back after 60 s of a good run).
fn budget_spent_then_two_good_hours() -> (Rig, Task) {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&on_failure(2)).expect("started");
    rig.exits(task.id, 1);
    rig.advance(Duration::from_secs(30));
    rig.exits(task.id, 1);
    rig.advance(Duration::from_secs(30));
    assert_eq!(rig.task(task.id).recent_restarts, 2, "the budget spent");
    rig.advance(Duration::from_secs(7200));
    rig.engine.pass(Duration::from_secs(7200));
    (rig, task)
}

#[test]
fn a_long_run_that_ended_while_no_worker_ran_gives_the_budget_back_as_a_seen_exit_does() {
    for seen in [true, false] {
        let (mut rig, task) = budget_spent_then_two_good_hours();
        let rig = if seen {
            rig.exits(task.id, 1);
            rig
        } else {
            let cid = rig.container(task.id);
            rig.engine.exit(&cid, 1, false);
            restarted_forgetting(rig)
        };
        let t = rig.task(task.id);
        assert_eq!(t.state, TaskState::Running, "exit seen by a live worker: {seen}; {:?}", t.error);
        assert_eq!(t.restart_count, 3, "restarted once more, seen: {seen}");
    }
}

#[test]
fn a_long_run_adopted_by_a_restarted_worker_counts_from_its_start_not_from_the_adoption() {
    let (rig, task) = budget_spent_then_two_good_hours();
    // the worker restarts (the container runs on) and the run ends 5 s later
    let mut rig = rig.restarted();
    rig.tick();
    rig.advance(Duration::from_secs(5));
    rig.engine.pass(Duration::from_secs(5));
    rig.exits(task.id, 1);
    let t = rig.task(task.id);
    assert_eq!(t.state, TaskState::Running, "a 2 h run gives the budget back: {:?}", t.error);
    assert_eq!(t.recent_restarts, 1, "counted afresh");
}
