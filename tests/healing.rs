//! Self-healing with the real engine: restarts in place, health checks, lost workers, a worker on
//! its own, and a worker cut off its engine.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(30);

fn docker(args: &[&str]) {
    let out = docker_command().args(args).output().expect("docker CLI");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn restartable(name: &str) -> Value {
    json!({
        "name": name, "image": IMAGE, "cmd": ["sleep", "300"], "memory_mb": 16,
        "restart_policy": {"mode": "on-failure", "max_restarts": 3}
    })
}

#[test]
fn a_killed_container_with_on_failure_runs_again_within_five_seconds() {
    let c = Cluster::start("restart_on_failure", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&restartable("phoenix"));
    let t = c.wait_state(&id, "Running", RUN);
    let container = t["container_id"].as_str().expect("container").to_string();
    let started_before = docker_inspect(&container)["State"]["StartedAt"].clone();

    docker(&["kill", &container]);
    let killed = Instant::now();
    let t = wait_for("the task to run again", Duration::from_secs(5), || {
        let t = c.get_task(&id);
        (t["restart_count"] == 1 && t["state"] == "Running" && t["error"].is_null()).then_some(t)
    });
    let took = killed.elapsed();
    println!("restart after docker kill took {took:?}");
    let info = docker_inspect(t["container_id"].as_str().expect("container"));
    assert_eq!(info["State"]["Running"], true);
    assert_ne!(info["State"]["StartedAt"], started_before, "a new run");
    let reasons: Vec<&str> =
        t["events"].as_array().expect("events").iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("restarted in place (1 so far): exited with code 137")),
        "{reasons:?}"
    );
}

/// A web task that serves /health.html until /tmp/broken exists (see `break_health`): broken
/// for as long as its container lasts (a restart makes a new one).
fn breakable_web(max_restarts: u32) -> Value {
    json!({
        "name": "web", "image": IMAGE, "memory_mb": 16,
        "cmd": ["sh", "-c", "[ -f /tmp/broken ] || echo ok > /www/health.html; exec httpd -f -p 8080 -h /www"],
        "ports": [{"container": 8080}],
        "restart_policy": {"mode": "on-failure", "max_restarts": max_restarts},
        "health_check": {"path": "/health.html", "port": 8080, "interval_s": 1, "timeout_s": 1, "failures": 2}
    })
}

fn break_health(container: &str) {
    docker(&["exec", container, "sh", "-c", "rm /www/health.html && touch /tmp/broken"]);
}

/// A web task whose every run serves /health.html for its first 4 seconds only: each container
/// (a restart makes a new one) turns unhealthy by itself.
fn souring_web(max_restarts: u32) -> Value {
    json!({
        "name": "web", "image": IMAGE, "memory_mb": 16,
        "cmd": ["sh", "-c", "echo ok > /www/health.html; (sleep 4; rm /www/health.html) & exec httpd -f -p 8080 -h /www"],
        "ports": [{"container": 8080}],
        "restart_policy": {"mode": "on-failure", "max_restarts": max_restarts},
        "health_check": {"path": "/health.html", "port": 8080, "interval_s": 1, "timeout_s": 1, "failures": 2}
    })
}

#[test]
fn a_task_failing_its_health_checks_is_restarted_then_failed() {
    let c = Cluster::start("health_checks", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let spec = souring_web(2);
    let id = c.submit(&spec);
    wait_for("the task to be healthy", RUN, || {
        let t = c.get_task(&id);
        (t["healthy"] == true).then_some(t)
    });

    let restarted = wait_for("a restart for failed health checks", RUN, || {
        let t = c.get_task(&id);
        (t["restart_count"].as_u64() >= Some(1)).then_some(t)
    });
    assert!(restarted["events"].to_string().contains("unhealthy after 2 failed health checks"), "{restarted}");
    let t = c.wait_state(&id, "Failed", Duration::from_secs(60));
    assert_eq!(t["restart_count"], 2);
    let error = t["error"].as_str().expect("reason");
    assert_eq!(error, "unhealthy after 2 failed health checks, 2 restarts used");
    assert_eq!(t["healthy"], false);
}

/// Pauses a daemon (SIGSTOP): it neither answers nor dies.
fn pause(d: &Daemon, on: bool) {
    let sig = if on { "-STOP" } else { "-CONT" };
    let ok = Command::new("kill").args([sig, &d.child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
}

#[test]
fn tasks_of_a_killed_worker_move_and_its_stale_copies_go_when_it_returns() {
    let mut c = Cluster::start("worker_loss", ClusterOptions::default());
    c.wait_nodes_up();
    let (a, b) = (c.worker_names[0].clone(), c.worker_names[1].clone());
    // put three tasks on the first worker: the second is paused (down) while they are placed
    pause(&c.workers[1], true);
    wait_for("the paused worker to be down", RUN, || (c.nodes()[1]["status"] == "down").then_some(()));
    let ids: Vec<String> = (0..3).map(|i| c.submit(&restartable(&format!("s{i}")))).collect();
    for id in &ids {
        let t = c.wait_state(id, "Running", RUN);
        assert_eq!(t["node"], a.as_str());
    }
    pause(&c.workers[1], false);
    c.wait_nodes_up();

    c.workers[0].kill();
    let killed = Instant::now();
    for id in &ids {
        wait_for("the task to run on the other worker", Duration::from_secs(10), || {
            let t = c.get_task(id);
            (t["state"] == "Running" && t["node"] == b.as_str()).then_some(())
        });
    }
    let took = killed.elapsed();
    println!("three tasks Running on the other worker {took:?} after the kill");
    for id in &ids {
        let t = c.get_task(id);
        assert_eq!(t["restart_count"], 0, "a move is not a restart");
        assert!(t["events"].to_string().contains(&format!("node {a} lost")), "the move is recorded: {t}");
    }

    // the killed worker comes back with its old containers still running: they are removed
    c.restart_worker(0);
    // every container counts, running or not: a stale copy is stopped before it is removed
    wait_for("one container per task, all on the second worker", Duration::from_secs(30), || {
        let all = c.containers();
        let on_a = all.iter().filter(|s| s.labels["skiff.node"] == a).count();
        let running = all.iter().filter(|s| s.state == "running").count();
        (on_a == 0 && all.len() == 3 && running == 3).then_some(())
    });
    for id in &ids {
        let copies: Vec<_> = c.containers().into_iter().filter(|s| s.labels["skiff.task-id"] == *id).collect();
        assert_eq!(copies.len(), 1, "task {id} has exactly one container");
        assert_eq!(c.get_task(id)["state"], "Running");
    }
}

#[test]
fn a_worker_whose_manager_is_down_keeps_restarting_its_tasks() {
    let mut c = Cluster::start("no_manager", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&restartable("alone"));
    let t = c.wait_state(&id, "Running", RUN);
    c.manager_mut().kill();
    docker(&["kill", t["container_id"].as_str().expect("container")]);
    wait_for("the worker to restart the task by itself", Duration::from_secs(10), || {
        let (_, w) = http("GET", &c.worker_url(0, &format!("/v1/tasks/{id}")), None);
        (w["restart_count"] == 1 && w["state"] == "Running" && w["error"].is_null()).then_some(())
    });
}

#[test]
fn a_worker_cut_off_its_engine_says_so_and_recovers_by_itself() {
    let dir = std::env::temp_dir().join(format!("skiff-proxy-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let proxy = EngineProxy::new(&dir);
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--docker-socket", proxy.path.to_str().expect("utf-8"), "--sync-interval-ms", "500"]),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("engine_away", opts);
    c.wait_nodes_up();
    let id = c.submit(&restartable("steady"));
    let before = c.wait_state(&id, "Running", RUN);

    proxy.close();
    wait_for("the worker to report its engine away", RUN, || {
        let (_, h) = http("GET", &c.worker_url(0, "/v1/health"), None);
        (h["engine"]["reachable"] == false && h["status"] == "degraded").then_some(())
    });
    wait_for("the manager to show it", RUN, || {
        let n = &c.nodes()[0];
        (n["engine_reachable"] == false && n["error"].as_str().is_some_and(|e| e.contains("engine unreachable")))
            .then_some(())
    });
    wait_for("the task to say so", RUN, || {
        let t = c.get_task(&id);
        t["error"].as_str().is_some_and(|e| e.starts_with("engine unreachable")).then_some(())
    });
    assert!(c.workers[0].child.try_wait().expect("status").is_none(), "the worker is still running");
    // a task submitted meanwhile waits: the only node cannot start it
    let waiting = c.submit(&restartable("waiting"));
    assert_eq!(c.get_task(&waiting)["state"], "Pending");

    proxy.open();
    wait_for("the worker to find its engine again", RUN, || {
        let (_, h) = http("GET", &c.worker_url(0, "/v1/health"), None);
        (h["engine"]["reachable"] == true).then_some(())
    });
    let t = wait_for("the task to be confirmed", RUN, || {
        let t = c.get_task(&id);
        (t["error"].is_null() && t["state"] == "Running").then_some(t)
    });
    assert_eq!(t["container_id"], before["container_id"], "the same container ran through");
    c.wait_state(&waiting, "Running", RUN);
    let _ = std::fs::remove_dir_all(&dir);
    c.manager_mut().kill();
}

#[test]
fn a_worker_restarted_during_a_back_off_neither_recounts_the_exit_nor_resets_the_budget() {
    let opts = ClusterOptions { workers: 1, worker_store: "persisted", ..ClusterOptions::default() };
    let mut c = Cluster::start("restart_budget", opts);
    c.wait_nodes_up();
    let spec = json!({
        "name": "crasher", "image": IMAGE, "cmd": ["sh", "-c", "sleep 0.3; exit 1"], "memory_mb": 16,
        "restart_policy": {"mode": "on-failure", "max_restarts": 3}
    });
    let id = c.submit(&spec);
    // kill the worker while its first restart is waiting out its back-off
    wait_for("a first exit", RUN, || {
        let (_, w) = http("GET", &c.worker_url(0, &format!("/v1/tasks/{id}")), None);
        (w["restart_count"] == 1).then_some(())
    });
    c.workers[0].kill();
    c.restart_worker(0);
    let t = c.wait_state(&id, "Failed", Duration::from_secs(60));
    assert_eq!(t["restart_count"], 3, "{t}");
    assert_eq!(t["error"], "exited with code 1, 3 restarts used");
}

/// The output of a container, every run's (a restart in place keeps it), from the engine itself.
fn container_output(container: &str) -> String {
    let out = docker_command().args(["logs", container]).output().expect("docker CLI");
    assert!(out.status.success(), "docker logs: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_worker_with_a_memory_store_restarted_twice_keeps_the_exact_restart_budget() {
    let mut c = Cluster::start("budget_in_the_name", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    // each run says so once, in the one container's log: the runs are counted by the engine
    let spec = json!({
        "name": "crasher", "image": IMAGE, "cmd": ["sh", "-c", "echo run; sleep 2; exit 1"], "memory_mb": 16,
        "restart_policy": {"mode": "on-failure", "max_restarts": 3}
    });
    let id = c.submit(&spec);
    let on_worker = |c: &Cluster| http("GET", &c.worker_url(0, &format!("/v1/tasks/{id}")), None).1;
    let first = c.wait_state(&id, "Running", RUN);
    let container = first["container_id"].as_str().expect("container").to_string();
    // once during the second run (after one restart in place), once after the second exit
    // (during its back-off, or, if the poll misses that, during the third run)
    wait_for("a second run", RUN, || {
        let w = on_worker(&c);
        (w["restart_count"] == 1 && w["state"] == "Running" && w["error"].is_null()).then_some(())
    });
    c.workers[0].kill();
    c.restart_worker(0);
    let w = wait_for("the task taken back", RUN, || Some(on_worker(&c)).filter(|w| w["state"] == "Running"));
    // 2 if the second run ended while no worker was there (its exit is counted on adoption)
    let count = w["restart_count"].as_u64();
    assert!(matches!(count, Some(1 | 2)) && w["container_id"] == container.as_str(), "taken back as it was: {w}");
    wait_for("a second exit", RUN, || Some(on_worker(&c)).filter(|w| w["restart_count"] == 2));
    c.workers[0].kill();
    c.restart_worker(0);

    let t = wait_for("the task failed on the worker", Duration::from_secs(60), || {
        Some(on_worker(&c)).filter(|w| w["state"] == "Failed")
    });
    assert_eq!(t["restart_count"], 3, "{t}");
    assert_eq!(t["container_id"], container.as_str(), "restarted in place: {t}");
    // Podman adds "likely out of memory" only to a 137; this is an exit 1 on either engine
    assert_eq!(t["error"], "exited with code 1, 3 restarts used", "{t}");
    let runs = container_output(&container).lines().filter(|l| *l == "run").count();
    assert_eq!(runs, 4, "the first run and exactly 3 restarts, across two restarts of the worker");
    let name = docker_inspect(&container)["Name"].as_str().expect("a name").trim_start_matches('/').to_string();
    let w = &c.worker_names[0];
    let base = format!("skiff-{w}-crasher-{}", &id.replace('-', "")[..8]);
    assert!(name.starts_with(&format!("{base}.r3.u3.e")), "the budget in the name: {name}");
    let m = c.wait_state(&id, "Failed", RUN);
    assert_eq!(m["restart_count"], 3, "{m}");
}

#[test]
fn a_restarted_worker_with_a_persisted_store_checks_health_again() {
    let opts = ClusterOptions { workers: 1, worker_store: "persisted", ..ClusterOptions::default() };
    let mut c = Cluster::start("health_after_restart", opts);
    c.wait_nodes_up();
    let spec = breakable_web(1);
    let id = c.submit(&spec);
    let t = wait_for("healthy", RUN, || Some(c.get_task(&id)).filter(|t| t["healthy"] == true));
    c.workers[0].kill();
    c.restart_worker(0);
    let container = t["container_id"].as_str().expect("container").to_string();
    break_health(&container);
    let t = wait_for("a restart for failed checks after the worker's restart", RUN, || {
        Some(c.get_task(&id)).filter(|t| t["restart_count"].as_u64() >= Some(1))
    });
    assert!(t["events"].to_string().contains("unhealthy after 2 failed health checks"), "{t}");
}
