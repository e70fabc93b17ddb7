//! Load: 32 concurrent clients for 60 s against a manager with two workers on this machine,
//! mixing submissions, gets, lists and stops; then a final reconciliation of the API's tasks
//! against the engine's labelled containers. Prints p50/p99 latency per request kind and fails
//! on any 5xx, lost or duplicated task. Run with `scripts/load.sh` (or `cargo bench --bench load`).
//!
//! Bounded on purpose: loopback only, submissions at most SKIFF_LOAD_SUBMITS per second (default
//! 4, about what one engine on 2 vCPUs starts), at most 40 live tasks, SKIFF_LOAD_SECONDS (60) long.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::{agent, daemon};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "load-test-token-0123456789abcdef";
const CLIENTS: usize = 32;
const MAX_LIVE: usize = 40;

/// One call: status, body, latency in milliseconds.
fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> (u16, Value, f64) {
    let started = Instant::now();
    let mut req =
        ureq::http::Request::builder().method(method).uri(url).header("Authorization", format!("Bearer {TOKEN}"));
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default()).expect("request");
    match agent.run(req) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let v = resp.body_mut().with_config().limit(256 << 20).read_json().unwrap_or(Value::Null);
            (status, v, started.elapsed().as_secs_f64() * 1000.0)
        }
        Err(e) => {
            eprintln!("{method} {url}: {e}");
            (0, Value::Null, started.elapsed().as_secs_f64() * 1000.0)
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A small deterministic generator per client.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn main() {
    let seconds: u64 = std::env::var("SKIFF_LOAD_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let submits_per_s: f64 = std::env::var("SKIFF_LOAD_SUBMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(Command::new(format!("{root}/scripts/build-image.sh")).status().expect("runs").success());
    let run = format!("load{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let names = [format!("{run}-w1"), format!("{run}-w2")];
    let worker = env!("CARGO_BIN_EXE_worker");
    let (_w1, a1) =
        daemon(worker, &["-n", &names[0], "-p", "0", "--bind", "127.0.0.1", "--stop-grace-s", "1"], Some(TOKEN));
    let (_w2, a2) =
        daemon(worker, &["-n", &names[1], "-p", "0", "--bind", "127.0.0.1", "--stop-grace-s", "1"], Some(TOKEN));
    let (_m, manager) =
        daemon(env!("CARGO_BIN_EXE_manager"), &["-p", "0", "--bind", "127.0.0.1", "-w", &a1, "-w", &a2], Some(TOKEN));
    let base = format!("http://{manager}/v1");
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !call(&a, "GET", &format!("{base}/nodes"), None)
        .1
        .as_array()
        .is_some_and(|n| n.iter().all(|x| x["status"] == "up" && !x["capacity"].is_null()))
    {
        assert!(Instant::now() < deadline, "workers never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("load: {CLIENTS} clients, {seconds} s, at most {submits_per_s} submissions/s and {MAX_LIVE} live tasks");

    let live: Arc<Mutex<Vec<String>>> = Arc::default();
    let submitted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stopped: Arc<Mutex<HashSet<String>>> = Arc::default();
    let next_submit = Arc::new(Mutex::new(Instant::now()));
    let server_errors = Arc::new(AtomicU64::new(0));
    let other_errors = Arc::new(AtomicU64::new(0));
    let stop_flag = Arc::new(AtomicBool::new(false));
    let spec = json!({"name": "load", "image": "skiff/busybox:latest", "cmd": ["sleep", "3600"], "memory_mb": 8, "cpus": 0.01});
    let mut handles = Vec::new();
    for c in 0..CLIENTS {
        let (live, submitted, stopped, next_submit) =
            (live.clone(), submitted.clone(), stopped.clone(), next_submit.clone());
        let (server_errors, other_errors, stop_flag, base, spec) =
            (server_errors.clone(), other_errors.clone(), stop_flag.clone(), base.clone(), spec.clone());
        handles.push(std::thread::spawn(move || {
            let agent = agent();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
            let mut lat: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
            while !stop_flag.load(Ordering::Relaxed) {
                let roll = rng.below(100);
                let may_submit = {
                    let mut next = next_submit.lock().expect("lock");
                    let ok = roll < 10 && Instant::now() >= *next && live.lock().expect("lock").len() < MAX_LIVE;
                    if ok {
                        *next = Instant::now() + Duration::from_secs_f64(1.0 / submits_per_s);
                    }
                    ok
                };
                let pick = |rng: &mut Rng| {
                    let l = live.lock().expect("lock");
                    (!l.is_empty()).then(|| l[rng.below(l.len() as u64) as usize].clone())
                };
                let (kind, status) = if may_submit {
                    let (s, v, ms) = call(&agent, "POST", &format!("{base}/tasks"), Some(&spec));
                    if let Some(id) = v["id"].as_str() {
                        live.lock().expect("lock").push(id.to_string());
                        submitted.lock().expect("lock").insert(id.to_string());
                    }
                    lat.entry("submit").or_default().push(ms);
                    ("submit", s)
                } else if (10..20).contains(&roll) && live.lock().expect("lock").len() > MAX_LIVE / 2 {
                    let Some(id) = pick(&mut rng) else { continue };
                    live.lock().expect("lock").retain(|x| *x != id);
                    let (s, _, ms) = call(&agent, "DELETE", &format!("{base}/tasks/{id}"), None);
                    if s == 202 {
                        stopped.lock().expect("lock").insert(id);
                    }
                    lat.entry("stop").or_default().push(ms);
                    ("stop", s)
                } else if roll < 60 {
                    let Some(id) = pick(&mut rng) else { continue };
                    let (s, _, ms) = call(&agent, "GET", &format!("{base}/tasks/{id}"), None);
                    lat.entry("get").or_default().push(ms);
                    ("get", s)
                } else {
                    let (s, _, ms) = call(&agent, "GET", &format!("{base}/tasks"), None);
                    lat.entry("list").or_default().push(ms);
                    ("list", s)
                };
                if status >= 500 {
                    server_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{kind}: HTTP {status}");
                } else if status == 0 || (400..500).contains(&status) && status != 409 {
                    other_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{kind}: HTTP {status}");
                }
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs(seconds));
    stop_flag.store(true, Ordering::Relaxed);
    let mut all: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for h in handles {
        for (k, v) in h.join().expect("client") {
            all.entry(k).or_default().extend(v);
        }
    }
    let total: usize = all.values().map(Vec::len).sum();
    println!("{:<8} {:>8} {:>10} {:>10} {:>10}", "request", "count", "p50 ms", "p99 ms", "max ms");
    for (kind, v) in &mut all {
        v.sort_by(f64::total_cmp);
        println!(
            "{kind:<8} {:>8} {:>10.2} {:>10.2} {:>10.2}",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(0.0)
        );
    }
    println!("total    {total:>8} requests, {:.0}/s", total as f64 / seconds as f64);

    // settle: every task reaches the state it should have, then compare with the engine
    let submitted = submitted.lock().expect("lock").clone();
    let stopped = stopped.lock().expect("lock").clone();
    let settle = Instant::now();
    let tasks: Vec<Value> = loop {
        let (_, v, _) = call(&a, "GET", &format!("{base}/tasks"), None);
        let tasks = v.as_array().cloned().unwrap_or_default();
        let settled = tasks.iter().all(|t| {
            let id = t["id"].as_str().unwrap_or("");
            let want = if stopped.contains(id) { "Stopped" } else { "Running" };
            t["state"] == want
        });
        if settled || settle.elapsed() > Duration::from_secs(300) {
            break tasks;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("settled in {:.1} s", settle.elapsed().as_secs_f64());
    let docker = skiff::docker_cli::Docker::new(skiff::docker_cli::DEFAULT_SOCKET);
    let mut containers = Vec::new();
    for n in &names {
        containers.extend(docker.list(&[format!("skiff.node={n}")]).expect("list containers"));
    }
    let mut per_task: HashMap<String, usize> = HashMap::new();
    for c in containers.iter().filter(|c| c.state == "running") {
        *per_task.entry(c.labels.get("skiff.task-id").cloned().unwrap_or_default()).or_default() += 1;
    }
    let known: HashSet<String> = tasks.iter().filter_map(|t| t["id"].as_str().map(str::to_string)).collect();
    let lost: Vec<&String> = submitted.iter().filter(|id| !known.contains(*id)).collect();
    let running: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "Running").collect();
    let unsettled = tasks.iter().filter(|t| {
        let id = t["id"].as_str().unwrap_or("");
        t["state"] != if stopped.contains(id) { "Stopped" } else { "Running" }
    });
    let duplicated = per_task.values().filter(|n| **n > 1).count();
    let missing = running.iter().filter(|t| !per_task.contains_key(t["id"].as_str().unwrap_or(""))).count();
    let orphans = per_task.keys().filter(|id| !running.iter().any(|t| t["id"] == id.as_str())).count();
    println!(
        "tasks: {} submitted, {} stopped, {} running; containers running: {}; lost {}, duplicated {}, \
         running without container {}, containers without a running task {}, unsettled {}",
        submitted.len(),
        stopped.len(),
        running.len(),
        per_task.values().sum::<usize>(),
        lost.len(),
        duplicated,
        missing,
        orphans,
        unsettled.count()
    );
    let fivexx = server_errors.load(Ordering::Relaxed);
    println!("5xx answers: {fivexx}; other failed requests: {}", other_errors.load(Ordering::Relaxed));
    for c in containers {
        let _ = docker.remove(&c.id);
    }
    assert_eq!(fivexx, 0, "no 5xx");
    assert!(lost.is_empty() && duplicated == 0 && missing == 0 && orphans == 0, "API and engine agree");
}
