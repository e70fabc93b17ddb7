//! Publishing on the control loop: fake workers, a fake ingress whose applies the test can hold,
//! ticks by hand. The routes follow the replicas, and a replica to be stopped leaves the route
//! before its stop is sent.
use super::*;
use crate::ingress::{AppRoute, Drift, Ingress, IngressError, Settings};
use crate::manager::publish::STOP_HOLD;
use crate::manager::{IngressMaker, PublishConfig};
use crate::service::ServiceSpec;
use serde_json::json;

/// An ingress that tells each apply as it begins, and waits for a permit while `gated`.
struct Held {
    begun: Sender<Vec<AppRoute>>,
    permits: Receiver<()>,
    gated: Arc<AtomicBool>,
}

impl Ingress for Held {
    fn apply(&mut self, routes: &[AppRoute]) -> Result<(), IngressError> {
        // read before telling: an apply the test saw begin ungated never waits
        let gated = self.gated.load(Ordering::SeqCst);
        crate::control::best_effort(self.begun.send(routes.to_vec()));
        if gated {
            self.permits.recv_timeout(Duration::from_secs(20)).expect("the test lets the apply through");
        }
        Ok(())
    }

    fn ensure(&mut self) -> Result<Drift, IngressError> {
        Ok(Drift::InSync)
    }
}

struct Published {
    rig: Rig,
    begun: Receiver<Vec<AppRoute>>,
    permits: Sender<()>,
    gated: Arc<AtomicBool>,
}

fn published(names: &[&str]) -> Published {
    let (begun_tx, begun) = unbounded();
    let (permits, permits_rx) = unbounded();
    let gated = Arc::new(AtomicBool::new(false));
    let fake = Mutex::new(Some(Held { begun: begun_tx, permits: permits_rx, gated: gated.clone() }));
    let connect: IngressMaker =
        Arc::new(move || Box::new(fake.lock().expect("lock").take().expect("made once")) as Box<dyn Ingress>);
    let publish = PublishConfig { admin: "fake".into(), settings: Settings::new(":80"), connect };
    let workers: Vec<Arc<FakeWorker>> = names.iter().map(|n| FakeWorker::new(n)).collect();
    let links = workers.iter().map(|w| w.clone() as Arc<dyn WorkerLink>).collect();
    let (ticks, rx) = unbounded();
    let clock = manual_clock();
    let store = FlakyStore::new();
    let config = ManagerConfig { publish: Some(publish), ..config(SchedulerKind::RoundRobin, &clock) };
    let manager = spawn_with_ticks(config, Box::new(store.clone()), links, rx).expect("spawns");
    let rig = Rig { manager, ticks, workers, clock, store };
    rig.until("every node up", |h| h.nodes().ok()?.iter().all(|n| n.status == NodeStatus::Up).then_some(()));
    Published { rig, begun, permits, gated }
}

impl Published {
    /// The next apply that begins with `n` upstreams for `web` (earlier ones skipped).
    fn apply_with(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let routes = self.begun.recv_timeout(left).unwrap_or_else(|_| panic!("no apply with {n} upstreams"));
            crate::control::best_effort(self.rig.ticks.send(Instant::now()));
            if let Some(r) = routes.iter().find(|r| r.app.as_str() == "web").filter(|r| r.upstreams.len() == n) {
                return r.upstreams.clone();
            }
        }
    }
}

impl Rig {
    /// Ticks for `window` and fails if the task's stop reached a worker meanwhile.
    fn assert_not_stopped(&self, id: TaskId, window: Duration) {
        let end = Instant::now() + window;
        while Instant::now() < end {
            self.ticks.send(Instant::now()).expect("tick");
            let stopped = self.workers.iter().any(|w| w.was_stopped(id));
            let state = self.handle().get(id).expect("known").state;
            assert!(!stopped && state != TaskState::Stopped, "stopped while the live route still had it");
            std::thread::yield_now();
        }
    }
}

fn web(replicas: u32) -> ServiceSpec {
    let body = json!({"name": "web", "replicas": replicas, "publish": {"port": 8080},
                      "template": {"image": "b", "ports": [{"container": 8080}]}});
    ServiceSpec::from_value(body, None).expect("valid")
}

#[test]
fn a_replica_leaves_the_route_before_its_stop_is_sent() {
    let p = published(&["w1", "w2"]);
    let h = p.rig.handle();
    h.create_service(web(2)).expect("created");
    let both = p.apply_with(2);
    assert!(both.iter().all(|u| u.starts_with("w1:3") || u.starts_with("w2:3")), "NODEHOST:HOSTPORT: {both:?}");
    let v = h.get_service("web".into()).expect("known");
    assert_eq!(v.url.as_deref(), Some("http://web.localhost"));
    assert_eq!(v.endpoints.len(), 2, "{:?}", v.endpoints);

    // applies now wait for the test: the stop of the replica scaled away must wait too
    p.gated.store(true, Ordering::SeqCst);
    h.scale_service("web".into(), 1).expect("scaled");
    let left = p.apply_with(1);
    assert_eq!(left.len(), 1, "the route without the replica to stop");
    let v = h.get_service("web".into()).expect("known");
    let going = v.tasks.iter().find(|t| t.desired_state == DesiredState::Stopped).expect("one is being stopped").id;
    // passes go by (ticks, polls) for half a second while Caddy has not taken the route without
    // it: a stop sent meanwhile would reach a worker and come back as Stopped within that
    p.rig.assert_not_stopped(going, Duration::from_millis(500));
    p.permits.send(()).expect("let the apply through");
    p.rig.until("the stop sent once the route is live", |_| {
        p.rig.workers.iter().any(|w| w.was_stopped(going)).then_some(())
    });
}

#[test]
fn a_stop_waits_no_longer_than_the_bound_when_the_ingress_does_not_answer() {
    let p = published(&["w1"]);
    let h = p.rig.handle();
    h.create_service(web(2)).expect("created");
    p.apply_with(2);
    p.gated.store(true, Ordering::SeqCst);
    h.scale_service("web".into(), 1).expect("scaled");
    p.apply_with(1);
    let v = h.get_service("web".into()).expect("known");
    let going = v.tasks.iter().find(|t| t.desired_state == DesiredState::Stopped).expect("one is being stopped").id;
    p.rig.assert_not_stopped(going, Duration::from_millis(300));
    // the apply never finishes; once the bound has passed on the manager's clock, the stop goes
    p.rig.clock.advance(STOP_HOLD + Duration::from_millis(1));
    p.rig.until("the stop sent after the bound", |_| p.rig.workers[0].was_stopped(going).then_some(()));
    p.permits.send(()).expect("release the fake");
}
