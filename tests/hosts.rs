//! A cluster of real hosts on one machine (`scripts/hosts.sh`): three network namespaces, each
//! with its own address and Docker Engine, a worker bound to that address, and the manager in
//! the root namespace. The tests split the network, cut the manager off, restart and crash an
//! engine, have workers join at the addresses they advertise, and run a short soak of random
//! faults against a service with an invariant checker. They need root, and fail (never skip) when
//! the hosts cannot be built.
//!
//! `cargo test --test hosts -- --test-threads=1 --nocapture` prints the figures;
//! `SKIFF_SOAK_SECS=600` makes the soak a long one, `SKIFF_SOAK_SEED=N` replays one.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;
#[path = "common/hosts.rs"]
mod hosts;

// In a module of their own so that CI can run them as a step of their own, and skip them in
// the general `cargo test` (`--skip multi_host::`).
mod multi_host {
    use super::common::*;
    use super::hosts::*;
    use serde_json::{json, Value};
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    /// The manager's default node timeout (`--node-timeout-ms`), which the bounds below build on.
    const NODE_TIMEOUT: Duration = Duration::from_secs(4);
    /// A start on a loaded 2-core machine (the start benchmark measures about 0.4 s when idle).
    const START: Duration = Duration::from_secs(15);
    const RUN: Duration = Duration::from_secs(60);

    fn web(name: &str, mode: &str) -> Value {
        json!({
            "name": name, "image": IMAGE, "memory_mb": 16,
            "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "ports": [{"container": 8080}],
            "restart_policy": {"mode": mode, "max_restarts": 1000}
        })
    }

    fn sleeper(name: &str, mode: &str) -> Value {
        json!({
            "name": name, "image": IMAGE, "memory_mb": 16, "cmd": ["sleep", "3600"],
            "restart_policy": {"mode": mode, "max_restarts": 1000}
        })
    }

    fn host_port(t: &Value) -> u16 {
        t["ports"][0]["host"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or_else(|| panic!("no port: {t}"))
    }

    /// Waits until every task is Running, each with exactly one running container in the cluster,
    /// on the node the manager says, with the container id the manager says. Returns the records.
    fn wait_settled(c: &HostCluster, ids: &[String], limit: Duration) -> Vec<Value> {
        wait_for("every task Running with exactly one container, where the manager says", limit, || settled(c, ids))
    }

    fn settled(c: &HostCluster, ids: &[String]) -> Option<Vec<Value>> {
        let copies = c.running_copies();
        let tasks: Vec<Value> = ids.iter().map(|id| c.task(id)).collect();
        let ok = tasks.iter().all(|t| {
            let Some(node) = t["node"].as_str() else { return false };
            let here = copies.get(t["id"].as_str().unwrap_or_default()).map(Vec::as_slice).unwrap_or_default();
            t["state"] == "Running" && here.len() == 1 && here[0].0 == c.host_of(node) && t["container_id"] == here[0].1
        });
        // no container of a task that is not ours either
        let strays = copies.keys().filter(|k| !ids.contains(k)).count();
        (ok && strays == 0).then_some(tasks)
    }

    #[test]
    fn a_services_replicas_go_to_different_hosts_and_answer_there() {
        let c = HostCluster::start("service_spread", HostOptions::default());
        let service = json!({
            "name": "web",
            "replicas": 3,
            "template": {
                "image": "skiff/busybox:latest",
                "cmd": ["sh", "-c", "hostname > /www/id.txt; exec httpd -f -p 8080 -h /www"],
                "memory_mb": 16,
                "ports": [{"container": 8080}]
            }
        });
        let (status, v) = http("POST", &c.url("/v1/services"), Some(service.to_string().as_bytes()));
        assert_eq!(status, 201, "{v}");
        let replicas = wait_for("three replicas Running", RUN, || {
            let (_, v) = http("GET", &c.url("/v1/tasks?service=web&state=Running"), None);
            let tasks = v.as_array().cloned().unwrap_or_default();
            (tasks.len() == 3).then_some(tasks)
        });
        let nodes: BTreeSet<&str> = replicas.iter().filter_map(|t| t["node"].as_str()).collect();
        assert_eq!(nodes.len(), 3, "one replica per host: {nodes:?}");
        for t in &replicas {
            let i = c.host_of(t["node"].as_str().expect("node"));
            let container = t["container_id"].as_str().expect("container");
            let body = wait_for("the replica to answer at its host's address", START, || {
                probe(&c.hosts[i].addr, host_port(t), "/id.txt")
            });
            assert_eq!(body.trim(), &container[..12], "{}: this replica's container", c.hosts[i].addr);
        }
    }

    #[test]
    fn tasks_spread_over_three_hosts_answer_at_their_own_hosts_address() {
        let c = HostCluster::start("spread", HostOptions::default());
        let ids: Vec<String> = (0..3).map(|i| c.submit(&web_with_id(&format!("web{i}")))).collect();
        let tasks = wait_settled(&c, &ids, RUN);

        let nodes: BTreeSet<&str> = tasks.iter().filter_map(|t| t["node"].as_str()).collect();
        assert_eq!(nodes.len(), 3, "one task per host: {nodes:?}");
        for t in &tasks {
            let i = c.host_of(t["node"].as_str().expect("node"));
            let port = host_port(t);
            let container = t["container_id"].as_str().expect("container");
            let body = wait_for("the task to answer at its host's address", START, || {
                probe(&c.hosts[i].addr, port, "/id.txt")
            });
            assert_eq!(body.trim(), &container[..12], "{}:{port} is this task's container", c.hosts[i].addr);
            // published on its own host only: the same port elsewhere is closed or another container
            for (j, other) in c.hosts.iter().enumerate() {
                if j != i {
                    let there = probe(&other.addr, port, "/id.txt");
                    assert!(
                        there.as_deref().map(str::trim) != Some(&container[..12]),
                        "{}:{port} answers too",
                        other.addr
                    );
                }
            }
            // the container lives in its own host's engine and in no other
            let container = t["container_id"].as_str().expect("container");
            assert_eq!(c.inspect(i, container)["Config"]["Labels"]["skiff.node"], c.hosts[i].name.as_str());
        }

        // the manager's view: each node by name at the address it dials
        let nodes = c.nodes();
        for h in &c.hosts {
            let n = nodes
                .iter()
                .find(|n| n["name"] == h.name.as_str())
                .unwrap_or_else(|| panic!("{h_name}", h_name = h.name));
            assert_eq!(n["address"], h.worker_addr().as_str());
            assert_eq!(n["status"], "up");
            assert_eq!(n["tasks"], 1);
        }
        let out = client(&c, &["list-nodes"]);
        for h in &c.hosts {
            assert!(out.contains(&h.worker_addr()), "list-nodes shows {}:\n{out}", h.worker_addr());
        }
        // the URL `get` prints is at the node's address, and it answers with this task's container
        for t in &tasks {
            let i = c.host_of(t["node"].as_str().expect("node"));
            let container = t["container_id"].as_str().expect("container");
            assert_url_answers(&c, t["id"].as_str().expect("id"), &c.hosts[i].addr, host_port(t), &container[..12]);
        }
    }

    /// The URLs `client get ID` prints (the `urls` field and its continuation lines).
    fn urls_of(c: &HostCluster, id: &str) -> Vec<String> {
        let out = client(c, &["get", id]);
        let mut urls = Vec::new();
        let mut in_urls = false;
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("urls") {
                in_urls = true;
                urls.push(rest.trim().to_string());
            } else if in_urls && line.starts_with(' ') && line.trim().starts_with("http://") {
                urls.push(line.trim().to_string());
            } else {
                in_urls = false;
            }
        }
        urls
    }

    /// `client get ID` prints exactly `http://ADDR:PORT`, and a GET of it answers with the
    /// container's own id (what the tasks of these tests serve at `/id.txt`).
    fn assert_url_answers(c: &HostCluster, id: &str, addr: &str, port: u16, container: &str) {
        let urls = urls_of(c, id);
        let want = format!("http://{addr}:{port}");
        assert_eq!(urls, std::slice::from_ref(&want), "client get {id} prints the task's URL");
        let (host, port) = want.trim_start_matches("http://").rsplit_once(':').expect("HOST:PORT");
        let port: u16 = port.parse().expect("a port");
        let body = wait_for("the task's URL to answer", START, || probe(host, port, "/id.txt"));
        assert_eq!(body.trim(), container, "{want} is this task's container");
    }

    /// A web task that serves its own hostname (its container id's first 12 characters) at
    /// /id.txt, so that an answer tells which container gave it.
    fn web_with_id(name: &str) -> Value {
        let mut s = web(name, "on-failure");
        s["cmd"] = json!(["sh", "-c", "hostname > /www/id.txt; exec httpd -f -p 8080 -h /www"]);
        s
    }

    #[test]
    fn workers_that_join_are_dialled_at_their_advertised_address_and_their_tasks_answer_there() {
        // no -w: the manager knows only what the workers tell it; skiff-h2 advertises a second
        // address of its host (`--advertise`), the others the address they reach the manager from
        let c =
            HostCluster::start("join", HostOptions { join: true, advertise_second: vec![1], ..HostOptions::default() });
        let nodes = c.nodes();
        assert_eq!(nodes.len(), c.hosts.len(), "one node per joined worker: {nodes:?}");
        for (i, h) in c.hosts.iter().enumerate() {
            let n = nodes.iter().find(|n| n["name"] == h.name.as_str()).unwrap_or_else(|| panic!("{} joined", h.name));
            let want = if i == 1 {
                let second = h.second_addr.as_deref().expect("a second address");
                assert_ne!(second, h.addr, "the advertised address is not the default one");
                format!("{second}:{}", h.worker_port)
            } else {
                // the default: the host's namespace address (10.213.0.1N), the worker's port
                format!("10.213.0.{}:{}", 11 + i, h.worker_port)
            };
            assert_eq!(n["address"], want.as_str(), "{}'s address as the manager knows it: {n}", h.name);
            assert_eq!(want, h.advertised());
            assert_eq!(n["status"], "up");
        }
        let out = client(&c, &["list-nodes"]);
        for h in &c.hosts {
            assert!(out.contains(&h.advertised()), "list-nodes shows {}:\n{out}", h.advertised());
        }
        // a task on each host: its published port answers at the address the node advertised
        let ids: Vec<String> = (0..3).map(|i| c.submit(&web_with_id(&format!("web{i}")))).collect();
        let tasks = wait_settled(&c, &ids, RUN);
        let on: BTreeSet<&str> = tasks.iter().filter_map(|t| t["node"].as_str()).collect();
        assert_eq!(on.len(), 3, "one task per host: {on:?}");
        for t in &tasks {
            let h = &c.hosts[c.host_of(t["node"].as_str().expect("node"))];
            let container = t["container_id"].as_str().expect("container");
            assert_url_answers(&c, t["id"].as_str().expect("id"), h.advertised_ip(), host_port(t), &container[..12]);
        }
    }

    /// Runs the client binary against the cluster's manager; its stdout.
    fn client(c: &HostCluster, args: &[&str]) -> String {
        let (host, port) = c.manager_addr.rsplit_once(':').expect("addr");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
            .env("SKIFF_TOKEN", TOKEN)
            .args(["--host", host, "-p", port])
            .args(args)
            .output()
            .expect("client runs");
        assert!(out.status.success(), "client {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_host_cut_off_loses_its_tasks_to_the_others_and_its_stale_copies_go_when_it_heals() {
        let c = HostCluster::start("cut_off", HostOptions::default());
        let ids: Vec<String> = (0..6).map(|i| c.submit(&web(&format!("web{i}"), "on-failure"))).collect();
        let before = wait_settled(&c, &ids, RUN);
        let cut = 0;
        let victims: Vec<&Value> = before.iter().filter(|t| t["node"] == c.hosts[cut].name.as_str()).collect();
        assert_eq!(victims.len(), 2, "two of the six tasks on each host");

        c.cut(cut);
        let t0 = Instant::now();
        assert!(probe(&c.hosts[cut].addr, host_port(victims[0]), "/").is_none(), "the host is cut off");
        let moved = wait_for("the cut-off host's tasks Running elsewhere", NODE_TIMEOUT + START, || {
            let now: Vec<Value> = victims.iter().map(|t| c.task(t["id"].as_str().expect("id"))).collect();
            now.iter().all(|t| t["state"] == "Running" && t["node"] != c.hosts[cut].name.as_str()).then_some(now)
        });
        let failover = t0.elapsed();
        println!("cut off: its {} tasks Running on other hosts {failover:.1?} after the cut", victims.len());
        for t in &moved {
            let i = c.host_of(t["node"].as_str().expect("node"));
            let port = host_port(t);
            wait_for("the moved task to answer at its new host", START, || probe(&c.hosts[i].addr, port, "/"));
            assert_eq!(t["restart_count"], 0, "a move is not a restart: {t}");
        }
        // while it is cut off, the host's engine still runs the old copies: two copies of each
        let copies = c.running_copies();
        for t in &victims {
            let here = &copies[t["id"].as_str().expect("id")];
            assert!(here.iter().any(|(i, _)| *i == cut), "the stale copy still runs on the cut-off host");
        }

        c.heal(cut);
        let t1 = Instant::now();
        c.wait_nodes_up(RUN);
        let after = wait_settled(&c, &ids, RUN);
        println!("healed: one container per task {:.1?} after the heal", t1.elapsed());
        // nothing of the moved tasks is left on the healed host, not even a stopped container
        // (one being removed when the copies settled is given the moment its removal takes)
        wait_for("no stale copy left on the healed host", START, || {
            let all = c.all_copies();
            victims
                .iter()
                .all(|t| all.get(t["id"].as_str().unwrap_or_default()).is_none_or(|v| v.iter().all(|(i, _)| *i != cut)))
                .then_some(())
        });
        // the tasks that did not move did not restart, and the moved ones did not move again
        for (b, a) in before.iter().zip(&after) {
            if b["node"] != c.hosts[cut].name.as_str() {
                assert_eq!(a["container_id"], b["container_id"], "untouched task kept its container: {a}");
            }
            assert_eq!(a["restart_count"], 0, "{a}");
        }
        for t in &moved {
            let now = c.task(t["id"].as_str().expect("id"));
            assert_eq!(now["container_id"], t["container_id"], "moved once, not twice: {now}");
        }
    }

    #[test]
    fn a_manager_cut_off_every_worker_for_30_s_restarts_moves_and_duplicates_nothing() {
        let c = HostCluster::start("manager_cut", HostOptions::default());
        let ids: Vec<String> = (0..6).map(|i| c.submit(&sleeper(&format!("s{i}"), "on-failure"))).collect();
        let before = wait_settled(&c, &ids, RUN);
        let started: Vec<Value> = before
            .iter()
            .map(|t| {
                let i = c.host_of(t["node"].as_str().expect("node"));
                c.inspect(i, t["container_id"].as_str().expect("container"))["State"]["StartedAt"].clone()
            })
            .collect();

        for i in 0..c.hosts.len() {
            c.cut_manager(i);
        }
        let t0 = Instant::now();
        wait_for("the manager to see every worker down", NODE_TIMEOUT + START, || {
            c.nodes().iter().all(|n| n["status"] == "down").then_some(())
        });
        // meanwhile a container fails: its worker restarts it on its own
        let victim = &before[1];
        let vi = c.host_of(victim["node"].as_str().expect("node"));
        let vc = victim["container_id"].as_str().expect("container");
        c.docker_kill(vi, vc);
        wait_for("the worker to restart the killed container by itself", START, || {
            let s = c.inspect(vi, vc)["State"].clone();
            (s["Running"] == true && s["StartedAt"] != started[1]).then_some(())
        });
        // the tasks keep running on their hosts, every one of them, once each
        let copies = c.running_copies();
        assert_eq!(copies.len(), ids.len(), "every task still runs: {copies:?}");
        assert!(copies.values().all(|v| v.len() == 1), "{copies:?}");
        let cut_for = Duration::from_secs(30);
        let left = cut_for.saturating_sub(t0.elapsed());
        // hold the partition for its 30 s, checking that nothing runs twice meanwhile
        let end = Instant::now() + left;
        while Instant::now() < end {
            let copies = c.running_copies();
            assert!(copies.values().all(|v| v.len() == 1), "a task runs twice during the partition: {copies:?}");
            std::thread::sleep(Duration::from_secs(1));
        }

        for i in 0..c.hosts.len() {
            c.heal(i);
        }
        let t1 = Instant::now();
        c.wait_nodes_up(RUN);
        let after = wait_settled(&c, &ids, RUN);
        // Every worker kept its tasks running through the cut: once they all answer, each task is
        // taken back where it runs; the first worker to answer does not take the others' tasks
        // (the manager waits for every node's report after all were down), so nothing moves.
        let mut moved = 0;
        for (k, (b, a)) in before.iter().zip(&after).enumerate() {
            let placements = a["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter(|e| e["to"] == "Scheduled" && e["at"].as_str() > b["started_at"].as_str())
                .count();
            assert!(placements <= 1, "moved at most once: {a}");
            if a["node"] != b["node"] {
                // a new container: its record starts again from zero restarts
                assert_eq!(a["restart_count"], 0, "a move is not a restart: {a}");
                moved += 1;
                continue;
            }
            let expected = if k == 1 { 1 } else { 0 };
            assert_eq!(a["restart_count"], expected, "only the killed container restarted: {a}");
            assert_eq!(a["container_id"], b["container_id"], "a task that did not move kept its container: {a}");
            let i = c.host_of(a["node"].as_str().expect("node"));
            let now = c.inspect(i, a["container_id"].as_str().expect("container"))["State"]["StartedAt"].clone();
            if k != 1 {
                assert_eq!(now, started[k], "not restarted: {a}");
            }
        }
        println!(
            "manager cut off for {:.1?}; one container per task {:.1?} after the heal; {moved} of {} tasks moved",
            t1 - t0,
            t1.elapsed(),
            ids.len()
        );
        assert_eq!(moved, 0, "nothing moves when only the manager was cut off");
        let all = c.all_copies();
        assert!(all.values().all(|v| v.len() == 1), "one container per task, no stopped leftovers: {all:?}");
    }

    /// The worker's view of its tasks against its engine's: every task it calls Running has its
    /// container running there, and every running `skiff` container there is such a task's.
    fn worker_matches_engine(c: &HostCluster, i: usize) -> Result<(), String> {
        let (status, v) = http("GET", &c.worker_url(i, "/v1/tasks"), None);
        if status != 200 {
            return Err(format!("worker answered {status}"));
        }
        let running: BTreeMap<String, String> = v
            .as_array()
            .ok_or("not a list")?
            .iter()
            .filter(|t| t["state"] == "Running")
            .map(|t| {
                (
                    t["container_id"].as_str().unwrap_or_default().to_string(),
                    t["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let engine: BTreeMap<String, String> = c.hosts[i]
            .containers()
            .ok_or("engine away")?
            .into_iter()
            .filter(|s| s.state == "running")
            .map(|s| (s.id, s.labels.get("skiff.task-id").cloned().unwrap_or_default()))
            .collect();
        if running == engine {
            Ok(())
        } else {
            Err(format!("worker says {running:?}, engine runs {engine:?}"))
        }
    }

    /// A task's placements (its `Scheduled` events) at or after `since`.
    fn placements_since(t: &Value, since: skiff::time::Timestamp) -> usize {
        t["events"].as_array().map_or(0, |es| {
            es.iter()
                .filter(|e| {
                    e["to"] == "Scheduled"
                        && e["at"].as_str().and_then(skiff::time::Timestamp::parse).is_some_and(|at| at >= since)
                })
                .count()
        })
    }

    #[test]
    fn tasks_come_back_per_their_restart_policy_after_their_hosts_engine_restarts() {
        let c = HostCluster::start("engine_restart", HostOptions::default());
        // round-robin puts tasks k, k+3, k+6 on the same host: each host gets one of each mode
        let modes = ["always", "on-failure", "never", "on-failure", "never", "always", "never", "always", "on-failure"];
        let ids: Vec<String> = modes.iter().enumerate().map(|(k, m)| c.submit(&sleeper(&format!("s{k}"), m))).collect();
        let before = wait_settled(&c, &ids, RUN);
        let h = 0;
        let on_h: Vec<usize> = (0..ids.len()).filter(|&k| before[k]["node"] == c.hosts[h].name.as_str()).collect();
        let mut got: Vec<&str> = on_h.iter().map(|&k| modes[k]).collect();
        got.sort();
        assert_eq!(got, ["always", "never", "on-failure"], "one task of each mode on {}", c.hosts[h].name);

        let stopped_at = skiff::time::Timestamp::now();
        c.engine_stop(h, false);
        let t0 = Instant::now();
        wait_for("the worker to see its engine away", RUN, || {
            let n = c.nodes().into_iter().find(|n| n["name"] == c.hosts[h].name.as_str())?;
            (n["engine_reachable"] == false).then_some(())
        });
        c.engine_start(h);
        let t1 = Instant::now();
        let back = wait_for("the restartable tasks to run again and the other to fail", RUN, || {
            let now: Vec<Value> = ids.iter().map(|id| c.task(id)).collect();
            on_h.iter()
                .all(|&k| match modes[k] {
                    "never" => now[k]["state"] == "Failed",
                    _ => now[k]["state"] == "Running" && now[k]["error"].is_null(),
                })
                .then_some(now)
        });
        println!(
            "engine of {} stopped for {:.1?}; its tasks back per policy {:.1?} after it started again",
            c.hosts[h].name,
            t1 - t0,
            t1.elapsed()
        );
        for &k in &on_h {
            let t = &back[k];
            println!(
                "  {} ({}): {} on {}, restart_count {}",
                t["name"], modes[k], t["state"], t["node"], t["restart_count"]
            );
            // the node stays up (its worker answers) while its engine restarts: nothing moves
            assert_eq!(t["node"], c.hosts[h].name.as_str(), "back on its own host: {t}");
            assert_eq!(placements_since(t, stopped_at), 0, "not placed again: {t}");
            if modes[k] != "never" {
                assert!(t["restart_count"].as_u64() >= Some(1), "restarted in place, and counted: {t}");
            }
        }
        let never = &back[on_h.iter().copied().find(|&k| modes[k] == "never").expect("a never task")];
        assert!(never["exit_code"].as_i64().is_some_and(|c| c != 0), "the exit is recorded: {never}");
        // the other hosts' tasks ran through
        for (k, b) in before.iter().enumerate() {
            if !on_h.contains(&k) {
                assert_eq!(back[k]["container_id"], b["container_id"], "{}", back[k]);
                assert_eq!(back[k]["restart_count"], 0, "{}", back[k]);
            }
        }
        // one container per running task; the failed one runs nowhere
        let running: Vec<String> =
            (0..ids.len()).filter(|&k| back[k]["state"] == "Running").map(|k| ids[k].clone()).collect();
        wait_settled(&c, &running, RUN);
        let copies = c.running_copies();
        assert!(!copies.contains_key(never["id"].as_str().expect("id")), "the never task runs nowhere: {copies:?}");
        for i in 0..c.hosts.len() {
            wait_for("the worker's view to match its engine", RUN, || worker_matches_engine(&c, i).ok());
        }
    }

    /// An engine killed (SIGKILL, as a crash: no container is stopped by it) under running tasks:
    /// the node stays up with its engine unreachable and nothing moves off it meanwhile (the
    /// worker answers; only its engine is away); once the engine is back, each task is back per
    /// its restart policy, on its own host, and the worker's view matches the engine.
    #[test]
    fn tasks_come_back_per_their_restart_policy_after_their_hosts_engine_crashes() {
        let c = HostCluster::start("engine_crash", HostOptions::default());
        let modes = ["always", "on-failure", "never", "on-failure", "never", "always", "never", "always", "on-failure"];
        let ids: Vec<String> = modes.iter().enumerate().map(|(k, m)| c.submit(&sleeper(&format!("s{k}"), m))).collect();
        let before = wait_settled(&c, &ids, RUN);
        let h = 1;
        let on_h: Vec<usize> = (0..ids.len()).filter(|&k| before[k]["node"] == c.hosts[h].name.as_str()).collect();
        let mut got: Vec<&str> = on_h.iter().map(|&k| modes[k]).collect();
        got.sort();
        assert_eq!(got, ["always", "never", "on-failure"], "one task of each mode on {}", c.hosts[h].name);

        let crashed_at = skiff::time::Timestamp::now();
        c.engine_stop(h, true);
        let t0 = Instant::now();
        wait_for("the worker to see its engine away", RUN, || {
            let n = c.nodes().into_iter().find(|n| n["name"] == c.hosts[h].name.as_str())?;
            (n["engine_reachable"] == false).then_some(())
        });
        let seen_away = t0.elapsed();
        // hold the crash past the node timeout: the node is up (its worker answers), so its tasks
        // stay where they are, marked unconfirmed
        let end = Instant::now() + NODE_TIMEOUT + Duration::from_secs(2);
        while Instant::now() < end {
            let n = c.nodes().into_iter().find(|n| n["name"] == c.hosts[h].name.as_str()).expect("the node");
            assert_eq!(n["status"], "up", "a node whose engine crashed is still up: {n}");
            for &k in &on_h {
                let t = c.task(&ids[k]);
                assert_eq!(t["node"], c.hosts[h].name.as_str(), "nothing moves while only the engine is away: {t}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        c.engine_start(h);
        let t1 = Instant::now();
        let back = wait_for("the restartable tasks to run again and the never one to fail", RUN, || {
            let now: Vec<Value> = ids.iter().map(|id| c.task(id)).collect();
            on_h.iter()
                .all(|&k| match modes[k] {
                    "never" => now[k]["state"] == "Failed",
                    _ => now[k]["state"] == "Running" && now[k]["error"].is_null(),
                })
                .then_some(now)
        });
        let recovered = t1.elapsed();
        println!(
            "engine of {} killed: seen away {seen_away:.1?} after, down for {:.1?}; its tasks back per policy \
             {recovered:.1?} after it started again",
            c.hosts[h].name,
            t1 - t0
        );
        for &k in &on_h {
            let t = &back[k];
            println!(
                "  {} ({}): {} on {}, restart_count {}",
                t["name"], modes[k], t["state"], t["node"], t["restart_count"]
            );
            assert_eq!(t["node"], c.hosts[h].name.as_str(), "back on its own host: {t}");
            assert_eq!(placements_since(t, crashed_at), 0, "not placed again: {t}");
            if modes[k] != "never" {
                assert!(t["restart_count"].as_u64() >= Some(1), "restarted in place, and counted: {t}");
            }
        }
        let never = &back[on_h.iter().copied().find(|&k| modes[k] == "never").expect("a never task")];
        assert!(never["exit_code"].as_i64().is_some_and(|c| c != 0), "the exit is recorded: {never}");
        for (k, b) in before.iter().enumerate() {
            if !on_h.contains(&k) {
                assert_eq!(back[k]["container_id"], b["container_id"], "{}", back[k]);
                assert_eq!(back[k]["restart_count"], 0, "{}", back[k]);
            }
        }
        let running: Vec<String> =
            (0..ids.len()).filter(|&k| back[k]["state"] == "Running").map(|k| ids[k].clone()).collect();
        wait_settled(&c, &running, RUN);
        for i in 0..c.hosts.len() {
            wait_for("the worker's view to match its engine", RUN, || worker_matches_engine(&c, i).ok());
        }
    }

    /// xorshift64*: random faults that a seed replays.
    struct Rng(u64);

    impl Rng {
        /// xorshift stays at 0 from 0: a seed of 0 is taken as a fixed other one.
        fn new(seed: u64) -> Rng {
            Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
        }

        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fault {
        CutHost,
        CutManager,
        KillWorker,
        PauseWorker,
        RestartEngine,
        CrashEngine,
    }

    const FAULTS: [Fault; 6] = [
        Fault::CutHost,
        Fault::CutManager,
        Fault::KillWorker,
        Fault::PauseWorker,
        Fault::RestartEngine,
        Fault::CrashEngine,
    ];

    impl Fault {
        /// Whether only the host's engine is away during this fault (its worker answers).
        fn of_engine(self) -> bool {
            matches!(self, Fault::RestartEngine | Fault::CrashEngine)
        }

        /// Whether the manager loses the worker (and moves its tasks) during this fault.
        fn moves_tasks(self) -> bool {
            matches!(self, Fault::CutHost | Fault::CutManager | Fault::KillWorker | Fault::PauseWorker)
        }

        fn inject(self, c: &mut HostCluster, h: usize) {
            match self {
                Fault::CutHost => c.cut(h),
                Fault::CutManager => c.cut_manager(h),
                Fault::KillWorker => c.kill_worker(h),
                Fault::PauseWorker => c.pause_worker(h, true),
                Fault::RestartEngine => c.engine_stop(h, false),
                Fault::CrashEngine => c.engine_stop(h, true),
            }
        }

        fn heal(self, c: &mut HostCluster, h: usize) {
            match self {
                Fault::CutHost | Fault::CutManager => c.heal(h),
                Fault::KillWorker => c.start_worker(h),
                Fault::PauseWorker => c.pause_worker(h, false),
                Fault::RestartEngine | Fault::CrashEngine => c.engine_start(h),
            }
        }
    }

    /// The soak's service: web replicas, restarted in place whatever their exit, so that none
    /// should ever end (a replica replaced by a new task would be one the faults lost).
    const SOAK_REPLICAS: usize = 6;

    fn soak_service() -> Value {
        json!({
            "name": "soak",
            "replicas": SOAK_REPLICAS,
            "template": {
                "image": IMAGE, "memory_mb": 16,
                "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": [{"container": 8080}],
                "restart_policy": {"mode": "always", "max_restarts": 1000}
            }
        })
    }

    /// The soak service's tasks, as the manager lists them.
    fn replicas(c: &HostCluster) -> Vec<Value> {
        let (status, v) = http("GET", &c.url("/v1/tasks?service=soak"), None);
        assert_eq!(status, 200, "replicas: {v}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// A replica the service still counts: wanted running and not finished.
    fn live(t: &Value) -> bool {
        t["desired_state"] == "running"
            && !["Failed", "Stopped", "Completed"].contains(&t["state"].as_str().unwrap_or_default())
    }

    fn live_ids(tasks: &[Value]) -> Vec<String> {
        tasks.iter().filter(|t| live(t)).filter_map(|t| t["id"].as_str()).map(str::to_string).collect()
    }

    /// The service's count restored: as many live replicas as it wants, every one Running per the
    /// manager with its container running where the manager says. (Extra copies are the sampler's
    /// business.)
    fn restored(c: &HostCluster) -> bool {
        let tasks = replicas(c);
        let ids = live_ids(&tasks);
        let copies = c.running_copies();
        ids.len() == SOAK_REPLICAS
            && ids.iter().all(|id| {
                let Some(t) = tasks.iter().find(|t| t["id"] == id.as_str()) else { return false };
                let Some(node) = t["node"].as_str() else { return false };
                let h = c.host_of(node);
                t["state"] == "Running"
                    && copies
                        .get(id)
                        .is_some_and(|v| v.iter().any(|(i, cid)| *i == h && t["container_id"] == cid.as_str()))
            })
    }

    /// Every replica Running per the manager on a host other than `h`, with a copy running there.
    fn all_running_off(c: &HostCluster, h: usize) -> bool {
        let tasks = replicas(c);
        let ids = live_ids(&tasks);
        let copies = c.running_copies();
        ids.len() == SOAK_REPLICAS
            && ids.iter().all(|id| {
                let Some(t) = tasks.iter().find(|t| t["id"] == id.as_str()) else { return false };
                let off = t["node"].as_str().is_some_and(|n| n != c.hosts[h].name);
                off && t["state"] == "Running" && copies.get(id).is_some_and(|v| v.iter().any(|(i, _)| *i != h))
            })
    }

    /// What the checker counts over the whole soak.
    #[derive(Default, Debug)]
    struct Tally {
        samples: u32,
        /// samples taken after a heal's `DUP_GRACE`, before the next fault (where any second copy
        /// is a violation)
        calm_samples: u32,
        /// the replicas the service started with
        initial: BTreeSet<String>,
        /// second copies excused while a fault on a host holds: the faulted host's stale copy (its
        /// container is not the one the manager records for the task, which runs elsewhere)
        duplicates_during_fault: u32,
        /// second copies excused within `DUP_GRACE` of a heal: the healed host's stale copy, which
        /// is being stopped
        duplicates_after_heal_in_grace: u32,
        /// any other second copy (two copies the manager may take for the task's, one on a host the
        /// fault did not touch, one after the grace or with no fault on): a violation (the first
        /// few are kept as evidence)
        duplicate_violations: u32,
        duplicate_examples: Vec<String>,
        /// samples in which the faulted engine did not answer during its own fault (expected)
        engine_away_in_its_fault: u32,
        /// samples in which an engine did not answer, through the sample's retries, outside a
        /// fault of that engine: a violation (its copies could not be counted)
        unreadable_violations: Vec<String>,
        /// samples where fewer replicas than wanted were Running (per the manager)
        short_samples: u32,
        /// samples where the service counted more live replicas than it wants: a violation
        too_many_samples: u32,
        /// replicas that ended or are no longer wanted, with how: violations
        lost: BTreeMap<String, String>,
        /// tasks of the service that are none of the initial replicas: each replaced one that
        /// ended, so a violation too
        replacements: BTreeSet<String>,
        /// placements of replicas after a fault (moves to another host)
        moves: u32,
        /// a replica placed more than once for one fault: a violation, with the fault
        moved_twice: Vec<String>,
        /// faults that should have moved the host's replicas where they did not all run elsewhere
        /// within `FAILOVER_BOUND` while the fault held: violations
        no_failover: Vec<String>,
    }

    /// After a heal, the time a stale copy may still run: the manager's next poll, then SIGTERM and
    /// the worker's stop grace (2 s), on a loaded machine.
    const DUP_GRACE: Duration = Duration::from_secs(10);
    /// After a heal's grace, how long the checker samples before the next fault, every second copy
    /// a violation there: at least the grace itself, and a margin.
    const CALM: Duration = Duration::from_secs(12);
    /// After a heal, when the service's count must be restored and each replica have one container.
    const RECOVERY: Duration = Duration::from_secs(60);
    /// From a fault that silences a worker to its replicas Running elsewhere: the node timeout,
    /// a start on a loaded machine, and a margin for the sampling and the manager's poll.
    const FAILOVER_BOUND: Duration = Duration::from_secs(4 + 15 + 6);
    /// How long a sample reads again when what it read looks like a violation (a second copy not
    /// excused, an engine that did not answer): the engines and the manager are read one after the
    /// other, so a move caught between the two readings can look like two copies for a moment.
    const SAMPLE_RETRY: Duration = Duration::from_secs(3);

    /// What one reading of the engines and the manager found wrong, and what it excused.
    #[derive(Default)]
    struct Reading {
        excused: u32,
        engine_away_in_its_fault: u32,
        duplicates: Vec<String>,
        unreadable: Vec<String>,
    }

    /// Reads the engines, then the manager's records, and sorts every second copy: excused only
    /// where it is the stale copy on the host the phase names (a container on that host other
    /// than the one the manager records for the task); any other is a violation. An engine that
    /// does not answer is a violation too, unless it is the one whose fault holds.
    fn read_once(c: &HostCluster, phase: Phase) -> Reading {
        let (copies, unreadable) = c.read_running_copies();
        let tasks = replicas(c);
        let mut r = Reading::default();
        for i in unreadable {
            match phase {
                Phase::Fault { host, engine: true } if host == i => r.engine_away_in_its_fault += 1,
                _ => r.unreadable.push(format!("the engine of {} did not answer, {}", c.hosts[i].name, phase.says())),
            }
        }
        let stale_host = match phase {
            Phase::Fault { host, .. } => Some(host),
            Phase::Healed { host, at } if at.elapsed() <= DUP_GRACE => Some(host),
            Phase::Healed { .. } | Phase::Calm => None,
        };
        for (id, where_) in copies.iter().filter(|(_, v)| v.len() > 1) {
            let recorded = tasks.iter().find(|t| t["id"] == id.as_str()).map(|t| t["container_id"].clone());
            let stale = |i: usize, cid: &str| {
                Some(i) == stale_host && recorded.as_ref().is_some_and(|r| r.as_str() != Some(cid))
            };
            let others = where_.iter().filter(|(i, cid)| !stale(*i, cid)).count();
            if others <= 1 {
                r.excused += 1;
            } else {
                let names: Vec<(&str, &str)> =
                    where_.iter().map(|(i, cid)| (c.hosts[*i].name.as_str(), &cid[..12])).collect();
                r.duplicates.push(format!("{id} on {names:?} (recorded {recorded:?}), {}", phase.says()));
            }
        }
        r
    }

    fn sample(c: &HostCluster, phase: Phase, tally: &mut Tally) {
        tally.samples += 1;
        if matches!(phase, Phase::Healed { at, .. } if at.elapsed() > DUP_GRACE) {
            tally.calm_samples += 1;
        }
        let tasks = replicas(c);
        for id in &tally.initial {
            if !tasks.iter().any(|t| t["id"] == id.as_str()) {
                tally.lost.insert(id.clone(), "missing".into());
            }
        }
        for t in &tasks {
            let id = t["id"].as_str().unwrap_or_default().to_string();
            if !tally.initial.contains(&id) {
                tally.replacements.insert(id.clone());
            }
            if !live(t) {
                tally
                    .lost
                    .entry(id)
                    .or_insert_with(|| format!("{} ({}, wanted {})", t["state"], t["error"], t["desired_state"]));
            }
        }
        let ids = live_ids(&tasks);
        if ids.len() > SOAK_REPLICAS {
            tally.too_many_samples += 1;
        }
        let running = tasks.iter().filter(|t| live(t) && t["state"] == "Running").count();
        if running < SOAK_REPLICAS {
            tally.short_samples += 1;
        }
        // what looks wrong is read again until the retries run out: only what persists counts
        let deadline = Instant::now() + SAMPLE_RETRY;
        let r = loop {
            let r = read_once(c, phase);
            if (r.duplicates.is_empty() && r.unreadable.is_empty()) || Instant::now() >= deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        match phase {
            Phase::Fault { .. } => tally.duplicates_during_fault += r.excused,
            Phase::Healed { .. } | Phase::Calm => tally.duplicates_after_heal_in_grace += r.excused,
        }
        tally.engine_away_in_its_fault += r.engine_away_in_its_fault;
        tally.duplicate_violations += r.duplicates.len() as u32;
        for d in r.duplicates {
            if tally.duplicate_examples.len() < 3 {
                tally.duplicate_examples.push(d);
            }
        }
        tally.unreadable_violations.extend(r.unreadable);
    }

    /// Placements of each replica since `since` (its `Scheduled` events); counted into the tally,
    /// a replica placed twice for one fault noted with `what`. Returns the fault's moves.
    fn count_moves(c: &HostCluster, since: skiff::time::Timestamp, what: &str, tally: &mut Tally) -> u32 {
        let mut moves = 0;
        for t in replicas(c) {
            let placed = t["events"]
                .as_array()
                .map(|es| {
                    es.iter()
                        .filter(|e| {
                            e["to"] == "Scheduled"
                                && e["at"]
                                    .as_str()
                                    .and_then(skiff::time::Timestamp::parse)
                                    .is_some_and(|at| at >= since)
                        })
                        .count()
                })
                .unwrap_or(0);
            moves += placed as u32;
            if placed > 1 {
                tally.moved_twice.push(format!("{} placed {placed} times for {what}", t["id"]));
            }
        }
        tally.moves += moves;
        moves
    }

    /// When a sample is taken: while a fault on a host holds (`engine`: a fault of its engine),
    /// after its heal, or with none.
    #[derive(Clone, Copy)]
    enum Phase {
        Fault { host: usize, engine: bool },
        Healed { host: usize, at: Instant },
        Calm,
    }

    impl Phase {
        fn says(self) -> String {
            match self {
                Phase::Fault { host, .. } => format!("during a fault on host {}", host + 1),
                Phase::Healed { host, at } => format!("{:.1?} after the heal of host {}", at.elapsed(), host + 1),
                Phase::Calm => "with no fault on".to_string(),
            }
        }
    }

    #[test]
    fn a_soak_of_random_faults_keeps_a_services_count_and_one_copy_per_replica_and_loses_none() {
        let secs: u64 = std::env::var("SKIFF_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
        let seed: u64 = std::env::var("SKIFF_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1
        });
        println!("soak: {secs} s, SKIFF_SOAK_SEED={seed}{}", if seed == 0 { " (xorshift needs another)" } else { "" });
        let mut c = HostCluster::start("soak", HostOptions::default());
        let (status, v) = http("POST", &c.url("/v1/services"), Some(soak_service().to_string().as_bytes()));
        assert_eq!(status, 201, "{v}");
        let ids = wait_for("the service's replicas Running", RUN, || {
            let ids = live_ids(&replicas(&c));
            (ids.len() == SOAK_REPLICAS && restored(&c)).then_some(ids)
        });
        let first = wait_settled(&c, &ids, RUN);
        let spread: BTreeSet<&str> = first.iter().filter_map(|t| t["node"].as_str()).collect();
        assert_eq!(spread.len(), 3, "the replicas spread over the three hosts: {first:?}");

        let mut rng = Rng::new(seed);
        let mut tally = Tally { initial: ids.iter().cloned().collect(), ..Tally::default() };
        let mut figures: Vec<(Fault, String, Duration, Option<Duration>)> = Vec::new();
        let mut failovers: Vec<(Fault, Duration)> = Vec::new();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            // a fault on a host that runs nothing tests nothing: pick among those that run replicas
            let busy: Vec<usize> = {
                let tasks = replicas(&c);
                (0..c.hosts.len())
                    .filter(|&i| tasks.iter().any(|t| live(t) && t["node"] == c.hosts[i].name.as_str()))
                    .collect()
            };
            let h = busy[rng.below(busy.len() as u64) as usize];
            let hold = Duration::from_secs(5 + rng.below(8));
            let at = skiff::time::Timestamp::now();
            fault.inject(&mut c, h);
            let injected = Instant::now();
            let what = format!("{fault:?} on {}", c.hosts[h].name);
            // the checker samples once a second while the fault holds; a fault that silences a
            // worker makes its replicas move, and the failover is when they all run elsewhere: such
            // a fault is held until then, or until the bound runs out (a violation)
            let mut failover = None;
            let until = injected + hold;
            let phase = Phase::Fault { host: h, engine: fault.of_engine() };
            loop {
                let awaiting = fault.moves_tasks() && failover.is_none() && injected.elapsed() < FAILOVER_BOUND;
                if Instant::now() >= until && !awaiting {
                    break;
                }
                sample(&c, phase, &mut tally);
                if fault.moves_tasks() && failover.is_none() && all_running_off(&c, h) {
                    failover = Some(injected.elapsed());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            if fault.moves_tasks() && failover.is_none() {
                tally.no_failover.push(format!("{what}: not all Running elsewhere within {FAILOVER_BOUND:?}"));
            }
            fault.heal(&mut c, h);
            let healed = Instant::now();
            // the service's count restored, then one copy per replica; the checker goes on through
            // the grace and a calm window after it (where any second copy is a violation) before
            // the next fault
            let (mut recovered, mut single) = (None, None);
            let calm_until = healed + DUP_GRACE + CALM;
            while healed.elapsed() < RECOVERY {
                sample(&c, Phase::Healed { host: h, at: healed }, &mut tally);
                if recovered.is_none() && restored(&c) {
                    recovered = Some(healed.elapsed());
                }
                let ids = live_ids(&replicas(&c));
                if single.is_none() && ids.len() == SOAK_REPLICAS && settled(&c, &ids).is_some() {
                    single = Some(healed.elapsed());
                }
                if recovered.is_some() && Instant::now() >= calm_until {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            let moves = count_moves(&c, at, &what, &mut tally);
            println!(
                "  {what} for {hold:.0?}: {}{moves} moved; count restored {}; one copy each {}",
                failover.map_or(String::new(), |d| format!("replicas Running elsewhere {d:.1?} after the fault; ")),
                recovered.map_or("NOT within the bound".to_string(), |d| format!("{d:.1?} after the heal")),
                single.map_or("NOT yet".to_string(), |d| format!("{d:.1?} after the heal"))
            );
            if let Some(d) = failover {
                failovers.push((fault, d));
            }
            figures.push((fault, c.hosts[h].name.clone(), hold, recovered));
            if recovered.is_none() {
                break;
            }
        }
        // a last look, with no fault on: one container per replica and the workers agree with engines
        sample(&c, Phase::Calm, &mut tally);
        println!(
            "soak: {} faults, {} samples ({} in the calm after a heal's grace); second copies excused as the \
             stale one: {} during a fault, {} within {DUP_GRACE:?} of a heal; other second copies (violations): {}; \
             engine away in its own fault: {} samples; unreadable engine otherwise (violations): {}; \
             failovers missed (violations): {}; samples with fewer than {SOAK_REPLICAS} Running: {}; \
             samples with more than {SOAK_REPLICAS} live: {}; replicas lost: {}; replaced: {}; moves: {}; \
             placed twice for one fault: {}",
            figures.len(),
            tally.samples,
            tally.calm_samples,
            tally.duplicates_during_fault,
            tally.duplicates_after_heal_in_grace,
            tally.duplicate_violations,
            tally.engine_away_in_its_fault,
            tally.unreadable_violations.len(),
            tally.no_failover.len(),
            tally.short_samples,
            tally.too_many_samples,
            tally.lost.len(),
            tally.replacements.len(),
            tally.moves,
            tally.moved_twice.len()
        );
        let recoveries: Vec<Duration> = figures.iter().filter_map(|f| f.3).collect();
        if let Some(worst) = recoveries.iter().max() {
            let mean = recoveries.iter().sum::<Duration>() / recoveries.len() as u32;
            println!("soak: count restored after a heal: mean {mean:.1?}, worst {worst:.1?}");
        }
        for fault in FAULTS {
            let of: Vec<Duration> = failovers.iter().filter(|f| f.0 == fault).map(|f| f.1).collect();
            if let (Some(lo), Some(hi)) = (of.iter().min(), of.iter().max()) {
                println!(
                    "soak: failover after {fault:?} ({} times, sampled each second): {lo:.1?} to {hi:.1?}",
                    of.len()
                );
            }
            let rec: Vec<Duration> = figures.iter().filter(|f| f.0 == fault).filter_map(|f| f.3).collect();
            if let (Some(lo), Some(hi)) = (rec.iter().min(), rec.iter().max()) {
                println!("soak: count restored after {fault:?} healed ({} times): {lo:.1?} to {hi:.1?}", rec.len());
            }
        }
        assert!(tally.lost.is_empty(), "replicas lost: {:?}", tally.lost);
        assert!(tally.replacements.is_empty(), "replicas replaced by new tasks: {:?}", tally.replacements);
        assert!(tally.moved_twice.is_empty(), "{:?}", tally.moved_twice);
        assert_eq!(tally.too_many_samples, 0, "the service counted more replicas than it wants");
        assert_eq!(tally.duplicate_violations, 0, "second copies not excused: {:?}", tally.duplicate_examples);
        assert!(tally.unreadable_violations.is_empty(), "{:?}", tally.unreadable_violations);
        assert!(tally.no_failover.is_empty(), "faults whose replicas did not fail over: {:?}", tally.no_failover);
        assert!(
            figures.iter().all(|f| f.3.is_some()),
            "a fault was not recovered from within {RECOVERY:?}: {figures:?}"
        );
        for i in 0..c.hosts.len() {
            wait_for("the worker's view to match its engine", RUN, || worker_matches_engine(&c, i).ok());
        }
    }

    /// A worker killed with `kill -9` (its engine and containers run on): its replicas Running on
    /// the other hosts within the failover bound, the others untouched; restarted, it stops its
    /// stale copies, so that each replica has one container, placed once.
    #[test]
    fn a_killed_workers_replicas_run_elsewhere_and_once_each_when_it_is_back() {
        let mut c = HostCluster::start("worker_kill", HostOptions::default());
        let (status, v) = http("POST", &c.url("/v1/services"), Some(soak_service().to_string().as_bytes()));
        assert_eq!(status, 201, "{v}");
        let ids = wait_for("the service's replicas Running", RUN, || {
            let ids = live_ids(&replicas(&c));
            (ids.len() == SOAK_REPLICAS && restored(&c)).then_some(ids)
        });
        let before = wait_settled(&c, &ids, RUN);
        let h = 0;
        let victims: Vec<&str> =
            before.iter().filter(|t| t["node"] == c.hosts[h].name.as_str()).filter_map(|t| t["id"].as_str()).collect();
        assert_eq!(victims.len(), 2, "two of the six replicas on each host: {before:?}");

        let killed_at = skiff::time::Timestamp::now();
        c.kill_worker(h);
        let t0 = Instant::now();
        wait_for("the killed worker's replicas Running on the other hosts", FAILOVER_BOUND, || {
            all_running_off(&c, h).then_some(())
        });
        println!("worker of {} killed: its replicas Running elsewhere {:.1?} after", c.hosts[h].name, t0.elapsed());
        // nothing stopped the old containers: each victim runs twice, its stale copy on the host
        let copies = c.running_copies();
        for id in &victims {
            let on: Vec<usize> = copies[*id].iter().map(|(i, _)| *i).collect();
            assert!(on.len() == 2 && on.contains(&h), "{id}: its stale copy and the new one: {on:?}");
        }

        c.start_worker(h);
        let t1 = Instant::now();
        c.wait_nodes_up(RUN);
        let after = wait_settled(&c, &ids, RUN);
        println!("worker of {} back: one copy each {:.1?} after its start", c.hosts[h].name, t1.elapsed());
        for (b, a) in before.iter().zip(&after) {
            let moved = victims.contains(&a["id"].as_str().unwrap_or_default());
            assert_eq!(placements_since(a, killed_at), usize::from(moved), "placed once if it moved: {a}");
            if moved {
                assert_ne!(a["node"], c.hosts[h].name.as_str(), "not moved back: {a}");
            } else {
                assert_eq!(a["container_id"], b["container_id"], "untouched: {a}");
            }
        }
        wait_for("no stale copy left on the restarted worker's host", START, || {
            let all = c.all_copies();
            victims.iter().all(|id| all.get(*id).is_none_or(|v| v.iter().all(|(i, _)| *i != h))).then_some(())
        });
    }

    /// The shortest path to a copy that is never stopped: a task moved off the same host a second
    /// time. Two hosts, so the moves are forced: h1 → h2 → h1 → h2, each by pausing the host it runs on.
    #[test]
    fn a_task_moved_off_the_same_host_twice_leaves_no_copy_there() {
        let c = HostCluster::start("moved_twice", HostOptions { hosts: 2, ..HostOptions::default() });
        let id = c.submit(&sleeper("nomad", "always"));
        let mut t = wait_settled(&c, std::slice::from_ref(&id), RUN).remove(0);
        for round in 1..=3 {
            let from = c.host_of(t["node"].as_str().expect("node"));
            c.pause_worker(from, true);
            let paused = Instant::now();
            t = wait_for("the task to run on the other host", NODE_TIMEOUT + START, || {
                let now = c.task(&id);
                (now["state"] == "Running" && now["node"] != c.hosts[from].name.as_str()).then_some(now)
            });
            println!("round {round}: moved off {} {:.1?} after the pause", c.hosts[from].name, paused.elapsed());
            c.pause_worker(from, false);
            let resumed = Instant::now();
            wait_for(
                &format!("round {round}: the stale copy on {} to be stopped", c.hosts[from].name),
                Duration::from_secs(30),
                || settled(&c, std::slice::from_ref(&id)),
            );
            println!("round {round}: one copy {:.1?} after the resume", resumed.elapsed());
        }
    }

    /// Builds an app image on h1 and copies it to h2 and h3 through the manager's side
    /// (`manager::copy_image`, h1's export streamed into each one's import); a task of it placed
    /// on h2 (h1 and h3 drained) answers at h2's address, h3's engine has the same image, and
    /// h1's is untouched. The images go with the hosts' data directories when the harness ends.
    #[test]
    fn an_image_built_on_one_host_is_copied_to_the_others_and_runs_there() {
        use skiff::manager::{copy_image, WorkerLink};
        let c = HostCluster::start("image_copy", HostOptions::default());
        c.wait_nodes_up(RUN);
        let app = format!("copied{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let tag = format!("skiff-app/{app}:v1");
        let dockerfile = format!("FROM {IMAGE}\nCOPY index.html /www/\nCMD exec httpd -f -p 8080 -h /www\n");
        let mut tar = tar::Builder::new(Vec::new());
        for (path, text) in [("Dockerfile", dockerfile.as_str()), ("index.html", app.as_str())] {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, text.as_bytes()).expect("append");
        }
        let tar = tar.into_inner().expect("tar");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent();
        let url = c.worker_url(0, &format!("/v1/builds?tag={tag}&app={app}&version=1"));
        let mut resp = agent
            .post(&url)
            .header("Content-Type", "application/x-tar")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send(&tar[..])
            .expect("the build answers");
        let log = resp.body_mut().read_to_string().expect("the build's stream");
        assert!(log.lines().last().is_some_and(|l| l.contains(&tag)), "{log}");
        let original = c.hosts[0].docker.image_id(&tag).expect("h1's engine").expect("built on h1");
        assert_eq!(c.hosts[1].docker.image_id(&tag).expect("h2's engine"), None, "not on h2 before the copy");

        let token = skiff::auth::Token::new(TOKEN).expect("a token");
        let links: Vec<skiff::http::HttpWorkerLink> =
            c.hosts.iter().map(|h| skiff::http::HttpWorkerLink::new(&h.worker_addr(), Some(&token))).collect();
        for to in [1, 2] {
            let copied = copy_image(&links[0], &links[to], &tag, Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("copy to {}: {e}", links[to].address()));
            println!(
                "copy h1 -> {}: {} bytes in {:.2?} ({:.1} MB/s)",
                c.hosts[to].name,
                copied.bytes,
                copied.took,
                copied.bytes as f64 / copied.took.as_secs_f64() / 1e6
            );
            assert_eq!(copied.loaded.images[0].tag, tag);
            assert_eq!(copied.loaded.images[0].id, original, "the same image on {}", c.hosts[to].name);
            assert_eq!(copied.bytes, copied.loaded.bytes, "every byte exported was loaded");
        }
        assert_eq!(c.hosts[2].docker.image_id(&tag).expect("h3's engine"), Some(original.clone()));
        assert_eq!(c.hosts[0].docker.image_id(&tag).expect("h1's engine"), Some(original), "h1's is untouched");

        for i in [0, 2] {
            let path = format!("/v1/nodes/{}/drain", c.hosts[i].name);
            let (status, v) = http("POST", &c.url(&path), None);
            assert_eq!(status, 200, "drain {}: {v}", c.hosts[i].name);
        }
        let spec = json!({
            "name": "copied", "image": tag, "memory_mb": 16, "ports": [{"container": 8080}]
        });
        let id = c.submit(&spec);
        let t = wait_settled(&c, std::slice::from_ref(&id), RUN).remove(0);
        assert_eq!(t["node"], c.hosts[1].name.as_str(), "placed on h2: {t}");
        let page =
            wait_for("the task to answer at h2's address", START, || probe(&c.hosts[1].addr, host_port(&t), "/"));
        assert_eq!(page, app);
    }
}
