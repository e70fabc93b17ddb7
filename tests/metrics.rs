//! Prometheus metrics (issue 12): `GET /v1/metrics` of a manager and a worker running a task,
//! against the real engine: the series are there with their HELP and TYPE, the token is needed,
//! `promtool check metrics` accepts both pages, and a real Prometheus server scrapes both with
//! the shipped configuration (`docs/prometheus.yml`) and answers a query about them.
#![allow(clippy::let_underscore_must_use, reason = "test code drops the outcomes of clean-ups freely")]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const RUN: Duration = Duration::from_secs(30);

/// A daemon's metrics page: status, content type, text.
fn scrape(url: &str, token: Option<&str>) -> (u16, String, String) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(RUN)).build().new_agent();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (resp.status().as_u16(), kind, resp.body_mut().read_to_string().expect("a text body"))
}

fn page(url: &str) -> String {
    let (status, kind, text) = scrape(url, Some(TOKEN));
    assert_eq!(status, 200, "{url}: {text}");
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8", "{url}");
    text
}

/// The value of the sample written exactly `series` (name and labels as the page has them).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Whether the page has this sample: the whole line, or its series whatever its value.
fn has(text: &str, sample: &str) -> bool {
    text.lines().any(|l| l == sample || l.strip_prefix(sample).is_some_and(|rest| rest.starts_with(' ')))
}

/// Every sample belongs to a family that has both a HELP and a TYPE line before it (a
/// histogram's `_bucket`, `_sum` and `_count` to the histogram's).
fn check_families(text: &str) {
    let (mut help, mut typed) = (BTreeSet::new(), std::collections::BTreeMap::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help.insert(rest.split(' ').next().expect("a name").to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a name and a type");
            typed.insert(name.to_string(), kind.to_string());
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().expect("a name");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.get(*f).is_some_and(|k| k == "histogram")))
                .unwrap_or(name);
            assert!(help.contains(family) && typed.contains_key(family), "{name} has no HELP or TYPE before it");
            assert!(family.starts_with("skiff_") || family.starts_with("process_"), "{family}: not ours");
            if typed[family] == "counter" {
                assert!(family.ends_with("_total"), "counter {family} ends in _total");
            }
        }
    }
}

/// `promtool check metrics` on a page: it must be installed (Debian's `prometheus` package).
fn promtool_accepts(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed for this test and could not be run ({e}): apt-get install prometheus")
        });
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write the page");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics refused the {what}'s page:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A one-worker cluster running one task, every node up.
fn cluster_with_a_task(test: &str) -> (Cluster, String) {
    let c = Cluster::start(test, ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&json!({"name": "metered", "image": IMAGE, "memory_mb": 16, "cmd": ["sleep", "300"]}));
    c.wait_state(&id, "Running", RUN);
    (c, id)
}

#[test]
fn both_daemons_serve_their_metrics_behind_the_token() {
    let (c, _id) = cluster_with_a_task("metrics_pages");
    // and one that fails, is restarted in place once, and fails for good
    let flaky = c.submit(&json!({
        "name": "flaky", "image": IMAGE, "memory_mb": 16, "cmd": ["sh", "-c", "exit 1"],
        "restart_policy": {"mode": "on-failure", "max_restarts": 1}
    }));
    let failed = c.wait_state(&flaky, "Failed", RUN);
    assert_eq!(failed["restart_count"], 1, "{failed}");
    let node = c.worker_names[0].clone();
    let manager_url = c.manager_url("/v1/metrics");
    let worker_url = c.worker_url(0, "/v1/metrics");

    let series = [
        "skiff_tasks{state=\"Running\"} 1".to_string(),
        "skiff_tasks{state=\"Failed\"} 1".to_string(),
        "skiff_task_restarts_total 1".to_string(),
        "skiff_nodes{status=\"up\",availability=\"active\"} 1".to_string(),
        format!("skiff_node_tasks{{node=\"{node}\"}} 1"),
        format!("skiff_node_allocated_memory_bytes{{node=\"{node}\"}} 16777216"),
        format!("skiff_worker_polls_total{{address=\"{}\",outcome=\"ok\"}}", c.workers[0].addr),
        "skiff_http_requests_total{route=\"/v1/tasks\",method=\"POST\",status=\"201\"} 2".to_string(),
        "skiff_http_requests_total{route=\"/v1/tasks/{id}\",method=\"GET\",status=\"200\"}".to_string(),
        "skiff_store_writes_total{operation=\"put_task\",outcome=\"ok\"}".to_string(),
        "skiff_placements_total 2".to_string(),
        "skiff_reconcile_duration_seconds_count".to_string(),
        "skiff_build_info{daemon=\"manager\",version=\"0.1.0\"} 1".to_string(),
    ];
    // the snapshot and the counters follow the control loop: poll until the page has caught up
    let manager = wait_for("the manager's page to show the running task", RUN, || {
        let text = page(&manager_url);
        series.iter().all(|s| has(&text, s)).then_some(text)
    });
    for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"] {
        assert!(value(&manager, name).is_some_and(|v| v > 0.0), "{name} in:\n{manager}");
    }
    assert!(value(&manager, "process_start_time_seconds").is_some_and(|t| t > 1.7e9), "{manager}");
    assert!(value(&manager, &format!("skiff_node_capacity_cpus{{node=\"{node}\"}}")).is_some_and(|v| v > 0.0));

    let worker_series = [
        "skiff_worker_tasks{state=\"Running\"} 1",
        "skiff_worker_allocated_memory_bytes 16777216",
        "skiff_worker_engine_up 1",
        "skiff_worker_tasks{state=\"Failed\"} 1",
        "skiff_engine_calls_total{operation=\"create\",outcome=\"ok\"}",
        "skiff_engine_calls_total{operation=\"start\",outcome=\"ok\"}",
        "skiff_engine_call_duration_seconds_count{operation=\"create\"}",
        "skiff_http_requests_total{route=\"/v1/tasks\",method=\"POST\",status=\"201\"} 2",
        "skiff_build_info{daemon=\"worker\",version=\"0.1.0\"} 1",
    ];
    let worker = wait_for("the worker's page to show the running task", RUN, || {
        let text = page(&worker_url);
        worker_series.iter().all(|s| has(&text, s)).then_some(text)
    });
    assert!(value(&worker, "skiff_worker_capacity_memory_bytes").is_some_and(|v| v > 0.0), "{worker}");

    for (what, text) in [("manager", &manager), ("worker", &worker)] {
        check_families(text);
        promtool_accepts(what, text);
    }

    // the token, as on every route but health; a refusal is counted under the route's pattern
    for url in [&manager_url, &worker_url] {
        let (status, _, body) = scrape(url, None);
        assert_eq!(status, 401, "{url} without the token: {body}");
        let (status, _, _) = scrape(url, Some("not-the-cluster-token-at-all"));
        assert_eq!(status, 401, "{url} with a wrong token");
    }
    let text = page(&worker_url);
    assert_eq!(
        value(&text, "skiff_http_requests_total{route=\"/v1/metrics\",method=\"GET\",status=\"401\"}"),
        Some(2.0),
        "{text}"
    );
}

/// A Prometheus server started for a test: stopped, and its data directory removed, when
/// dropped, whatever happened in between.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    /// Starts Prometheus on a free port of 127.0.0.1 with `config`, its log in `log`.
    fn start(config: &str, log: &Path) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("skiff-prometheus-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write the config");
        let port = dead_address().rsplit_once(':').map(|(_, p)| p.to_string()).expect("a port");
        let log_file = std::fs::File::create(log).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("prometheus is needed for this test and could not be run ({e}): apt-get install prometheus");
            }
        };
        let mut prometheus = Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}); see {}", log.display());
            }
            // refused until it listens
            let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().new_agent();
            agent.get(format!("{}/-/ready", prometheus.url)).call().ok().map(|_| ())
        });
        prometheus
    }

    /// The result vector of an instant query (empty while it has no data).
    fn query(&self, promql: &str) -> Vec<Value> {
        let escaped: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_as("GET", &format!("{}/api/v1/query?query={escaped}", self.url), None, None);
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "query {promql}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `docs/prometheus.yml` with this cluster's addresses, a token file and a short interval; each
/// replaced line must be there, so the shipped file and this test stay one.
fn scrape_config(c: &Cluster, token_file: &Path) -> String {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus.yml"))
        .expect("docs/prometheus.yml");
    let manager = format!("['{}']", c.manager().addr);
    let worker = format!("['{}']", c.workers[0].addr);
    let token = token_file.display().to_string();
    let mut config = shipped.clone();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("scrape_timeout: 10s", "scrape_timeout: 1s"),
        ("['managerhost:8080']", manager.as_str()),
        ("['worker1:80', 'worker2:80']", worker.as_str()),
        ("/etc/skiff/token", token.as_str()),
    ] {
        assert!(shipped.contains(from), "docs/prometheus.yml has no {from:?}");
        config = config.replace(from, to);
    }
    config
}

#[test]
fn a_real_prometheus_scrapes_the_manager_and_the_worker() {
    let (c, _id) = cluster_with_a_task("metrics_prometheus");
    let token_file = c.dir.join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let prometheus = Prometheus::start(&scrape_config(&c, &token_file), &c.dir.join("prometheus.log"));

    // both targets scraped and up (a refused token would make `up` 0)
    let up = wait_for("Prometheus to scrape both daemons", Duration::from_secs(60), || {
        let up = prometheus.query("up");
        (up.len() == 2 && up.iter().all(|s| s["value"][1] == "1")).then_some(up)
    });
    let jobs: BTreeSet<&str> = up.iter().filter_map(|s| s["metric"]["job"].as_str()).collect();
    assert_eq!(jobs, BTreeSet::from(["skiff-manager", "skiff-workers"]), "{up:?}");

    // a Skiff series of each, with the value the daemons report
    let running = wait_for("the running task in Prometheus", RUN, || {
        let r = prometheus.query("skiff_tasks{state=\"Running\"}");
        r.first().filter(|s| s["value"][1] == "1").cloned()
    });
    assert_eq!(running["metric"]["job"], "skiff-manager", "{running}");
    let on_worker = prometheus.query("skiff_worker_tasks{state=\"Running\"}");
    assert_eq!(on_worker.len(), 1, "{on_worker:?}");
    assert_eq!(on_worker[0]["metric"]["job"], "skiff-workers");
    let created = prometheus.query("sum(skiff_engine_calls_total{operation=\"create\"})");
    assert_eq!(created.first().map(|s| s["value"][1].clone()), Some(json!("1")), "{created:?}");
}
