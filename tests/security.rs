//! Nobody gets in without the token, bad input never hurts, hostile clients never take the
//! daemons down: each attack is replayed against the real manager and worker, which must then
//! still answer normal requests promptly.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// A normal request answered, and quickly, after an attack.
fn assert_answers_promptly(addr: &str, what: &str) {
    let started = Instant::now();
    let (status, _) = http("GET", &format!("http://{addr}/v1/tasks"), None);
    let took = started.elapsed();
    assert_eq!(status, 200, "{what}: a normal request after the attack");
    assert!(took < Duration::from_secs(1), "{what}: a normal request took {took:?}");
}

/// Writes raw bytes and reads the answer until the server closes or `limit` passes.
fn raw(addr: &str, bytes: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// The manager's and the worker's addresses and pids.
fn daemons(c: &Cluster) -> Vec<(String, u32, &'static str)> {
    vec![
        (c.manager().addr.clone(), c.manager().child.id(), "manager"),
        (c.workers[0].addr.clone(), c.workers[0].child.id(), "worker"),
    ]
}

#[test]
fn every_route_but_health_needs_the_token_and_the_token_is_never_logged() {
    let c = Cluster::start("auth", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up(); // the manager reaches the worker with the token
    let id = "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b";
    let wrong = "wrong-token-but-long-enough-0000";
    for (addr, _, who) in daemons(&c) {
        for (method, path) in [
            ("GET", "/v1/tasks".to_string()),
            ("POST", "/v1/tasks".into()),
            ("GET", format!("/v1/tasks/{id}")),
            ("DELETE", format!("/v1/tasks/{id}")),
            ("GET", "/v1/nodes".into()),
            ("GET", "/v1/stats".into()),
            ("GET", "/nowhere".into()),
        ] {
            let url = format!("http://{addr}{path}");
            for token in [None, Some(wrong)] {
                let (status, body) = http_as(method, &url, Some(b"{}"), token);
                assert_eq!(status, 401, "{who} {method} {path} with {token:?}");
                let v: serde_json::Value = serde_json::from_slice(&body).expect("error shape");
                assert!(v["error"].as_str().is_some_and(|e| e.contains("token")), "{v}");
            }
        }
        let (status, _) = http_as("GET", &format!("http://{addr}/v1/health"), None, None);
        assert_eq!(status, 200, "{who}: health needs no token");
        let (status, _) = http_as("GET", &format!("http://{addr}/v1/tasks"), None, Some(TOKEN));
        assert_eq!(status, 200, "{who}: the right token");
    }
    // a client without the token is told so
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--host", "127.0.0.1", "-p", &c.manager().port().to_string(), "list"])
        .env_remove("SKIFF_TOKEN")
        .output()
        .expect("client");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    // refusals are logged, tokens are not
    for entry in std::fs::read_dir(&c.dir).expect("logs") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).expect("log");
            assert!(!text.contains(TOKEN) && !text.contains(wrong), "a token in {}", path.display());
        }
    }
    let manager_log = std::fs::read_to_string(&c.manager().log).expect("log");
    assert!(manager_log.contains("unauthorized requests refused"), "refusals are logged");
}

#[test]
fn without_a_token_daemons_keep_to_loopback_and_token_files_must_be_private() {
    let manager = env!("CARGO_BIN_EXE_manager");
    let out =
        Command::new(manager).args(["-p", "0", "--bind", "0.0.0.0"]).env_remove("SKIFF_TOKEN").output().expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without a token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["-n", "w", "-p", "0", "--bind", "10.1.2.3"])
        .env_remove("SKIFF_TOKEN")
        .output()
        .expect("runs");
    assert!(!out.status.success());

    let dir = std::env::temp_dir().join(format!("skiff-token-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("token");
    std::fs::write(&file, TOKEN).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out =
        Command::new(manager).args(["-p", "0", "--token-file", file.to_str().expect("utf-8")]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by others"));
    let out = Command::new(manager).args(["-p", "0"]).env("SKIFF_TOKEN", "short").output().expect("runs");
    assert!(!out.status.success(), "a weak token is refused");
    let _ = std::fs::remove_dir_all(&dir);

    // by default, without a token, it listens on loopback and says so
    let mut child = Command::new(manager)
        .args(["-p", "0"])
        .env_remove("SKIFF_TOKEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let mut err = String::new();
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    // whole lines, up to the one that says where it listens
    for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
        err.push_str(&line);
        err.push('\n');
        if line.contains("manager listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(err.contains("listening on loopback only"), "{err}");
    assert!(err.contains("addr=127.0.0.1:"), "{err}");
}

#[test]
fn specs_cannot_ask_for_privileges_host_mounts_host_network_or_devices() {
    let c = Cluster::start("no_privileges", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (field, value) in [
        ("privileged", json!(true)),
        ("volumes", json!(["/:/host"])),
        ("binds", json!(["/etc:/etc"])),
        ("network_mode", json!("host")),
        ("devices", json!(["/dev/sda"])),
        ("cap_add", json!(["SYS_ADMIN"])),
        ("pid_mode", json!("host")),
        ("user", json!("root")),
    ] {
        let mut spec = json!({"name": "sneaky", "image": IMAGE});
        spec[field] = value;
        let (status, v) = http("POST", &c.manager_url("/v1/tasks"), Some(spec.to_string().as_bytes()));
        assert_eq!(status, 400, "{field}");
        assert_eq!(v["field"], field);
        let body = json!({"id": "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b", "spec": spec}).to_string();
        let (status, v) = http("POST", &c.worker_url(0, "/v1/tasks"), Some(body.as_bytes()));
        assert_eq!(status, 400, "worker: {field}");
        assert_eq!(v["field"], format!("spec.{field}"));
    }
    assert!(c.containers().is_empty());
}

#[test]
fn a_huge_declared_body_is_refused_without_harm() {
    let c = Cluster::start("hazard_huge_body", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        let attack = format!("POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000000000000\r\n\r\n{{}}");
        let out = raw(&addr, attack.as_bytes(), Duration::from_secs(5));
        assert!(out.starts_with("HTTP/1.1 413"), "{who}: {out}");
        assert_answers_promptly(&addr, who);
    }
}

#[test]
fn requests_that_declare_a_gigabyte_and_send_nine_bytes_block_nothing() {
    let c = Cluster::start("hazard_stalled_bodies", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        // more than the server has threads
        let mut held = Vec::new();
        for _ in 0..40 {
            let mut s = TcpStream::connect(&addr).expect("connect");
            let attack = format!("POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000000\r\n\r\nnine byte");
            s.write_all(attack.as_bytes()).expect("write");
            held.push(s);
        }
        assert_answers_promptly(&addr, who);
        for mut s in held {
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut first = [0u8; 12];
            s.read_exact(&mut first).expect("an answer");
            assert_eq!(&first, b"HTTP/1.1 413", "{who}");
        }
    }
}

#[test]
fn endless_header_lines_are_cut_short_without_memory_growth() {
    let c = Cluster::start("hazard_header_line", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, pid, who) in daemons(&c) {
        let before = rss_kb(pid);
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"GET /v1/tasks HTTP/1.1\r\nX-Long: ").expect("write");
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        // up to 200 MiB, until the server stops reading and closes
        while sent < 200 << 20 {
            match s.write(&chunk) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        assert!(sent < 200 << 20, "{who} kept reading a 200 MiB header line");
        let after = rss_kb(pid);
        assert!(after < before + 20 * 1024, "{who}: RSS grew from {before} kB to {after} kB");
        assert_answers_promptly(&addr, who);
    }
}

#[test]
fn idle_and_slow_connections_cannot_pin_the_server() {
    let c = Cluster::start("hazard_slow_clients", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        // many idle connections, as keep-alive clients leave them
        let idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
        assert_answers_promptly(&addr, &format!("{who} with 100 idle connections"));
        drop(idle);
        // more one-byte requests than the server has threads
        let trickles: Vec<TcpStream> = (0..40)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).expect("connect");
                s.write_all(b"G").expect("write");
                s
            })
            .collect();
        assert_answers_promptly(&addr, &format!("{who} with 40 partly sent requests"));
        drop(trickles);
        // slowloris: a byte of header now and then
        let mut slow = TcpStream::connect(&addr).expect("connect");
        slow.write_all(b"GET /v1/tasks HTTP/1.1\r\n").expect("write");
        assert_answers_promptly(&addr, &format!("{who} with a slow client"));
        // the slow one is cut off at the request deadline (10 s) with 408, not held forever
        slow.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer);
        assert!(
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
            "{who}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert!(started.elapsed() < Duration::from_secs(12));
    }
}

#[test]
fn a_burst_of_connections_is_served_and_connection_close_is_honoured() {
    let c = Cluster::start("hazard_burst", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        let request =
            format!("GET /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
        let mut conns: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
        for s in &mut conns {
            s.write_all(request.as_bytes()).expect("write");
        }
        let mut served = 0;
        for mut s in conns {
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut answer = Vec::new();
            // Connection: close: the server closes after answering, so this read ends
            s.read_to_end(&mut answer).expect("the server closes the connection");
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 200"), "{who}: every connection is served: {text}");
            assert!(text.contains("Connection: close"), "{who}: {text}");
            served += 1;
        }
        assert_eq!(served, 300);
        assert_answers_promptly(&addr, who);
    }
}

#[test]
fn sigterm_answers_requests_in_flight_and_leaves_containers_running() {
    let mut c = Cluster::start("graceful", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    let keep = c.submit(&json!({"name": "keep", "image": IMAGE, "cmd": ["sleep", "300"]}));
    c.wait_state(&keep, "Running", Duration::from_secs(30));
    // a stop that takes its full grace period (sleep as PID 1 ignores SIGTERM... under an init
    // it does not: use a shell that traps it) is in flight when the worker is told to go
    let slow =
        c.submit(&json!({"name": "slow", "image": IMAGE, "cmd": ["sh", "-c", "trap '' TERM; sleep 300 & wait"]}));
    c.wait_state(&slow, "Running", Duration::from_secs(30));
    let url = c.worker_url(0, &format!("/v1/tasks/{slow}"));
    let in_flight = std::thread::spawn(move || http("DELETE", &url, None));
    // wait until the worker has begun the stop, then send SIGTERM
    wait_for("the stop to be under way", Duration::from_secs(10), || {
        let (_, t) = http("GET", &c.worker_url(0, &format!("/v1/tasks/{slow}")), None);
        (t["desired_state"] == "stopped").then_some(())
    });
    let status = c.workers[0].terminate();
    assert!(status.success(), "the worker exits 0: {status}");
    let (code, answer) = in_flight.join().expect("the request returns");
    assert_eq!(code, 200, "the request in flight was answered: {answer}");
    assert_eq!(answer["state"], "Stopped");
    let running: Vec<_> = c.containers().into_iter().filter(|s| s.state == "running").collect();
    assert_eq!(running.len(), 1, "the other task's container outlives the worker process");
}

/// The head and the body of an answer read whole (the request asks to close).
fn head_and_body(answer: &str) -> (&str, &str) {
    answer.split_once("\r\n\r\n").unwrap_or((answer, ""))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(": ").filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

#[test]
fn a_head_ending_in_bare_newlines_is_answered_at_once_not_after_the_deadline() {
    let c = Cluster::start("http_bare_lf", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        let started = Instant::now();
        let out = raw(&addr, b"GET /v1/health HTTP/1.1\nHost: x\nConnection: close\n\n", Duration::from_secs(12));
        assert!(out.starts_with("HTTP/1.1 200"), "{who}: {out}");
        assert!(started.elapsed() < Duration::from_secs(2), "{who}: answered after {:?}", started.elapsed());
    }
}

#[test]
fn every_answer_has_a_date_and_http_1_1_needs_a_host() {
    let c = Cluster::start("http_date_host", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        for request in [
            "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
            "GET /v1/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), // 401
            format!("GET /nowhere HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
            "BROKEN\r\n\r\n".into(),
        ] {
            let out = raw(&addr, request.as_bytes(), Duration::from_secs(5));
            let (head, _) = head_and_body(&out);
            let date = header(head, "Date").unwrap_or_else(|| panic!("{who}: no Date in {head}"));
            // IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
            let parts: Vec<&str> = date.split(' ').collect();
            assert_eq!(parts.len(), 6, "{who}: {date}");
            assert!(parts[0].len() == 4 && parts[0].ends_with(','), "{who}: {date}");
            assert!(
                parts[1].len() == 2 && parts[3].len() == 4 && parts[4].len() == 8 && parts[5] == "GMT",
                "{who}: {date}"
            );
        }
        let out = raw(&addr, b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n", Duration::from_secs(5));
        assert!(out.starts_with("HTTP/1.1 400"), "{who}: HTTP/1.1 without Host: {out}");
        let (_, body) = head_and_body(&out);
        let v: serde_json::Value = serde_json::from_str(body).expect("the error shape");
        assert!(v["error"].as_str().is_some_and(|e| e.contains("Host")), "{who}: {v}");
        let out = raw(&addr, b"GET /v1/health HTTP/1.0\r\n\r\n", Duration::from_secs(5));
        assert!(out.starts_with("HTTP/1.1 200"), "{who}: HTTP/1.0 needs no Host: {out}");
    }
}

#[test]
fn absolute_form_targets_are_routed_like_their_path() {
    let c = Cluster::start("http_absolute_form", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (addr, _, who) in daemons(&c) {
        let request = format!(
            "GET http://{addr}/v1/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        let out = raw(&addr, request.as_bytes(), Duration::from_secs(5));
        assert!(out.starts_with("HTTP/1.1 200"), "{who}: {out}");
        let (_, body) = head_and_body(&out);
        assert_eq!(body, "[]", "{who}: the task list");
        let out = raw(
            &addr,
            format!("GET http://{addr}/v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert!(out.starts_with("HTTP/1.1 200"), "{who}: health needs no token in absolute form either: {out}");
    }
}

#[test]
fn head_works_wherever_get_does_with_the_same_headers_and_no_body() {
    let c = Cluster::start("http_head", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    let unknown = "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b";
    for (addr, _, who) in daemons(&c) {
        let routes: Vec<(&str, &str)> =
            if who == "manager" { skiff::http::MANAGER_ROUTES.to_vec() } else { skiff::http::WORKER_ROUTES.to_vec() };
        for (_, pattern) in routes.iter().filter(|(m, _)| *m == "GET") {
            let path = pattern.replace("{id}", unknown);
            let ask = |method: &str| {
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
                );
                raw(&addr, request.as_bytes(), Duration::from_secs(5))
            };
            let (get, head) = (ask("GET"), ask("HEAD"));
            let (get_head, get_body) = head_and_body(&get);
            let (head_head, head_body) = head_and_body(&head);
            assert_eq!(get_head.lines().next(), head_head.lines().next(), "{who} HEAD {path}: the status");
            assert_eq!(head_body, "", "{who} HEAD {path}: no body");
            assert!(!get_body.is_empty(), "{who} GET {path}");
            for name in ["Content-Type", "Connection"] {
                assert_eq!(header(get_head, name), header(head_head, name), "{who} HEAD {path}: {name}");
            }
            let length = header(head_head, "Content-Length").expect("Content-Length");
            // the lists and the 404 are the same bytes each time; health and stats may change
            if path.ends_with("/tasks") || path.contains(unknown) {
                assert_eq!(length, get_body.len().to_string(), "{who} HEAD {path}: the GET body's length");
            } else {
                assert!(length.parse::<usize>().is_ok_and(|n| n > 0), "{who} HEAD {path}: {length}");
            }
        }
        let (status, _) = http_as("HEAD", &format!("http://{addr}/v1/tasks"), None, None);
        assert_eq!(status, 401, "{who}: HEAD needs the token as GET does");
        let (status, _) = http_as("HEAD", &format!("http://{addr}/v1/health"), None, None);
        assert_eq!(status, 200, "{who}: HEAD of health needs no token");
    }
}

#[test]
fn unauthenticated_requests_are_counted_in_one_warning_not_logged_one_line_each() {
    let c = Cluster::start("auth_flood", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    let long_path = format!("/v1/{}", "a".repeat(5000));
    for (addr, _, who) in daemons(&c) {
        let log = if who == "manager" { c.manager().log.clone() } else { c.workers[0].log.clone() };
        for i in 0..200 {
            // the long path first: the one warning shows the first refusal's path, cut short
            let path = if i % 2 == 0 { long_path.clone() } else { "/v1/tasks".to_string() };
            let (status, _) = http_as("GET", &format!("http://{addr}{path}"), None, None);
            assert_eq!(status, 401, "{who}");
        }
        assert_answers_promptly(&addr, who);
        let warnings = wait_for("the refusal warning", Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&log).ok()?;
            let lines: Vec<String> =
                text.lines().filter(|l| l.contains("unauthorized requests refused")).map(str::to_string).collect();
            (!lines.is_empty()).then_some(lines)
        });
        assert_eq!(warnings.len(), 1, "{who}: 200 refusals, one warning: {warnings:#?}");
        let line = skiff::logfmt::parse_line(&warnings[0]).expect("a key=value line");
        let field = |k: &str| line.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(line.level, "WARN");
        assert_eq!((field("count"), field("total")), (Some("1"), Some("1")), "{who}: {warnings:?}");
        assert!(field("interval_s").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)), "{who}");
        let logged = field("path").expect("the path");
        assert!(logged.starts_with("/v1/aaa") && logged.chars().count() <= 201, "{who}: path={logged}");
        // no line of the log holds a client's whole long path
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.lines().all(|l| l.len() < 1000), "{who}: a long line in the log");
    }
}

#[test]
fn daemons_write_log_lines_a_log_shipper_can_parse() {
    // the test daemons log at debug level
    let mut c = Cluster::start("log_lines", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    c.wait_nodes_up();
    // a name and an error with spaces, quotes and `=` are what needs quoting
    let id = c.submit(&json!({"name": "logged", "image": IMAGE, "cmd": ["sleep", "300"]}));
    c.wait_state(&id, "Running", Duration::from_secs(30));
    let (status, _) = http("POST", &c.manager_url("/v1/tasks"), Some(br#"{"name": "a b=\"c\"", "image": 1}"#));
    assert_eq!(status, 400);
    let _ = http_as("GET", &c.manager_url("/v1/tasks?x=1&y=2"), None, None);
    let _ = http("GET", &c.manager_url(&format!("/v1/{}", "b".repeat(3000))), None);
    let (status, _) = http("DELETE", &c.manager_url(&format!("/v1/tasks/{id}")), None);
    assert_eq!(status, 202);
    c.wait_state(&id, "Stopped", Duration::from_secs(30));
    // the manager first, so that it does not log the worker going away
    assert!(c.manager_mut().terminate().success());
    assert!(c.workers[0].terminate().success());
    let mut seen = 0;
    for log in [c.manager().log.clone(), c.workers[0].log.clone()] {
        let text = wait_for("the last log line", Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("shutting down").then_some(text)
        });
        for l in text.lines() {
            let line = skiff::logfmt::parse_line(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", log.display()));
            assert_eq!(line.time.len(), 24, "a fixed-width time: {l}");
            assert!(skiff::time::Timestamp::parse(&line.time).is_some(), "{l}");
            assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&line.level.as_str()), "{l}");
            assert!(l.len() < 1000, "{l}");
            seen += 1;
        }
        assert!(text.contains("http method=GET path="), "debug lines of requests in {}", log.display());
    }
    assert!(seen > 10, "a sample worth the name: {seen} lines");
}
