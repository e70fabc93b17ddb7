//! The ingress against a real Caddy (Debian's `caddy`, 2.6): each test starts `caddy run` on
//! free loopback ports (admin API included) with a small config of its own holding another
//! server Skiff must leave alone, its HOME and XDG directories in a directory under
//! `target/tmp/`, and in-process HTTP upstreams that answer with their own name. Requests carry
//! `Host: APP.localhost`. Caddy and the upstreams are stopped by guards, even when a test fails.
//!
//! `caddy` must be installed (scripts/test.sh installs it): without it these tests fail and say so.

#![allow(
    clippy::let_underscore_must_use,
    reason = "the shared helpers drop the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::{get_by_host, page_as_a_browser, page_by_host};
use serde_json::{json, Value};
use skiff::control::best_effort;
use skiff::ingress::{AppRoute, CaddyIngress, Drift, IngressError, Settings};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The loopback ports this process has handed out (to a Caddy or an upstream), never handed out
/// twice: a Caddy binds its ports with SO_REUSEPORT, so two Caddys given one free port would both
/// bind it and share its connections, and a port a killed upstream freed must not become another
/// test's listener while a Caddy still routes to it.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port free now and never handed out before in this process.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        if take(port) {
            return port;
        }
    }
}

/// Records `port` as handed out; false if it already was.
fn take(port: u16) -> bool {
    let mut taken = TAKEN.lock().expect("the list of ports");
    if taken.contains(&port) {
        return false;
    }
    taken.push(port);
    true
}

/// Polls `what` until it holds or `within` has passed; panics naming `why` then.
fn wait_until(within: Duration, why: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !what() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {why}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real Caddy on loopback; killed and its directory removed when dropped.
struct Caddy {
    child: Option<Child>,
    dir: PathBuf,
    admin: String,
    /// Where Skiff's server is to listen.
    listen: String,
    /// The server of the initial config that is not Skiff's.
    other: String,
    /// How many times it was started (each run logs to a file of its own).
    runs: u32,
}

impl Caddy {
    fn start(name: &str) -> Caddy {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ingress").join(format!("{name}-{}", std::process::id()));
        best_effort(std::fs::remove_dir_all(&dir));
        std::fs::create_dir_all(&dir).expect("the test's directory");
        let caddy = Caddy {
            child: None,
            admin: format!("127.0.0.1:{}", free_port()),
            listen: format!("127.0.0.1:{}", free_port()),
            other: format!("127.0.0.1:{}", free_port()),
            runs: 0,
            dir,
        };
        std::fs::write(caddy.dir.join("initial.json"), caddy.initial_config().to_string()).expect("write the config");
        caddy.run()
    }

    /// The config Caddy starts from: its admin address and a server that is not Skiff's.
    fn initial_config(&self) -> Value {
        json!({
            "admin": { "listen": self.admin },
            "apps": { "http": { "servers": { "other": {
                "listen": [self.other],
                "automatic_https": { "disable": true },
                "routes": [{ "handle": [{ "handler": "static_response", "body": "the other server" }] }],
            } } } },
        })
    }

    fn run(mut self) -> Caddy {
        self.runs += 1;
        let log = std::fs::File::create(self.dir.join(format!("caddy-{}.log", self.runs))).expect("the log file");
        let child = Command::new("caddy")
            .args(["run", "--config"])
            .arg(self.dir.join("initial.json"))
            .env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start caddy ({e}): install it (Debian's caddy; scripts/test.sh does)"));
        self.child = Some(child);
        let agent = plain_agent();
        let url = format!("http://{}/config/", self.admin);
        wait_until(Duration::from_secs(15), "caddy's admin API", || {
            agent.get(&url).call().map(|r| r.status() == 200).unwrap_or(false)
        });
        self
    }

    /// Kills Caddy (no clean shutdown, as a crash) and starts it again from its initial config.
    fn restart(mut self) -> Caddy {
        self.kill();
        self.run()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            best_effort(child.kill());
            best_effort(child.wait());
        }
    }

    fn ingress(&self) -> CaddyIngress {
        CaddyIngress::new(&self.admin, Settings::new(&self.listen), Duration::from_secs(10))
    }

    fn admin_get(&self, path: &str) -> Value {
        let mut resp = plain_agent().get(format!("http://{}{path}", self.admin)).call().expect("admin GET");
        serde_json::from_slice(&resp.body_mut().read_to_vec().expect("admin body")).expect("admin JSON")
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            best_effort(std::fs::remove_dir_all(&self.dir));
        }
    }
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent()
}

/// An HTTP/1.1 server on loopback that answers every request with its name (keep-alive kept).
/// `kill` is a crash: the listener closes and every open connection is cut.
struct Upstream {
    address: String,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(name: &str) -> Upstream {
        let listener = loop {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind an upstream");
            if take(l.local_addr().expect("addr").port()) {
                break l;
            }
        };
        let address = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (body, stop2, open2) = (name.to_string(), stop.clone(), open.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(clone) = conn.try_clone() {
                    open2.lock().expect("the list of open connections").push(clone);
                }
                let body = body.clone();
                std::thread::spawn(move || serve(conn, &body));
            }
        });
        Upstream { address, stop, open, accept: Some(accept) }
    }

    fn kill(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // wake the accept loop, which then drops the listener
        best_effort(TcpStream::connect(&self.address));
        if let Some(t) = self.accept.take() {
            best_effort(t.join());
        }
        for conn in self.open.lock().expect("the list of open connections").drain(..) {
            best_effort(conn.shutdown(Shutdown::Both));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(conn: TcpStream, body: &str) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    loop {
        let mut line = String::new();
        // the request head, up to its empty line; nothing else is read (GETs only)
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" && !first => break,
                Ok(_) => first = false,
            }
        }
        let answer =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn route(app: &str, upstreams: &[&Upstream]) -> AppRoute {
    let addresses: Vec<&str> = upstreams.iter().map(|u| u.address.as_str()).collect();
    Settings::new(":1").route(app, &addresses).expect("a valid route")
}

/// Every `@id` in a config, however deep.
fn ids_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("@id") {
                out.push(id.clone());
            }
            map.values().for_each(|v| ids_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| ids_in(v, out)),
        _ => {}
    }
}

fn all_ids(caddy: &Caddy) -> Vec<String> {
    let mut ids = Vec::new();
    ids_in(&caddy.admin_get("/config/"), &mut ids);
    ids.sort();
    ids
}

/// Requests in a loop on a thread until stopped: how many, which failed (and why), who answered.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
    thread: Option<JoinHandle<(Vec<String>, Vec<String>)>>,
}

impl Load {
    fn start(address: &str, host: &str) -> Load {
        let (stop, done, retries) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (address, host, stop2, done2, retries2) =
            (address.to_string(), host.to_string(), stop.clone(), done.clone(), retries.clone());
        let thread = std::thread::spawn(move || {
            let (mut answers, mut failures) = (Vec::new(), Vec::new());
            while !stop2.load(Ordering::SeqCst) {
                let (answer, retried) = page_as_a_browser(&address, &host);
                match answer {
                    Ok(body) => answers.push(body),
                    Err(why) => failures.push(why),
                }
                retries2.fetch_add(usize::from(retried), Ordering::SeqCst);
                done2.fetch_add(1, Ordering::SeqCst);
            }
            (answers, failures)
        });
        Load { stop, done, retries, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until `more` requests beyond the present count have been made.
    fn wait_for(&self, more: usize) {
        let target = self.count() + more;
        wait_until(Duration::from_secs(60), "the request loop", || self.count() >= target);
    }

    /// Stops the loop: (the bodies answered, in order; the failures; the resets retried).
    fn finish(mut self) -> (Vec<String>, Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let (answers, failures) = self.thread.take().expect("finished once").join().expect("the request loop");
        (answers, failures, self.retries.load(Ordering::SeqCst))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            best_effort(t.join());
        }
    }
}

#[test]
fn each_host_reaches_its_own_apps_replicas_and_nothing_else() {
    let caddy = Caddy::start("hosts");
    let (a1, a2, b1) = (Upstream::start("a1"), Upstream::start("a2"), Upstream::start("b1"));
    let mut ingress = caddy.ingress();
    let other_before = caddy.admin_get("/config/apps/http/servers/other");
    ingress.apply(&[route("app-a", &[&a1, &a2]), route("app-b", &[&b1])]).unwrap();

    // both replicas of app-a, in turn
    let answers: Vec<String> = (0..20).map(|_| page_by_host(&caddy.listen, "app-a.localhost").unwrap()).collect();
    let (n1, n2) = (answers.iter().filter(|b| *b == "a1").count(), answers.iter().filter(|b| *b == "a2").count());
    assert_eq!(n1 + n2, 20, "only app-a's replicas answer app-a: {answers:?}");
    assert!(n1 >= 8 && n2 >= 8, "round robin over both: {answers:?}");
    // the port in the Host header does not matter
    let with_port = format!("app-b.localhost:{}", caddy.listen.rsplit(':').next().unwrap());
    for host in ["app-b.localhost", with_port.as_str()] {
        assert_eq!(page_by_host(&caddy.listen, host).unwrap(), "b1");
    }
    // an unknown host gets no app's content
    let (status, body) = get_by_host(&caddy.listen, "nobody.localhost").unwrap();
    assert_eq!(status, 404);
    assert_eq!(body, "no app is published at this host\n");

    // the other server is untouched and still answers
    assert_eq!(caddy.admin_get("/config/apps/http/servers/other"), other_before);
    assert_eq!(page_by_host(&caddy.other, "anything").unwrap(), "the other server");

    // applying again leaves one route per id: the same applier (which finds them live and
    // changes nothing) and a new one (which knows nothing and sends the server again)
    ingress.apply(&[route("app-b", &[&b1]), route("app-a", &[&a1, &a2])]).unwrap();
    assert_eq!(all_ids(&caddy), ["skiff-app-app-a", "skiff-app-app-b", "skiff-no-app"]);
    caddy.ingress().apply(&[route("app-a", &[&a1, &a2]), route("app-b", &[&b1])]).unwrap();
    assert_eq!(all_ids(&caddy), ["skiff-app-app-a", "skiff-app-app-b", "skiff-no-app"]);
    assert!(ingress.check().unwrap());

    // an app that is gone loses its route
    ingress.apply(&[route("app-a", &[&a1, &a2])]).unwrap();
    assert_eq!(all_ids(&caddy), ["skiff-app-app-a", "skiff-no-app"]);
    assert_eq!(get_by_host(&caddy.listen, "app-b.localhost").unwrap().0, 404);
    assert!(page_by_host(&caddy.listen, "app-a.localhost").unwrap().starts_with("a"));

    // a config Caddy refuses (Skiff's server on the other server's address) is an error in
    // Caddy's words, and what was live stays live
    let mut clash = CaddyIngress::new(&caddy.admin, Settings::new(&caddy.other), Duration::from_secs(10));
    match clash.apply(&[route("app-a", &[&a1])]) {
        Err(IngressError::Refused { status, message }) => {
            assert!(status >= 400, "{status}");
            assert!(message.contains(&caddy.other.rsplit(':').next().unwrap().to_string()), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(ingress.check().unwrap(), "the refused config changed nothing");
    assert!(page_by_host(&caddy.listen, "app-a.localhost").unwrap().starts_with("a"));

    // removing Skiff's server leaves the other one
    ingress.remove().unwrap();
    assert!(caddy.admin_get("/config/apps/http/servers/skiff").is_null());
    assert_eq!(caddy.admin_get("/config/apps/http/servers/other"), other_before);
}

#[test]
fn the_server_is_created_in_a_caddy_with_no_http_app() {
    let caddy = Caddy::start("empty");
    // take the http app away through the API, as if Caddy had started with admin only
    plain_agent().delete(format!("http://{}/config/apps", caddy.admin)).call().unwrap();
    let up = Upstream::start("solo");
    let mut ingress = caddy.ingress();
    ingress.apply(&[route("solo", &[&up])]).unwrap();
    assert_eq!(page_by_host(&caddy.listen, "solo.localhost").unwrap(), "solo");
    assert_eq!(caddy.admin_get("/config/admin")["listen"], caddy.admin.as_str(), "the admin config is kept");
}

#[test]
fn replacing_the_upstreams_under_load_loses_no_request() {
    let caddy = Caddy::start("update");
    let olds = [Upstream::start("old1"), Upstream::start("old2")];
    let news = [Upstream::start("new1"), Upstream::start("new2")];
    let mut ingress = caddy.ingress();
    ingress.apply(&[route("web", &[&olds[0], &olds[1]])]).unwrap();
    let load = Load::start(&caddy.listen, "web.localhost");
    load.wait_for(50);
    // back and forth a few times, each one config change under the loop
    for round in 0..8 {
        let set = if round % 2 == 0 { &news } else { &olds };
        ingress.apply(&[route("web", &[&set[0], &set[1]])]).unwrap();
        load.wait_for(50);
    }
    let (answers, failures, retried) = load.finish();
    println!(
        "update under load: 8 config changes, {} requests, {} failed, {retried} reset by caddy's reload and retried",
        answers.len() + failures.len(),
        failures.len()
    );
    assert_eq!(failures, Vec::<String>::new());
    assert!(answers.iter().any(|b| b.starts_with("new")), "the new upstreams answered");
    // the last set was the old one (8 rounds, even): the last answers come from it
    assert!(answers.iter().rev().take(10).all(|b| b.starts_with("old")), "{:?}", &answers[answers.len() - 10..]);
}

#[test]
fn a_dying_upstream_is_taken_out_without_a_failed_request() {
    let caddy = Caddy::start("dying");
    let (live, mut dying) = (Upstream::start("live"), Upstream::start("dying"));
    let mut ingress = caddy.ingress();
    ingress.apply(&[route("web", &[&live, &dying])]).unwrap();
    let load = Load::start(&caddy.listen, "web.localhost");
    load.wait_for(50);
    let before = load.count();
    dying.kill();
    let killed_at = load.count();
    load.wait_for(300);
    // Caddy's own view: the dead upstream has failed (passive check) or been marked down
    let dead = dying.address.clone();
    wait_until(Duration::from_secs(10), "caddy to count the dead upstream's failures", || {
        caddy
            .admin_get("/reverse_proxy/upstreams")
            .as_array()
            .is_some_and(|ups| ups.iter().any(|u| u["address"] == dead.as_str() && u["fails"].as_u64() > Some(0)))
    });
    let (answers, failures, retried) = load.finish();
    assert_eq!(failures, Vec::<String>::new(), "retries hide the dead upstream");
    assert_eq!(retried, 0, "no config change here, so no reset by caddy either");
    assert!(answers[..before].iter().any(|b| b == "dying"), "both answered before");
    // after the kill (and the request in flight then), only the live one answers
    assert!(answers[killed_at + 1..].iter().all(|b| b == "live"), "the dead one answers no more");
    println!("dying upstream: {} requests after the kill, 0 failed", answers.len() - killed_at);
}

#[test]
fn a_restarted_caddy_is_noticed_and_the_routes_applied_again() {
    let caddy = Caddy::start("restart");
    let up = Upstream::start("up");
    let mut ingress = caddy.ingress();
    ingress.apply(&[route("web", &[&up])]).unwrap();
    assert_eq!(ingress.ensure().unwrap(), Drift::InSync);
    // Caddy 2.6 saves a config changed through the API; only `--resume` would read it back
    let autosave = caddy.dir.join("config/caddy/autosave.json");
    let saved: Value = serde_json::from_slice(&std::fs::read(&autosave).expect("autosave.json")).unwrap();
    assert!(saved["apps"]["http"]["servers"]["skiff"].is_object());

    let caddy = caddy.restart();
    assert!(caddy.admin_get("/config/apps/http/servers/skiff").is_null(), "the routes are gone with the restart");
    assert!(page_by_host(&caddy.listen, "web.localhost").is_err());
    assert!(!ingress.check().unwrap(), "the check notices");
    assert_eq!(ingress.ensure().unwrap(), Drift::Reapplied);
    assert_eq!(page_by_host(&caddy.listen, "web.localhost").unwrap(), "up");
    assert_eq!(ingress.ensure().unwrap(), Drift::InSync);
    assert_eq!(all_ids(&caddy), ["skiff-app-web", "skiff-no-app"]);

    // someone else changes Skiff's server: noticed too, and put back
    plain_agent().delete(format!("http://{}/config/apps/http/servers/skiff/routes/0", caddy.admin)).call().unwrap();
    assert_eq!(ingress.ensure().unwrap(), Drift::Reapplied);
    assert_eq!(page_by_host(&caddy.listen, "web.localhost").unwrap(), "up");

    // a Caddy that is down is a clear error
    let mut caddy = caddy;
    caddy.kill();
    let e = ingress.ensure().unwrap_err();
    assert!(e.to_string().contains("does not answer"), "{e}");
}

/// A keep-alive connection that sends GETs one after another.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    fn open(address: &str) -> KeepAlive {
        let writer = TcpStream::connect(address).expect("connect");
        writer.set_nodelay(true).expect("TCP_NODELAY");
        writer.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        KeepAlive { reader: BufReader::new(writer.try_clone().expect("a second handle on the socket")), writer }
    }

    /// One GET; the body, checked to be a 200.
    fn get(&mut self, host: &str) -> String {
        write!(self.writer, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send the request");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("the status line");
        assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("a header line");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("a Content-Length number");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("the body");
        String::from_utf8(body).expect("a text body")
    }
}

/// Median and 99th percentile, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (u128, u128) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_micros();
    (at(0.50), at(0.99))
}

#[test]
fn the_latency_the_ingress_adds() {
    const N: usize = 2_000;
    let caddy = Caddy::start("latency");
    let up = Upstream::start("up");
    let mut ingress = caddy.ingress();
    ingress.apply(&[route("web", &[&up])]).unwrap();
    let measure = |address: &str| {
        let mut conn = KeepAlive::open(address);
        // a warm-up, then the samples
        for _ in 0..50 {
            assert_eq!(conn.get("web.localhost"), "up");
        }
        let samples: Vec<Duration> = (0..N)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(conn.get("web.localhost"), "up");
                t.elapsed()
            })
            .collect();
        percentiles(samples)
    };
    let (direct_p50, direct_p99) = measure(&up.address);
    let (caddy_p50, caddy_p99) = measure(&caddy.listen);
    println!(
        "ingress latency over {N} sequential keep-alive requests: direct median {direct_p50} µs, p99 {direct_p99} µs; \
         through caddy median {caddy_p50} µs, p99 {caddy_p99} µs; added median {} µs, p99 {} µs",
        caddy_p50 as i128 - direct_p50 as i128,
        caddy_p99 as i128 - direct_p99 as i128
    );
    assert!(caddy_p50 < 50_000, "a median over 50 ms through loopback is broken: {caddy_p50} µs");
}
