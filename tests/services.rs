//! Services against the real engine with two workers: spread, scaling, a worker killed, rolling
//! updates watched by a sampler, a failing version rolled back, a rollback asked for, and a
//! manager killed in the middle of an update.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const START_LIMIT: Duration = Duration::from_secs(30);

/// A busybox web server serving its greeting, with a published engine-chosen port and a health
/// check; `greeting` makes each version's template differ.
fn web(replicas: u32, greeting: &str) -> Value {
    json!({
        "name": "web",
        "replicas": replicas,
        "template": {
            "image": IMAGE,
            "cmd": ["sh", "-c", "echo \"$GREETING\" > /www/greeting.txt; exec httpd -f -p 8080 -h /www"],
            "env": {"GREETING": greeting},
            "memory_mb": 32,
            "ports": [{"container": 8080}],
            "health_check": {"path": "/greeting.txt", "port": 8080, "interval_s": 1, "timeout_s": 1, "failures": 2}
        },
        "update_policy": {"monitor_s": 2}
    })
}

fn sleepers(replicas: u32) -> Value {
    json!({"name": "sleep", "replicas": replicas, "template": {"image": IMAGE, "cmd": ["sleep", "300"]}})
}

fn service(c: &Cluster, name: &str) -> Value {
    let (status, v) = http("GET", &c.manager_url(&format!("/v1/services/{name}")), None);
    assert_eq!(status, 200, "get {name}: {v}");
    v
}

/// The service's tasks the manager lists with this state.
fn tasks(c: &Cluster, name: &str, state: &str) -> Vec<Value> {
    let (status, v) = http("GET", &c.manager_url(&format!("/v1/tasks?service={name}&state={state}")), None);
    assert_eq!(status, 200, "list: {v}");
    v.as_array().expect("a list").clone()
}

/// Replicas wanted running that run.
fn up(c: &Cluster, name: &str) -> Vec<Value> {
    tasks(c, name, "Running").into_iter().filter(|t| t["desired_state"] == "running").collect()
}

fn wait_up(c: &Cluster, name: &str, n: usize, limit: Duration) -> Vec<Value> {
    wait_for(&format!("{n} replicas of {name} running"), limit, || {
        let v = service(c, name);
        let wanted = v["tasks"].as_array().map_or(0, |t| t.len());
        let running = up(c, name);
        (running.len() == n && wanted == n).then_some(running)
    })
}

fn on_node(tasks: &[Value], node: &str) -> usize {
    tasks.iter().filter(|t| t["node"] == node).count()
}

fn update_state(v: &Value) -> String {
    v["service"]["update"]["state"].as_str().unwrap_or("").to_string()
}

fn port_of(t: &Value) -> u64 {
    t["ports"][0]["host"].as_u64().expect("a host port")
}

fn greeting(t: &Value) -> Option<String> {
    let url = format!("http://127.0.0.1:{}/greeting.txt", port_of(t));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    let mut resp = agent.get(&url).call().ok()?;
    (resp.status().as_u16() == 200).then(|| resp.body_mut().read_to_string().unwrap_or_default().trim().to_string())
}

/// Running containers of this cluster that carry the service's label.
fn service_containers(c: &Cluster, name: &str) -> Vec<skiff::docker_cli::ContainerSummary> {
    c.containers()
        .into_iter()
        .filter(|s| s.state == "running" && s.labels.get("skiff.service").map(String::as_str) == Some(name))
        .collect()
}

fn create(c: &Cluster, body: &Value) -> Value {
    let (status, v) = http("POST", &c.manager_url("/v1/services"), Some(body.to_string().as_bytes()));
    assert_eq!(status, 201, "create: {v}");
    v
}

fn put(c: &Cluster, name: &str, body: &Value) -> Value {
    let (status, v) = http("PUT", &c.manager_url(&format!("/v1/services/{name}")), Some(body.to_string().as_bytes()));
    assert_eq!(status, 200, "update: {v}");
    v
}

#[test]
fn replicas_spread_two_one_scale_to_five_and_back_and_come_back_after_a_worker_is_killed() {
    let mut c = Cluster::start(
        "svc_spread",
        ClusterOptions { manager_args: strings(&["--node-timeout-ms", "3000"]), ..ClusterOptions::default() },
    );
    c.wait_nodes_up();
    let file = c.spec_file("sleep", &sleepers(3));
    let out = c.client(&["service", "create", &file.display().to_string()], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let running = wait_up(&c, "sleep", 3, START_LIMIT);
    let mut split = [on_node(&running, &c.worker_names[0]), on_node(&running, &c.worker_names[1])];
    split.sort();
    assert_eq!(split, [1, 2], "3 replicas spread 2/1: {running:?}");
    // the containers carry the service's labels
    let labelled = service_containers(&c, "sleep");
    assert_eq!(labelled.len(), 3);
    assert!(labelled.iter().all(|s| s.labels.get("skiff.service-version").map(String::as_str) == Some("1")));

    let out = c.client(&["service", "scale", "sleep", "5"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let running = wait_up(&c, "sleep", 5, START_LIMIT);
    let mut split = [on_node(&running, &c.worker_names[0]), on_node(&running, &c.worker_names[1])];
    split.sort();
    assert_eq!(split, [2, 3], "5 spread 3/2");
    let ids_at_five: Vec<Value> = running.iter().map(|t| t["id"].clone()).collect();
    let out = c.client(&["service", "scale", "sleep", "2"], "");
    assert!(out.status.success());
    let running = wait_up(&c, "sleep", 2, START_LIMIT);
    wait_for("the 3 extra containers gone", START_LIMIT, || (service_containers(&c, "sleep").len() == 2).then_some(()));
    // newest first: the two kept are among the three first started
    let mut by_age = ids_at_five.clone();
    by_age.sort_by_key(|id| c.get_task(id.as_str().expect("id"))["created_at"].as_str().unwrap_or("").to_string());
    for t in &running {
        assert!(by_age[..3].contains(&t["id"]), "kept {} is not among the oldest", t["id"]);
    }
    let listing = String::from_utf8_lossy(&c.client(&["service", "ls"], "").stdout).to_string();
    assert!(listing.lines().any(|l| l.starts_with("sleep") && l.contains("2/2")), "{listing}");

    // back to 3 on both, then a worker killed: the count comes back on the other
    c.client(&["service", "scale", "sleep", "3"], "");
    let running = wait_up(&c, "sleep", 3, START_LIMIT);
    let victim = c.worker_names.iter().position(|n| on_node(&running, n) >= 1).expect("a node with replicas");
    let survivor = c.worker_names[1 - victim].clone();
    let killed_at = Instant::now();
    c.workers[victim].kill();
    let back = wait_for("3 replicas on the survivor", Duration::from_secs(3 + 15), || {
        let running = up(&c, "sleep");
        (running.len() == 3 && on_node(&running, &survivor) == 3).then_some(running)
    });
    println!("count back on the other worker {:?} after the kill (node timeout 3 s)", killed_at.elapsed());
    assert_eq!(back.len(), 3);
}

#[test]
fn a_rolling_update_keeps_every_replica_serving_a_failing_version_is_rolled_back_and_rollback_goes_back() {
    let c = Cluster::start("svc_update", ClusterOptions::default());
    c.wait_nodes_up();
    create(&c, &web(3, "v1"));
    let running = wait_up(&c, "web", 3, START_LIMIT);
    wait_for("every replica healthy and serving v1", START_LIMIT, || {
        let r = up(&c, "web");
        (r.len() == 3 && r.iter().all(|t| t["healthy"] == true && greeting(t).as_deref() == Some("v1"))).then_some(())
    });
    assert_eq!(running.len(), 3);

    // a sampler every 100 ms: replicas Running and each one serving
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(Mutex::new((usize::MAX, Vec::<String>::new())));
    let url = c.manager_url("/v1/tasks?service=web&state=Running");
    let base = c.manager_url("/v1/tasks/");
    let sampler = {
        let (stop, worst) = (stop.clone(), worst.clone());
        std::thread::spawn(move || {
            let mut samples = 0;
            while !stop.load(Ordering::SeqCst) {
                let (_, v) = http("GET", &url, None);
                let running: Vec<Value> = v
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t["desired_state"] == "running")
                    .collect();
                let mut w = worst.lock().expect("lock");
                w.0 = w.0.min(running.len());
                for t in running.iter().filter(|t| t["healthy"] == true) {
                    if greeting(t).is_none() {
                        // excused only if it was being stopped by then
                        let (_, now) = http("GET", &format!("{base}{}", t["id"].as_str().unwrap_or("")), None);
                        if now["desired_state"] != "stopped" {
                            w.1.push(format!("replica {} did not answer", t["id"]));
                        }
                    }
                }
                drop(w);
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let began = Instant::now();
    put(&c, "web", &web(3, "v2"));
    let done = wait_for("the update to complete", Duration::from_secs(90), || {
        let v = service(&c, "web");
        (update_state(&v) == "completed").then_some(v)
    });
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().expect("sampler");
    let (fewest, silent) = worst.lock().expect("lock").clone();
    println!("rolling update of 3 replicas (start-first, parallelism 1, monitor_s 2) took {took:?}; {samples} samples, never fewer than {fewest} running");
    assert!(fewest >= 3, "a sample saw only {fewest} running");
    assert!(silent.is_empty(), "{silent:?}");
    assert_eq!(done["service"]["version"], 2);
    let running = wait_up(&c, "web", 3, START_LIMIT);
    for t in &running {
        assert_eq!(t["service_version"], 2);
        assert_eq!(greeting(t).as_deref(), Some("v2"), "every replica answers with the new version");
    }
    let events: Vec<String> = done["service"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(events.iter().any(|e| e.contains("update from version 1 to 2 started")), "{events:?}");
    assert!(events.iter().any(|e| e.contains("update to version 2 completed")), "{events:?}");
    // the same steps in the cluster's history, with the service as subject
    let (status, history) = http("GET", &c.manager_url("/v1/events?service=web"), None);
    assert_eq!(status, 200, "{history}");
    let history = history.as_array().cloned().unwrap_or_default();
    assert!(history.iter().all(|e| e["subject"] == "service" && e["service"] == "web"), "{history:?}");
    let said = |words: &str| history.iter().filter(|e| e["reason"].as_str().is_some_and(|r| r.contains(words))).count();
    assert_eq!(said("update from version 1 to 2 started"), 1, "{history:?}");
    assert!(said("of version 2 started") >= 3 && said("replaced by version 2") >= 3, "{history:?}");
    assert!(history.iter().any(|e| e["from"] == "updating" && e["to"] == "completed"), "{history:?}");
    let shown = String::from_utf8_lossy(&c.client(&["events", "--service", "web"], "").stdout).to_string();
    assert!(shown.contains("service web") && shown.contains("update to version 2 completed"), "{shown}");
    // the client's list of the service's replicas, with their version
    let listed = c.client(&["list", "--service", "web"], "");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert!(rows.iter().all(|r| r.contains(" web@")), "only the service's replicas: {listed}");
    assert_eq!(rows.iter().filter(|r| r.contains(" web@2 ") && r.contains("Running")).count(), 3, "{listed}");

    // a version that exits at once: rolled back automatically, v2 still serving, the reason shown
    let mut bad = web(3, "v3");
    bad["template"]["cmd"] = json!(["sh", "-c", "exit 3"]);
    put(&c, "web", &bad);
    let v = wait_for("the automatic rollback", Duration::from_secs(60), || {
        let v = service(&c, "web");
        (update_state(&v) == "rolled-back").then_some(v)
    });
    let reason = v["service"]["update"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("version 3") && reason.contains("failed"), "{reason}");
    assert_eq!(v["service"]["version"], 2);
    let running = wait_up(&c, "web", 3, START_LIMIT);
    for t in &running {
        assert_eq!(greeting(t).as_deref(), Some("v2"), "the old version still serves");
    }
    let shown = String::from_utf8_lossy(&c.client(&["service", "get", "web"], "").stdout).to_string();
    assert!(shown.contains("rolled-back 2→3") && shown.contains("reason:"), "{shown}");

    // a rollback asked for: back to version 1
    let out = c.client(&["service", "rollback", "web"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the rollback to version 1", Duration::from_secs(90), || {
        let v = service(&c, "web");
        (update_state(&v) == "rolled-back" && v["service"]["version"] == 1).then_some(())
    });
    let running = wait_up(&c, "web", 3, START_LIMIT);
    for t in &running {
        assert_eq!((t["service_version"].as_u64(), greeting(t).as_deref()), (Some(1), Some("v1")));
    }
    // removal stops them all
    let out = c.client(&["service", "rm", "web"], "");
    assert!(out.status.success());
    wait_for("no container left", START_LIMIT, || service_containers(&c, "web").is_empty().then_some(()));
    let (status, _) = http("GET", &c.manager_url("/v1/services/web"), None);
    assert_eq!(status, 404);
}

#[test]
fn bad_service_bodies_are_refused_naming_the_field_and_leave_nothing() {
    let c = Cluster::start("svc_bad", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (body, field) in [
        (json!({"name": "Web", "template": {"image": IMAGE}}), "name"),
        (json!({"name": "web", "template": {"image": IMAGE, "cpus": "two"}}), "template.cpus"),
        (
            json!({"name": "web", "template": {"image": IMAGE}, "update_policy": {"order": "random"}}),
            "update_policy.order",
        ),
        (json!({"name": "web", "template": {"image": IMAGE}, "extra": 1}), "extra"),
    ] {
        let (status, v) = http("POST", &c.manager_url("/v1/services"), Some(body.to_string().as_bytes()));
        assert_eq!((status, v["field"].as_str()), (400, Some(field)), "{body}: {v}");
    }
    let (_, list) = http("GET", &c.manager_url("/v1/services"), None);
    assert_eq!(list, json!([]));
    let (status, v) = http("POST", &c.manager_url("/v1/services/none/scale"), Some(br#"{"replicas": 2}"#));
    assert_eq!(status, 404, "{v}");
    let (status, v) = http("POST", &c.manager_url("/v1/services/none/scale"), Some(br#"{"replicas": 2, "x": 1}"#));
    assert_eq!((status, v["field"].as_str()), (400, Some("x")), "{v}");
}

#[test]
fn a_manager_killed_in_the_middle_of_an_update_finishes_it_with_no_duplicate_and_no_lost_replica() {
    let mut c =
        Cluster::start("svc_restart", ClusterOptions { manager_store: "persisted", ..ClusterOptions::default() });
    c.wait_nodes_up();
    let mut body = sleepers(3);
    body["update_policy"] = json!({"monitor_s": 3});
    create(&c, &body);
    wait_up(&c, "sleep", 3, START_LIMIT);
    let mut v2 = body.clone();
    v2["template"]["cmd"] = json!(["sleep", "301"]);
    put(&c, "sleep", &v2);
    wait_for("a new-version replica running", START_LIMIT, || {
        up(&c, "sleep").iter().any(|t| t["service_version"] == 2).then_some(())
    });
    // a sampler of the engine itself: a task id with two running containers at any point of the
    // restart is a duplicate start
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, names) = (stop.clone(), c.worker_names.clone());
        std::thread::spawn(move || {
            let docker = require_docker();
            let (mut samples, mut duplicates) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let mut per_task: std::collections::BTreeMap<String, usize> = Default::default();
                for n in &names {
                    let labels = [format!("skiff.node={n}"), "skiff.service=sleep".to_string()];
                    for s in docker.list(&labels).unwrap_or_default().into_iter().filter(|s| s.state == "running") {
                        *per_task.entry(s.labels.get("skiff.task-id").cloned().unwrap_or_default()).or_default() += 1;
                    }
                }
                duplicates.extend(per_task.into_iter().filter(|(_, n)| *n > 1).map(|(id, n)| format!("{id}: {n}")));
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (samples, duplicates)
        })
    };
    // killed in the middle: the update still moving, old replicas still wanted
    let before = service(&c, "sleep");
    assert_eq!(update_state(&before), "updating", "{before}");
    let old_left = up(&c, "sleep").iter().filter(|t| t["service_version"] == 1).count();
    assert!(old_left >= 1, "no old replica left to replace: {before}");
    c.manager_mut().kill();
    c.restart_manager();
    c.wait_nodes_up();
    let v = wait_for("the update to finish after the restart", Duration::from_secs(90), || {
        let v = service(&c, "sleep");
        ["completed", "rolled-back"].contains(&update_state(&v).as_str()).then_some(v)
    });
    let version = v["service"]["version"].clone();
    let running = wait_up(&c, "sleep", 3, START_LIMIT);
    stop.store(true, Ordering::SeqCst);
    let (samples, duplicates) = sampler.join().expect("sampler");
    assert!(samples >= 10, "the engine was sampled only {samples} times");
    assert!(duplicates.is_empty(), "task ids with more than one running container: {duplicates:?}");
    println!("{samples} engine samples over the restart, {old_left} old replicas left at the kill, no duplicate");
    assert!(running.iter().all(|t| t["service_version"] == version), "{running:?}");
    let containers = wait_for("three containers of the service", START_LIMIT, || {
        let list = service_containers(&c, "sleep");
        (list.len() == 3).then_some(list)
    });
    let mut ids: Vec<&String> = containers.iter().filter_map(|s| s.labels.get("skiff.task-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one container per replica: {containers:?}");
    println!("after the manager's restart the update ended {} at version {version}", update_state(&v));
}
