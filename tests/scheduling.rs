//! Placement with real workers and the real engine: statistics, capacity caps, E-PVM, and tasks
//! that wait for room with a reason.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const RUN: Duration = Duration::from_secs(30);

fn task(name: &str, memory_mb: u64) -> Value {
    json!({"name": name, "image": IMAGE, "cmd": ["sleep", "300"], "memory_mb": memory_mb})
}

/// Two workers each offering 512 MB, a manager with E-PVM; waits until both sent statistics.
fn capped_cluster(test: &str) -> Cluster {
    let opts = ClusterOptions {
        scheduler: "epvm",
        worker_args: strings(&["--max-memory-mb", "512"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start(test, opts);
    c.wait_nodes_up();
    wait_for("statistics from both workers", RUN, || {
        c.nodes().iter().all(|n| n["capacity"]["memory_mb"] == 512).then_some(())
    });
    c
}

#[test]
fn workers_report_their_statistics_with_caps_applied() {
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--max-cpus", "0.5", "--max-memory-mb", "300", "--max-disk-mb", "1000"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start("worker_stats", opts);
    let stats = wait_for("a statistics sample", RUN, || {
        let (status, v) = http("GET", &c.worker_url(0, "/v1/stats"), None);
        (status == 200).then_some(v)
    });
    assert_eq!(stats["node"], c.worker_names[0].as_str());
    assert!(stats["cpu_count"].as_u64().is_some_and(|n| n >= 1), "{stats}");
    let usage = stats["cpu_usage_pct"].as_f64().expect("usage");
    assert!((0.0..=100.0).contains(&usage), "{stats}");
    assert!(stats["memory_total_mb"].as_u64().is_some_and(|m| m > 300), "{stats}");
    assert!(stats["disk_total_mb"].as_u64().is_some_and(|d| d > 0), "{stats}");
    assert_eq!(stats["capacity"], json!({"cpus": 0.5, "memory_mb": 300, "disk_mb": 1000}));
    // the disk measured is the engine's data root, once the engine has said where it is
    let root = docker_info_root();
    wait_for("the engine's data root to be measured", RUN, || {
        let (_, v) = http("GET", &c.worker_url(0, "/v1/stats"), None);
        (v["disk_path"] == root.as_str()).then_some(())
    });
}

fn docker_info_root() -> String {
    let out = docker_command().args(["info", "--format", "{{.DockerRootDir}}"]).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn epvm_places_new_tasks_on_the_worker_that_has_room() {
    let c = capped_cluster("epvm_room");
    let fill = c.submit(&task("fill", 480));
    let filled = c.wait_state(&fill, "Running", RUN);
    let full_node = filled["node"].as_str().expect("node").to_string();
    for i in 0..3 {
        let id = c.submit(&task(&format!("small{i}"), 16));
        let t = c.wait_state(&id, "Running", RUN);
        assert_ne!(t["node"], full_node.as_str(), "small task {i} went to the nearly full node");
    }
    // the node list shows what is placed where, in human units
    let out = c.client(&["list-nodes"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with(full_node.as_str())).expect("the full node is listed");
    assert!(line.contains("480M / ") && line.contains(" / 512M"), "{text}");
    let (_, nodes) = http("GET", &c.manager_url("/v1/nodes"), None);
    let other =
        nodes.as_array().expect("list").iter().find(|n| n["name"] != full_node.as_str()).expect("other node").clone();
    assert_eq!(other["allocated"]["memory_mb"], 48);
    assert_eq!(other["tasks"], 3);
}

#[test]
fn a_task_too_big_for_any_node_waits_with_its_reason_until_room_appears() {
    let c = capped_cluster("pending_reason");
    let a = c.submit(&task("a", 400));
    let b = c.submit(&task("b", 400));
    let ta = c.wait_state(&a, "Running", RUN);
    let tb = c.wait_state(&b, "Running", RUN);
    assert_ne!(ta["node"], tb["node"], "one on each node");

    // 300 MB fits on neither: accepted (201), Pending, and get says why for each node
    let big = c.submit(&task("big", 300));
    let t = c.get_task(&big);
    assert_eq!(t["state"], "Pending");
    let reason = t["error"].as_str().expect("a reason");
    for name in &c.worker_names {
        assert!(reason.contains(&format!("{name} memory 400/512 MB allocated, needs 300")), "{reason}");
    }
    let out = c.client(&["get", &big], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no node fits"), "get shows the reason");

    // stopping a task makes room: the big one is placed there
    let (status, _) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{a}")), None);
    assert_eq!(status, 202);
    let placed = c.wait_state(&big, "Running", RUN);
    assert_eq!(placed["node"], ta["node"]);
    assert!(placed["error"].is_null(), "the reason is gone once placed: {placed}");
}
