//! Operating a cluster against the real engine (issue 11): a task's output through the manager
//! and the worker (running, failed, restarted, followed to its end, on a TTY, and how fast),
//! and placement dry runs.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The task's output through the manager, with this query.
fn logs(c: &Cluster, id: &str, query: &str) -> String {
    let (status, body) = http_raw("GET", &c.manager_url(&format!("/v1/tasks/{id}/logs?{query}")), None);
    assert_eq!(status, 200, "logs of {id}: {}", text(&body));
    text(&body)
}

/// Waits until the task's output (through the manager) holds `needle`, and returns it (a
/// worker that has just started answers 503 until it has checked its containers).
fn wait_output(c: &Cluster, id: &str, query: &str, needle: &str) -> String {
    wait_for(&format!("output {needle:?} of {id}"), RUN, || {
        let (status, body) = http_raw("GET", &c.manager_url(&format!("/v1/tasks/{id}/logs?{query}")), None);
        let out = text(&body);
        (status == 200 && out.contains(needle)).then_some(out)
    })
}

#[test]
fn logs_of_a_running_task_through_the_manager_and_its_worker() {
    let c = Cluster::start("logs_running", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&json!({
        "name": "talker", "image": IMAGE, "memory_mb": 16,
        "cmd": ["sh", "-c", "echo out-1; echo err-1 >&2; sleep 0.5; echo out-2; exec sleep 300"]
    }));
    c.wait_state(&id, "Running", RUN);
    let all = wait_output(&c, &id, "", "out-2");
    assert!(all.contains("out-1\n") && all.contains("err-1\n"), "stdout and stderr, frames decoded: {all:?}");
    assert!(!all.contains('\u{1}') && !all.contains('\u{2}'), "no frame header left: {all:?}");

    assert_eq!(logs(&c, &id, "stream=stderr"), "err-1\n");
    assert!(!logs(&c, &id, "stream=stdout").contains("err-1"));
    // the engine takes the tail before it filters the streams: out-2 is the last line of both
    assert_eq!(logs(&c, &id, "tail=1&stream=stdout"), "out-2\n");
    let stamped = logs(&c, &id, "timestamps=true&stream=stderr");
    let (time, line) = stamped.trim_end().split_once(' ').expect("a time before the line");
    assert!(skiff::time::Timestamp::parse(time).is_some(), "an RFC 3339 time: {stamped:?}");
    assert_eq!(line, "err-1");
    let later = logs(&c, &id, "since=2100-01-01T00:00:00Z");
    assert_eq!(later, "", "nothing after a time to come");

    // the worker answers the same call itself
    let (status, body) = http_raw("GET", &c.worker_url(0, &format!("/v1/tasks/{id}/logs?stream=stderr")), None);
    assert_eq!((status, text(&body)), (200, "err-1\n".to_string()));

    // refusals: a bad parameter names itself; an unknown task is a 404
    let (status, v) = http("GET", &c.manager_url(&format!("/v1/tasks/{id}/logs?stream=all")), None);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("stream"), "{v}");
    let unknown = uuid::Uuid::new_v4();
    let (status, _) = http("GET", &c.manager_url(&format!("/v1/tasks/{unknown}/logs")), None);
    assert_eq!(status, 404);

    // the client prints the same text
    let out = c.client(&["logs", &id, "--tail", "1"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out-2\n");
}

#[test]
fn a_failed_and_a_restarted_task_keep_their_output() {
    let c = Cluster::start("logs_finished", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let failed = c.submit(&json!({
        "name": "dier", "image": IMAGE, "memory_mb": 16,
        "cmd": ["sh", "-c", "echo about to fail >&2; exit 3"]
    }));
    // each run lives a moment after it prints: the engine's log copier may miss the output of
    // a process that exits at once
    let restarted = c.submit(&json!({
        "name": "retrier", "image": IMAGE, "memory_mb": 16,
        "cmd": ["sh", "-c", "echo run at $(date +%s%N); sleep 0.3; exit 1"],
        "restart_policy": {"mode": "on-failure", "max_restarts": 2}
    }));
    let t = c.wait_state(&failed, "Failed", RUN);
    assert_eq!(t["exit_code"], 3);
    let container = t["container_id"].as_str().expect("container").to_string();
    assert_eq!(docker_inspect(&container)["State"]["Status"], "exited", "kept for its output");
    assert_eq!(logs(&c, &failed, ""), "about to fail\n");

    let t = wait_for("the restarted task to give up", RUN, || {
        let t = c.get_task(&restarted);
        (t["state"] == "Failed").then_some(t)
    });
    assert_eq!(t["restart_count"], 2);
    // the engine copies a run's output a moment after it has seen the exit
    let out = wait_for("every run's output", RUN, || {
        let out = logs(&c, &restarted, "");
        (out.matches("run at ").count() >= 3).then_some(out)
    });
    assert_eq!(out.matches("run at ").count(), 3, "every run's output, the first included: {out:?}");

    // after a worker restart the output is still there: the container is
    let mut c = c;
    c.workers[0].terminate();
    c.restart_worker(0);
    c.wait_nodes_up();
    let out = wait_output(&c, &failed, "", "about to fail");
    assert_eq!(out, "about to fail\n");
}

#[test]
fn a_followed_log_streams_until_the_task_ends() {
    let c = Cluster::start("logs_follow", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&json!({
        "name": "ticker", "image": IMAGE, "memory_mb": 16,
        "cmd": ["sh", "-c", "sleep 1; for i in 1 2 3 4; do echo tick $i; sleep 0.5; done"]
    }));
    c.wait_state(&id, "Running", RUN);
    let opened = Instant::now();
    let out = c.client(&["logs", &id, "--follow"], "");
    let took = opened.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tick 1\ntick 2\ntick 3\ntick 4\n");
    assert!(took >= Duration::from_millis(1500), "it waited for the output as it came ({took:?})");
    assert!(took < Duration::from_secs(20), "it ended with the task ({took:?})");
    let t = c.wait_state(&id, "Completed", RUN);
    assert_eq!(t["exit_code"], 0);

    // the answer is chunked text
    let (status, body) = http_raw("GET", &c.manager_url(&format!("/v1/tasks/{id}/logs?follow=true")), None);
    assert_eq!((status, text(&body).lines().count()), (200, 4));
}

#[test]
fn a_tty_task_has_one_raw_stream() {
    let c = Cluster::start("logs_tty", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&json!({
        "name": "terminal", "image": IMAGE, "memory_mb": 16, "tty": true,
        "cmd": ["sh", "-c", "echo on-a-tty; echo also-stderr >&2; tty; exec sleep 300"]
    }));
    let t = c.wait_state(&id, "Running", RUN);
    assert_eq!(t["spec"]["tty"], true);
    let out = wait_output(&c, &id, "", "/dev/pts/");
    // a terminal turns \n into \r\n, and stderr is in the same stream
    assert!(out.contains("on-a-tty\r\n") && out.contains("also-stderr\r\n"), "{out:?}");
}

#[test]
fn log_throughput_through_the_manager() {
    let opts = ClusterOptions {
        workers: 1,
        worker_args: strings(&["--log-max-size-mb", "200", "--log-max-files", "1"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start("logs_throughput", opts);
    c.wait_nodes_up();
    // 400,000 lines of 64 bytes: 25.6 MB
    let id = c.submit(&json!({
        "name": "chatty", "image": IMAGE, "memory_mb": 64,
        "cmd": ["sh", "-c", "yes 012345678901234567890123456789012345678901234567890123456789abc | head -n 400000; echo done-writing; exec sleep 300"]
    }));
    c.wait_state(&id, "Running", RUN);
    wait_output(&c, &id, "tail=1", "done-writing");
    let agent = ureq::Agent::config_builder().timeout_global(Some(RUN)).build().new_agent();
    let started = Instant::now();
    let mut resp = agent
        .get(c.manager_url(&format!("/v1/tasks/{id}/logs")))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .expect("logs");
    assert_eq!(resp.headers().get("transfer-encoding").map(|v| v.as_bytes()), Some(&b"chunked"[..]));
    let bytes = std::io::copy(&mut resp.body_mut().as_reader(), &mut std::io::sink()).expect("read the log");
    let took = started.elapsed();
    assert_eq!(bytes, 400_000 * 64 + "done-writing\n".len() as u64, "every byte, once");
    let mb = bytes as f64 / 1e6;
    println!("log throughput through the manager: {mb:.1} MB in {took:?} = {:.1} MB/s", mb / took.as_secs_f64());
}

fn node_of<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["nodes"].as_array().expect("nodes").iter().find(|n| n["node"] == name).expect("node listed")
}

#[test]
fn a_dry_run_places_nothing_and_says_why_not_for_each_node() {
    let opts = ClusterOptions { workers: 2, ..ClusterOptions::default() };
    let mut c = Cluster::start("dry_run", opts);
    // the second worker offers only 32 MB
    c.workers[1].terminate();
    c.restart_worker_with(1, &["--max-memory-mb", "32"]);
    let small = c.worker_names[1].clone();
    c.wait_nodes_up();
    wait_for("the small node's capacity", RUN, || {
        c.nodes().iter().any(|n| n["name"] == small.as_str() && n["capacity"]["memory_mb"] == 32).then_some(())
    });
    let spec = json!({"name": "big", "image": IMAGE, "memory_mb": 64, "cmd": ["sleep", "300"]});
    let (status, answer) = http("POST", &c.manager_url("/v1/tasks?dry_run=true"), Some(spec.to_string().as_bytes()));
    assert_eq!(status, 200, "{answer}");
    let big = c.worker_names[0].clone();
    assert_eq!(answer["chosen"], big.as_str(), "{answer}");
    assert!(node_of(&answer, &big)["score"].is_number(), "{answer}");
    let why = node_of(&answer, &small)["reason"].as_str().expect("a reason").to_string();
    assert!(why.contains("memory") && why.contains("32") && why.contains("64"), "with the figures: {why}");
    let (_, tasks) = http("GET", &c.manager_url("/v1/tasks"), None);
    assert_eq!(tasks, json!([]), "nothing was placed");
    assert!(c.containers().is_empty());

    // the client says the same
    let file = c.spec_file("big", &spec);
    let out = c.client(&["start", "--dry-run", file.to_str().expect("path")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains(&big) && printed.contains(&small) && printed.contains("memory"), "{printed}");
}

#[test]
fn events_list_a_task_s_steps_and_the_client_waits_for_a_state() {
    let c = Cluster::start("events", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let node = c.worker_names[0].clone();
    let file = c.spec_file("short", &json!({"name": "short", "image": IMAGE, "memory_mb": 16, "cmd": ["sleep", "2"]}));
    let out = c.client(&["start", file.to_str().expect("path")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let waited = c.client(&["get", &id, "--wait", "Completed", "--timeout", "30"], "");
    assert!(waited.status.success(), "it got there: {}", text(&waited.stderr));
    let never = c.client(&["get", &id, "--wait", "Running", "--timeout", "1"], "");
    assert_eq!(never.status.code(), Some(1), "a finished task will not run again");
    assert!(text(&never.stderr).contains("finished"), "{}", text(&never.stderr));

    let (status, events) = http("GET", &c.manager_url(&format!("/v1/events?task={id}")), None);
    assert_eq!(status, 200);
    let steps: Vec<&str> = events.as_array().expect("array").iter().filter_map(|e| e["to"].as_str()).collect();
    assert_eq!(steps, ["Pending", "Scheduled", "Running", "Completed"], "{events}");
    assert_eq!(events[1]["reason"], format!("placed on {node}"));
    let (_, nodes) = http("GET", &c.manager_url(&format!("/v1/events?node={node}&limit=50")), None);
    assert!(nodes.as_array().expect("array").iter().any(|e| e["subject"] == "node" && e["to"] == "up"), "{nodes}");

    // followed: the history, then what comes
    let agent = ureq::Agent::config_builder().timeout_global(Some(RUN)).build().new_agent();
    let mut resp = agent
        .get(c.manager_url("/v1/events?follow=true&limit=1"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .expect("events");
    assert_eq!(resp.headers().get("content-type").map(|v| v.as_bytes()), Some(&b"application/x-ndjson"[..]));
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(resp.body_mut().as_reader()));
    let first: Value = serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    let second_id = c.submit(&json!({"name": "next", "image": IMAGE, "memory_mb": 16, "cmd": ["sleep", "300"]}));
    let next: Value = serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert!(next["seq"].as_u64() > first["seq"].as_u64());
    assert_eq!((next["task"].as_str(), next["to"].as_str()), (Some(second_id.as_str()), Some("Pending")));
    // its start is over before the cluster goes: a create still in flight at the engine when the
    // worker is killed would leave a container behind the clean-up
    c.wait_state(&second_id, "Running", RUN);

    let table = c.client(&["events", "--task", &id], "");
    assert!(table.status.success());
    let printed = text(&table.stdout);
    assert!(printed.contains("Running -> Completed") && printed.contains("ago"), "{printed}");
}

#[test]
fn a_worker_joins_stays_known_across_restarts_and_its_name_is_its_own() {
    let opts = ClusterOptions { workers: 0, manager_store: "persisted", ..ClusterOptions::default() };
    let mut c = Cluster::start("join", opts);
    let manager = c.manager().addr.clone();
    let name = format!("joiner-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let joined = Instant::now();
    c.add_worker(&name, &strings(&["--join", &manager]));
    c.wait_nodes_up();
    println!("join to up: {:?}", joined.elapsed());
    let address = format!("127.0.0.1:{}", c.workers[0].port());
    let nodes = c.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["address"], address.as_str(), "the address it reached the manager from, its own port");
    let (_, events) = http("GET", &c.manager_url(&format!("/v1/events?node={name}")), None);
    let steps: Vec<&str> = events.as_array().expect("array").iter().filter_map(|e| e["to"].as_str()).collect();
    assert!(steps.starts_with(&["joined"]) && steps.contains(&"up"), "{events}");

    // the manager dials it like any worker: a task runs there and its output comes back
    let id = c.submit(
        &json!({"name": "hello", "image": IMAGE, "memory_mb": 16, "cmd": ["sh", "-c", "echo joined; exec sleep 300"]}),
    );
    let t = c.wait_state(&id, "Running", RUN);
    assert_eq!(t["node"], name.as_str());
    wait_output(&c, &id, "", "joined\n");

    // a second worker with the same name elsewhere is refused while the node is live
    let body = json!({"name": name, "address": "127.0.0.1:1"}).to_string();
    let (status, v) = http("POST", &c.manager_url("/v1/nodes"), Some(body.as_bytes()));
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains(&name), "the reason names it: {v}");
    let (status, _) = http("POST", &c.manager_url("/v1/nodes"), Some(br#"{"name": "x", "address": "nowhere"}"#));
    assert_eq!(status, 400);

    // the manager restarts on its persisted store: the worker is listed at once, and up again
    c.manager_mut().terminate();
    c.restart_manager();
    let nodes = c.nodes();
    assert_eq!((nodes.len(), nodes[0]["name"].as_str()), (1, Some(name.as_str())), "known from the store: {nodes:?}");
    c.wait_nodes_up();
    assert_eq!(c.get_task(&id)["state"], "Running");
    // and the history with it: the join and the task's steps are still there
    let (_, events) = http("GET", &c.manager_url("/v1/events"), None);
    let all = events.as_array().expect("array");
    assert!(all.iter().any(|e| e["to"] == "joined" && e["node"] == name.as_str()), "{events}");
    assert!(all.iter().any(|e| e["task"] == id.as_str() && e["to"] == "Running"), "{events}");

    // the worker restarts: it joins again by itself, and is still one node
    c.workers[0].terminate();
    c.restart_worker(0);
    c.wait_nodes_up();
    let nodes = c.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let (status, t) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{id}")), None);
    assert_eq!(status, 202, "{t}");
}

/// Waits until the node reads this availability, and returns it.
fn wait_availability(c: &Cluster, name: &str, availability: &str) -> Value {
    wait_for(&format!("{name} {availability}"), RUN, || {
        c.nodes().into_iter().find(|n| n["name"] == name && n["availability"] == availability)
    })
}

#[test]
fn a_drain_moves_a_web_task_that_keeps_answering_and_a_drained_empty_node_can_be_removed_once_down() {
    let mut c = Cluster::start("drain", ClusterOptions::default());
    c.wait_nodes_up();
    let web = json!({
        "name": "web", "image": IMAGE, "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "ports": [{"container": 8080, "host": 0}],
        "health_check": {"path": "/", "port": 8080, "interval_s": 1, "timeout_s": 1}
    });
    let id = c.submit(&web);
    let first = c.wait_state(&id, "Running", RUN);
    let from = first["node"].as_str().expect("placed").to_string();
    let to = c.worker_names.iter().find(|n| **n != from).expect("another node").clone();
    // two more: round-robin puts one of them next to the web task
    let mut on_from = vec![id.clone()];
    for name in ["sleeper-1", "sleeper-2"] {
        let sleeper = c.submit(&json!({"name": name, "image": IMAGE, "cmd": ["sleep", "300"]}));
        if c.wait_state(&sleeper, "Running", RUN)["node"] == from.as_str() {
            on_from.push(sleeper);
        }
    }
    assert_eq!(on_from.len(), 2, "the web task and a sleeper on {from}");

    // a reader asks the task where it is and fetches its page there, all through the move
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let pages = std::sync::Arc::new(AtomicU32::new(0));
    let reader = {
        let (stop, pages, task_url) = (stop.clone(), pages.clone(), c.manager_url(&format!("/v1/tasks/{id}")));
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (_, task) = http("GET", &task_url, None);
                let port = task["ports"][0]["host"].as_u64().unwrap_or(0);
                let (status, _) = http_raw("GET", &format!("http://127.0.0.1:{port}/"), None);
                if status == 200 {
                    pages.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.push(format!("{} on port {port}: {status}", task["node"]));
                }
                std::thread::sleep(Duration::from_millis(20)); // pacing, not synchronisation
            }
            failed
        })
    };
    wait_for("the reader's first pages", RUN, || (pages.load(Ordering::SeqCst) >= 3).then_some(()));

    let began = Instant::now();
    let out = c.client(&["drain", &from], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("{from}: draining")), "{}", text(&out.stdout));
    let drained = wait_availability(&c, &from, "drained");
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    let failed = reader.join().expect("the reader");
    let ok = pages.load(Ordering::SeqCst);
    let moved = drained["drain"]["moved"].as_u64().expect("moved");
    println!(
        "drain: {moved} task(s) moved in {:.1} s ({:.1} s per task); {ok} pages read during it, {} failed",
        took.as_secs_f64(),
        took.as_secs_f64() / moved.max(1) as f64,
        failed.len()
    );
    assert!(failed.is_empty(), "the web task stopped answering during the move: {failed:?}");
    assert!(ok > 10, "the reader read pages throughout ({ok})");

    // both tasks kept their ids and run on the other node; only their new containers run
    for task in &on_from {
        let now = c.get_task(task);
        assert_eq!((now["state"].as_str(), now["node"].as_str()), (Some("Running"), Some(to.as_str())), "{now}");
        assert_eq!(now["restart_count"], 0, "a move is not a restart");
        let running: Vec<_> = wait_for("one running container of the task", RUN, || {
            let mine: Vec<_> =
                c.containers().into_iter().filter(|k| k.labels.get("skiff.task-id") == Some(task)).collect();
            let running: Vec<_> = mine.into_iter().filter(|k| k.state == "running").collect();
            (running.len() == 1).then_some(running)
        });
        assert_eq!(running[0].labels.get("skiff.node"), Some(&to), "the running copy is the new one");
    }
    assert_eq!(moved, 2);
    let (_, events) = http("GET", &c.manager_url(&format!("/v1/events?task={id}")), None);
    assert!(events.as_array().expect("events").iter().any(|e| e["to"] == "moved" && e["from"] == from.as_str()));

    // nothing goes to a drained node; list-nodes says so
    let next = c.submit(&json!({"name": "next", "image": IMAGE, "cmd": ["sleep", "300"]}));
    assert_eq!(c.wait_state(&next, "Running", RUN)["node"], to.as_str());
    let listing = text(&c.client(&["list-nodes"], "").stdout);
    let row = listing.lines().find(|l| l.starts_with(from.as_str())).expect("listed");
    assert!(row.contains("drained"), "{listing}");

    // a node that is up cannot be removed; once its worker is stopped it can
    let out = c.client(&["remove-node", &from], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stop its worker first"), "{}", text(&out.stderr));
    let i = c.worker_names.iter().position(|n| *n == from).expect("a worker");
    c.workers[i].terminate();
    wait_for("the drained node down", RUN, || {
        c.nodes().iter().any(|n| n["name"] == from.as_str() && n["status"] == "down").then_some(())
    });
    let out = c.client(&["remove-node", &from], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(c.nodes().iter().all(|n| n["name"] != from.as_str()), "forgotten");
    let (status, _) = http("POST", &c.manager_url(&format!("/v1/nodes/{from}/activate")), None);
    assert_eq!(status, 404);

    // a worker of that name may come back (joining): the removed node is no one's name any more
    let manager = c.manager().addr.clone();
    c.restart_worker_with(i, &["--join", &manager]);
    let back = wait_for("the worker back under its name", RUN, || {
        c.nodes().into_iter().find(|n| n["name"] == from.as_str() && n["status"] == "up")
    });
    assert_eq!((back["availability"].as_str(), &back["error"]), (Some("active"), &Value::Null), "{back}");
    let (_, placed) = http(
        "POST",
        &c.manager_url("/v1/tasks?dry_run=true"),
        Some(json!({"name": "x", "image": IMAGE}).to_string().as_bytes()),
    );
    assert_eq!(placed["nodes"].as_array().map(Vec::len), Some(2), "no trace of the removed node: {placed}");
}
