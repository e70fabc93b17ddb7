//! Draining, activating and removing nodes on the control loop: fake workers, ticks by hand,
//! time on a manual clock.
use super::*;
use crate::api::Availability;

fn node<'a>(nodes: &'a [NodeInfo], name: &str) -> &'a NodeInfo {
    nodes.iter().find(|n| n.name == name).expect("listed")
}

#[test]
fn a_drain_moves_each_task_keeping_its_id_new_copy_first_then_the_node_is_drained() {
    let r = rig(&["w1", "w2", "w3"]);
    let h = r.handle();
    let ids: Vec<TaskId> = (0..6).map(|i| r.submit(&format!("t{i}")).id).collect();
    for id in &ids {
        r.running(*id);
    }
    let on_w1: Vec<TaskId> = ids.iter().copied().filter(|id| r.state_of(*id).1.as_deref() == Some("w1")).collect();
    assert_eq!(on_w1.len(), 2, "round-robin put two on w1");
    let info = h.drain("w1".into()).expect("drains");
    assert_eq!(info.availability, Availability::Draining);
    // nothing new goes to w1 while it drains
    let fresh = r.submit("fresh");
    assert_ne!(r.running(fresh.id).node.as_deref(), Some("w1"));
    r.until("w1 drained", |h| (node(&h.nodes().ok()?, "w1").availability == Availability::Drained).then_some(()));
    for id in &on_w1 {
        let t = h.get(*id).expect("kept, same id");
        assert_eq!(t.state, TaskState::Running);
        assert_ne!(t.node.as_deref(), Some("w1"));
        assert_eq!(t.restart_count, 0, "a move is not a restart");
        let w = r.workers.iter().find(|w| Some(w.name.as_str()) == t.node.as_deref()).expect("its node");
        assert!(w.has(*id), "the new copy runs on {}", w.name);
        r.until("the old copy stopped", |_| r.workers[0].was_stopped(*id).then_some(()));
        assert!(t.events.iter().any(|e| e.reason.starts_with("moved from w1 to")), "{:?}", t.events);
    }
    let nodes = h.nodes().expect("nodes");
    let w1 = node(&nodes, "w1");
    assert_eq!((w1.tasks, w1.drain.as_ref().map(|d| (d.moved, d.remaining))), (0, Some((2, 0))));
    let history = h.events(crate::events::EventQuery::default()).expect("events");
    let said: Vec<&str> = history.iter().map(|e| e.to.as_str()).collect();
    assert!(said.contains(&"draining") && said.contains(&"drained"), "{said:?}");
    assert_eq!(said.iter().filter(|s| **s == "moved").count(), 2, "{said:?}");
    // activated, it takes tasks again
    let info = h.activate("w1".into()).expect("activates");
    assert_eq!((info.availability, info.drain), (Availability::Active, None));
}

#[test]
fn the_old_copy_runs_until_the_new_one_does() {
    let r = rig(&["w1", "w2"]);
    let h = r.handle();
    let t = r.submit("web");
    let placed = r.running(t.id);
    let (from, to) = r.on_and_other(&placed);
    r.workers[to].hold_starts(true);
    h.drain(r.workers[from].name.clone()).expect("drains");
    // the new copy is being started: the task still runs where it was, its copy untouched
    r.until("the move under way", |h| {
        node(&h.nodes().ok()?, &r.workers[from].name).drain.as_ref()?.moving.filter(|m| *m == t.id)
    });
    r.one_poll_of(from);
    r.one_poll_of(from);
    assert_eq!(r.state_of(t.id), (TaskState::Running, Some(r.workers[from].name.clone())));
    assert!(!r.workers[from].was_stopped(t.id), "the old copy is not stopped before the new one runs");
    r.workers[to].hold_starts(false);
    r.until("moved", |h| h.get(t.id).ok().filter(|t| t.node.as_deref() == Some(&*r.workers[to].name)));
    r.until("the old copy stopped", |_| r.workers[from].was_stopped(t.id).then_some(()));
}

#[test]
fn a_task_that_fits_nowhere_stays_and_the_drain_says_why_until_room_appears() {
    let r = rig_with(&["w1", "w2"], SchedulerKind::RoundRobin, Some(1000));
    let h = r.handle();
    let big = r.submit_mb("big", 800);
    let placed = r.running(big.id);
    let (from, to) = r.on_and_other(&placed);
    let other = r.submit_mb("other", 600);
    assert_eq!(r.running(other.id).node.as_deref(), Some(&*r.workers[to].name), "only the other node has room");
    let from_name = r.workers[from].name.clone();
    h.drain(from_name.clone()).expect("drains");
    let stuck = r.until("the drain to say it cannot move", |h| {
        let nodes = h.nodes().ok()?;
        node(&nodes, &from_name).drain.clone()?.stuck.into_iter().next()
    });
    assert_eq!(stuck.task, big.id);
    assert!(stuck.reason.contains("fits nowhere else"), "{}", stuck.reason);
    assert_eq!(r.state_of(big.id), (TaskState::Running, Some(from_name.clone())), "it stays where it runs");
    assert_eq!(node(&h.nodes().expect("nodes"), &from_name).availability, Availability::Draining);
    // room appears: after the back-off, it moves
    h.stop(other.id).expect("stops");
    r.until("stopped", |h| h.get(other.id).ok().filter(|t| t.state == TaskState::Stopped));
    // time passes a second at a time, every node answering meanwhile (so none reads as down)
    for _ in 0..crate::drain::STUCK_RETRY_MS / 1000 {
        r.clock.advance(Duration::from_secs(1));
        r.one_poll_of(0);
        r.one_poll_of(1);
    }
    r.until("moved", |h| h.get(big.id).ok().filter(|t| t.node.as_deref() == Some(&*r.workers[to].name)));
    r.until("drained", |h| (node(&h.nodes().ok()?, &from_name).availability == Availability::Drained).then_some(()));
}

#[test]
fn a_failed_start_of_the_new_copy_leaves_the_task_where_it_runs() {
    let r = rig(&["w1", "w2"]);
    let h = r.handle();
    let t = r.submit("web");
    let placed = r.running(t.id);
    let (from, to) = r.on_and_other(&placed);
    *r.workers[to].refuse_starts.lock().expect("lock") = Some(400);
    let from_name = r.workers[from].name.clone();
    h.drain(from_name.clone()).expect("drains");
    let stuck = r.until("the failed move", |h| node(&h.nodes().ok()?, &from_name).drain.clone()?.stuck.pop());
    assert!(stuck.reason.contains("could not start its new copy"), "{}", stuck.reason);
    let now = h.get(t.id).expect("known");
    assert_eq!(
        (now.state, now.node.as_deref()),
        (TaskState::Running, Some(from_name.as_str())),
        "not failed, not moved"
    );
    assert!(!r.workers[from].was_stopped(t.id));
}

#[test]
fn unknown_nodes_are_refused_and_only_an_empty_node_that_is_not_up_can_be_removed() {
    let store = FlakyStore::persisted();
    let r = rig_on(&["w1", "w2"], SchedulerKind::RoundRobin, None, store.clone(), 1000);
    let h = r.handle();
    assert!(matches!(h.drain("nope".into()), Err(ManagerError::NoNode(_))));
    assert!(matches!(h.remove_node("nope".into()), Err(ManagerError::NoNode(_))));
    let t = r.submit("a");
    let (busy, idle) = r.on_and_other(&r.running(t.id));
    let busy_name = r.workers[busy].name.clone();
    let idle_name = r.workers[idle].name.clone();
    let why = h.remove_node(busy_name.clone()).expect_err("it has a task");
    assert!(matches!(&why, ManagerError::NodeBusy(m) if m.contains("drain it first")), "{why}");
    let why = h.remove_node(idle_name.clone()).expect_err("it is up");
    assert!(matches!(&why, ManagerError::NodeBusy(m) if m.contains("stop its worker first")), "{why}");
    r.workers[idle].set_reachable(false);
    r.one_poll_of(idle);
    r.clock.advance(NODE_TIMEOUT + Duration::from_millis(1));
    r.until("down", |h| (node(&h.nodes().ok()?, &idle_name).status == NodeStatus::Down).then_some(()));
    let was = h.remove_node(idle_name.clone()).expect("removed");
    assert_eq!(was.name, idle_name);
    let nodes = h.nodes().expect("nodes");
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), [busy_name.as_str()]);
    assert_eq!(h.health().expect("health").nodes_total, 1);
    let kept: Vec<String> = store.list_nodes().expect("list").into_iter().map(|n| n.address).collect();
    assert_eq!(kept, [format!("{busy_name}:80")], "the store forgot it too");
    // the other node still works as before
    let next = r.submit("b");
    assert_eq!(r.running(next.id).node.as_deref(), Some(busy_name.as_str()));
}

#[test]
fn a_drained_node_stays_drained_when_a_persisted_manager_restarts() {
    let store = FlakyStore::persisted();
    let r = rig_on(&["w1", "w2"], SchedulerKind::RoundRobin, None, store.clone(), 1000);
    r.handle().drain("w1".into()).expect("drains");
    r.until("drained", |h| (node(&h.nodes().ok()?, "w1").availability == Availability::Drained).then_some(()));
    drop(r);
    let again = rig_on(&["w1", "w2"], SchedulerKind::RoundRobin, None, store, 1000);
    let nodes = again.handle().nodes().expect("nodes");
    assert_eq!(node(&nodes, "w1").availability, Availability::Drained);
    let t = again.submit("a");
    assert_eq!(again.running(t.id).node.as_deref(), Some("w2"));
}

#[test]
fn a_removed_node_s_name_can_be_taken_by_a_worker_that_joins() {
    let (w1, w2) = (FakeWorker::new("w1"), FakeWorker::new("w2"));
    let mut again = FakeWorker::new("w2");
    Arc::get_mut(&mut again).expect("alone").address = "w2b:80".into();
    let maker = again.clone();
    let (ticks, rx) = unbounded();
    let clock = manual_clock();
    let links: LinkMaker = Arc::new(move |_addr: &str| maker.clone() as Arc<dyn WorkerLink>);
    let config = ManagerConfig { links: Some(links), ..config(SchedulerKind::RoundRobin, &clock) };
    let workers: Vec<Arc<dyn WorkerLink>> = vec![w1.clone(), w2.clone()];
    let m = spawn_with_ticks(config, Box::new(MemoryStore::new()), workers, rx).expect("spawns");
    let h = m.handle();
    until(&h, &ticks, "up", |h| h.nodes().ok()?.iter().all(|n| n.status == NodeStatus::Up).then_some(()));
    w2.set_reachable(false);
    clock.advance(NODE_TIMEOUT + Duration::from_millis(1));
    until(&h, &ticks, "w2 down", |h| (node(&h.nodes().ok()?, "w2").status == NodeStatus::Down).then_some(()));
    h.remove_node("w2".into()).expect("removed");
    h.join("w2".into(), "w2b:80".into()).expect("joins");
    let before = again.polls.load(Ordering::SeqCst);
    until(&h, &ticks, "polls of the new w2", |_| (again.polls.load(Ordering::SeqCst) >= before + 3).then_some(()));
    let n = until(&h, &ticks, "the new w2 up", |h| {
        Some(node(&h.nodes().ok()?, "w2").clone()).filter(|n| n.status == NodeStatus::Up)
    });
    assert_eq!(n.error, None, "no clash with the removed node");
    assert_eq!(h.drain("w2".into()).expect("the new w2 can be drained").address, "w2b:80");
    let spec = TaskSpec::from_json(br#"{"name":"x","image":"b","memory_mb":16000000}"#).expect("valid");
    let t = h.submit(spec).expect("accepted");
    let why = h.get(t.id).expect("known").error.unwrap_or_default();
    assert!(!why.contains("removed") && why.contains("w2 draining"), "no trace of the removed node: {why}");
}
