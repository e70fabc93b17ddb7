//! Services on the control loop: fake workers, ticks by hand, time on a manual clock.
use super::*;
use crate::service::{ServiceSpec, UpdateState};
use serde_json::json;

fn service(name: &str, image: &str, replicas: u32, monitor_s: u32) -> ServiceSpec {
    let body = json!({"name": name, "template": {"image": image}, "replicas": replicas,
                      "update_policy": {"monitor_s": monitor_s}});
    ServiceSpec::from_value(body, None).expect("valid")
}

/// The service's replicas wanted running, by node and version, as the manager has them.
fn running(h: &ManagerHandle, name: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = h
        .get_service(name.to_string())
        .expect("known")
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running && t.desired_state == DesiredState::Running)
        .map(|t| (t.node.clone().unwrap_or_default(), t.version.unwrap_or(0)))
        .collect();
    out.sort();
    out
}

fn on_node(rs: &[(String, u32)], node: &str) -> usize {
    rs.iter().filter(|(n, _)| n == node).count()
}

#[test]
fn replicas_spread_scale_up_and_down_newest_first() {
    let r = rig(&["w1", "w2"]);
    let h = r.handle();
    h.create_service(service("web", "b", 3, 0)).expect("created");
    let rs = r.until("3 running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 3));
    let mut split = [on_node(&rs, "w1"), on_node(&rs, "w2")];
    split.sort();
    assert_eq!(split, [1, 2], "{rs:?}");
    r.clock.advance(Duration::from_secs(1));
    h.scale_service("web".into(), 5).expect("scaled");
    let rs = r.until("5 running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 5));
    assert_eq!((on_node(&rs, "w1").max(on_node(&rs, "w2"))), 3, "{rs:?}");
    let before = h.get_service("web".into()).expect("known").tasks;
    r.clock.advance(Duration::from_secs(1));
    h.scale_service("web".into(), 2).expect("scaled");
    r.until("2 left", |h| {
        let v = h.get_service("web".into()).ok()?;
        (v.tasks.len() == 2).then_some(())
    });
    let kept: Vec<TaskId> = h.get_service("web".into()).expect("known").tasks.iter().map(|t| t.id).collect();
    let first: Vec<TaskId> = before.iter().take(3).map(|t| t.id).collect();
    assert!(kept.iter().all(|id| first.contains(id)), "the newest were stopped: {kept:?} {first:?}");
    let listed = h.list(TaskQuery { service: Some("web".into()), ..TaskQuery::default() }).expect("list");
    assert_eq!(listed.tasks.len(), 5, "the list filters by service (stopped ones included)");
    assert!(h.list(TaskQuery { service: Some("api".into()), ..TaskQuery::default() }).expect("list").tasks.is_empty());
}

#[test]
fn a_rolling_update_never_drops_below_the_count_and_finishes() {
    let r = rig(&["w1", "w2"]);
    let h = r.handle();
    h.create_service(service("web", "b", 3, 1)).expect("created");
    r.until("3 running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 3));
    h.update_service(service("web", "c", 3, 1)).expect("updated");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = h.get_service("web".into()).expect("known");
        let up = running(&h, "web").len();
        assert!(up >= 3, "only {up} running: {:?}", v.tasks);
        if v.service.update.as_ref().map(|u| u.state) == Some(UpdateState::Completed) {
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {:?}", v.service.update);
        r.clock.advance(Duration::from_millis(500));
        r.ticks.send(Instant::now()).expect("tick");
        std::thread::sleep(Duration::from_millis(2));
    }
    let rs = r.until("the old ones gone", |h| {
        let v = h.get_service("web".into()).ok()?;
        (v.tasks.len() == 3).then(|| running(h, "web"))
    });
    assert!(rs.iter().all(|(_, v)| *v == 2), "{rs:?}");
    let events: Vec<String> =
        h.get_service("web".into()).expect("known").service.events.into_iter().map(|e| e.message).collect();
    assert!(events.iter().any(|e| e.contains("completed")), "{events:?}");
    let steps = events.iter().filter(|e| e.contains("stopped: replaced by version 2")).count();
    assert_eq!(steps, 3, "every replacement is an event: {events:?}");
    assert_eq!(events.iter().filter(|e| e.contains("of version 2 started")).count(), 3, "{events:?}");
}

#[test]
fn a_new_version_that_fails_is_rolled_back_with_the_reason() {
    let r = rig(&["w1", "w2"]);
    let h = r.handle();
    h.create_service(service("web", "b", 2, 5)).expect("created");
    r.until("2 running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 2));
    h.update_service(service("web", "bad", 2, 5)).expect("updated");
    // the new replica's container exits on its worker
    let bad = r.until("the new replica started", |_| {
        r.workers.iter().find_map(|w| {
            let mut tasks = w.tasks.lock().expect("lock");
            let t = tasks.values_mut().find(|t| t.spec.image == "bad" && t.state == TaskState::Running)?;
            t.state = TaskState::Failed;
            t.exit_code = Some(1);
            t.error = Some("exited with code 1".into());
            Some(t.id)
        })
    });
    let v = r.until("rolled back", |h| {
        r.clock.advance(Duration::from_millis(500));
        let v = h.get_service("web".into()).ok()?;
        (v.service.update.as_ref()?.state == UpdateState::RolledBack).then_some(v)
    });
    let u = v.service.update.as_ref().expect("update");
    assert!(u.reason.as_deref().is_some_and(|r| r.contains("exited with code 1")), "{u:?}");
    assert_eq!(v.service.version, 1);
    // the failed replica's place is taken by a version 1 one again
    let rs = r.until("two of version 1 running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 2));
    assert!(rs.iter().all(|(_, v)| *v == 1), "{rs:?}");
    assert_eq!(h.get(bad).expect("known").state, TaskState::Failed);
    // a rollback asked for now has nowhere to go but version 1's predecessor: none
    h.update_service(service("web", "c", 2, 0)).expect("version 3");
    r.until("version 3 everywhere", |h| {
        r.clock.advance(Duration::from_millis(500));
        let v = h.get_service("web".into()).ok()?;
        (v.service.update.as_ref()?.state == UpdateState::Completed && v.tasks.len() == 2).then_some(())
    });
    h.rollback_service("web".into()).expect("rollback to 2");
    r.until("back on version 2", |h| {
        let v = h.get_service("web".into()).ok()?;
        let done = v.service.update.as_ref()?.state == UpdateState::RolledBack && v.tasks.len() == 2;
        (done && v.service.version == 2 && running(h, "web").iter().all(|(_, v)| *v == 2)).then_some(())
    });
}

#[test]
fn a_restarted_manager_takes_up_its_services_without_a_second_copy() {
    let store = FlakyStore::persisted();
    let workers: Vec<Arc<FakeWorker>> = ["w1", "w2"].iter().map(|n| FakeWorker::new(n)).collect();
    let start = |store: &FlakyStore| {
        let links = workers.iter().map(|w| w.clone() as Arc<dyn WorkerLink>).collect();
        let (ticks, rx) = unbounded();
        let clock = manual_clock();
        let m = spawn_with_ticks(config(SchedulerKind::RoundRobin, &clock), Box::new(store.clone()), links, rx)
            .expect("spawns");
        (m, ticks)
    };
    let (m, ticks) = start(&store);
    let h = m.handle();
    h.create_service(service("web", "b", 3, 0)).expect("created");
    until(&h, &ticks, "3 running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 3));
    let ids: Vec<TaskId> = h.get_service("web".into()).expect("known").tasks.iter().map(|t| t.id).collect();
    m.shutdown();
    let (m, ticks) = start(&store);
    let h = m.handle();
    for _ in 0..5 {
        until(&h, &ticks, "nodes up", |h| h.nodes().ok()?.iter().all(|n| n.status == NodeStatus::Up).then_some(()));
        ticks.send(Instant::now()).expect("tick");
    }
    let again: Vec<TaskId> = h.get_service("web".into()).expect("known").tasks.iter().map(|t| t.id).collect();
    assert_eq!(again, ids, "the same replicas, nothing started or stopped");
    let on_workers: usize = workers.iter().map(|w| w.tasks.lock().expect("lock").len()).sum();
    assert_eq!(on_workers, 3);
    assert!(workers.iter().all(|w| w.stops.lock().expect("lock").is_empty()));
}

#[test]
fn bad_service_requests_leave_nothing_behind() {
    let r = rig(&["w1"]);
    let h = r.handle();
    h.create_service(service("web", "b", 1, 0)).expect("created");
    let again = h.create_service(service("web", "b", 1, 0));
    assert!(matches!(again, Err(ManagerError::Service(ServiceCommandError::Exists(_)))), "{again:?}");
    let missing = h.scale_service("api".into(), 2);
    assert!(matches!(missing, Err(ManagerError::Service(ServiceCommandError::NotFound(_)))), "{missing:?}");
    let rb = h.rollback_service("web".into());
    assert!(matches!(rb, Err(ManagerError::Service(ServiceCommandError::NoEarlierVersion(_)))), "{rb:?}");
    // a store that refuses: the service is not created and nothing is started for it
    r.store.fail_writes(true);
    assert!(matches!(h.create_service(service("api", "b", 2, 0)), Err(ManagerError::Store(_))));
    r.store.fail_writes(false);
    assert!(matches!(h.get_service("api".into()), Err(ManagerError::Service(ServiceCommandError::NotFound(_)))));
    // removal stops the replicas
    r.until("web running", |h| Some(running(h, "web")).filter(|rs| rs.len() == 1));
    let id = h.get_service("web".into()).expect("known").tasks[0].id;
    h.remove_service("web".into()).expect("removed");
    r.until("its replica stopped", |h| (h.get(id).ok()?.state == TaskState::Stopped).then_some(()));
    assert!(h.list_services().expect("list").is_empty());
}

#[test]
fn a_replica_that_fits_nowhere_waits_with_the_reason_and_is_placed_when_room_appears() {
    let r = rig_with(&["w1", "w2"], SchedulerKind::Epvm, Some(512));
    r.until("statistics", |h| h.nodes().ok()?.iter().all(|n| n.capacity.is_some()).then_some(()));
    let body = json!({"name": "big", "template": {"image": "b", "memory_mb": 400}, "replicas": 3});
    r.handle().create_service(ServiceSpec::from_value(body, None).expect("valid")).expect("created");
    let waiting = r.until("two running, one waiting", |h| {
        let v = h.get_service("big".into()).ok()?;
        let pending: Vec<_> = v.tasks.iter().filter(|t| t.state == TaskState::Pending).cloned().collect();
        (running(h, "big").len() == 2 && pending.len() == 1).then(|| pending[0].clone())
    });
    let why = waiting.error.expect("a reason");
    assert!(why.contains("memory 400/512 MB allocated, needs 400"), "{why}");
    let rs = running(&r.handle(), "big");
    assert_eq!((on_node(&rs, "w1"), on_node(&rs, "w2")), (1, 1), "spread before anything else");
    r.workers[0].capacity.lock().expect("lock").memory_mb = 1024;
    r.until("the third placed", |h| Some(running(h, "big")).filter(|rs| rs.len() == 3));
}
