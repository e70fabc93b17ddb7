//! Services published through a real Caddy (Debian's `caddy`) by a real cluster: a manager with
//! `--ingress-admin` and two workers on the local engine, busybox httpd replicas answering with
//! their greeting and their container's host name. Requests go to Caddy's listener with `Host:
//! web.localhost`. Checked: both replicas answer through Caddy, a third one joins the route when
//! the service is scaled, a rolling update under a continuous request loop fails no request and
//! serves the new content after, a Caddy killed and started again gets the route back, a
//! removed service's host answers Caddy's 404; and without an ingress `service get` shows the
//! replicas' direct URLs. The times and the ingress's added latency are printed
//! (`--nocapture`).
//!
//! Caddy is killed and its directory removed by a guard; the cluster removes its containers
//! (labelled with its workers' names) when dropped, even when a test fails.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const START_LIMIT: Duration = Duration::from_secs(40);
const HOST: &str = "web.localhost";

/// Ports handed to a Caddy in this process: never twice (Caddy binds with SO_REUSEPORT, so two
/// given one port would share it).
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

fn fresh_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut taken = HANDED_OUT.lock().expect("the ports");
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

/// `caddy run` on loopback from a config that only sets its admin address; killed when dropped.
struct Caddy {
    child: Option<Child>,
    dir: PathBuf,
    admin: String,
    listen: String,
    runs: u32,
}

impl Caddy {
    fn start(test: &str) -> Caddy {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("publish").join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("caddy's directory");
        let admin = format!("127.0.0.1:{}", fresh_port());
        let listen = format!("127.0.0.1:{}", fresh_port());
        std::fs::write(dir.join("caddy.json"), json!({"admin": {"listen": admin}}).to_string()).expect("config");
        let mut caddy = Caddy { child: None, dir, admin, listen, runs: 0 };
        caddy.run();
        caddy
    }

    fn run(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.dir.join(format!("caddy-{}.log", self.runs))).expect("log");
        let child = Command::new("caddy")
            .args(["run", "--config"])
            .arg(self.dir.join("caddy.json"))
            .env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start caddy ({e}): install it (Debian's caddy; scripts/test.sh does)"));
        self.child = Some(child);
        let url = format!("http://{}/config/", self.admin);
        wait_for("caddy's admin API", Duration::from_secs(15), || (http_raw_plain("GET", &url).0 == 200).then_some(()));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A GET without the cluster's token (Caddy's admin API): its status and body.
fn http_raw_plain(method: &str, url: &str) -> (u16, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .new_agent();
    let request = ureq::http::Request::builder().method(method).uri(url).body(Vec::new()).expect("a request");
    match agent.run(request) {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_vec().unwrap_or_default()),
        Err(_) => (0, Vec::new()),
    }
}

/// A web service of busybox httpd: `/` says the greeting and the container's host name.
fn web(replicas: u32, greeting: &str) -> Value {
    json!({
        "name": "web",
        "replicas": replicas,
        "template": {
            "image": IMAGE,
            "cmd": ["sh", "-c", "echo \"$GREETING $(hostname)\" > /www/index.html; exec httpd -f -p 8080 -h /www"],
            "env": {"GREETING": greeting},
            "memory_mb": 32,
            "ports": [{"container": 8080}],
            "health_check": {"path": "/", "port": 8080, "interval_s": 1, "timeout_s": 1, "failures": 2}
        },
        "update_policy": {"monitor_s": 2},
        "publish": {"port": 8080, "health_path": "/"}
    })
}

fn service(c: &Cluster) -> Value {
    let (status, v) = http("GET", &c.manager_url("/v1/services/web"), None);
    assert_eq!(status, 200, "get web: {v}");
    v
}

/// The distinct bodies seen through Caddy within `limit`, once `n` are seen that start with
/// `greeting`.
fn wait_answers(caddy: &Caddy, greeting: &str, n: usize, limit: Duration) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    wait_for(&format!("{n} replicas saying {greeting:?} through caddy"), limit, || {
        if let Ok(body) = page_by_host(&caddy.listen, HOST) {
            if body.starts_with(greeting) && !seen.contains(&body) {
                seen.push(body);
            }
        }
        (seen.len() >= n).then(|| seen.clone())
    })
}

/// What a request loop saw: each answer with when it came, the failures, the requests sent again.
type Seen = (Vec<(Instant, String)>, Vec<String>, usize);

/// Requests through Caddy in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Seen>>,
}

impl Load {
    fn start(address: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, address) = (stop.clone(), address.to_string());
        let thread = std::thread::spawn(move || {
            let (mut answers, mut failures, mut retries) = (Vec::new(), Vec::new(), 0);
            while !flag.load(Ordering::SeqCst) {
                let (answer, retried) = page_as_a_browser(&address, HOST);
                retries += usize::from(retried);
                match answer {
                    Ok(body) => answers.push((Instant::now(), body)),
                    Err(why) => failures.push(why),
                }
            }
            (answers, failures, retries)
        });
        Load { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().expect("running").join().expect("the loop")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Median and 99th percentile of `n` sequential requests to `address`, each on a new connection
/// (busybox httpd closes each one).
fn latency(address: &str, n: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            page_by_host(address, HOST).expect("an answer");
            started.elapsed()
        })
        .collect();
    times.sort();
    (times[n / 2], times[n * 99 / 100])
}

#[test]
fn a_published_service_follows_its_replicas_through_caddy() {
    let mut caddy = Caddy::start("follows");
    let args = strings(&["--ingress-admin", &caddy.admin, "--ingress-listen", &caddy.listen]);
    let c = Cluster::start("publish_follows", ClusterOptions { manager_args: args, ..ClusterOptions::default() });
    c.wait_nodes_up();

    // created: both replicas answer through caddy
    let created = Instant::now();
    let (status, v) = http("POST", &c.manager_url("/v1/services"), Some(web(2, "hello").to_string().as_bytes()));
    assert_eq!(status, 201, "create: {v}");
    let first = wait_answers(&caddy, "hello", 1, START_LIMIT);
    let to_first = created.elapsed();
    let both = wait_answers(&caddy, "hello", 2, START_LIMIT);
    println!(
        "from service create to the first answer through caddy: {to_first:?} (2 replicas: {both:?}, first {first:?})"
    );
    let port = caddy.listen.rsplit_once(':').expect("a port").1.to_string();
    let v = service(&c);
    assert_eq!(v["url"], format!("http://web.localhost:{port}"), "{v}");
    assert_eq!(v["endpoints"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(v.get("ingress_error").is_none(), "{v}");
    let (_, health) = http("GET", &c.manager_url("/v1/health"), None);
    assert!(health["ingress"]["applied"].as_u64().is_some(), "{health}");
    assert_eq!(health["ingress"]["admin"], caddy.admin.as_str());

    // the ingress's added latency: through caddy, and straight to one replica's host port
    let direct = v["endpoints"][0].as_str().expect("an endpoint").trim_start_matches("http://").to_string();
    let (direct_median, direct_p99) = latency(&direct, 300);
    let (caddy_median, caddy_p99) = latency(&caddy.listen, 300);
    println!(
        "latency, 300 requests each on new connections: direct median {direct_median:?} p99 {direct_p99:?}; through caddy median {caddy_median:?} p99 {caddy_p99:?}; added at the median {:?}",
        caddy_median.saturating_sub(direct_median)
    );

    // scaled to 3: the third one is in the route
    let (status, v) = http("POST", &c.manager_url("/v1/services/web/scale"), Some(br#"{"replicas": 3}"#));
    assert_eq!(status, 200, "scale: {v}");
    let three = wait_answers(&caddy, "hello", 3, START_LIMIT);
    assert_eq!(three.len(), 3);

    // a rolling update under a continuous loop through caddy
    let load = Load::start(&caddy.listen);
    let update = Instant::now();
    let (status, v) = http("PUT", &c.manager_url("/v1/services/web"), Some(web(3, "bonjour").to_string().as_bytes()));
    assert_eq!(status, 200, "update: {v}");
    wait_for("the update completed", Duration::from_secs(120), || {
        (service(&c)["service"]["update"]["state"] == "completed").then_some(())
    });
    let completed = Instant::now();
    // the loop runs on while the three new replicas are seen through caddy
    wait_answers(&caddy, "bonjour", 3, START_LIMIT);
    let (answers, failures, retries) = load.finish();
    println!(
        "rolling update of 3 replicas under load: {:?}, {} requests, {} failed, {retries} sent again after a reset by caddy's reload",
        completed - update,
        answers.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests during the update: {failures:?}");
    // each old replica left the route before its stop was sent, none timed out waiting
    let log = std::fs::read_to_string(c.dir.join("manager.log")).expect("the manager's log");
    assert_eq!(log.matches("replica stop waits for the route to leave it").count(), 3, "{log}");
    assert!(!log.contains("replica stopped while still routed"));
    assert!(
        answers.iter().any(|(_, b)| b.starts_with("hello")) && answers.iter().any(|(_, b)| b.starts_with("bonjour"))
    );
    let stale: Vec<&String> =
        answers.iter().filter(|(at, b)| *at > completed && !b.starts_with("bonjour")).map(|(_, b)| b).collect();
    assert!(stale.is_empty(), "old content after the update completed: {stale:?}");

    // caddy killed and started again from its file (which has no skiff server): routes back
    caddy.kill();
    caddy.run();
    let restarted = Instant::now();
    wait_for("the route back after caddy's restart", Duration::from_secs(10), || {
        page_by_host(&caddy.listen, HOST).ok().filter(|b| b.starts_with("bonjour"))
    });
    println!("route back {:?} after caddy was started again (checked every 2 s)", restarted.elapsed());

    // removed: its host is no app's
    let (status, v) = http("DELETE", &c.manager_url("/v1/services/web"), None);
    assert_eq!(status, 202, "remove: {v}");
    let gone = wait_for("the route gone", Duration::from_secs(15), || match get_by_host(&caddy.listen, HOST) {
        Ok((404, body)) => Some(body),
        _ => None,
    });
    assert!(gone.contains("no app"), "{gone}");
}

#[test]
fn without_an_ingress_service_get_shows_the_direct_urls() {
    let c = Cluster::start("publish_direct", ClusterOptions::default());
    c.wait_nodes_up();
    let file = c.spec_file("web", &web(2, "direct"));
    let out = c.client(&["service", "create", &file.display().to_string()], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let endpoints = wait_for("2 direct endpoints", START_LIMIT, || {
        let v = service(&c);
        let list: Vec<String> =
            v["endpoints"].as_array()?.iter().filter_map(|e| e.as_str().map(str::to_string)).collect();
        (list.len() == 2).then_some(list)
    });
    assert!(service(&c).get("url").is_none(), "no ingress, no url");
    for e in &endpoints {
        let body =
            page_by_host(e.trim_start_matches("http://"), "anything").expect("a replica answers at its endpoint");
        assert!(body.starts_with("direct"), "{body}");
    }
    let out = c.client(&["service", "get", "web"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("the manager has no ingress"), "{text}");
    assert!(endpoints.iter().all(|e| text.contains(e.as_str())), "{text}");
    // a published port the template does not list is refused, naming the field
    let mut bad = web(1, "x");
    bad["publish"] = json!({"port": 9999});
    let (status, v) = http("POST", &c.manager_url("/v1/services"), Some(bad.to_string().as_bytes()));
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("publish.port"), "{v}");
}
