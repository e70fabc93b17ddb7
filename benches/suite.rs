//! The benchmark suite's measuring parts, driven by `scripts/bench.sh` (which builds, installs
//! `wrk`, turns swarm mode on and off, repeats runs and cleans up). Each mode prints
//! `RESULT key value` lines; `report` reads them back and prints the table.
//!
//! - `cluster`: a manager and two workers (names from SKIFF_SUITE_NODES, so the script can remove
//!   their containers when interrupted): submit → Running against our Docker client's create +
//!   start of the same body (alternating, SKIFF_SUITE_STARTS rounds); a burst of
//!   SKIFF_SUITE_BURST containers on the raw engine at 1/4/8/16 threads, then the same burst
//!   submitted to Skiff at once (with the latency of every request made meanwhile); footprint;
//!   `docker kill` of a container → Running again; `kill -9` of a worker → its tasks Running on
//!   the other one.
//! - `swarm`: the same single start, burst and kill through Docker Swarm (already in swarm mode).
//! - `api`: `wrk` against a manager with no workers (its tasks stay Pending) holding 100, then
//!   10,000 tasks: every read route and submits at 1, 8 and 32 connections.
//! - `report FILE`: medians and spread of every key over the runs, ratios and targets.
//! - `fill URL N`: submits N tasks to a manager (scripts/profile.sh fills one to profile).
//!
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::{agent, daemon, Proc};
use serde_json::{json, Value};
use skiff::docker_cli::{CreateOptions, Docker, DEFAULT_SOCKET};
use skiff::task::TaskSpec;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const IMAGE: &str = "skiff/busybox:latest";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn result(key: &str, value: f64) {
    println!("RESULT {key} {value:.3}");
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Resident memory of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn get_json(http: &ureq::Agent, url: &str) -> Value {
    match http.get(url).call() {
        Ok(mut r) => r.body_mut().with_config().limit(64 << 20).read_json().unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// POSTs a task; its id and the latency in ms.
fn submit(http: &ureq::Agent, base: &str, body: &str) -> (Option<String>, u16, f64) {
    let started = Instant::now();
    match http.post(&format!("{base}/v1/tasks")).header("Content-Type", "application/json").send(body) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
            (v["id"].as_str().map(str::to_string), status, ms(started))
        }
        Err(_) => (None, 0, ms(started)),
    }
}

/// Polls `check` every `every` until it is true or `limit` has passed; whether it came true.
fn wait_for(limit: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(every);
    }
    check()
}

/// Every task of the manager, following pages.
fn all_tasks(http: &ureq::Agent, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..100 {
        let url = match &next {
            Some(n) => format!("{base}/v1/tasks?limit=1000&next={n}"),
            None => format!("{base}/v1/tasks?limit=1000"),
        };
        let Ok(mut resp) = http.get(&url).call() else { break };
        next = resp.headers().get("Skiff-Next").and_then(|v| v.to_str().ok()).map(str::to_string);
        let page: Value = resp.body_mut().with_config().limit(64 << 20).read_json().unwrap_or(Value::Null);
        out.extend(page.as_array().cloned().unwrap_or_default());
        if next.is_none() {
            break;
        }
    }
    out
}

fn count_state(tasks: &[Value], state: &str) -> usize {
    tasks.iter().filter(|t| t["state"] == state).count()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("cluster") => cluster(),
        Some("swarm") => swarm(),
        Some("api") => api(),
        Some("report") => report(args.get(1).expect("report FILE")),
        Some("fill") => {
            let base = args.get(1).expect("fill URL N");
            fill(base, args.get(2).and_then(|n| n.parse().ok()).expect("fill URL N"));
        }
        _ => {
            eprintln!("usage: suite cluster|swarm|api|report FILE|fill URL N (see scripts/bench.sh)");
            std::process::exit(2);
        }
    }
}

/// Creates and starts `n` containers of `spec` on `threads` threads; the wall time in ms and
/// the ids (for removal).
fn raw_burst(docker: &Docker, node: &str, tag: &str, spec: &TaskSpec, n: usize, threads: usize) -> (f64, Vec<String>) {
    let next = AtomicUsize::new(0);
    let ids = Mutex::new(Vec::new());
    let labels = BTreeMap::from([("skiff.node".to_string(), node.to_string())]);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let name = format!("{node}-{tag}-{i}");
                let id = docker.create(&CreateOptions { name: &name, spec, labels: &labels }).expect("create");
                docker.start(&id).expect("start");
                ids.lock().expect("lock").push(id);
            });
        }
    });
    (ms(started), ids.into_inner().expect("lock"))
}

fn remove_all(docker: &Docker, ids: &[String]) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let _ = docker.remove(id);
            });
        }
    });
}

fn docker_kill(id: &str) {
    let ok = Command::new("docker").args(["kill", id]).stdout(Stdio::null()).status().expect("docker runs");
    assert!(ok.success(), "docker kill {id}");
}

/// What a poll costs with the burst's tasks running: the bytes of a worker's whole list against
/// its changes feed from a cursor (nothing new), and the manager's plan passes per second at rest.
fn polls(http: &ureq::Agent, base: &str, worker: &str) {
    let bytes = |url: &str| -> (usize, Value) {
        let text = http.get(url).call().expect("a worker answer").body_mut().read_to_string().expect("a body");
        (text.len(), serde_json::from_str(&text).expect("json"))
    };
    let (list, _) = bytes(&format!("http://{worker}/v1/tasks"));
    let (full, first) = bytes(&format!("http://{worker}/v1/changes?limit=1000"));
    let since = format!(
        "http://{worker}/v1/changes?since={}&instance={}",
        first["version"].as_u64().expect("version"),
        first["instance"].as_str().expect("instance")
    );
    let (quiet, _) = bytes(&since);
    result("poll_list_bytes", list as f64);
    result("poll_changes_full_bytes", full as f64);
    result("poll_changes_quiet_bytes", quiet as f64);
    let passes = || -> f64 {
        let page = http.get(&format!("{base}/v1/metrics")).call().expect("metrics").body_mut().read_to_string();
        let page = page.expect("a page");
        let line = page.lines().find(|l| l.starts_with("skiff_reconcile_duration_seconds_count"));
        line.and_then(|l| l.split_whitespace().last()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    let (before, t) = (passes(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    result("plan_passes_at_rest_per_s", (passes() - before) / t.elapsed().as_secs_f64());
}

fn cluster() {
    let starts = env_usize("SKIFF_SUITE_STARTS", 30);
    let burst = env_usize("SKIFF_SUITE_BURST", 100);
    let nodes = std::env::var("SKIFF_SUITE_NODES").expect("SKIFF_SUITE_NODES=w1,w2,raw");
    let nodes: Vec<&str> = nodes.split(',').collect();
    let [w1, w2, raw_node] = nodes[..] else { panic!("three node names") };
    let docker = Docker::new(DEFAULT_SOCKET);
    docker.version().expect("the Docker Engine answers");

    let worker = env!("CARGO_BIN_EXE_worker");
    let wargs = |n: &'static str| -> Vec<String> {
        ["-n", n, "-p", "0", "--bind", "127.0.0.1", "--stop-grace-s", "1"].iter().map(|s| s.to_string()).collect()
    };
    let w1: &'static str = Box::leak(w1.to_string().into_boxed_str());
    let w2: &'static str = Box::leak(w2.to_string().into_boxed_str());
    let a1v = wargs(w1);
    let a2v = wargs(w2);
    let (p1, a1) = daemon(worker, &a1v.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let (p2, a2) = daemon(worker, &a2v.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let (pm, am) =
        daemon(env!("CARGO_BIN_EXE_manager"), &["-p", "0", "--bind", "127.0.0.1", "-w", &a1, "-w", &a2], None);
    let base = format!("http://{am}");
    let http = agent();
    let up = wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
        get_json(&http, &format!("{base}/v1/nodes"))
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|x| x["status"] == "up" && !x["capacity"].is_null()))
    });
    assert!(up, "workers never came up");
    std::thread::sleep(Duration::from_secs(2));
    result("rss_manager_idle_mib", rss_mib(pm.pid()));
    result("rss_worker_idle_mib", rss_mib(p1.pid()).max(rss_mib(p2.pid())));

    // submit → Running against create + start, alternating which goes first
    let start_json = json!({
        "name": "bench",
        "image": IMAGE,
        "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "cpus": 0.5,
        "memory_mb": 64,
        "ports": [{"container": 8080}]
    });
    let start_spec = TaskSpec::from_value(start_json.clone()).expect("valid spec");
    let labels = BTreeMap::from([("skiff.node".to_string(), raw_node.to_string())]);
    let body = start_json.to_string();
    let (mut raw, mut skiff, mut inspect) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..starts {
        for path in if round % 2 == 0 { ["raw", "skiff"] } else { ["skiff", "raw"] } {
            if path == "raw" {
                let name = format!("{raw_node}-start-{round}");
                let started = Instant::now();
                let id =
                    docker.create(&CreateOptions { name: &name, spec: &start_spec, labels: &labels }).expect("create");
                docker.start(&id).expect("start");
                raw.push(ms(started));
                // what the worker adds after the start to read the host ports
                let t = Instant::now();
                docker.inspect(&id).expect("inspect");
                inspect.push(ms(t));
                docker.remove(&id).expect("remove");
            } else {
                let started = Instant::now();
                let (id, status, _) = submit(&http, &base, &body);
                let id = id.unwrap_or_else(|| panic!("submit answered {status}"));
                let url = format!("{base}/v1/tasks/{id}");
                let ran = wait_for(Duration::from_secs(60), Duration::from_millis(1), || {
                    let t = get_json(&http, &url);
                    assert!(t["state"] != "Failed", "task failed: {t}");
                    t["state"] == "Running"
                });
                assert!(ran, "task never ran");
                skiff.push(ms(started));
                let _ = http.delete(&url).call();
                let stopped = wait_for(Duration::from_secs(30), Duration::from_millis(5), || {
                    get_json(&http, &url)["state"] == "Stopped"
                });
                assert!(stopped, "task never stopped");
            }
        }
    }
    result("start_raw_p50_ms", percentile(&raw, 0.5));
    result("start_raw_p99_ms", percentile(&raw, 0.99));
    result("start_raw_inspect_p50_ms", percentile(&inspect, 0.5));
    result("start_skiff_p50_ms", percentile(&skiff, 0.5));
    result("start_skiff_p99_ms", percentile(&skiff, 0.99));

    // the burst: the raw engine at its best parallelism, then Skiff over two workers
    let burst_json = json!({
        "name": "burst",
        "image": IMAGE,
        "cmd": ["sleep", "3600"],
        "memory_mb": 16,
        "restart_policy": {"mode": "always", "max_restarts": 3}
    });
    let burst_spec = TaskSpec::from_value(burst_json.clone()).expect("valid spec");
    // bench.sh sweeps 1/4/8/16 in the first run and gives the later runs the best of it
    let sweep = std::env::var("SKIFF_SUITE_RAW_THREADS").unwrap_or_else(|_| "1,4,8,16".into());
    let (mut best, mut best_threads) = (f64::INFINITY, 0);
    for threads in sweep.split(',').filter_map(|t| t.parse::<usize>().ok()) {
        let (t, ids) = raw_burst(&docker, raw_node, &format!("b{threads}"), &burst_spec, burst, threads);
        result(&format!("burst_raw_t{threads}_ms"), t);
        if t < best {
            (best, best_threads) = (t, threads);
        }
        remove_all(&docker, &ids);
    }
    result("burst_raw_best_ms", best);
    result("burst_raw_best_threads", best_threads as f64);

    let body = burst_json.to_string();
    let gate = Arc::new(Barrier::new(burst + 1));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..burst {
        let (gate, body, base, done) = (gate.clone(), body.clone(), base.clone(), done.clone());
        handles.push(std::thread::spawn(move || {
            let http = agent();
            gate.wait();
            let r = submit(&http, &base, &body);
            done.fetch_add(1, Ordering::Relaxed);
            r
        }));
    }
    // one reader meanwhile: one task's GET and health, from the first submit until all Running
    let reads = Arc::new(Mutex::new(Vec::<(f64, bool)>::new()));
    let reading = Arc::new(AtomicUsize::new(1));
    let reader = {
        let (reads, reading, base, done) = (reads.clone(), reading.clone(), base.clone(), done.clone());
        std::thread::spawn(move || {
            let http = agent();
            while reading.load(Ordering::Relaxed) == 1 {
                for path in ["/v1/health", "/v1/nodes"] {
                    let t = Instant::now();
                    let _ = http.get(&format!("{base}{path}")).call();
                    let during_submits = done.load(Ordering::Relaxed) < burst;
                    reads.lock().expect("lock").push((ms(t), during_submits));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    gate.wait();
    let started = Instant::now();
    let answers: Vec<(Option<String>, u16, f64)> = handles.into_iter().map(|h| h.join().expect("submitter")).collect();
    let submitted = ms(started);
    let ids: Vec<String> = answers.iter().filter_map(|a| a.0.clone()).collect();
    let refused = answers.iter().filter(|a| a.1 != 201).count();
    let lat: Vec<f64> = answers.iter().map(|a| a.2).collect();
    let all_running = wait_for(Duration::from_secs(300), Duration::from_millis(20), || {
        count_state(&all_tasks(&http, &base), "Running") >= ids.len()
    });
    let burst_ms = ms(started);
    reading.store(0, Ordering::Relaxed);
    reader.join().expect("reader");
    assert!(all_running, "the burst never all ran");
    result("burst_skiff_ms", burst_ms);
    result("burst_submits_ms", submitted);
    result("burst_refused", refused as f64);
    result("burst_submit_p99_ms", percentile(&lat, 0.99));
    result("burst_submit_max_ms", percentile(&lat, 1.0));
    let reads = reads.lock().expect("lock").clone();
    let during: Vec<f64> = reads.iter().filter(|r| r.1).map(|r| r.0).collect();
    let all: Vec<f64> = reads.iter().map(|r| r.0).collect();
    result("burst_read_max_during_submits_ms", percentile(&during, 1.0));
    result("burst_read_max_until_running_ms", percentile(&all, 1.0));
    std::thread::sleep(Duration::from_secs(2));
    result("rss_manager_100_mib", rss_mib(pm.pid()));
    result("rss_worker_50_mib", rss_mib(p1.pid()).max(rss_mib(p2.pid())));
    polls(&http, &base, &a2);

    // docker kill of a task's container (restart policy always) → Running again
    let tasks = all_tasks(&http, &base);
    let victim = tasks.iter().find(|t| t["node"] == w2 && t["state"] == "Running").expect("a task on w2").clone();
    let id = victim["id"].as_str().expect("id").to_string();
    let container = victim["container_id"].as_str().expect("container").to_string();
    let before = victim["restart_count"].as_u64().unwrap_or(0);
    let url = format!("{base}/v1/tasks/{id}");
    let started = Instant::now();
    docker_kill(&container);
    let back = wait_for(Duration::from_secs(60), Duration::from_millis(10), || {
        let t = get_json(&http, &url);
        t["state"] == "Running"
            && t["restart_count"].as_u64().unwrap_or(0) > before
            && docker.inspect(&container).is_ok_and(|c| c.running)
    });
    assert!(back, "the killed container never ran again");
    result("kill_skiff_ms", ms(started));

    // kill -9 of a worker → its tasks Running on the other one
    let on_w1: Vec<String> = tasks
        .iter()
        .filter(|t| t["node"] == w1 && t["state"] == "Running")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    drop(p1); // SIGKILL, then reaped
    let started = Instant::now();
    let moved = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        let now = all_tasks(&http, &base);
        on_w1.iter().all(|id| now.iter().any(|t| t["id"] == id.as_str() && t["node"] == w2 && t["state"] == "Running"))
    });
    if moved {
        result("kill9_skiff_ms", ms(started));
    } else {
        // a product failure, not the suite's: reported as not measured, with what the tasks show
        let now = all_tasks(&http, &base);
        for t in now.iter().filter(|t| on_w1.iter().any(|id| t["id"] == id.as_str())) {
            eprintln!("kill -9: task {} on {} is {} ({})", t["id"], t["node"], t["state"], t["error"]);
        }
        result("kill9_unmoved", on_w1.len() as f64);
    }
    result("kill9_tasks", on_w1.len() as f64);
    std::thread::sleep(Duration::from_secs(2));
    let on_w2 = count_state(&all_tasks(&http, &base), "Running");
    result("rss_worker_full_tasks", on_w2 as f64);
    result("rss_worker_full_mib", rss_mib(p2.pid()));
    drop((pm, p2));
    // the containers of both nodes go now, so that the next run starts on an engine as idle as
    // this one did (bench.sh's clean-up removes them too, by label, after a failure)
    let mut left = Vec::new();
    for node in [w1, w2] {
        left.extend(docker.list(&[format!("skiff.node={node}")]).unwrap_or_default().into_iter().map(|c| c.id));
    }
    remove_all(&docker, &left);
}

/// Running containers of a Swarm service, as the engine lists them.
fn swarm_running(docker: &Docker, service: &str) -> Vec<String> {
    docker
        .list(&[format!("com.docker.swarm.service.name={service}")])
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.state == "running")
        .map(|c| c.id)
        .collect()
}

fn service_create(name: &str, label: &str, replicas: usize, args: &[&str]) {
    let replicas = replicas.to_string();
    let mut cmd = Command::new("docker");
    cmd.args(["service", "create", "--detach", "--no-resolve-image", "--quiet", "--name", name])
        .args(["--label", &format!("skiff.bench={label}"), "--replicas", &replicas])
        .args(args)
        .stdout(Stdio::null());
    assert!(cmd.status().expect("docker runs").success(), "docker service create {name}");
}

fn service_remove(docker: &Docker, name: &str) {
    let _ = Command::new("docker").args(["service", "rm", name]).stdout(Stdio::null()).status();
    let gone = wait_for(Duration::from_secs(120), Duration::from_millis(100), || {
        docker.list(&[format!("com.docker.swarm.service.name={name}")]).is_ok_and(|l| l.is_empty())
    });
    assert!(gone, "service {name} left containers");
}

fn swarm() {
    let starts = env_usize("SKIFF_SUITE_SWARM_STARTS", 10);
    let burst = env_usize("SKIFF_SUITE_BURST", 100);
    let label = std::env::var("SKIFF_SUITE_LABEL").expect("SKIFF_SUITE_LABEL");
    let docker = Docker::new(DEFAULT_SOCKET);
    // what the CLI itself costs per call, to read the figures with
    let t = Instant::now();
    let _ = Command::new("docker").args(["service", "ls", "-q"]).stdout(Stdio::null()).status();
    result("swarm_cli_ms", ms(t));

    // the same start as Skiff's: httpd, 0.5 CPU, 64 MiB (no published port: see BENCHMARKS.md)
    let mut samples = Vec::new();
    for i in 0..starts {
        let name = format!("{label}-s{i}");
        let started = Instant::now();
        service_create(
            &name,
            &label,
            1,
            &["--limit-cpu", "0.5", "--limit-memory", "64M", IMAGE, "httpd", "-f", "-p", "8080", "-h", "/www"],
        );
        let ran =
            wait_for(Duration::from_secs(60), Duration::from_millis(5), || !swarm_running(&docker, &name).is_empty());
        assert!(ran, "service {name} never ran");
        samples.push(ms(started));
        service_remove(&docker, &name);
    }
    result("swarm_start_p50_ms", percentile(&samples, 0.5));
    result("swarm_start_p99_ms", percentile(&samples, 0.99));

    let name = format!("{label}-burst");
    let started = Instant::now();
    service_create(&name, &label, burst, &["--limit-memory", "16M", IMAGE, "sleep", "3600"]);
    let ran =
        wait_for(Duration::from_secs(300), Duration::from_millis(20), || swarm_running(&docker, &name).len() >= burst);
    assert!(ran, "the swarm burst never all ran");
    result("swarm_burst_ms", ms(started));

    let running = swarm_running(&docker, &name);
    let victim = running[0].clone();
    let started = Instant::now();
    docker_kill(&victim);
    let back = wait_for(Duration::from_secs(60), Duration::from_millis(10), || {
        let now = swarm_running(&docker, &name);
        now.len() >= burst && !now.contains(&victim)
    });
    assert!(back, "swarm never replaced the killed container");
    result("swarm_kill_ms", ms(started));
    service_remove(&docker, &name);
}

/// Runs wrk and reads p50, p99, max (ms), requests/s and errors from its output.
fn wrk(url: &str, conns: usize, secs: usize, script: Option<&str>) -> [f64; 5] {
    let mut cmd = Command::new("wrk");
    cmd.args(["--latency", "-t", &conns.min(2).to_string(), "-c", &conns.to_string(), "-d", &format!("{secs}s")]);
    if let Some(s) = script {
        cmd.args(["-s", s]);
    }
    let out = cmd.arg(url).stderr(Stdio::inherit()).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let unit = |v: &str| -> f64 {
        let (num, mult) = if let Some(n) = v.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (v, 1.0)
        };
        num.parse::<f64>().map_or(f64::NAN, |x| x * mult)
    };
    let mut r = [f64::NAN, f64::NAN, f64::NAN, f64::NAN, 0.0];
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["50%", v] => r[0] = unit(v),
            ["99%", v] => r[1] = unit(v),
            ["Latency", _, _, max, ..] => r[2] = unit(max),
            ["Requests/sec:", v] => r[3] = v.parse().unwrap_or(f64::NAN),
            ["Non-2xx", "or", "3xx", "responses:", n] => r[4] += n.parse::<f64>().unwrap_or(0.0),
            ["Socket", "errors:", rest @ ..] => {
                r[4] += rest.iter().filter_map(|x| x.trim_end_matches(',').parse::<f64>().ok()).sum::<f64>()
            }
            _ => {}
        }
    }
    r
}

/// Submits `n` Pending tasks on 8 connections.
fn fill(base: &str, n: usize) {
    let next = AtomicUsize::new(0);
    let body = json!({"name": "fill", "image": IMAGE, "cmd": ["sleep", "1"], "memory_mb": 8}).to_string();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let http = agent();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let (id, status, _) = submit(&http, base, &body);
                    assert!(id.is_some(), "fill: submit answered {status}");
                }
            });
        }
    });
}

fn api() {
    let secs = env_usize("SKIFF_SUITE_WRK_SECS", 3);
    let big = env_usize("SKIFF_SUITE_STORE", 10_000);
    let dir = std::env::var("SKIFF_SUITE_DIR").expect("SKIFF_SUITE_DIR");
    let script = format!("{dir}/submit.lua");
    let body = json!({"name": "wrk", "image": IMAGE, "cmd": ["sleep", "1"], "memory_mb": 8}).to_string();
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
        serde_json::to_string(&body).expect("a string")
    );
    std::fs::write(&script, lua).expect("write the wrk script");
    for (store, n) in [("100", 100), ("10k", big)] {
        // a fresh manager for each store size, so that the submits of one do not fill the other
        let (pm, am): (Proc, String) = daemon(env!("CARGO_BIN_EXE_manager"), &["-p", "0", "--bind", "127.0.0.1"], None);
        let base = format!("http://{am}");
        let t = Instant::now();
        fill(&base, n);
        result(&format!("api_{store}_fill_per_s"), n as f64 / t.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(1));
        result(&format!("rss_manager_{store}_tasks_mib"), rss_mib(pm.pid()));
        let http = agent();
        let page: Value = get_json(&http, &format!("{base}/v1/tasks?limit=1"));
        let one = page[0]["id"].as_str().expect("a task").to_string();
        let routes = [
            ("task", format!("{base}/v1/tasks/{one}"), None),
            ("page", format!("{base}/v1/tasks?limit=100"), None),
            ("nodes", format!("{base}/v1/nodes"), None),
            ("health", format!("{base}/v1/health"), None),
            ("submit", format!("{base}/v1/tasks"), Some(script.as_str())),
        ];
        for (route, url, script) in &routes {
            for conns in [1, 8, 32] {
                let [p50, p99, max, rps, errors] = wrk(url, conns, secs, *script);
                let key = format!("api_{store}_{route}_c{conns}");
                result(&format!("{key}_p50_ms"), p50);
                result(&format!("{key}_p99_ms"), p99);
                result(&format!("{key}_max_ms"), max);
                result(&format!("{key}_rps"), rps);
                result(&format!("{key}_errors"), errors);
            }
        }
        result(&format!("rss_manager_{store}_after_submits_mib"), rss_mib(pm.pid()));
    }
}

// ---- the report -------------------------------------------------------------------------------

/// Median, min and max of each key over the runs.
struct Figures(BTreeMap<String, Vec<f64>>);

impl Figures {
    fn get(&self, key: &str) -> Option<(f64, f64, f64)> {
        let v: Vec<f64> = self.0.get(key)?.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        Some((percentile(&v, 0.5), percentile(&v, 0.0), percentile(&v, 1.0)))
    }
    fn runs(&self, key: &str) -> usize {
        self.0.get(key).map_or(0, Vec::len)
    }
}

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        "ms" if v < 10.0 => format!("{v:.2} ms"),
        "ms" => format!("{v:.0} ms"),
        "MiB" => format!("{v:.1} MiB"),
        "/s" if v >= 1e6 => format!("{:.1}M/s", v / 1e6),
        "/s" if v >= 10_000.0 => format!("{:.1}k/s", v / 1000.0),
        "/s" => format!("{v:.0}/s"),
        "B" => format!("{v:.0} B"),
        _ => format!("{v:.0}"),
    }
}

/// One row: the figure (median, spread), its baseline, the ratio, the target and a verdict.
struct Row<'a> {
    what: String,
    key: &'a str,
    unit: &'a str,
    baseline: Option<(&'a str, &'a str)>,
    /// the most (or, with `at_least`, the least) the figure, or its ratio, may be
    target: Option<(f64, bool, bool)>,
}

fn report(path: &str) {
    let text = std::fs::read_to_string(path).expect("results file");
    let mut map: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines() {
        if let ["RESULT", key, value] = line.split_whitespace().collect::<Vec<_>>()[..] {
            map.entry(key.to_string()).or_default().push(value.parse().unwrap_or(f64::NAN));
        }
    }
    let f = Figures(map);
    // the quick run fills a smaller store under the same keys
    let big = env_usize("SKIFF_SUITE_STORE", 10_000);
    let big_rss = format!("RSS manager, {big} Pending tasks in the store");
    let mut rows: Vec<Row> = Vec::new();
    let row = |what: &str, key: &'static str, unit: &'static str| Row {
        what: what.to_string(),
        key,
        unit,
        baseline: None,
        target: None,
    };
    let mut r = row("submit → Running, p50", "start_skiff_p50_ms", "ms");
    r.baseline = Some(("start_raw_p50_ms", "raw create+start"));
    r.target = Some((1.05, true, false));
    rows.push(r);
    let mut r = row("submit → Running, p99", "start_skiff_p99_ms", "ms");
    r.baseline = Some(("start_raw_p99_ms", "raw create+start"));
    rows.push(r);
    rows.push(row(
        "  (an inspect after the start, p50: the worker's extra engine call)",
        "start_raw_inspect_p50_ms",
        "ms",
    ));
    let mut r = row("Swarm: service create → running, p50", "swarm_start_p50_ms", "ms");
    r.baseline = Some(("start_skiff_p50_ms", "Skiff p50"));
    rows.push(r);
    let mut r = row("burst of tasks over two workers → all Running", "burst_skiff_ms", "ms");
    r.baseline = Some(("burst_raw_best_ms", "raw engine, best threads"));
    r.target = Some((1.1, true, false));
    rows.push(r);
    rows.push(row("  (the raw engine's best thread count)", "burst_raw_best_threads", ""));
    for t in [1, 4, 8, 16] {
        let key = &*Box::leak(format!("burst_raw_t{t}_ms").into_boxed_str());
        rows.push(row(&format!("  (raw engine, {t} threads)"), key, "ms"));
    }
    let mut r = row("Swarm: `--replicas` burst → all running", "swarm_burst_ms", "ms");
    r.baseline = Some(("burst_skiff_ms", "Skiff burst"));
    rows.push(r);
    let mut r = row("burst: slowest submit", "burst_submit_max_ms", "ms");
    r.target = Some((50.0, false, false));
    rows.push(r);
    let mut r = row("burst: slowest read (health, nodes) while submitting", "burst_read_max_during_submits_ms", "ms");
    r.target = Some((50.0, false, false));
    rows.push(r);
    rows.push(row("burst: slowest read until all Running", "burst_read_max_until_running_ms", "ms"));
    rows.push(row("burst: submits refused (not 201)", "burst_refused", ""));
    let mut r = row("`docker kill` → Running again (restart always)", "kill_skiff_ms", "ms");
    r.baseline = Some(("swarm_kill_ms", "Swarm, same kill"));
    rows.push(r);
    rows.push(row("Swarm: `docker kill` → replaced", "swarm_kill_ms", "ms"));
    rows.push(row("worker `kill -9` → its tasks Running on the other", "kill9_skiff_ms", "ms"));
    rows.push(row("  (tasks moved)", "kill9_tasks", ""));
    for (what, key, limit) in [
        ("RSS idle manager (two workers, no task)", "rss_manager_idle_mib", 16.0),
        ("RSS idle worker", "rss_worker_idle_mib", 8.0),
        (big_rss.as_str(), "rss_manager_10k_tasks_mib", 64.0),
        ("RSS worker with all the burst's tasks running", "rss_worker_full_mib", 16.0),
    ] {
        let mut r = row(what, key, "MiB");
        r.target = Some((limit, false, false));
        rows.push(r);
    }
    rows.push(row("  (tasks on that worker)", "rss_worker_full_tasks", ""));
    rows.push(row("RSS manager, 100 tasks running", "rss_manager_100_mib", "MiB"));
    rows.push(row("poll of a worker, whole list (GET /v1/tasks)", "poll_list_bytes", "B"));
    rows.push(row("poll of a worker, changes feed, nothing new", "poll_changes_quiet_bytes", "B"));
    rows.push(row("manager plan passes per second at rest (2 workers)", "plan_passes_at_rest_per_s", "/s"));
    let mut r = row("idle writes, manager, bytes", "idle_manager_write_bytes", "B");
    r.target = Some((0.0, false, false));
    rows.push(r);
    let mut r = row("idle writes, worker, bytes", "idle_worker_write_bytes", "B");
    r.target = Some((0.0, false, false));
    rows.push(r);
    let placement: Vec<(String, String)> = ["roundrobin", "epvm"]
        .iter()
        .flat_map(|s| ["100", "1000", "5000"].iter().map(move |n| (s.to_string(), n.to_string())))
        .collect();
    let placement_keys: Vec<&'static str> =
        placement.iter().map(|(s, n)| &*Box::leak(format!("place_{s}_{n}").into_boxed_str())).collect();
    for ((s, n), key) in placement.iter().zip(&placement_keys) {
        let mut r = row(&format!("placements/s, {s}, {n} nodes"), key, "/s");
        if n == "5000" {
            // ten times kube-scheduler's published 1,150 pods/s at 5,000 nodes
            r.target = Some((11_500.0, false, true));
        }
        rows.push(r);
    }
    let api_keys: Vec<(String, &'static str, &'static str, bool)> = ["100", "10k"]
        .iter()
        .flat_map(|store| {
            ["task", "page", "nodes", "health", "submit"].iter().flat_map(move |route| {
                [1, 8, 32].iter().map(move |c| {
                    let key = format!("api_{store}_{route}_c{c}");
                    let p99 = &*Box::leak(format!("{key}_p99_ms").into_boxed_str());
                    let base = &*Box::leak(format!("api_{store}_health_c{c}_p99_ms").into_boxed_str());
                    let targeted = *store == "10k" && *c == 32 && (*route == "task" || *route == "page");
                    let size = if *store == "10k" { big } else { 100 };
                    (format!("{size} tasks, {route}, {c} conn."), p99, base, targeted && big >= 10_000)
                })
            })
        })
        .collect();

    println!("| what | Skiff (median) | spread (min–max) | baseline | ratio | target | |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        print_row(&f, r);
    }
    println!();
    println!("API with wrk (p99 and requests/s; ratio: p99 over GET /v1/health's at the same connections and store)");
    println!();
    println!("| store, route, connections | p50 | p99 (min–max) | max | req/s | errors | p99 / health | target | |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (what, p99, base, targeted) in &api_keys {
        let stem = p99.trim_end_matches("_p99_ms");
        let Some((v, lo, hi)) = f.get(p99) else { continue };
        let p50 = f.get(&format!("{stem}_p50_ms")).map_or(f64::NAN, |x| x.0);
        let max = f.get(&format!("{stem}_max_ms")).map_or(f64::NAN, |x| x.0);
        let rps = f.get(&format!("{stem}_rps")).map_or(f64::NAN, |x| x.0);
        let errors = f.get(&format!("{stem}_errors")).map_or(0.0, |x| x.2);
        let ratio = f.get(base).map_or(String::new(), |b| format!("{:.1}×", v / b.0));
        let (target, verdict) = if *targeted {
            (
                "p99 ≤ 5 ms".to_string(),
                if hi <= 5.0 {
                    "pass"
                } else if v <= 5.0 {
                    "pass (median)"
                } else {
                    "MISS"
                },
            )
        } else {
            (String::new(), "")
        };
        println!(
            "| {what} | {} | {} ({}–{}) | {} | {} | {errors:.0} | {ratio} | {target} | {verdict} |",
            fmt(p50, "ms"),
            fmt(v, "ms"),
            fmt(lo, "ms"),
            fmt(hi, "ms"),
            fmt(max, "ms"),
            fmt(rps, "/s"),
        );
    }
    let runs = f.runs("start_skiff_p50_ms");
    println!();
    println!("runs: {runs} (cluster); medians over runs, spread = min–max over runs");
}

fn print_row(f: &Figures, r: &Row) {
    let Some((v, lo, hi)) = f.get(r.key) else {
        println!("| {} | not measured | | | | | |", r.what);
        return;
    };
    let spread = if f.runs(r.key) > 1 { format!("{}–{}", fmt(lo, r.unit), fmt(hi, r.unit)) } else { String::new() };
    let (base, ratio) = match r.baseline.and_then(|(k, name)| Some((f.get(k)?, name))) {
        Some(((b, _, _), name)) => (format!("{} ({name})", fmt(b, r.unit)), Some(v / b)),
        None => (String::new(), None),
    };
    let (target, verdict) = match r.target {
        Some((limit, true, _)) => {
            let ok = ratio.is_some_and(|x| x <= limit);
            (format!("≤ {limit}×"), if ok { "pass" } else { "MISS" })
        }
        Some((limit, false, true)) => (format!("≥ {}", fmt(limit, r.unit)), if v >= limit { "pass" } else { "MISS" }),
        Some((limit, false, false)) => (format!("≤ {}", fmt(limit, r.unit)), if v <= limit { "pass" } else { "MISS" }),
        None => (String::new(), ""),
    };
    let ratio = ratio.map_or(String::new(), |x| format!("{x:.2}×"));
    println!("| {} | {} | {spread} | {base} | {ratio} | {target} | {verdict} |", r.what, fmt(v, r.unit));
}
