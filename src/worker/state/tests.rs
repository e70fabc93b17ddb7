//! The worker's state machine on the fake engine: every op the control thread hands to its
//! pools is run here, synchronously, against `FakeEngine`, and its result fed back; time moves
//! only when a test advances the `ManualClock`.

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::FlakyStore;
use crate::task::TaskSpec;
use crate::worker::engine::Engine;
use crate::worker::fake::{FakeEngine, Fault};
use crate::worker::handle::test_pools;
use crate::worker::ops::run_op;
use crate::worker::watch::{EngineEvent, Sample};
use crate::worker::{LABEL_NODE, LABEL_SPEC, LABEL_TASK_ID};
use crossbeam_channel::{bounded, unbounded, Receiver};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const IMAGE: &str = "skiff/busybox:latest";

struct Rig {
    state: State,
    engine: Arc<FakeEngine>,
    clock: ManualClock,
    store: FlakyStore,
    cfg: WorkerConfig,
    /// The pull, start and other pools' queues.
    pools: [Receiver<Op>; 3],
    /// Pulls are left queued (a registry that does not answer).
    hold_pulls: bool,
    _health: Receiver<HealthResult>,
    _disk: Receiver<PathBuf>,
}

fn config(clock: &ManualClock) -> WorkerConfig {
    let mut cfg = WorkerConfig::new("w1");
    cfg.clock = Arc::new(clock.clone());
    cfg
}

impl Rig {
    fn new() -> Rig {
        Rig::on(Arc::new(FakeEngine::with_images(&[IMAGE])), FlakyStore::new(), ManualClock::new(Timestamp(1_000_000)))
    }

    /// A worker (started afresh) over this engine, store and clock; its first steps are done.
    fn on(engine: Arc<FakeEngine>, store: FlakyStore, clock: ManualClock) -> Rig {
        let mut rig = Rig::unsynced(engine, store, clock);
        rig.pump();
        rig
    }

    /// A worker started afresh whose first steps (the engine's version, the first sync) are
    /// asked for and not run yet: what it is asked now comes before its first sync.
    fn unsynced(engine: Arc<FakeEngine>, store: FlakyStore, clock: ManualClock) -> Rig {
        let cfg = config(&clock);
        let (pools, queues) = test_pools();
        let (health_tx, health_rx) = unbounded();
        let (disk_tx, disk_rx) = unbounded();
        let state = State::new(cfg.clone(), Box::new(store.clone()), pools, disk_tx, health_tx).expect("state");
        let mut rig = Rig {
            state,
            engine,
            clock,
            store,
            cfg,
            pools: queues,
            hold_pulls: false,
            _health: health_rx,
            _disk: disk_rx,
        };
        rig.state.begin();
        rig
    }

    /// The same worker restarted: same engine, store and clock.
    fn restarted(self) -> Rig {
        Rig::on(self.engine.clone(), self.store.clone(), self.clock.clone())
    }

    /// Runs every op handed out (and those they lead to) and feeds the results back.
    fn pump(&mut self) -> usize {
        let mut ran = 0;
        while let Some(op) = self.take_op() {
            let result = run_op(&*self.engine, &self.cfg, op);
            self.state.on_result(result);
            ran += 1;
            assert!(ran < 1_000, "ops never settle");
        }
        ran
    }

    fn take_op(&self) -> Option<Op> {
        let from = if self.hold_pulls { &self.pools[1..] } else { &self.pools[..] };
        from.iter().find_map(|q| q.try_recv().ok())
    }

    fn send_start(&mut self, spec: &str, id: TaskId) -> Receiver<Result<(Task, bool), WorkerError>> {
        let spec = TaskSpec::from_json(spec.as_bytes()).expect("valid spec");
        let (tx, rx) = bounded(1);
        let req = StartTask { id, spec, restart_count: 0, service: None, service_version: None };
        self.state.on_command(Command::Start { req: Box::new(req), reply: tx });
        rx
    }

    fn start_spec(&mut self, spec: &str) -> Result<(Task, bool), WorkerError> {
        self.start_id(spec, TaskId::new_v4())
    }

    fn start_id(&mut self, spec: &str, id: TaskId) -> Result<(Task, bool), WorkerError> {
        let rx = self.send_start(spec, id);
        self.pump();
        rx.try_recv().expect("an answer to the start")
    }

    fn start(&mut self) -> Task {
        self.start_spec(&spec("web", "")).expect("started").0
    }

    fn stop(&mut self, id: TaskId) -> Result<Task, WorkerError> {
        let (tx, rx) = bounded(1);
        self.state.on_command(Command::Stop { id, reply: tx });
        self.pump();
        rx.try_recv().expect("an answer to the stop")
    }

    fn ask<T>(&mut self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, WorkerError> {
        let (tx, rx) = bounded(1);
        self.state.on_command(make(tx));
        rx.try_recv().expect("an answer")
    }

    fn task(&self, id: TaskId) -> Task {
        self.state.entries.get(&id).expect("task in the table").task.clone()
    }

    fn container(&self, id: TaskId) -> String {
        self.task(id).container_id.expect("a container id")
    }

    /// The container dies and the event stream says so.
    fn exits(&mut self, id: TaskId, code: i64) {
        let cid = self.container(id);
        self.engine.exit(&cid, code, false);
        self.state.on_event(EngineEvent::Died { container_id: cid, task_id: Some(id) });
        self.pump();
    }

    fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.state.on_restart_due();
        self.pump();
    }

    fn tick(&mut self) {
        self.state.on_tick();
        self.pump();
    }

    fn health(&mut self, id: TaskId, ok: bool) {
        let run = self.state.entries[&id].run;
        self.state.on_health(HealthResult { id, run, ok, detail: "test".into() });
        self.pump();
    }

    fn containers_of(&self, id: TaskId) -> usize {
        let id = id.to_string();
        self.engine.containers().iter().filter(|c| c.labels.get(LABEL_TASK_ID) == Some(&id)).count()
    }
}

fn podman_rig() -> Rig {
    Rig::on(Arc::new(FakeEngine::podman(&[IMAGE])), FlakyStore::new(), ManualClock::new(Timestamp(1_000_000)))
}

/// Both fakes, for the behaviours that must not depend on the engine.
fn both_engines() -> [(&'static str, Rig); 2] {
    [("docker", Rig::new()), ("podman", podman_rig())]
}

/// The same engine and clock, a worker started afresh with an empty memory store.
fn restarted_forgetting(rig: Rig) -> Rig {
    Rig::on(rig.engine.clone(), FlakyStore::new(), rig.clock.clone())
}

fn spec(name: &str, extra: &str) -> String {
    format!(r#"{{"name":"{name}","image":"{IMAGE}"{extra}}}"#)
}

fn on_failure(max: u32) -> String {
    spec("web", &format!(r#","restart_policy":{{"mode":"on-failure","max_restarts":{max}}}"#))
}

fn checked() -> String {
    spec(
        "web",
        r#","ports":[{"container":80}],"restart_policy":{"mode":"on-failure","max_restarts":3},
           "health_check":{"path":"/","port":80,"interval_s":60,"timeout_s":1,"failures":3}"#,
    )
}

// ---- starting

#[test]
fn a_start_runs_the_container_and_answers_running() {
    let mut rig = Rig::new();
    let (task, created) = rig.start_spec(&spec("web", "")).expect("started");
    assert!(created);
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.node.as_deref(), Some("w1"));
    let c = rig.engine.container(task.container_id.as_deref().expect("cid")).expect("container exists");
    assert_eq!(c.status, "running");
    assert_eq!(c.labels[LABEL_NODE], "w1");
    assert_eq!(c.labels[LABEL_TASK_ID], task.id.to_string());
    assert_eq!(rig.store.get_task(&task.id).expect("read").map(|t| t.state), Some(TaskState::Running));
}

#[test]
fn a_second_start_of_the_same_id_creates_nothing() {
    let mut rig = Rig::new();
    let id = TaskId::new_v4();
    rig.start_id(&spec("web", ""), id).expect("first");
    let (task, created) = rig.start_id(&spec("web", ""), id).expect("second");
    assert!(!created);
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(rig.engine.count("create"), 1);
}

#[test]
fn starts_of_one_id_under_way_share_the_one_start() {
    let mut rig = Rig::new();
    let id = TaskId::new_v4();
    let a = rig.send_start(&spec("web", ""), id);
    let b = rig.send_start(&spec("web", ""), id);
    rig.pump();
    assert!(a.try_recv().expect("a").expect("ok").1);
    assert!(!b.try_recv().expect("b").expect("ok").1);
    assert_eq!(rig.engine.count("create"), 1);
}

#[test]
fn published_ports_are_read_from_the_engine() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(&spec("web", r#","ports":[{"container":80}]"#)).expect("started");
    assert_eq!(task.ports.len(), 1);
    assert_eq!(task.ports[0].container, 80);
    assert!(task.ports[0].host > 0);
}

#[test]
fn a_missing_image_is_pulled_once_for_every_task_that_needs_it() {
    let mut rig = Rig::new();
    rig.engine.set_pullable("other/web:1");
    let web = r#"{"name":"w","image":"other/web:1"}"#;
    rig.hold_pulls = true;
    let ids: Vec<TaskId> = (0..3).map(|_| TaskId::new_v4()).collect();
    let answers: Vec<_> = ids.iter().map(|id| rig.send_start(web, *id)).collect();
    rig.pump();
    // answered at once: the start waits for its image, its caller does not
    for a in answers {
        let (task, created) = a.try_recv().expect("answered").expect("accepted");
        assert_eq!((task.state, created), (TaskState::Scheduled, true));
        assert_eq!(task.error.as_deref(), Some("waiting for the pull of image other/web:1"));
    }
    rig.hold_pulls = false;
    rig.pump();
    for id in ids {
        let t = rig.task(id);
        assert_eq!((t.state, t.error), (TaskState::Running, None));
    }
    assert_eq!(rig.engine.count("pull"), 1);
}

#[test]
fn a_start_whose_image_is_present_never_waits_behind_a_pull() {
    let mut rig = Rig::new();
    rig.hold_pulls = true;
    let stuck: Vec<_> =
        (0..8).map(|_| rig.send_start(r#"{"name":"h","image":"hang/ing:1"}"#, TaskId::new_v4())).collect();
    rig.pump();
    let (task, _) = rig.start_spec(&spec("local", "")).expect("started");
    assert_eq!(task.state, TaskState::Running);
    assert!(stuck.iter().all(|a| a.try_recv().is_ok_and(|r| r.is_ok_and(|(t, _)| t.state == TaskState::Scheduled))));
}

#[test]
fn a_stop_of_a_task_waiting_for_its_image_is_done_at_once() {
    let mut rig = Rig::new();
    rig.hold_pulls = true;
    let id = TaskId::new_v4();
    let started = rig.send_start(r#"{"name":"h","image":"hang/ing:1"}"#, id);
    rig.pump();
    assert_eq!(
        started.try_recv().expect("the start is answered").expect("with the record").0.state,
        TaskState::Scheduled
    );
    let stopped = rig.stop(id).expect("stopped");
    assert_eq!(stopped.state, TaskState::Stopped);
    // the pull ends later: the stopped task stays stopped, nothing is created
    rig.hold_pulls = false;
    rig.pump();
    assert_eq!(rig.task(id).state, TaskState::Stopped);
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn a_pull_with_the_engine_away_gives_the_task_back_unstarted() {
    let mut rig = Rig::new();
    rig.engine.fail_next("pull", Fault::Down);
    let id = TaskId::new_v4();
    let (task, _) = rig.start_id(r#"{"name":"h","image":"other/web:1"}"#, id).expect("waits for its image");
    assert_eq!(task.state, TaskState::Scheduled);
    // forgotten, so that the manager, which no longer finds it here, places it again
    assert!(!rig.state.entries.contains_key(&id));
    assert_eq!(rig.store.get_task(&id).expect("read"), None);
}

#[test]
fn an_engine_that_does_not_answer_a_ping_is_out_of_reach_until_it_does() {
    let mut rig = Rig::new();
    let hung = DockerError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to a ping within 2000 ms"));
    rig.state.on_ping(Err(hung));
    let health = rig.ask(|r| Command::Health { reply: r }).expect("health");
    assert_eq!(health.status, "degraded");
    assert!(health.engine.error.as_deref().is_some_and(|e| e.contains("ping")), "{:?}", health.engine.error);
    rig.state.on_ping(Ok(()));
    rig.pump();
    assert_eq!(rig.ask(|r| Command::Health { reply: r }).expect("health").status, "ok");
}

#[test]
fn a_missing_image_that_cannot_be_pulled_fails_the_task_with_the_engine_words() {
    let mut rig = Rig::new();
    let (task, _) = rig.start_spec(r#"{"name":"x","image":"nowhere/none:1"}"#).expect("answered");
    let task = rig.task(task.id);
    assert_eq!(task.state, TaskState::Failed);
    let error = task.error.expect("a reason");
    assert!(error.contains("could not be pulled") && error.contains("pull access denied"), "{error}");
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn an_engine_out_of_reach_before_create_forgets_the_task_and_says_so() {
    let mut rig = Rig::new();
    rig.engine.fail_next("create", Fault::Down);
    let id = TaskId::new_v4();
    let err = rig.start_id(&spec("web", ""), id).expect_err("not started");
    assert!(matches!(err, WorkerError::EngineUnreachable(_)), "{err:?}");
    assert!(!rig.state.entries.contains_key(&id));
    assert_eq!(rig.store.get_task(&id).expect("read"), None);
    assert!(!rig.state.engine.reachable);
}

#[test]
fn a_refused_start_fails_the_task_and_leaves_no_container() {
    let mut rig = Rig::new();
    rig.engine.fail_next("start", Fault::Refuse(500, "port is already allocated".into()));
    let (task, _) = rig.start_spec(&spec("web", "")).expect("answered");
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.error.as_deref().is_some_and(|e| e.contains("port is already allocated")));
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn a_start_that_hangs_after_create_is_unknown_then_made_again_without_a_second_container() {
    let mut rig = Rig::new();
    rig.engine.fail_next("create", Fault::Hang);
    let id = TaskId::new_v4();
    let err = rig.start_id(&spec("web", ""), id).expect_err("outcome unknown");
    assert!(matches!(err, WorkerError::OutcomeUnknown(_)), "{err:?}");
    assert_eq!(rig.task(id).state, TaskState::Scheduled);
    rig.tick();
    assert_eq!(rig.task(id).state, TaskState::Running);
    assert_eq!(rig.containers_of(id), 1);
}

#[test]
fn a_container_name_held_by_another_task_fails_the_start() {
    let mut rig = Rig::new();
    let id = TaskId::new_v4();
    // a container of another task holds the very name this task's container would get
    let other = BTreeMap::from([(LABEL_TASK_ID.to_string(), TaskId::new_v4().to_string())]);
    rig.engine.add_foreign(&format!("skiff-w1-web-{}", id.short()), other, true);
    let (task, _) = rig.start_id(&spec("web", ""), id).expect("answered");
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.error.as_deref().is_some_and(|e| e.contains("does not belong to this task")));
}

/// Builds `CreateOptions` in tests without naming the Docker module everywhere.
struct CreateOptionsFor<'a> {
    name: &'a str,
    spec: &'a TaskSpec,
    labels: &'a BTreeMap<String, String>,
}

impl<'a> CreateOptionsFor<'a> {
    fn get(&self) -> crate::docker_cli::CreateOptions<'a> {
        crate::docker_cli::CreateOptions { name: self.name, spec: self.spec, labels: self.labels }
    }
}

#[test]
fn a_new_run_of_a_finished_task_waits_for_its_clean_up() {
    let mut rig = Rig::new();
    let task = rig.start();
    // the removal of its container fails for now
    rig.engine.fail_next("remove", Fault::Down);
    rig.exits(task.id, 0);
    let err = rig.start_id(&spec("web", ""), task.id).expect_err("conflict");
    assert!(matches!(err, WorkerError::CleaningUp(_)), "{err:?}");
}

// ---- stopping

#[test]
fn a_stop_stops_and_removes_the_container() {
    let mut rig = Rig::new();
    let task = rig.start();
    let stopped = rig.stop(task.id).expect("stopped");
    assert_eq!(stopped.state, TaskState::Stopped);
    assert!(rig.engine.containers().is_empty());
    assert_eq!(rig.store.get_task(&task.id).expect("read").map(|t| t.state), Some(TaskState::Stopped));
}

#[test]
fn an_unknown_task_is_not_ready_before_the_first_sync_and_not_found_after() {
    let engine = Arc::new(FakeEngine::with_images(&[IMAGE]));
    engine.fail_next("list", Fault::Down);
    let mut rig = Rig::on(engine, FlakyStore::new(), ManualClock::new(Timestamp(0)));
    let id = TaskId::new_v4();
    assert!(matches!(rig.stop(id), Err(WorkerError::NotReady)));
    rig.tick();
    assert!(matches!(rig.stop(id), Err(WorkerError::NotFound(_))));
    assert!(matches!(rig.ask(|r| Command::Get { id, reply: r }), Err(WorkerError::NotFound(_))));
}

#[test]
fn stopping_a_finished_task_is_a_conflict() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.exits(task.id, 0);
    let err = rig.stop(task.id).expect_err("finished");
    assert!(matches!(err, WorkerError::AlreadyFinished { state: TaskState::Completed, .. }), "{err:?}");
}

#[test]
fn a_stop_during_a_start_follows_the_start() {
    let mut rig = Rig::new();
    let id = TaskId::new_v4();
    let started = rig.send_start(&spec("web", ""), id);
    let (tx, stopped) = bounded(1);
    rig.state.on_command(Command::Stop { id, reply: tx });
    rig.pump();
    assert!(started.try_recv().expect("start answered").is_ok());
    assert_eq!(stopped.try_recv().expect("stop answered").expect("stopped").state, TaskState::Stopped);
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn a_stop_with_the_engine_away_says_unreachable_and_is_made_again_at_the_next_tick() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.fail_next("stop", Fault::Down);
    let err = rig.stop(task.id).expect_err("engine away");
    assert!(matches!(err, WorkerError::EngineUnreachable(_)), "{err:?}");
    assert_eq!(rig.task(task.id).state, TaskState::Running);
    rig.tick();
    assert_eq!(rig.task(task.id).state, TaskState::Stopped);
    assert!(rig.engine.containers().is_empty());
}

#[test]
fn a_stop_the_engine_refuses_is_answered_with_its_words_and_made_again_at_the_next_tick() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.fail_next("stop", Fault::Refuse(500, "driver failed".into()));
    let err = rig.stop(task.id).expect_err("refused");
    match &err {
        WorkerError::StopRefused(why) => assert!(why.contains("driver failed"), "{why}"),
        other => panic!("a refusal is neither a dead engine nor an unknown outcome: {other:?}"),
    }
    assert!(rig.state.engine.reachable, "the engine answered");
    assert_eq!(rig.task(task.id).state, TaskState::Running);
    rig.tick();
    assert_eq!(rig.task(task.id).state, TaskState::Stopped);
}

#[test]
fn a_stop_that_gets_no_answer_is_an_unknown_outcome_not_an_engine_down() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.fail_next("stop", Fault::Hang);
    let err = rig.stop(task.id).expect_err("no answer");
    assert!(matches!(err, WorkerError::OutcomeUnknown(_)), "{err:?}");
    rig.tick();
    assert_eq!(rig.task(task.id).state, TaskState::Stopped, "made again, it finds the stop done");
}

// ---- the engine away and back

#[test]
fn an_engine_out_of_reach_is_said_on_tasks_and_in_health_and_cleared_when_it_answers() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.engine.set_down(true);
    rig.tick();
    let health = rig.ask(|r| Command::Health { reply: r }).expect("health");
    assert_eq!(health.status, "degraded");
    assert!(!health.engine.reachable);
    assert!(rig.task(task.id).error.as_deref().is_some_and(|e| e.starts_with(ENGINE_AWAY)));
    rig.engine.set_down(false);
    rig.tick();
    assert_eq!(rig.ask(|r| Command::Health { reply: r }).expect("health").status, "ok");
    assert_eq!(rig.task(task.id).error, None);
    assert_eq!(rig.task(task.id).state, TaskState::Running);
}

#[test]
fn a_sync_that_keeps_failing_is_said_in_health_until_it_works() {
    let mut rig = Rig::new();
    rig.engine.fail_next("list", Fault::Refuse(500, "response too large".into()));
    rig.tick();
    let health = rig.ask(|r| Command::Health { reply: r }).expect("health");
    assert!(health.sync_error.as_deref().is_some_and(|e| e.contains("too large")), "{health:?}");
    rig.tick();
    assert_eq!(rig.ask(|r| Command::Health { reply: r }).expect("health").sync_error, None);
}

#[test]
fn health_says_whether_the_containers_were_checked() {
    let engine = Arc::new(FakeEngine::with_images(&[IMAGE]));
    engine.fail_next("list", Fault::Down);
    let mut rig = Rig::on(engine, FlakyStore::new(), ManualClock::new(Timestamp(0)));
    assert!(!rig.ask(|r| Command::Health { reply: r }).expect("health").synced);
    rig.tick();
    let health = rig.ask(|r| Command::Health { reply: r }).expect("health");
    assert!(health.synced);
    assert_eq!(health.engine.version.as_deref(), Some("20.10.24-fake"));
}

// ---- acknowledged only once committed

#[test]
fn a_start_the_store_cannot_record_is_an_error_and_starts_nothing() {
    let mut rig = Rig::new();
    rig.store.fail_writes(true);
    let id = TaskId::new_v4();
    let err = rig.start_id(&spec("web", ""), id).expect_err("not recorded");
    assert!(matches!(err, WorkerError::Store(_)), "{err:?}");
    assert!(rig.engine.containers().is_empty());
    assert!(!rig.state.entries.contains_key(&id));
}

#[test]
fn a_run_the_store_cannot_record_is_not_claimed_and_is_recorded_once_it_can() {
    let mut rig = Rig::new();
    let id = TaskId::new_v4();
    let rx = rig.send_start(&spec("web", ""), id);
    rig.store.fail_writes(true);
    rig.pump();
    assert!(matches!(rx.try_recv().expect("answer"), Err(WorkerError::Store(_))));
    assert_eq!(rig.store.get_task(&id).expect("read").map(|t| t.state), Some(TaskState::Scheduled));
    rig.store.fail_writes(false);
    rig.tick();
    assert_eq!(rig.store.get_task(&id).expect("read").map(|t| t.state), Some(TaskState::Running));
}

#[test]
fn a_stop_the_store_cannot_record_is_an_error() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.store.fail_writes(true);
    assert!(matches!(rig.stop(task.id), Err(WorkerError::Store(_))));
}

// ---- bookkeeping

#[test]
fn finished_tasks_are_forgotten_after_the_keep_time() {
    let mut rig = Rig::new();
    let task = rig.start();
    rig.exits(task.id, 0);
    rig.clock.advance(rig.cfg.keep_finished - Duration::from_secs(1));
    rig.tick();
    assert!(rig.state.entries.contains_key(&task.id));
    rig.clock.advance(Duration::from_secs(60));
    rig.tick();
    assert!(!rig.state.entries.contains_key(&task.id));
    assert_eq!(rig.store.get_task(&task.id).expect("read"), None);
}

#[test]
fn finished_tasks_beyond_the_count_are_forgotten_longest_finished_first() {
    let mut rig = Rig::new();
    rig.state.config.keep_finished_count = 2;
    rig.state.config.retention.count = 0;
    let ids: Vec<TaskId> = (0..4).map(|_| rig.start().id).collect();
    for id in &ids {
        rig.exits(*id, 0);
    }
    rig.tick();
    rig.tick();
    let kept: Vec<bool> = ids.iter().map(|id| rig.state.entries.contains_key(id)).collect();
    assert_eq!(kept, [false, false, true, true]);
    assert_eq!(rig.store.get_task(&ids[0]).expect("read"), None);
}

#[test]
fn the_list_is_oldest_first() {
    let mut rig = Rig::new();
    let a = rig.start();
    rig.clock.advance(Duration::from_secs(1));
    let b = rig.start();
    let list = rig.ask(|r| Command::List { reply: r }).expect("list");
    assert_eq!(list.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id, b.id]);
}

#[test]
fn stats_are_not_ready_before_the_first_sample() {
    let mut rig = Rig::new();
    assert!(matches!(rig.ask(|r| Command::Stats { reply: r }), Err(WorkerError::NotReady)));
    rig.state.on_sample(Sample {
        at: Timestamp(5),
        proc: crate::stats::read_proc(),
        disk_path: PathBuf::from("/"),
        disk: Ok((1_000, 500)),
    });
    let stats = rig.ask(|r| Command::Stats { reply: r }).expect("stats");
    assert_eq!((stats.node.as_str(), stats.disk_free_mb), ("w1", 500));
}

#[test]
fn nothing_is_written_when_nothing_changes() {
    let mut rig = Rig::new();
    rig.start();
    rig.store.fail_writes(true);
    // any write now would be logged as failed and leave the record dirty; ticks write nothing
    rig.tick();
    rig.tick();
    assert!(rig.state.entries.values().all(|e| e.saved == Some(record_digest(&e.task))));
}

// the restart budget across restarts of a worker with a memory store: `tests/budget.rs`;
// Podman's answers: `tests/podman.rs`
mod budget;
mod changes;
mod podman;
mod runs;
mod sync;
