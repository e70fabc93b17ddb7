//! What the tests of `hostile.rs` attack with and look through: stand-in peers (a listener that
//! never answers, a worker that answers garbage), floods and slow or raw sockets, containers and
//! images made by hand, and readings of a daemon's memory, log and list.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

use crate::common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP listener on loopback that accepts connections and never answers, counting them.
pub struct Silent {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(conn); // kept open, never answered
            }
        });
        Silent { port, accepted }
    }
}

/// Runs `docker` with these arguments and returns its standard output, failing the test if it fails.
pub fn docker(args: &[&str]) -> String {
    let out = docker_command().args(args).output().expect("docker CLI runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Samples `check` every 100 ms for `window` and fails at the first sample that breaks it: for
/// asserting that something does not happen.
pub fn holds_for(what: &str, window: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(check(), "{what} stopped holding");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The labels a worker named `node` gives the container of this task record.
pub fn labels_of(task: &Value, node: &str) -> Vec<String> {
    let spec = task["spec"].to_string();
    vec![
        format!("skiff.task-id={}", task["id"].as_str().expect("id")),
        format!("skiff.node={node}"),
        format!("skiff.name={}", task["name"].as_str().expect("name")),
        format!("skiff.spec={spec}"),
        format!("skiff.created-at={}", task["created_at"].as_str().expect("created_at")),
    ]
}

pub fn run_labelled(labels: &[String], cmd: &[&str]) -> String {
    let mut args = vec!["run".to_string(), "-d".to_string()];
    for l in labels {
        args.extend(["--label".to_string(), l.clone()]);
    }
    args.push(IMAGE.to_string());
    args.extend(cmd.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args)
}

/// Resident and peak resident memory of a process, in KiB (`VmRSS`, `VmHWM`).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `conns` connections at once (ten to a thread), each sending a 1 MiB body without a token;
/// returns how many connected and how many were answered 401.
pub fn unauthenticated_flood(addr: &str, conns: usize) -> (usize, usize) {
    let body = vec![b'x'; 1024 * 1024];
    let head = format!("POST /v1/tasks HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len());
    let body = Arc::new(body);
    let threads: Vec<_> = (0..conns.div_ceil(10))
        .map(|_| {
            let (addr, head, body) = (addr.to_string(), head.clone(), body.clone());
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                for _ in 0..10 {
                    if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                        let _ = std::io::Write::write_all(&mut s, head.as_bytes());
                        conns.push(s);
                    }
                }
                for s in &mut conns {
                    let _ = std::io::Write::write_all(s, &body);
                }
                let mut refused = 0;
                for s in &mut conns {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut answer = [0u8; 64];
                    let n = std::io::Read::read(s, &mut answer).unwrap_or(0);
                    refused += usize::from(answer[..n].starts_with(b"HTTP/1.1 401"));
                }
                (conns.len(), refused)
            })
        })
        .collect();
    threads.into_iter().filter_map(|t| t.join().ok()).fold((0, 0), |(c, r), (c1, r1)| (c + c1, r + r1))
}

/// A reader that takes a few hundred bytes every 100 ms through a small receive window: it keeps
/// the server writing, slowly, for as long as the server lets it. Returns how many bytes it got
/// before the connection ended (or `None` if it was still open after `limit`).
pub fn trickle(addr: &str, path: &str, limit: Duration, reading: std::sync::mpsc::Sender<()>) -> Option<usize> {
    use std::os::unix::io::AsRawFd;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket with a pointer to a c_int of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut s, req.as_bytes()).expect("send");
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let end = Instant::now() + limit;
    let mut got = 0;
    let mut buf = [0u8; 256];
    while Instant::now() < end {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => {
                if got == 0 {
                    let _ = reading.send(());
                }
                got += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(got),
        }
        std::thread::sleep(Duration::from_millis(100)); // the reader's pace, not synchronisation
    }
    None
}

/// A stand-in worker on loopback that answers health like a worker and, once told, answers its
/// task list with malformed JSON.
pub struct GarbledWorker {
    pub addr: String,
    pub garbled: Arc<std::sync::atomic::AtomicBool>,
}

impl GarbledWorker {
    pub fn start() -> GarbledWorker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let garbled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = garbled.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || serve_garbled(conn, &flag));
            }
        });
        GarbledWorker { addr, garbled }
    }
}

pub fn serve_garbled(mut conn: std::net::TcpStream, garbled: &std::sync::atomic::AtomicBool) {
    use std::io::{BufRead, Write};
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let (status, body) = match path.split('?').next().unwrap_or("") {
            "/v1/health" => (
                200,
                r#"{"status":"ok","name":"garbled","version":"0","engine":{"reachable":true,"version":null,"api_version":null,"error":null},"synced":true,"tasks":0}"#.to_string(),
            ),
            "/v1/changes" if garbled.load(Ordering::SeqCst) => (200, r#"{"instance": tru"#.to_string()),
            "/v1/changes" => (
                200,
                r#"{"instance":"g","version":0,"full":true,"more":false,"removals_from":0,"synced":true,"tasks":[],"removed":[]}"#
                    .to_string(),
            ),
            "/v1/tasks" if garbled.load(Ordering::SeqCst) => (200, r#"[{"id": tru"#.to_string()),
            "/v1/tasks" => (200, "[]".to_string()),
            _ => (503, r#"{"error":"no statistics"}"#.to_string()),
        };
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Every task of the manager's list, page by page (a thousand at most to a page); and how many
/// pages it took.
pub fn walk_all_pages(base: &str) -> (usize, usize) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let (mut tasks, mut pages, mut next) = (0, 0, None::<String>);
    loop {
        let url = match &next {
            Some(n) => format!("{base}/v1/tasks?limit=1000&next={n}"),
            None => format!("{base}/v1/tasks?limit=1000"),
        };
        let mut resp =
            agent.get(&url).header("Authorization", &format!("Bearer {TOKEN}")).call().expect("a page of the list");
        assert_eq!(resp.status().as_u16(), 200);
        next = resp.headers().get("Skiff-Next").and_then(|v| v.to_str().ok()).map(str::to_string);
        let page: Value = resp.body_mut().with_config().limit(64 * 1024 * 1024).read_json().expect("json");
        tasks += page.as_array().expect("array").len();
        pages += 1;
        if next.is_none() {
            return (tasks, pages);
        }
    }
}

/// The lines of a daemon's log that contain `text`, parsed.
pub fn log_lines(log: &std::path::Path, text: &str) -> Vec<skiff::logfmt::LogLine> {
    let all = std::fs::read_to_string(log).unwrap_or_default();
    all.lines().filter(|l| l.contains(text)).map(|l| skiff::logfmt::parse_line(l).expect("a log line")).collect()
}

pub fn field<'a>(line: &'a skiff::logfmt::LogLine, key: &str) -> Option<&'a str> {
    line.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The ids of every task in the manager's list (one page: the tests' lists are short).
pub fn listed(c: &Cluster) -> Vec<String> {
    let (status, v) = http("GET", &c.manager_url("/v1/tasks"), None);
    assert_eq!(status, 200);
    v.as_array().expect("array").iter().map(|t| t["id"].as_str().expect("id").to_string()).collect()
}

/// What the server sends on this connection (until it closes it, or half a second passes
/// without more once something came; ten seconds at most).
pub fn first_answer(s: &mut std::net::TcpStream) -> String {
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        match std::io::Read::read(s, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) if !got.is_empty() => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

pub fn send_head(addr: &str, head: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    std::io::Write::write_all(&mut s, head.as_bytes()).expect("send the head");
    s
}

/// An image built for one test, removed (with any container made of it) when dropped.
pub struct TestImage(pub String);

impl Drop for TestImage {
    fn drop(&mut self) {
        if let Ok(out) = docker_command().args(["ps", "-aq", "--filter", &format!("ancestor={}", self.0)]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = docker_command().args(["rm", "-f", id]).output();
            }
        }
        let _ = docker_command().args(["rmi", "-f", &self.0]).output();
    }
}
