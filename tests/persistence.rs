//! Persisted stores: managers and workers killed with SIGKILL come back with everything, without
//! restarting, duplicating or orphaning a container; bad data directories stop them at start.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(30);

fn sleeper(name: &str) -> Value {
    json!({"name": name, "image": IMAGE, "cmd": ["sleep", "300"], "memory_mb": 16})
}

/// Container id → the engine's StartedAt, for every container of the cluster.
fn started_at(c: &Cluster) -> BTreeMap<String, String> {
    c.containers()
        .into_iter()
        .map(|s| {
            let info = docker_inspect(&s.id);
            (s.id, info["State"]["StartedAt"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn running_count(c: &Cluster) -> usize {
    let (_, list) = http("GET", &c.manager_url("/v1/tasks"), None);
    list.as_array().expect("list").iter().filter(|t| t["state"] == "Running").count()
}

/// The engine runs exactly the tasks the manager says are Running: no duplicate, no orphan.
fn assert_one_container_per_running_task(c: &Cluster) {
    let containers = c.containers();
    assert_eq!(containers.len(), running_count(c), "labelled containers vs Running tasks");
    let mut owners: Vec<String> = containers.iter().map(|s| s.labels["skiff.task-id"].clone()).collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), containers.len(), "one container per task");
}

#[test]
fn manager_restart_keeps_every_task_and_leaves_containers_alone() {
    let opts = ClusterOptions { manager_store: "persisted", ..ClusterOptions::default() };
    let mut c = Cluster::start("manager_restart", opts);
    c.wait_nodes_up();
    let ids: Vec<String> = (0..4).map(|i| c.submit(&sleeper(&format!("s{i}")))).collect();
    let before: Vec<Value> = ids.iter().map(|id| c.wait_state(id, "Running", RUN)).collect();
    let engine_before = started_at(&c);
    assert_eq!(engine_before.len(), 4);

    c.manager_mut().kill();
    c.restart_manager();

    // every task is back at once, with its state, node and container
    for (id, was) in ids.iter().zip(&before) {
        let now = c.get_task(id);
        for field in ["state", "node", "container_id", "desired_state", "created_at", "started_at"] {
            assert_eq!(now[field], was[field], "{field} of {id}");
        }
    }
    c.wait_nodes_up();
    // after the workers have been heard from, nothing was restarted or recreated
    wait_for("a poll after the restart", Duration::from_secs(10), || {
        c.nodes().iter().all(|n| n["last_contact"].is_string()).then_some(())
    });
    assert_eq!(started_at(&c), engine_before, "same containers, same start times");
    assert_one_container_per_running_task(&c);

    // stop and get work on tasks created before the restart
    let (status, _) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{}", ids[0])), None);
    assert_eq!(status, 202);
    c.wait_state(&ids[0], "Stopped", RUN);
    wait_for("the stopped container to go", RUN, || (c.containers().len() == 3).then_some(()));
    assert_one_container_per_running_task(&c);
}

#[test]
fn pending_tasks_are_placed_after_a_restart_and_a_memory_worker_adopts_its_containers() {
    let opts = ClusterOptions { workers: 1, manager_store: "persisted", ..ClusterOptions::default() };
    let mut c = Cluster::start("pending_after_restart", opts);
    c.wait_nodes_up();
    let running: Vec<String> = (0..2).map(|i| c.submit(&sleeper(&format!("s{i}")))).collect();
    for id in &running {
        c.wait_state(id, "Running", RUN);
    }
    let engine_before = started_at(&c);

    // the only worker dies; a task submitted now waits
    c.workers[0].kill();
    wait_for("the worker to be down", Duration::from_secs(15), || (c.nodes()[0]["status"] == "down").then_some(()));
    let pending = c.submit(&sleeper("late"));
    assert_eq!(c.get_task(&pending)["state"], "Pending");

    // the manager dies too; both come back (the worker with an empty memory store)
    c.manager_mut().kill();
    c.restart_worker(0);
    c.restart_manager();

    c.wait_state(&pending, "Running", RUN);
    for id in &running {
        assert_eq!(c.get_task(id)["state"], "Running");
    }
    let engine_after = started_at(&c);
    for (id, started) in &engine_before {
        assert_eq!(engine_after.get(id), Some(started), "container {id} kept running untouched");
    }
    assert_eq!(engine_after.len(), 3);
    assert_one_container_per_running_task(&c);
}

#[test]
fn worker_restart_with_a_persisted_store_readopts_without_restarting() {
    // finished tasks keep no container here (the output retention has tests of its own)
    let opts = ClusterOptions {
        workers: 1,
        worker_store: "persisted",
        worker_args: strings(&["--keep-containers", "0"]),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("worker_restart", opts);
    c.wait_nodes_up();
    let ids: Vec<String> = (0..3).map(|i| c.submit(&sleeper(&format!("s{i}")))).collect();
    let short = c.submit(&json!({"name": "short", "image": IMAGE, "cmd": ["sh", "-c", "sleep 2; exit 4"]}));
    for id in &ids {
        c.wait_state(id, "Running", RUN);
    }
    let short_task = c.wait_state(&short, "Running", RUN);
    let engine_before = started_at(&c);

    c.workers[0].kill();
    // while the worker is away, the short task ends
    let container = short_task["container_id"].as_str().expect("container").to_string();
    wait_for("the short task to exit", RUN, || (docker_inspect(&container)["State"]["Running"] == false).then_some(()));
    c.restart_worker(0);

    let (status, list) = http("GET", &c.worker_url(0, "/v1/tasks"), None);
    assert_eq!(status, 200);
    let listed = list.as_array().expect("list");
    assert_eq!(listed.len(), 4, "the store gave back every task: {list}");
    let t = c.wait_state(&short, "Failed", RUN);
    assert_eq!(t["exit_code"], 4, "an exit missed while down is seen after the restart");
    for id in &ids {
        assert_eq!(c.get_task(id)["state"], "Running");
    }
    wait_for("the finished container to be removed", RUN, || (c.containers().len() == 3).then_some(()));
    let engine_after = started_at(&c);
    for id in engine_after.keys() {
        assert_eq!(engine_after.get(id), engine_before.get(id), "container {id} was not restarted");
    }
    assert_one_container_per_running_task(&c);

    let (status, _) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{}", ids[0])), None);
    assert_eq!(status, 202);
    c.wait_state(&ids[0], "Stopped", RUN);
}

#[test]
fn a_worker_back_without_its_engine_keeps_its_tasks_and_later_readopts_them() {
    let mut c = Cluster::start("worker_without_engine", ClusterOptions::default());
    c.wait_nodes_up();
    let ids: Vec<String> = (0..2).map(|i| c.submit(&sleeper(&format!("s{i}")))).collect();
    let tasks: Vec<Value> = ids.iter().map(|id| c.wait_state(id, "Running", RUN)).collect();
    let first = c.worker_names[0].clone();
    let mine = tasks.iter().find(|t| t["node"] == first.as_str()).expect("a task on the first worker").clone();
    let id = mine["id"].as_str().expect("id").to_string();

    // the worker comes back, but cannot reach its engine: it cannot say what runs
    c.workers[0].kill();
    c.restart_worker_with(0, &["--docker-socket", "/nonexistent/docker.sock"]);
    let contact = |c: &Cluster| c.nodes()[0]["last_contact"].as_str().unwrap_or_default().to_string();
    let mut seen = contact(&c);
    for _ in 0..3 {
        seen = wait_for("a poll of the worker", Duration::from_secs(10), || Some(contact(&c)).filter(|x| *x != seen));
    }
    let now = c.get_task(&id);
    assert_eq!((now["state"].as_str(), now["node"].as_str()), (Some("Running"), Some(first.as_str())), "not moved");
    assert_eq!(c.nodes()[0]["engine_reachable"], false);

    // with its engine back, it takes its container again: one container for the task, the same one
    c.workers[0].kill();
    c.restart_worker(0);
    wait_for("the worker to list the task again", RUN, || {
        let (_, list) = http("GET", &c.worker_url(0, "/v1/tasks"), None);
        list.as_array().is_some_and(|l| l.iter().any(|t| t["id"] == id.as_str())).then_some(())
    });
    let copies: Vec<_> = c.containers().into_iter().filter(|s| s.labels["skiff.task-id"] == id).collect();
    assert_eq!(copies.len(), 1, "exactly one container for the task");
    assert_eq!(copies[0].id, mine["container_id"].as_str().expect("container id"));
    assert_eq!(c.get_task(&id)["state"], "Running");
    assert_one_container_per_running_task(&c);
}

/// `write_bytes` of /proc/PID/io: bytes this process sent towards storage.
fn write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).expect("write_bytes")
}

/// Size and modification time of every file in the data directory.
fn data_files(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .expect("data dir")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            (e.file_name().to_string_lossy().to_string(), (meta.len(), meta.modified().expect("mtime")))
        })
        .collect()
}

#[test]
fn nothing_is_written_when_nothing_changes() {
    let opts = ClusterOptions {
        workers: 1,
        manager_store: "persisted",
        worker_store: "persisted",
        manager_args: strings(&["--poll-interval-ms", "100", "--node-timeout-ms", "2000"]),
        worker_args: strings(&["--sync-interval-ms", "100"]),
        ..ClusterOptions::default()
    };
    let c = Cluster::start("idle_writes", opts);
    c.wait_nodes_up();
    let ids: Vec<String> = (0..3).map(|i| c.submit(&sleeper(&format!("s{i}")))).collect();
    for id in &ids {
        c.wait_state(id, "Running", RUN);
    }
    // let the first polls and syncs after the starts settle
    let contacts = |c: &Cluster| c.nodes()[0]["last_contact"].as_str().unwrap_or_default().to_string();
    let mut seen = contacts(&c);
    for _ in 0..5 {
        seen = wait_for("another poll", Duration::from_secs(5), || Some(contacts(&c)).filter(|x| *x != seen));
    }
    let data = c.dir.join("data");
    let files_before = data_files(&data);
    let manager_pid = c.manager().child.id();
    let worker_pid = c.workers[0].child.id();
    let (m0, w0) = (write_bytes(manager_pid), write_bytes(worker_pid));

    // twenty polls of the worker (and as many syncs of the engine) with nothing changing
    for _ in 0..20 {
        seen = wait_for("another poll", Duration::from_secs(5), || Some(contacts(&c)).filter(|x| *x != seen));
    }
    assert_eq!(data_files(&data), files_before, "database files unchanged");
    assert_eq!(write_bytes(manager_pid) - m0, 0, "manager wrote to storage");
    assert_eq!(write_bytes(worker_pid) - w0, 0, "worker wrote to storage");
}

/// Runs a daemon expected to refuse to start; returns its stderr.
fn refused(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} must not start: {stderr}");
    stderr
}

#[test]
fn bad_data_directories_and_files_stop_the_daemons_at_start() {
    let dir = std::env::temp_dir().join(format!("skiff-bad-data-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let manager = env!("CARGO_BIN_EXE_manager");
    let worker = env!("CARGO_BIN_EXE_worker");

    // a data directory that cannot be created
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let under_file = file.join("data");
    let err = refused(manager, &["-p", "0", "-st", "persisted", "--data-dir", under_file.to_str().expect("utf-8")]);
    assert!(err.contains("cannot create the data directory"), "{err}");

    // one that cannot be written (root may write anywhere but /sys)
    // SAFETY: geteuid has no preconditions.
    let unwritable = if unsafe { libc::geteuid() } == 0 {
        std::path::PathBuf::from("/sys")
    } else {
        let d = dir.join("read-only");
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o555)).expect("chmod");
        d
    };
    let err =
        refused(worker, &["-n", "w", "-p", "0", "-st", "persisted", "--data-dir", unwritable.to_str().expect("utf-8")]);
    assert!(err.contains("cannot open the store"), "{err}");

    // a corrupt file is refused and left as it was
    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).expect("dir");
    let garbage = vec![0x5au8; 4096];
    std::fs::write(corrupt.join("manager.db"), &garbage).expect("write");
    let err = refused(manager, &["-p", "0", "-st", "persisted", "--data-dir", corrupt.to_str().expect("utf-8")]);
    assert!(err.contains("not an SQLite database"), "{err}");
    assert_eq!(std::fs::read(corrupt.join("manager.db")).expect("read"), garbage, "left untouched");

    // a store from a newer schema is refused
    let newer = dir.join("newer");
    std::fs::create_dir_all(&newer).expect("dir");
    {
        let store = skiff::store::SqliteStore::open(&newer.join("worker-w.db")).expect("opens");
        drop(store);
        let conn = rusqlite::Connection::open(newer.join("worker-w.db")).expect("raw");
        conn.pragma_update(None, "user_version", 7).expect("bump");
    }
    let err =
        refused(worker, &["-n", "w", "-p", "0", "-st", "persisted", "--data-dir", newer.to_str().expect("utf-8")]);
    assert!(err.contains("newer Skiff"), "{err}");

    let _ = std::fs::remove_dir_all(&dir);
}
