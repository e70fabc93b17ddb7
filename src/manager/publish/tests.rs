//! The route computation from tables, the URL, the control thread's bookkeeping (what changed,
//! what is live, which stops wait) and the ingress thread with a fake ingress: coalescing,
//! retries after a failure, `ensure` on its timer, errors reported once per change.
use super::*;
use crate::ingress::{IngressError, RecordingIngress};
use crate::service::ServiceSpec;
use crate::task::PortBinding;
use crate::time::Timestamp;
use serde_json::json;
use std::sync::Mutex;

fn service(name: &str, publish: Option<serde_json::Value>, check: bool) -> Service {
    let mut template = json!({"image": "x", "ports": [{"container": 8080}]});
    if check {
        template["health_check"] = json!({"path": "/", "port": 8080});
    }
    let mut body = json!({"name": name, "template": template});
    if let Some(p) = publish {
        body["publish"] = p;
    }
    Service::new(ServiceSpec::from_value(body, None).expect("valid"), Timestamp(1))
}

/// A replica of `svc` on `node`, Running with host port `port` for 8080 unless changed after.
fn replica(svc: &Service, node: &str, port: u16) -> Task {
    let template = svc.template(svc.version).expect("a version").clone();
    let mut t = Task::new(TaskId::new_v4(), template, Timestamp(2));
    t.service = Some(svc.name.clone());
    t.service_version = Some(svc.version);
    t.state = TaskState::Running;
    t.node = Some(node.into());
    let ip = "0.0.0.0".to_string();
    t.ports = vec![PortBinding { container: 8080, protocol: Protocol::Tcp, host_ip: ip, host: port }];
    t
}

fn hosts(node: &str) -> Option<String> {
    match node {
        "w1" => Some("10.0.0.1".into()),
        "w2" => Some("10.0.0.2".into()),
        _ => None,
    }
}

fn table(services: Vec<Service>) -> BTreeMap<String, Service> {
    services.into_iter().map(|s| (s.name.clone(), s)).collect()
}

#[test]
fn routes_go_to_the_replicas_that_should_receive_requests() {
    let web = service("web", Some(json!({"port": 8080, "health_path": "/ok"})), false);
    let checked = service("api", Some(json!({"port": 8080})), true);
    let hidden = service("db", None, false);
    let a = replica(&web, "w2", 32001);
    let b = replica(&web, "w1", 32002);
    let mut stopping = replica(&web, "w1", 32003);
    stopping.desired_state = DesiredState::Stopped;
    let mut starting = replica(&web, "w1", 32004);
    starting.state = TaskState::Scheduled;
    let mut sick = replica(&web, "w2", 32005);
    sick.healthy = Some(false);
    let lost = replica(&web, "w9", 32006); // a node whose address is not known
    let mut unbound = replica(&web, "w1", 0);
    unbound.ports.clear();
    let mut healthy = replica(&checked, "w1", 33001);
    healthy.healthy = Some(true);
    let unchecked_yet = replica(&checked, "w2", 33002); // a health check, no verdict yet
    let other = replica(&hidden, "w1", 34001);
    let tasks = [&a, &b, &stopping, &starting, &sick, &lost, &unbound, &healthy, &unchecked_yet, &other];
    let services = table(vec![web, checked, hidden]);
    let (routes, members) = routes(&services, tasks, &hosts, &Settings::new(":80"));
    let shown: Vec<(&str, &str, Vec<&str>, &str)> = routes
        .iter()
        .map(|r| {
            (r.app.as_str(), r.host.as_str(), r.upstreams.iter().map(String::as_str).collect(), r.health_path.as_str())
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("api", "api.localhost", vec!["10.0.0.1:33001"], "/"),
            ("web", "web.localhost", vec!["10.0.0.1:32002", "10.0.0.2:32001"], "/ok"),
        ],
        "sorted by app, upstreams sorted; not published, stopping, starting, unhealthy, unplaced, unbound: out"
    );
    assert_eq!(members, HashSet::from([a.id, b.id, healthy.id]));
}

#[test]
fn a_published_service_with_no_replica_keeps_an_empty_route() {
    let services = table(vec![service("web", Some(json!({"port": 8080})), false)]);
    let (routes, members) = routes(&services, [], &hosts, &Settings::new(":80"));
    assert_eq!(routes.len(), 1);
    assert!(routes[0].upstreams.is_empty(), "Caddy answers it with a 503 naming the app");
    assert!(members.is_empty());
}

#[test]
fn urls_carry_the_port_unless_it_is_the_schemes_own() {
    let mut s = Settings::new(":80");
    assert_eq!(url(&s, "web"), "http://web.localhost");
    s.listen = "127.0.0.1:8088".into();
    assert_eq!(url(&s, "web"), "http://web.localhost:8088");
    s.domain = "apps.example.org".into();
    s.tls = Tls::Automatic;
    s.listen = ":443".into();
    assert_eq!(url(&s, "web"), "https://web.apps.example.org");
    assert_eq!(host_of_address("10.0.0.1:7001").as_deref(), Some("10.0.0.1"));
    assert_eq!(host_of_address("[::1]:7001").as_deref(), Some("[::1]"));
    assert_eq!(host_of_address("nohost"), None);
}

/// A fake the test watches from outside: each apply is sent on a channel as it begins, then
/// waits for the gate to be opened when one is set; calls fail while `fail` holds words.
struct Watched {
    applies: Sender<Vec<AppRoute>>,
    ensures: Sender<()>,
    gate: Option<Receiver<()>>,
    fail: Arc<Mutex<Option<String>>>,
    inner: RecordingIngress,
}

impl Ingress for Watched {
    fn apply(&mut self, routes: &[AppRoute]) -> Result<(), IngressError> {
        best_effort(self.applies.send(routes.to_vec()));
        if let Some(gate) = &self.gate {
            gate.recv_timeout(Duration::from_secs(10)).expect("the test opens the gate");
        }
        self.inner.fail_with = self.fail.lock().expect("lock").clone();
        self.inner.apply(routes)
    }

    fn ensure(&mut self) -> Result<Drift, IngressError> {
        self.inner.fail_with = self.fail.lock().expect("lock").clone();
        best_effort(self.ensures.send(()));
        self.inner.ensure()
    }
}

struct Harness {
    publisher: Publisher,
    applies: Receiver<Vec<AppRoute>>,
    ensures: Receiver<()>,
    reports: Receiver<Report>,
    gate: Option<Sender<()>>,
    fail: Arc<Mutex<Option<String>>>,
}

fn harness(gated: bool, every: Duration) -> Harness {
    let (applies_tx, applies) = unbounded();
    let (ensures_tx, ensures) = unbounded();
    let (reports_tx, reports) = unbounded();
    let (gate_tx, gate_rx) = unbounded();
    let fail = Arc::new(Mutex::new(None));
    let fake = Mutex::new(Some(Watched {
        applies: applies_tx,
        ensures: ensures_tx,
        gate: gated.then_some(gate_rx),
        fail: fail.clone(),
        inner: RecordingIngress::default(),
    }));
    let connect: IngressMaker = Arc::new(move || Box::new(fake.lock().expect("lock").take().expect("made once")));
    let config = PublishConfig { admin: "fake".into(), settings: Settings::new(":80"), connect };
    let report = move |r: Report| best_effort(reports_tx.send(r));
    let publisher = Publisher::spawn_with(config, report, every).expect("the thread starts");
    Harness { publisher, applies, ensures, reports, gate: gated.then_some(gate_tx), fail }
}

fn route(app: &str, upstreams: &[&str]) -> AppRoute {
    Settings::new(":80").route(app, upstreams).expect("a route")
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn unchanged_routes_are_not_handed_over_and_changes_are_numbered() {
    let mut h = harness(false, Duration::from_secs(60));
    let id = TaskId::new_v4();
    assert!(h.publisher.offer(vec![route("a", &["h:1"])], HashSet::from([id])));
    assert!(!h.publisher.offer(vec![route("a", &["h:1"])], HashSet::from([id])), "the same: nothing sent");
    assert_eq!(h.applies.recv_timeout(WAIT).expect("applied"), vec![route("a", &["h:1"])]);
    assert_eq!(h.reports.recv_timeout(WAIT).expect("a report"), Report { applied: Some(1), error: None });
    assert!(h.applies.recv_timeout(Duration::from_millis(200)).is_err(), "applied once");
    assert!(h.publisher.offer(vec![route("a", &["h:2"])], HashSet::new()));
    assert_eq!(h.reports.recv_timeout(WAIT).expect("a report").applied, Some(2));
    assert_eq!(h.publisher.status().generation, 2);
}

#[test]
fn routes_handed_over_while_an_apply_is_under_way_are_coalesced_to_the_latest() {
    let mut h = harness(true, Duration::from_secs(60));
    h.publisher.offer(vec![route("a", &["h:1"])], HashSet::new());
    assert_eq!(h.applies.recv_timeout(WAIT).expect("the first"), vec![route("a", &["h:1"])]);
    // the first apply is under way (held at the gate) while three more changes come
    for port in 2..=4 {
        h.publisher.offer(vec![route("a", &[&format!("h:{port}")])], HashSet::new());
    }
    let gate = h.gate.take().expect("gated");
    gate.send(()).expect("open");
    assert_eq!(h.applies.recv_timeout(WAIT).expect("the latest"), vec![route("a", &["h:4"])]);
    gate.send(()).expect("open");
    let applied: Vec<Option<u64>> = (0..2).map(|_| h.reports.recv_timeout(WAIT).expect("a report").applied).collect();
    assert_eq!(applied, [Some(1), Some(4)], "generations 2 and 3 were never applied");
    assert!(h.applies.recv_timeout(Duration::from_millis(300)).is_err(), "nothing else applied");
}

#[test]
fn a_failed_apply_is_reported_once_and_made_again_at_the_next_check() {
    let mut h = harness(false, Duration::from_millis(100));
    *h.fail.lock().expect("lock") = Some("caddy is down".into());
    h.publisher.offer(vec![route("a", &["h:1"])], HashSet::new());
    let r = h.reports.recv_timeout(WAIT).expect("the error");
    assert_eq!(r.applied, None);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("caddy is down")), "{r:?}");
    h.publisher.on_report(r);
    assert!(h.publisher.status().error.is_some());
    // tried again at each check, reported no more while the error stays the same
    for _ in 0..3 {
        h.applies.recv_timeout(WAIT).expect("tried again");
    }
    assert!(h.reports.try_recv().is_err(), "the same error is not reported again");
    *h.fail.lock().expect("lock") = None;
    let r = h.reports.recv_timeout(WAIT).expect("applied at last");
    assert_eq!(r, Report { applied: Some(1), error: None });
    h.publisher.on_report(r);
    assert_eq!(h.publisher.status().error, None);
    // then only checks, on the timer
    h.ensures.recv_timeout(WAIT).expect("a check");
    h.ensures.recv_timeout(WAIT).expect("another");
}

#[test]
fn a_stop_waits_for_a_live_route_without_its_replica_but_not_forever() {
    let mut h = harness(false, Duration::from_secs(60));
    let (a, b) = (TaskId::new_v4(), TaskId::new_v4());
    let t0 = Instant::now();
    assert!(!h.publisher.hold_stop(a, t0), "nothing is routed yet: no wait");
    h.publisher.offer(vec![route("a", &["h:1", "h:2"])], HashSet::from([a, b]));
    h.publisher.on_report(Report { applied: Some(1), error: None });
    assert!(h.publisher.hold_stop(a, t0), "the live route still sends it requests");
    assert!(h.publisher.hold_stop(a, t0 + STOP_HOLD / 2));
    assert!(!h.publisher.hold_stop(a, t0 + STOP_HOLD), "Caddy too slow or down: the stop goes on");
    assert!(!h.publisher.hold_stop(a, t0 + STOP_HOLD / 2), "a's wait ran out once: it does not start again");
    // the route without b handed over, not yet live: b waits; live: b goes at once
    h.publisher.offer(vec![route("a", &["h:1"])], HashSet::from([a]));
    assert!(h.publisher.hold_stop(b, t0));
    h.publisher.on_report(Report { applied: Some(2), error: None });
    assert!(!h.publisher.hold_stop(b, t0));
    // an answer about an older generation than the live one changes nothing
    h.publisher.on_report(Report { applied: Some(1), error: None });
    assert!(!h.publisher.hold_stop(b, t0));
    assert_eq!(h.publisher.status().applied, Some(2));
    // a replica in routes handed over whose answer has not come may be live already: it waits
    let c = TaskId::new_v4();
    h.publisher.offer(vec![route("a", &["h:1", "h:3"])], HashSet::from([a, c]));
    assert!(h.publisher.hold_stop(c, t0));
    h.publisher.offer(vec![route("a", &["h:1"])], HashSet::from([a]));
    assert!(h.publisher.hold_stop(c, t0), "until an answer about a route without it comes");
    h.publisher.on_report(Report { applied: Some(4), error: None });
    assert!(!h.publisher.hold_stop(c, t0));
}

#[test]
fn the_flags_are_checked_one_by_one() {
    let p = PublishConfig::from_flags("127.0.0.1:2019", ":80", "apps.example.org").expect("valid");
    assert_eq!(
        (p.admin.as_str(), p.settings.listen.as_str(), p.settings.domain.as_str()),
        ("127.0.0.1:2019", ":80", "apps.example.org")
    );
    for (admin, listen, domain, words) in [
        ("2019", ":80", "localhost", "--ingress-admin"),
        ("127.0.0.1:2019", "80", "localhost", "--ingress-listen \"80\""),
        ("127.0.0.1:2019", ":0", "localhost", "--ingress-listen"),
        ("127.0.0.1:2019", ":80", "Example.org", "--domain: the domain \"Example.org\""),
        ("127.0.0.1:2019", ":80", "a..b", "--domain"),
    ] {
        let e = PublishConfig::from_flags(admin, listen, domain).expect_err(words);
        assert!(e.starts_with(words), "{e}");
    }
}
