//! Bursts of commands on the control loop: the plan deferred to the burst's end, placements in
//! submission order, and a burst that ends with a read.
use super::*;

fn spec_mb(name: &str, mb: u64) -> TaskSpec {
    TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"b","memory_mb":{mb}}}"#).as_bytes()).expect("valid")
}

/// Waits until `n` commands wait in the control thread's queue.
fn queued(h: &ManagerHandle, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.tx.len() < n {
        assert!(Instant::now() < deadline, "never {n} commands queued");
        std::thread::yield_now();
    }
}

/// Holds the control thread in a store write (a submit that fits nowhere, so it starts nothing)
/// while `queue` puts commands behind it, one at a time and in order; then lets it go on.
fn behind_a_slow_write(r: &Rig, queue: impl FnOnce(&ManagerHandle) -> Vec<std::thread::JoinHandle<()>>) {
    let guard = r.store.hold();
    let h = r.handle();
    let blocker = std::thread::spawn(move || drop(h.submit(spec_mb("blocker", 16_000_000))));
    // taken by the control thread, which now waits for the store
    let h = r.handle();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(h.tx.is_empty() && r.store.is_waited_on()) {
        assert!(Instant::now() < deadline, "the control thread never took the blocker");
        std::thread::yield_now();
    }
    let mut joins = queue(&h);
    joins.push(blocker);
    drop(guard);
    for j in joins {
        j.join().expect("the caller");
    }
}

#[test]
fn a_burst_of_submits_is_placed_in_submission_order() {
    let r = rig_with(&["w1"], SchedulerKind::Epvm, Some(512));
    r.until("statistics", |h| h.nodes().ok()?[0].capacity);
    let answers = Arc::new(Mutex::new(Vec::new()));
    behind_a_slow_write(&r, |h| {
        ["older", "newer"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let (h2, answers) = (h.clone(), answers.clone());
                let join = std::thread::spawn(move || {
                    let t = h2.submit(spec_mb(name, 400)).expect("accepted");
                    answers.lock().expect("lock").push((name, t.id));
                });
                queued(h, i + 1);
                join
            })
            .collect()
    });
    let answers = answers.lock().expect("lock").clone();
    let id_of = |name: &str| answers.iter().find(|(n, _)| *n == name).map(|(_, id)| *id).expect("answered");
    let older = r.running(id_of("older"));
    assert_eq!(older.node.as_deref(), Some("w1"), "the older submit gets the room");
    let newer = r.handle().get(id_of("newer")).expect("known");
    assert_eq!(newer.state, TaskState::Pending);
    assert!(newer.error.unwrap_or_default().contains("no node fits"));
}

#[test]
fn a_burst_that_ends_with_a_read_has_its_submits_placed_without_waiting_for_a_tick() {
    let r = rig(&["w1"]);
    let answered = Arc::new(Mutex::new(None));
    behind_a_slow_write(&r, |h| {
        let (h1, answered) = (h.clone(), answered.clone());
        let submit = std::thread::spawn(move || {
            *answered.lock().expect("lock") = Some(h1.submit(spec("a")).expect("accepted"));
        });
        queued(h, 1);
        let h2 = h.clone();
        let read = std::thread::spawn(move || drop(h2.events(Default::default())));
        queued(h, 2);
        vec![submit, read]
    });
    let t = answered.lock().expect("lock").clone().expect("answered");
    // no tick is sent: the pass after the read must run the plan the burst left
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.state_of(t.id).0 != TaskState::Running {
        assert!(Instant::now() < deadline, "left Pending until a tick");
        std::thread::yield_now();
    }
}
