//! End-to-end scenarios: real manager, workers and client binaries against the real Docker Engine.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn sleeper(name: &str) -> Value {
    json!({"name": name, "image": IMAGE, "cmd": ["sleep", "300"], "cpus": 0.25, "memory_mb": 32})
}

fn web() -> Value {
    json!({
        "name": "web",
        "image": IMAGE,
        "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "env": {"GREETING": "hello"},
        "cpus": 0.5,
        "memory_mb": 64,
        "disk_mb": 100,
        "ports": [{"container": 8080, "host": 0}]
    })
}

#[test]
fn round_robin_places_four_tasks_two_per_node_and_stop_removes_the_container() {
    let c = Cluster::start("round_robin", ClusterOptions::default());
    c.wait_nodes_up();
    let files: Vec<_> = [web(), sleeper("s1"), sleeper("s2"), sleeper("s3")]
        .iter()
        .enumerate()
        .map(|(i, spec)| c.spec_file(&format!("spec{i}"), spec))
        .collect();
    let script: String = files.iter().map(|f| format!("start {}\n", f.display())).collect();
    let out = c.client(&[], &script);
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 4, "start prints one id per task: {ids:?}");

    let tasks: Vec<Value> = ids.iter().map(|id| c.wait_state(id, "Running", Duration::from_secs(30))).collect();
    for name in &c.worker_names {
        let on_node = tasks.iter().filter(|t| t["node"] == name.as_str()).count();
        assert_eq!(on_node, 2, "round-robin puts two tasks on {name}");
    }

    // each container carries its labels and limits, as the engine reports them
    for t in &tasks {
        let info = docker_inspect(t["container_id"].as_str().expect("container id"));
        let labels = &info["Config"]["Labels"];
        assert_eq!(labels["skiff.task-id"], t["id"]);
        assert_eq!(labels["skiff.node"], t["node"]);
        let spec = &t["spec"];
        let memory = spec["memory_mb"].as_u64().expect("memory") * 1024 * 1024;
        assert_eq!(info["HostConfig"]["Memory"].as_u64(), Some(memory));
        let nano = (spec["cpus"].as_f64().expect("cpus") * 1e9) as u64;
        assert_eq!(info["HostConfig"]["NanoCpus"].as_u64(), Some(nano));
        assert_eq!(info["State"]["Running"], true);
    }

    // the web task answers on its published host port
    let web = &tasks[0];
    let port = web["ports"][0]["host"].as_u64().expect("host port");
    let (status, page) = http_raw("GET", &format!("http://127.0.0.1:{port}/"), None);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("Hello from a Skiff task"));

    // list and list-nodes show them
    let out = c.client(&["list"], "");
    let listing = String::from_utf8_lossy(&out.stdout);
    for id in &ids {
        assert!(listing.contains(id.as_str()), "list shows {id}:\n{listing}");
    }
    assert!(listing.contains(&format!("{port}->8080/tcp")), "list shows the web port:\n{listing}");
    let out = c.client(&["list-nodes"], "");
    let nodes = String::from_utf8_lossy(&out.stdout);
    for name in &c.worker_names {
        let line = nodes.lines().find(|l| l.starts_with(name.as_str())).expect("node listed");
        assert!(line.contains(" up ") && line.contains(" 2 "), "{line}");
    }

    // stop removes the container and the task reads Stopped
    let web_id = ids[0].as_str();
    let container = web["container_id"].as_str().expect("container").to_string();
    let out = c.client(&["stop", web_id], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stopped = c.wait_state(web_id, "Stopped", Duration::from_secs(15));
    assert_eq!(stopped["desired_state"], "stopped");
    assert!(c.docker.inspect(&container).unwrap_err().is_not_found(), "the container is removed");
    assert_eq!(c.containers().len(), 3, "the three sleepers still run");

    // stopping it again is a clear 409
    let (status, body) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{web_id}")), None);
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("already finished")), "{body}");
}

#[test]
fn tasks_end_completed_or_failed_with_exit_code_and_engine_message() {
    // finished tasks keep their containers for their output within a bound; here it is none
    let opts =
        ClusterOptions { workers: 1, worker_args: strings(&["--keep-containers", "0"]), ..ClusterOptions::default() };
    let c = Cluster::start("exits", opts);
    c.wait_nodes_up();
    let ok = c.submit(&json!({"name": "ok", "image": IMAGE, "cmd": ["sh", "-c", "exit 0"]}));
    let three = c.submit(&json!({"name": "three", "image": IMAGE, "cmd": ["sh", "-c", "sleep 0.2; exit 3"]}));
    let missing = c.submit(&json!({"name": "missing", "image": "skiff/does-not-exist:1"}));

    let t = c.wait_state(&ok, "Completed", Duration::from_secs(30));
    assert_eq!(t["exit_code"], 0);
    assert!(t["finished_at"].is_string());

    let t = c.wait_state(&three, "Failed", Duration::from_secs(30));
    assert_eq!(t["exit_code"], 3);
    assert_eq!(t["error"], "exited with code 3");

    let t = c.wait_state(&missing, "Failed", Duration::from_secs(30));
    let error = t["error"].as_str().expect("an error");
    assert!(error.contains("skiff/does-not-exist:1"), "{error}");
    // after our words come the engine's own (no registry here, or no such repository there)
    let engine_words = error.split("could not be pulled: ").nth(1).unwrap_or_default();
    assert!(engine_words.len() > 10, "the engine's message is kept: {error}");

    // beyond the retention bound, finished tasks leave no container behind (at the next tick)
    wait_for("finished containers to be removed", Duration::from_secs(15), || c.containers().is_empty().then_some(()));
}

#[test]
fn bad_input_gets_the_right_4xx_and_creates_nothing() {
    let c = Cluster::start("bad_input", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    let tasks = c.manager_url("/v1/tasks");
    // method, url, body, expected status, words the error must contain
    type Case<'a> = (&'a str, String, Option<Vec<u8>>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", tasks.clone(), Some(b"{\"name\": \"a\", ".to_vec()), 400, "malformed JSON"),
        ("POST", tasks.clone(), Some(br#"{"name":"a","image":"b","colour":"red"}"#.to_vec()), 400, "colour"),
        ("POST", tasks.clone(), Some(br#"{"name":"a"}"#.to_vec()), 400, "image"),
        ("POST", tasks.clone(), Some(br#"{"name":"a","image":"b","memory_mb":"lots"}"#.to_vec()), 400, "memory_mb"),
        (
            "POST",
            tasks.clone(),
            Some(br#"{"name":"a","image":"b","ports":[{"container":0}]}"#.to_vec()),
            400,
            "ports[0].container",
        ),
        ("POST", tasks.clone(), Some(br#"[]"#.to_vec()), 400, "JSON object"),
        ("GET", c.manager_url("/v1/tasks/3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b"), None, 404, "no task"),
        ("DELETE", c.manager_url("/v1/tasks/3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b"), None, 404, "no task"),
        ("GET", c.manager_url("/v1/tasks/not-a-uuid"), None, 400, "not a task id"),
        ("PUT", tasks.clone(), Some(b"{}".to_vec()), 405, "method not allowed"),
        ("GET", c.manager_url("/v1/nothing"), None, 404, "no such route"),
    ];
    for (method, url, body, status, words) in cases {
        let (got, answer) = http(method, &url, body.as_deref());
        assert_eq!(got, status, "{method} {url}: {answer}");
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("error shape: {answer}"));
        assert!(error.contains(words), "{method} {url}: {error:?} should mention {words:?}");
    }
    // a body over the limit is refused before it is read
    let big = vec![b' '; 2 * 1024 * 1024];
    let (got, _) = http("POST", &tasks, Some(&big));
    assert_eq!(got, 413);
    // a health check on a port the task does not publish cannot be made: refused, naming the field
    let body = br#"{"name":"a","image":"b","health_check":{"path":"/","port":8080}}"#;
    let (got, answer) = http("POST", &tasks, Some(body));
    assert_eq!(got, 400);
    assert_eq!(answer["field"], "health_check.port");
    let (got, answer) =
        http("POST", &tasks, Some(br#"{"name":"a","image":"b","restart_policy":{"mode":"sometimes"}}"#));
    assert_eq!(got, 400);
    assert_eq!(answer["field"], "restart_policy.mode");

    let (_, list) = http("GET", &tasks, None);
    assert_eq!(list, json!([]), "nothing was created");
    assert!(c.containers().is_empty());

    // the client says so too, with a non-zero exit code
    let out = c.client(&["get", "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task"));
    let out = c.client(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
}

/// The manager answers as fast as usual however its workers fare.
fn assert_prompt(c: &Cluster, what: &str) {
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = http("GET", &c.manager_url("/v1/nodes"), None);
        assert_eq!(status, 200);
        let (status, _) = http("GET", &c.manager_url("/v1/tasks"), None);
        assert_eq!(status, 200);
        let took = started.elapsed();
        // a manager waiting on a dead worker would take seconds (connect and poll deadlines)
        assert!(took < Duration::from_secs(1), "{what}: two API calls took {took:?}");
    }
}

#[test]
fn dead_and_killed_workers_never_block_the_manager() {
    let mut c =
        Cluster::start("dead_workers", ClusterOptions { workers: 1, dead_workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let node_status = |c: &Cluster, i: usize| c.nodes()[i]["status"].as_str().unwrap_or("").to_string();
    wait_for("the dead worker to show down", Duration::from_secs(10), || (node_status(&c, 1) == "down").then_some(()));
    assert_prompt(&c, "with a worker down since start");

    // every task goes to the live worker
    let id = c.submit(&sleeper("s"));
    let t = c.wait_state(&id, "Running", Duration::from_secs(30));
    assert_eq!(t["node"], c.worker_names[0].as_str());

    // kill the live worker mid-run
    c.workers[0].kill();
    wait_for("the killed worker to show down", Duration::from_secs(15), || {
        (node_status(&c, 0) == "down").then_some(())
    });
    assert_prompt(&c, "with every worker down");
    let nodes = c.nodes();
    assert!(nodes[0]["error"].is_string(), "the node says why: {}", nodes[0]);

    // a new task waits with a reason a user understands
    let id = c.submit(&sleeper("later"));
    let t = c.get_task(&id);
    assert_eq!(t["state"], "Pending");
    let reason = t["error"].as_str().expect("reason");
    assert!(reason.starts_with("no node fits:") && reason.contains("down"), "{reason}");
}

#[test]
fn worker_api_is_idempotent_per_task_id() {
    let c = Cluster::start("worker_api", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    let id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let body = json!({"id": id, "spec": sleeper("direct")}).to_string();
    let (status, first) = http("POST", &c.worker_url(0, "/v1/tasks"), Some(body.as_bytes()));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["state"], "Running", "the answer says what happened");
    let (status, again) = http("POST", &c.worker_url(0, "/v1/tasks"), Some(body.as_bytes()));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["container_id"], first["container_id"], "no second container");
    assert_eq!(c.containers().len(), 1);

    let (status, health) = http("GET", &c.worker_url(0, "/v1/health"), None);
    assert_eq!(status, 200);
    assert_eq!(health["name"], c.worker_names[0].as_str());
    assert_eq!(health["engine"]["reachable"], true);

    let (status, stopped) = http("DELETE", &c.worker_url(0, &format!("/v1/tasks/{id}")), None);
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "Stopped");
    assert!(c.containers().is_empty());
    let (status, _) = http("DELETE", &c.worker_url(0, &format!("/v1/tasks/{id}")), None);
    assert_eq!(status, 409);
    let (status, bad) = http("POST", &c.worker_url(0, "/v1/tasks"), Some(br#"{"id":"x","spec":{}}"#));
    assert_eq!(status, 400);
    assert_eq!(bad["field"], "id");
}

#[test]
fn client_json_output_and_one_shot_commands() {
    let c = Cluster::start("client_json", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let file = c.spec_file("s", &sleeper("s"));
    let out = c.client(&["--json", "start", file.to_str().expect("utf-8 path")], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task: Value = serde_json::from_slice(&out.stdout).expect("--json prints the API's JSON");
    let id = task["id"].as_str().expect("id");
    c.wait_state(id, "Running", Duration::from_secs(30));
    let out = c.client(&["--json", "get", id], "");
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["state"], "Running");
    let out = c.client(&[], &format!("get {id}\nhelp\nquit\nlist\n"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state         Running") && text.contains("list-nodes"), "{text}");
    assert!(!text.contains("SERVICE  STATE"), "nothing runs after quit: {text}");
}

#[test]
fn daemons_exit_cleanly_on_sigterm_and_refuse_unbuilt_choices() {
    let mut c = Cluster::start("signals", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let id = c.submit(&sleeper("survivor"));
    c.wait_state(&id, "Running", Duration::from_secs(30));
    let status = c.manager.as_mut().expect("manager").terminate();
    assert!(status.success(), "manager exit: {status}");
    let status = c.workers[0].terminate();
    assert!(status.success(), "worker exit: {status}");
    assert_eq!(c.containers().len(), 1, "containers outlive their worker process");

    for (bin, args) in [
        (env!("CARGO_BIN_EXE_manager"), vec!["-p", "0", "-sct", "binpack"]),
        (env!("CARGO_BIN_EXE_manager"), vec!["-p", "0", "-st", "disk"]),
        (env!("CARGO_BIN_EXE_worker"), vec!["-n", "bad name", "-p", "0"]),
    ] {
        let out = std::process::Command::new(bin).args(&args).output().expect("runs");
        assert!(!out.status.success(), "{args:?} must be refused");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    // an address to advertise means nothing to a worker that does not join: refused, not ignored
    // (a worker that ignored it would run on: it is given 10 s to exit, then killed)
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["-n", "w9", "-p", "0", "--advertise", "10.0.0.2:7070"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = worker.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = worker.kill();
            let _ = worker.wait();
            panic!("a worker given --advertise without --join started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "--advertise without --join must be refused");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut worker.stderr.take().expect("piped"), &mut stderr).expect("stderr");
    assert!(stderr.contains("--advertise needs --join"), "says why: {stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_manager")).arg("--version").output().expect("runs");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("manager "));
}
