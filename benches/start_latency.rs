//! Submit → Running through Skiff, side by side with the raw Engine's create + start of the same
//! container. Run with `cargo bench --bench start_latency` (rounds: SKIFF_BENCH_ROUNDS, default 20).
//!
//! Each round times both, in alternating order: the raw path is our Docker client's create and
//! start calls with the body Skiff would send; the Skiff path is `POST /v1/tasks` to a manager
//! with one worker, then `GET /v1/tasks/{id}` every millisecond until it reads Running.
//!
//! Against another engine (Podman's socket, say), name its socket in `SKIFF_TEST_ENGINE_SOCKET`
//! and the CLI that builds the image in its store in `SKIFF_ENGINE_CLI` (`podman`), as the tests'
//! helpers take them: `scripts/test-podman.sh --bench` does both.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::{agent, daemon};
use serde_json::{json, Value};
use skiff::docker_cli::{CreateOptions, Docker};
use skiff::task::TaskSpec;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    agent.get(url).call().expect("GET").body_mut().read_json().expect("json")
}

fn stats(name: &str, samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = samples[n / 2];
    let mean = samples.iter().sum::<f64>() / n as f64;
    println!(
        "{name:<28} n={n:<3} median={median:>7.1} ms  mean={mean:>7.1} ms  min={:>7.1} ms  max={:>7.1} ms",
        samples[0],
        samples[n - 1]
    );
    median
}

fn main() {
    let rounds: usize = std::env::var("SKIFF_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let root = env!("CARGO_MANIFEST_DIR");
    let built = Command::new(format!("{root}/scripts/build-image.sh")).status().expect("build-image runs");
    assert!(built.success(), "the image must build");
    let socket = std::env::var("SKIFF_TEST_ENGINE_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or(skiff::docker_cli::DEFAULT_SOCKET.to_string());
    let docker = Docker::new(&socket);
    let (version, api) = docker.version().expect("the engine must answer");
    println!("engine {version} (API {api}) at {socket}, {rounds} rounds");

    let node = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (_worker, worker_addr) = daemon(
        env!("CARGO_BIN_EXE_worker"),
        &["-n", &node, "-p", "0", "--bind", "127.0.0.1", "--stop-grace-s", "1", "--docker-socket", &socket],
        None,
    );
    let (_manager, manager_addr) =
        daemon(env!("CARGO_BIN_EXE_manager"), &["-p", "0", "--bind", "127.0.0.1", "-w", &worker_addr], None);
    let base = format!("http://{manager_addr}");
    let http = agent();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&http, &format!("{base}/v1/nodes"))[0]["status"] != "up" {
        assert!(Instant::now() < deadline, "worker never came up");
        std::thread::sleep(Duration::from_millis(10));
    }

    let spec_json = json!({
        "name": "bench",
        "image": "skiff/busybox:latest",
        "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "cpus": 0.5,
        "memory_mb": 64,
        "ports": [{"container": 8080}]
    });
    let spec = TaskSpec::from_value(spec_json.clone()).expect("valid spec");
    let labels = BTreeMap::from([("skiff.node".to_string(), node.clone())]);

    let (mut raw, mut skiff) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for path in if round % 2 == 0 { ["raw", "skiff"] } else { ["skiff", "raw"] } {
            if path == "raw" {
                let name = format!("{node}-raw-{round}");
                let started = Instant::now();
                let id = docker.create(&CreateOptions { name: &name, spec: &spec, labels: &labels }).expect("create");
                docker.start(&id).expect("start");
                raw.push(started.elapsed().as_secs_f64() * 1000.0);
                docker.remove(&id).expect("remove");
            } else {
                let body = spec_json.to_string();
                let started = Instant::now();
                let mut resp = http
                    .post(&format!("{base}/v1/tasks"))
                    .header("Content-Type", "application/json")
                    .send(&body)
                    .expect("POST");
                let task: Value = resp.body_mut().read_json().expect("json");
                let id = task["id"].as_str().expect("id").to_string();
                let url = format!("{base}/v1/tasks/{id}");
                loop {
                    let t = get_json(&http, &url);
                    if t["state"] == "Running" {
                        break;
                    }
                    assert!(t["state"] != "Failed", "task failed: {t}");
                    assert!(started.elapsed() < Duration::from_secs(60), "task never ran");
                    std::thread::sleep(Duration::from_millis(1));
                }
                skiff.push(started.elapsed().as_secs_f64() * 1000.0);
                let _ = http.delete(&url).call();
                let deadline = Instant::now() + Duration::from_secs(30);
                while get_json(&http, &url)["state"] != "Stopped" {
                    assert!(Instant::now() < deadline, "task never stopped");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    let raw_median = stats("engine create+start", &mut raw);
    let skiff_median = stats("skiff submit->Running", &mut skiff);
    println!(
        "overhead of the median: {:+.1} ms ({:+.1} %)",
        skiff_median - raw_median,
        (skiff_median / raw_median - 1.0) * 100.0
    );
}
