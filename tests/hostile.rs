//! Regressions of what a hostile probe of the live daemons found (issue 15), each reproduced
//! against a real manager, worker and Docker Engine: a registry that hangs, containers that
//! impersonate a task or merely carry a node's label, an engine that hangs, health checks that
//! are redirected, CPU limits the engine would not honour, floods of bodies without a token,
//! lists of large tasks read at once, answers too big, syncs that fail. The stand-ins and
//! probes they use are in `hostile/probes.rs`.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;
#[path = "hostile/probes.rs"]
mod probes;

use common::*;
use probes::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(30);

fn sleeper(name: &str) -> Value {
    json!({"name": name, "image": IMAGE, "cmd": ["sleep", "300"], "memory_mb": 16})
}

#[test]
fn a_hanging_registry_stalls_no_start_whose_image_is_present() {
    let registry = Silent::start();
    let c = Cluster::start("hanging_registry", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let image = format!("127.0.0.1:{}/skiff-test/never:1", registry.port);
    let stuck: Vec<String> =
        (0..8).map(|i| c.submit(&json!({"name": format!("stuck{i}"), "image": image, "memory_mb": 16}))).collect();
    wait_for("the registry to be asked", RUN, || (registry.accepted.load(Ordering::SeqCst) > 0).then_some(()));
    let asked = Instant::now();
    let local = c.submit(&sleeper("local"));
    c.wait_state(&local, "Running", Duration::from_secs(15));
    println!("a task with a local image ran {:?} after the registry began to hang", asked.elapsed());
    for id in &stuck {
        assert_eq!(c.get_task(id)["state"], "Scheduled", "a start waits for its image");
    }
    // eight tasks of one image: one pull (the engine may open a second connection to try TLS)
    assert!(registry.accepted.load(Ordering::SeqCst) <= 2, "pulls: {}", registry.accepted.load(Ordering::SeqCst));
    // a task waiting for its image stops at once
    let (status, _) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{}", stuck[0])), None);
    assert_eq!(status, 202);
    c.wait_state(&stuck[0], "Stopped", Duration::from_secs(10));
}

#[test]
fn a_hand_made_copy_of_a_task_neither_fails_it_nor_replaces_it() {
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--sync-interval-ms", "300", "--orphan-grace-s", "2"]),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("spoofed_task", opts);
    c.wait_nodes_up();
    let node = c.worker_names[0].clone();
    let id = c.submit(&sleeper("real"));
    let task = c.wait_state(&id, "Running", RUN);
    let real = task["container_id"].as_str().expect("container").to_string();
    let gone = |cid: &str| {
        docker_command().args(["container", "inspect", cid]).output().map(|o| !o.status.success()).unwrap_or(false)
    };

    // a copy with every label of the task that exits 7 at once
    let spoof = run_labelled(&labels_of(&task, &node), &["sh", "-c", "exit 7"]);
    holds_for("the task running on its own container", Duration::from_secs(1), || {
        let t = c.get_task(&id);
        t["state"] == "Running" && t["container_id"] == real.as_str()
    });
    // removed once its grace has passed, and the removal recorded on the task it claimed
    wait_for("the copy removed after its grace", RUN, || gone(&spoof).then_some(()));
    let (_, on_worker) = http("GET", &c.worker_url(0, &format!("/v1/tasks/{id}")), None);
    assert!(on_worker["events"].to_string().contains("carried this task's labels"), "{on_worker}");
    assert_eq!(c.get_task(&id)["state"], "Running");
    assert_eq!(docker_inspect(&real)["State"]["Running"], true, "the real container runs");

    // a running copy present when the worker restarts with a memory store: the real one is adopted
    let runner = run_labelled(&labels_of(&task, &node), &["sleep", "300"]);
    c.workers[0].kill();
    c.restart_worker(0);
    c.wait_nodes_up();
    wait_for("the running copy removed after its grace", RUN, || gone(&runner).then_some(()));
    let t = c.get_task(&id);
    assert_eq!((t["state"].as_str(), t["container_id"].as_str()), (Some("Running"), Some(real.as_str())));
    assert_eq!(docker_inspect(&real)["State"]["Running"], true);
}

#[test]
fn a_container_with_only_a_node_label_is_never_removed() {
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--sync-interval-ms", "300", "--orphan-grace-s", "1"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start("node_label_only", opts);
    c.wait_nodes_up();
    let node = c.worker_names[0].clone();
    let bystander = run_labelled(&[format!("skiff.node={node}")], &["sleep", "300"]);
    // well past the grace: a container without every Skiff label is never the worker's to remove
    holds_for("the bystander alive", Duration::from_secs(4), || docker_inspect(&bystander)["State"]["Running"] == true);
}

#[test]
fn a_hung_engine_is_reported_within_seconds() {
    let c = Cluster::start("hung_engine_probe", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    let engine = EngineProxy::new(&c.dir);
    let socket = engine.path.display().to_string();
    let mut c = c;
    let name = format!("hung-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    c.add_worker(&name, &strings(&["--docker-socket", &socket]));
    let url = c.worker_url(0, "/v1/health");
    wait_for("the worker's engine to answer", RUN, || (http("GET", &url, None).1["status"] == "ok").then_some(()));
    engine.hang();
    let hung = Instant::now();
    let health = wait_for("health to say the engine does not answer", Duration::from_secs(15), || {
        let (_, h) = http("GET", &url, None);
        (h["status"] == "degraded").then_some(h)
    });
    println!("a hung engine was reported {:?} after it hung: {}", hung.elapsed(), health["engine"]["error"]);
    assert!(health["engine"]["error"].as_str().is_some_and(|e| e.contains("ping")), "{health}");
}

#[test]
fn health_checks_follow_no_redirect() {
    let elsewhere = Silent::start();
    let c = Cluster::start("health_redirect", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let cgi = format!(
        "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho \"HTTP/1.0 302 Found\"\\necho \"Location: http://127.0.0.1:{}/leak\"\\necho\\n' > /www/cgi-bin/r && chmod +x /www/cgi-bin/r && exec httpd -f -p 8080 -h /www",
        elsewhere.port
    );
    let id = c.submit(&json!({
        "name": "redirector", "image": IMAGE, "memory_mb": 16, "cmd": ["sh", "-c", cgi],
        "ports": [{"container": 8080}],
        "health_check": {"path": "/cgi-bin/r", "port": 8080, "interval_s": 1, "timeout_s": 1, "failures": 2}
    }));
    c.wait_state(&id, "Running", RUN);
    wait_for("the redirect to count as healthy", RUN, || (c.get_task(&id)["healthy"] == true).then_some(()));
    holds_for("no connection to where the redirect points", Duration::from_secs(3), || {
        elsewhere.accepted.load(Ordering::SeqCst) == 0 && c.get_task(&id)["healthy"] == true
    });
}

#[test]
fn cpu_limits_below_the_engine_minimum_are_refused_and_others_kept_as_given() {
    let c = Cluster::start("cpu_limits", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    for tiny in [1e-10, 0.001, 0.009] {
        let spec = json!({"name": "tiny", "image": IMAGE, "cmd": ["sleep", "300"], "cpus": tiny});
        let (status, v) = http("POST", &c.manager_url("/v1/tasks"), Some(spec.to_string().as_bytes()));
        assert_eq!((status, v["field"].as_str()), (400, Some("cpus")), "{tiny}: {v}");
    }
    let id = c.submit(&json!({"name": "small", "image": IMAGE, "cmd": ["sleep", "300"], "cpus": 0.0125}));
    let t = c.wait_state(&id, "Running", RUN);
    assert_eq!(t["spec"]["cpus"], 0.013);
    let container = t["container_id"].as_str().expect("container");
    assert_eq!(docker_inspect(container)["HostConfig"]["NanoCpus"], 13_000_000);
}

#[test]
fn a_manager_with_a_memory_store_keeps_running_tasks_across_its_restart() {
    let opts =
        ClusterOptions { workers: 1, manager_args: strings(&["--orphan-grace-s", "1"]), ..ClusterOptions::default() };
    let mut c = Cluster::start("memory_manager_restart", opts);
    c.wait_nodes_up();
    let id = c.submit(&sleeper("keep"));
    let before = c.wait_state(&id, "Running", RUN);
    c.manager_mut().kill();
    c.restart_manager();
    let url = c.manager_url(&format!("/v1/tasks/{id}"));
    let after = wait_for("the task back in the new manager's table", RUN, || {
        let (status, t) = http("GET", &url, None);
        (status == 200 && t["state"] == "Running").then_some(t)
    });
    assert_eq!(after["container_id"], before["container_id"]);
    assert_eq!(after["spec"], before["spec"]);
    let container = before["container_id"].as_str().expect("container").to_string();
    // well past the orphan grace: the task is the manager's again, not an orphan to stop
    holds_for("the task running in the same container", Duration::from_secs(4), || {
        c.get_task(&id)["state"] == "Running" && docker_inspect(&container)["State"]["Running"] == true
    });
}

#[test]
fn containers_with_huge_labels_do_not_wedge_a_workers_sync() {
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--sync-interval-ms", "500"]),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("huge_labels", opts);
    let node = c.worker_names[0].clone();
    // 5 containers with a 14 MiB label each: a list of them is over the 64 MiB a body may be
    c.workers[0].kill();
    let spec =
        skiff::task::TaskSpec::from_json(format!(r#"{{"name":"junk","image":"{IMAGE}"}}"#).as_bytes()).expect("spec");
    for i in 0..5 {
        let labels = std::collections::BTreeMap::from([
            ("skiff.node".to_string(), node.clone()),
            ("junk".to_string(), "z".repeat(14 * 1024 * 1024)),
        ]);
        let name = format!("skiff-test-huge-{}-{i}", &node);
        let opts = skiff::docker_cli::CreateOptions { name: &name, spec: &spec, labels: &labels };
        c.docker.create(&opts).expect("create a container with a huge label");
    }
    c.restart_worker(0);
    let url = c.worker_url(0, "/v1/health");
    // reading a 70 MB list takes seconds, and much longer on a loaded machine
    let health = wait_for("the worker to check its containers", Duration::from_secs(150), || {
        let (_, h) = http("GET", &url, None);
        (h["synced"] == true).then_some(h)
    });
    assert!(health.get("sync_error").is_none(), "{health}");
    c.wait_nodes_up();
    let id = c.submit(&sleeper("after"));
    c.wait_state(&id, "Running", RUN);
}

/// Floods both daemons of a fresh cluster with `conns` unauthenticated 1 MiB bodies, one daemon
/// after the other, and asserts that each peaks and stays under 64 MiB resident and still serves.
fn flood_costs_no_memory(test: &str, conns: usize) {
    let c = Cluster::start(test, ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let limit_kib = 64 * 1024;
    for (who, pid, addr) in [
        ("manager", c.manager().child.id(), c.manager().addr.clone()),
        ("worker", c.workers[0].child.id(), c.workers[0].addr.clone()),
    ] {
        let (before, _) = memory_kib(pid);
        let started = Instant::now();
        let (connected, refused) = unauthenticated_flood(&addr, conns);
        let (after, peak) = memory_kib(pid);
        println!(
            "{who}, {conns} connections: resident {before} KiB before, {after} KiB after, peak {peak} KiB ({:?}); {connected} connected, {refused} answered 401",
            started.elapsed()
        );
        // the flood landed: every connection made, and at least the waiting room's 500 refused
        // with a 401 (beyond it the oldest are closed unread)
        assert_eq!(connected, conns, "{who}: connections made");
        assert!(refused >= conns.min(500) * 9 / 10, "{who}: only {refused} of {conns} answered 401");
        assert!(peak < limit_kib, "{who} peaked at {peak} KiB");
        assert!(after < limit_kib, "{who} kept {after} KiB");
        // and it still serves
        let (status, _) = http("GET", &format!("http://{addr}/v1/health"), None);
        assert_eq!(status, 200);
    }
}

#[test]
fn bodies_sent_without_a_token_cost_no_memory() {
    flood_costs_no_memory("unauthenticated_flood", 500);
}

#[test]
fn bodies_sent_without_a_token_cost_no_memory_from_1500_connections() {
    // three times the connections of the waiting room: the oldest are closed, none is read
    flood_costs_no_memory("unauthenticated_flood_1500", 1500);
}

#[test]
fn health_without_the_token_says_only_that_the_daemon_is_up() {
    let c = Cluster::start("health_without_token", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    for (who, addr) in [("manager", c.manager().addr.clone()), ("worker", c.workers[0].addr.clone())] {
        let url = format!("http://{addr}/v1/health");
        let (status, body) = http_as("GET", &url, None, None);
        let open: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!((status, open), (200, json!({"status": "up"})), "{who}");
        let (_, wrong) = http_as("GET", &url, None, Some("not-the-token-at-all"));
        assert_eq!(serde_json::from_slice::<Value>(&wrong).expect("json"), json!({"status": "up"}), "{who}");
        let (status, full) = http("GET", &url, None);
        assert_eq!(status, 200);
        assert!(full.get("version").is_some(), "{who}: the token shows the details: {full}");
    }
}

#[test]
fn lists_come_in_pages_and_specs_are_bounded() {
    let c = Cluster::start("pages_and_bounds", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    let ids: Vec<String> = (0..3).map(|i| c.submit(&sleeper(&format!("p{i}")))).collect();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let page = |query: &str| {
        let mut resp = agent
            .get(&c.manager_url(&format!("/v1/tasks{query}")))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect("list");
        let next = resp.headers().get("Skiff-Next").and_then(|v| v.to_str().ok()).map(str::to_string);
        let tasks: Value = resp.body_mut().read_json().expect("json");
        let ids: Vec<String> =
            tasks.as_array().expect("array").iter().map(|t| t["id"].as_str().expect("id").to_string()).collect();
        (ids, next)
    };
    let (first, next) = page("?limit=2");
    assert_eq!(first, ids[..2]);
    let (rest, last) = page(&format!("?next={}", next.expect("a next page")));
    assert_eq!((rest, last), (ids[2..].to_vec(), None));
    let (named, _) = page("?name=p1");
    assert_eq!(named, ids[1..2]);
    let (status, v) = http("GET", &c.manager_url("/v1/tasks?limit=100000"), None);
    assert_eq!((status, v["field"].as_str()), (400, Some("limit")), "{v}");

    let big = json!({"name": "big", "image": IMAGE, "cmd": ["x".repeat(20_000), "y".repeat(20_000)]});
    let (status, v) = http("POST", &c.manager_url("/v1/tasks"), Some(big.to_string().as_bytes()));
    assert_eq!((status, v["field"].as_str()), (400, Some("cmd")), "{v}");
}

#[test]
fn slow_readers_lose_their_connection_instead_of_holding_threads() {
    let c = Cluster::start("slow_readers", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    // 500 Pending tasks of about 30 KB each: a page of the list is its 4 MiB at most, minutes
    // for a reader that takes 2.5 KB a second
    let spec = json!({"name": "fat", "image": IMAGE, "cmd": ["x".repeat(30_000)]});
    let body = spec.to_string();
    for _ in 0..500 {
        let (status, _) = http_raw("POST", &c.manager_url("/v1/tasks"), Some(body.as_bytes()));
        assert_eq!(status, 201);
    }
    let (_, page) = http_raw("GET", &c.manager_url("/v1/tasks"), None);
    let addr = c.manager().addr.clone();
    let (reading_tx, reading) = std::sync::mpsc::channel();
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (addr, tx) = (addr.clone(), reading_tx.clone());
            std::thread::spawn(move || trickle(&addr, "/v1/tasks", Duration::from_secs(60), tx))
        })
        .collect();
    // every handler thread is writing to a slow reader now
    for _ in 0..16 {
        reading.recv_timeout(Duration::from_secs(30)).expect("each reader gets the start of its answer");
    }
    let started = Instant::now();
    // within the response deadline they lose their connections and health answers again
    let health = wait_for("health to answer again", Duration::from_secs(40), || {
        let (status, _) = http("GET", &c.manager_url("/v1/health"), None);
        (status == 200).then(|| started.elapsed())
    });
    for r in readers {
        let got = r.join().expect("reader").expect("the server ended the slow connection");
        assert!(got < page.len(), "a slow reader got the whole page ({got} of {} bytes)", page.len());
    }
    println!("health answered {health:?} after 16 slow readers began");
}

#[test]
fn refused_bodies_hold_no_thread_while_they_drain() {
    let c = Cluster::start("refused_bodies_drain", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    let addr = c.manager().addr.clone();
    // 300 connections declare a body, send no token and no body: each is refused at its head
    let head = "POST /v1/tasks HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        std::io::Write::write_all(&mut s, head.as_bytes()).expect("send");
        held.push(s);
    }
    let asked = Instant::now();
    let (status, _) = http("GET", &c.manager_url("/v1/tasks"), None);
    let took = asked.elapsed();
    println!("an authenticated request took {took:?} behind 300 refused ones");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(3), "refused bodies held the handler threads: {took:?}");
    for s in &mut held {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = [0u8; 12];
        let _ = std::io::Read::read(s, &mut answer);
        assert_eq!(&answer, b"HTTP/1.1 401", "each one is told why");
    }
}

#[test]
fn a_worker_whose_answers_are_malformed_is_not_taken_for_a_lost_node() {
    let fake = GarbledWorker::start();
    let opts = ClusterOptions {
        workers: 0,
        manager_args: strings(&["-w", &fake.addr, "--node-timeout-ms", "1000", "--poll-interval-ms", "200"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start("garbled_worker", opts);
    let node = |c: &Cluster| c.nodes().into_iter().find(|n| n["address"] == fake.addr.as_str()).expect("the node");
    wait_for("the node up", RUN, || (node(&c)["status"] == "up").then_some(()));
    fake.garbled.store(true, Ordering::SeqCst);
    wait_for("the bad answers noticed", RUN, || {
        node(&c)["error"].as_str().is_some_and(|e| e.starts_with("bad answer")).then_some(())
    });
    // five node timeouts of malformed answers: still up (only silence makes a node down)
    holds_for("the node up", Duration::from_secs(5), || node(&c)["status"] == "up");
}

#[test]
fn concurrent_lists_of_large_tasks_hold_bounded_memory() {
    let c = Cluster::start("concurrent_lists", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    // 400 Pending tasks of about 30 KB each: 12 MB of records, three pages of at most 4 MiB
    let tasks = 400;
    let body = json!({"name": "fat", "image": IMAGE, "cmd": ["x".repeat(30_000)]}).to_string();
    for _ in 0..tasks {
        let (status, _) = http_raw("POST", &c.manager_url("/v1/tasks"), Some(body.as_bytes()));
        assert_eq!(status, 201);
    }
    let pid = c.manager().child.id();
    let (before, _) = memory_kib(pid);
    let base = c.manager_url("");
    let start = Arc::new(std::sync::Barrier::new(16));
    let lists: Vec<_> = (0..16)
        .map(|_| {
            let (base, start) = (base.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                walk_all_pages(&base)
            })
        })
        .collect();
    let walks: Vec<(usize, usize)> = lists.into_iter().map(|l| l.join().expect("a list")).collect();
    let (after, peak) = memory_kib(pid);
    println!("manager with {tasks} tasks of 30 KB: resident {before} KiB before 16 lists, peak {peak} KiB, {after} KiB after");
    // 16 pages of at most 4 MiB at once, where whole lists would have been 16 times 12 MB
    let bound_kib = before + 96 * 1024;
    assert!(peak < bound_kib, "16 lists took the manager from {before} KiB to {peak} KiB");
    for (seen, pages) in walks {
        assert_eq!(seen, tasks, "a walk of the pages sees every task");
        assert!(pages >= 3, "12 MB of records came in {pages} pages");
    }
}

#[test]
fn a_worker_whose_answer_is_too_big_keeps_its_tasks_and_no_copy_is_made() {
    // the manager takes answers of at most 16 KiB here: a task of 10 KB fits (the start's
    // answer, a poll's change of one record), a full answer of two does not; a manager that
    // restarts asks each worker for everything, so its first polls are too big
    let opts = ClusterOptions {
        workers: 2,
        manager_args: strings(&["--node-timeout-ms", "1000", "--poll-interval-ms", "200"]),
        manager_env: vec![(skiff::http::MAX_ANSWER_VAR, (16 * 1024).to_string())],
        manager_store: "persisted",
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("answer_too_big", opts);
    c.wait_nodes_up();
    let spec = |i: usize| json!({"name": format!("big{i}"), "image": IMAGE, "memory_mb": 16, "cmd": ["sh", "-c", format!("sleep 300 # {}", "x".repeat(10_000))]});
    // round robin: two on each node
    let ids: Vec<String> = (0..4).map(|i| c.submit(&spec(i))).collect();
    let placed: Vec<Value> = ids.iter().map(|id| c.wait_state(id, "Running", RUN)).collect();
    for name in &c.worker_names {
        assert_eq!(placed.iter().filter(|t| t["node"] == name.as_str()).count(), 2, "{name}: {placed:?}");
    }
    c.manager_mut().kill();
    c.restart_manager();
    let node = |c: &Cluster, name: &str| c.nodes().into_iter().find(|n| n["name"] == name).expect("the node");
    for name in &c.worker_names {
        wait_for("the answer found too big", RUN, || {
            node(&c, name)["error"].as_str().is_some_and(|e| e.starts_with("bad answer")).then_some(())
        });
    }
    // five node timeouts of answers too big: both nodes up, each task on its node, one container each
    holds_for("the nodes up and the tasks where they were", Duration::from_secs(5), || {
        let nodes_up = c.worker_names.iter().all(|n| node(&c, n)["status"] == "up");
        let in_place = placed.iter().all(|t| {
            let now = c.get_task(t["id"].as_str().expect("id"));
            now["state"] == "Running" && now["node"] == t["node"]
        });
        nodes_up && in_place
    });
    let containers = c.containers();
    for id in &ids {
        let copies = containers.iter().filter(|k| k.labels.get("skiff.task-id") == Some(id)).count();
        assert_eq!(copies, 1, "task {id} has {copies} containers");
    }
}

#[test]
fn a_sync_that_keeps_failing_is_warned_of_once_and_shown_in_health() {
    let c = Cluster::start("failing_sync", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    let engine = EngineProxy::new(&c.dir);
    let socket = engine.path.display().to_string();
    let mut c = c;
    let name = format!("sync-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    c.add_worker(&name, &strings(&["--docker-socket", &socket, "--sync-interval-ms", "300"]));
    let url = c.worker_url(0, "/v1/health");
    let log = c.workers[0].log.clone();
    wait_for("the worker synced", RUN, || (http("GET", &url, None).1["synced"] == true).then_some(()));
    assert!(log_lines(&log, "container sync").is_empty(), "no sync trouble yet");

    // the engine answers, but its container lists fail
    engine.refuse_lists(true);
    let health = wait_for("health to show the failing sync", RUN, || {
        let (_, h) = http("GET", &url, None);
        h["sync_error"].as_str().is_some().then_some(h)
    });
    assert!(health["sync_error"].as_str().is_some_and(|e| e.contains("refused by the test")), "{health}");
    assert_eq!(health["engine"]["reachable"], true, "the engine answers: {health}");
    let warned = wait_for("the warning", RUN, || {
        let lines = log_lines(&log, "container sync failing");
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(warned[0].level, "WARN");
    assert_eq!(field(&warned[0], "node"), Some(name.as_str()));
    // several ticks of failing syncs later (the sync interval is 300 ms): still one warning
    holds_for("the failing sync in health", Duration::from_secs(2), || {
        http("GET", &url, None).1["sync_error"].as_str().is_some()
    });

    engine.refuse_lists(false);
    wait_for("health without the sync error", RUN, || {
        http("GET", &url, None).1.get("sync_error").is_none().then_some(())
    });
    let ended = wait_for("the line saying it works again", RUN, || {
        let lines = log_lines(&log, "container sync works again");
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(log_lines(&log, "container sync failing").len(), 1, "one warning for the whole failing stretch");
    assert_eq!(ended.len(), 1);
    let failures: u32 = field(&ended[0], "failures").and_then(|f| f.parse().ok()).expect("failures=");
    assert!(failures >= 3, "the failures counted: {failures}");
    assert!(field(&ended[0], "last_error").is_some_and(|e| e.contains("refused by the test")));
}

#[test]
fn a_manager_forgets_finished_tasks_beyond_its_bound() {
    let opts = ClusterOptions {
        workers: 0,
        manager_store: "persisted",
        manager_args: strings(&["--keep-finished", "3", "--poll-interval-ms", "200"]),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("keep_finished", opts);
    let waiting = c.submit(&sleeper("waiting"));
    let stopped: Vec<String> = (0..6).map(|i| c.submit(&sleeper(&format!("s{i}")))).collect();
    // stopped one after the other, each a millisecond at least after the one before
    for id in &stopped {
        let (status, _) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{id}")), None);
        assert_eq!(status, 202);
        let t = c.wait_state(id, "Stopped", RUN);
        let at = skiff::time::Timestamp::parse(t["finished_at"].as_str().expect("finished_at")).expect("a time");
        wait_for("the clock past that stop", RUN, || (skiff::time::Timestamp::now().0 > at.0).then_some(()));
    }
    // the three that finished first are forgotten; the unfinished one is not counted
    let mut kept = vec![waiting.clone()];
    kept.extend(stopped[3..].iter().cloned());
    wait_for("the list down to the bound", RUN, || (listed(&c) == kept).then_some(()));
    for id in &stopped[..3] {
        let (status, _) = http("GET", &c.manager_url(&format!("/v1/tasks/{id}")), None);
        assert_eq!(status, 404, "task {id} forgotten");
    }
    // and forgotten in the store too: a restarted manager lists the same
    c.manager_mut().kill();
    c.restart_manager();
    assert_eq!(listed(&c), kept);
}

#[test]
fn no_continue_before_the_token_and_bodies_in_flight_are_bounded_together() {
    let c = Cluster::start("bodies_in_flight", ClusterOptions { workers: 0, ..ClusterOptions::default() });
    let addr = c.manager().addr.clone();
    let post = |token: Option<&str>, length: usize| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        format!("POST /v1/tasks HTTP/1.1\r\nHost: t\r\n{auth}Expect: 100-continue\r\nContent-Length: {length}\r\n\r\n")
    };
    // without the token: the refusal, and no invitation to send the body first
    let mut s = send_head(&addr, &post(None, 500_000));
    let out = first_answer(&mut s);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");

    // with it: each of 16 bodies of 1 MiB takes its room in the 16 MiB budget, then is invited
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    for i in 0..16 {
        let mut s = send_head(&addr, &post(Some(TOKEN), 1024 * 1024));
        let mut got = [0u8; 25];
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        std::io::Read::read_exact(&mut s, &mut got).unwrap_or_else(|e| panic!("body {i}: no 100 Continue: {e}"));
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n", "body {i}");
        held.push(s);
    }
    // a seventeenth has no room, whatever its size
    let mut s = send_head(&addr, &post(Some(TOKEN), 1000));
    let out = first_answer(&mut s);
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    // one gone gives its room back
    drop(held.pop());
    let body = json!({"name": "after", "image": IMAGE}).to_string();
    let submit = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let out = wait_for("the room back", Duration::from_secs(5), || {
        let mut s = send_head(&addr, &submit);
        let out = first_answer(&mut s);
        (!out.starts_with("HTTP/1.1 503")).then_some(out)
    });
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
}

#[test]
fn a_container_whose_image_carries_a_node_label_is_never_removed() {
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--sync-interval-ms", "300", "--orphan-grace-s", "1"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start("image_node_label", opts);
    c.wait_nodes_up();
    let node = c.worker_names[0].clone();
    // the image says skiff.node (and so does every container of it); the build is labelled too
    let image = TestImage(format!("skiff-test/node-label-{}:1", node.to_lowercase()));
    let dockerfile = format!("FROM {IMAGE}\nLABEL skiff.node={node}\n");
    let mut build = docker_command()
        .args(["build", "-q", "-t", &image.0, "--label", &format!("skiff.test={}", c.test), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker build runs");
    std::io::Write::write_all(&mut build.stdin.take().expect("stdin"), dockerfile.as_bytes()).expect("the Dockerfile");
    let built = build.wait_with_output().expect("docker build ends");
    assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
    let bystander = docker(&["run", "-d", &image.0, "sleep", "300"]);
    assert_eq!(docker_inspect(&bystander)["Config"]["Labels"]["skiff.node"], node.as_str());
    // well past the grace: labels from an image alone never make a container the worker's
    holds_for("the bystander alive", Duration::from_secs(4), || docker_inspect(&bystander)["State"]["Running"] == true);
}

#[test]
fn a_manager_with_a_persisted_store_stops_a_task_it_does_not_know_after_the_grace() {
    let opts = ClusterOptions {
        workers: 1,
        manager_store: "persisted",
        manager_args: strings(&["--orphan-grace-s", "2"]),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("persisted_unknown", opts);
    c.wait_nodes_up();
    let id = c.submit(&sleeper("unknown"));
    let t = c.wait_state(&id, "Running", RUN);
    let container = t["container_id"].as_str().expect("container").to_string();
    // a manager whose store never heard of the task: its data is gone, the container runs on
    c.manager_mut().kill();
    for f in std::fs::read_dir(c.dir.join("data")).expect("the data dir").flatten() {
        if f.file_name().to_string_lossy().starts_with("manager") {
            let _ = std::fs::remove_file(f.path());
        }
    }
    c.restart_manager();
    c.wait_nodes_up();
    let (status, _) = http("GET", &c.manager_url(&format!("/v1/tasks/{id}")), None);
    assert_eq!(status, 404, "the store is the truth: the task is unknown");
    let noted = Instant::now();
    wait_for("the unknown task's container stopped", RUN, || {
        (docker_command().args(["container", "inspect", "-f", "{{.State.Running}}", &container]).output().ok()?.stdout
            != b"true\n")
            .then_some(())
    });
    let took = noted.elapsed();
    println!("the unknown container was stopped {took:?} after the manager came back");
    assert!(took >= Duration::from_secs(1), "stopped before its grace: {took:?}");
}
