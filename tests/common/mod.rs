//! Helpers that make the integration tests read like the scenarios they check: a cluster of real
//! `manager` and `worker` processes on 127.0.0.1 against the real Docker Engine, the client
//! binary, polling with deadlines, and clean-up that runs even when a test fails.
//!
//! Every worker gets a unique name, so every container a test creates carries
//! `skiff.node=<that name>`, and the guard removes exactly those.
//!
//! The engine is Docker's at its default socket unless `SKIFF_TEST_ENGINE_SOCKET` names another
//! (Podman's: `scripts/test-podman.sh`); then the helpers, the workers (through `DOCKER_HOST`,
//! which a `--docker-socket` flag still overrides) and the `docker` CLI the tests run all talk to
//! that one, and the tests assert the same things.
#![allow(dead_code, reason = "each test file uses only some of the helpers")]

use serde_json::Value;
use skiff::docker_cli::Docker;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "skiff/busybox:latest";
/// The cluster token every test daemon and client uses (through SKIFF_TOKEN).
pub const TOKEN: &str = "test-cluster-token-0123456789abcdef";

/// Names the socket of the engine the tests use instead of Docker's default.
pub const ENGINE_SOCKET_VAR: &str = "SKIFF_TEST_ENGINE_SOCKET";

/// The socket of the engine under test: `SKIFF_TEST_ENGINE_SOCKET`, else Docker's default.
pub fn engine_socket() -> PathBuf {
    match std::env::var_os(ENGINE_SOCKET_VAR) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(skiff::docker_cli::DEFAULT_SOCKET),
    }
}

/// `DOCKER_HOST` for the processes a test starts (workers, the `docker` CLI): the engine under
/// test when it is not the default.
fn engine_env() -> Option<String> {
    std::env::var_os(ENGINE_SOCKET_VAR)
        .filter(|p| !p.is_empty())
        .map(|_| format!("unix://{}", engine_socket().display()))
}

/// The `docker` CLI, talking to the engine under test (Podman's compatible API answers it).
pub fn docker_command() -> Command {
    let mut command = Command::new("docker");
    if let Some(host) = engine_env() {
        command.env("DOCKER_HOST", host);
    }
    command
}

/// Fails the test (never skips it) when the engine does not answer.
pub fn require_docker() -> Docker {
    let socket = engine_socket();
    let docker = Docker::new(&socket);
    if let Err(e) = docker.version() {
        panic!("the engine must answer at {} for these tests: {}", socket.display(), skiff::control::error_chain(&e));
    }
    docker
}

/// Builds the test image once per test process (the script is idempotent and quick when done).
pub fn require_image() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-image.sh");
        let mut command = Command::new(&script);
        if std::env::var_os(ENGINE_SOCKET_VAR).is_some() && std::env::var_os("SKIFF_ENGINE_CLI").is_none() {
            // the image goes where the engine under test keeps its images: another engine than
            // Docker's default is Podman's, unless SKIFF_ENGINE_CLI says otherwise
            command.env("SKIFF_ENGINE_CLI", "podman");
        }
        let out = command.output().expect("scripts/build-image.sh runs");
        assert!(
            out.status.success(),
            "building the image failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Polls `check` until it returns `Some`, or fails the test after `limit` with `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..8])
}

fn log_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("logs").join(test);
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// A daemon started for a test, its stderr copied to a log file.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `bin` with `args` (which must include `-p 0 --bind 127.0.0.1`) and waits for the
    /// address it listens on.
    fn start(bin: &str, args: &[String], log: PathBuf) -> Daemon {
        Daemon::start_with_env(bin, args, &[], log)
    }

    /// `start`, with these variables in the daemon's environment too.
    fn start_with_env(bin: &str, args: &[String], env: &[(&'static str, String)], log: PathBuf) -> Daemon {
        let mut command = Command::new(bin);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(host) = engine_env() {
            command.env("DOCKER_HOST", host);
        }
        let mut child = command
            .args(args)
            .env("SKIFF_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log_path).expect("log file");
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if !sent && line.contains("listening") {
                    if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                        let _ = tx.send(addr.to_string());
                        sent = true;
                    }
                }
            }
        });
        let mut daemon = Daemon { child, addr: String::new(), log };
        // if it never listens, the panic drops `daemon`, which kills the process
        daemon.addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{bin} did not start listening; see {}", daemon.log.display()));
        daemon
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("addr has a port")
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        wait_for("the daemon to exit", Duration::from_secs(20), || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A manager and its workers; removes every container of its workers when dropped.
pub struct Cluster {
    pub test: String,
    pub manager: Option<Daemon>,
    pub workers: Vec<Daemon>,
    pub worker_names: Vec<String>,
    pub docker: Docker,
    pub dir: PathBuf,
    /// The command lines, to start a daemon again exactly as before (on the port it had).
    manager_args: Vec<String>,
    manager_env: Vec<(&'static str, String)>,
    worker_args: Vec<Vec<String>>,
}

pub struct ClusterOptions {
    pub workers: usize,
    /// Addresses where no worker listens, given to the manager after the live workers.
    pub dead_workers: usize,
    pub manager_args: Vec<String>,
    pub worker_args: Vec<String>,
    /// `memory` or `persisted` (then in `<test dir>/data`).
    pub manager_store: &'static str,
    pub worker_store: &'static str,
    /// `-sct` of the manager.
    pub scheduler: &'static str,
    /// Variables for the manager's environment (beside the token).
    pub manager_env: Vec<(&'static str, String)>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            workers: 2,
            dead_workers: 0,
            manager_args: Vec::new(),
            worker_args: Vec::new(),
            manager_store: "memory",
            worker_store: "memory",
            scheduler: "roundrobin",
            manager_env: Vec::new(),
        }
    }
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr.to_string()
}

impl Cluster {
    pub fn start(test: &str, opts: ClusterOptions) -> Cluster {
        let docker = require_docker();
        require_image();
        let dir = log_dir(test);
        let _ = std::fs::remove_dir_all(dir.join("data"));
        let data = dir.join("data").display().to_string();
        let mut cluster = Cluster {
            test: test.to_string(),
            manager: None,
            workers: Vec::new(),
            worker_names: Vec::new(),
            docker,
            dir,
            manager_args: Vec::new(),
            manager_env: opts.manager_env.clone(),
            worker_args: Vec::new(),
        };
        let mut worker_args = strings(&["-st", opts.worker_store, "--data-dir", &data]);
        worker_args.extend(opts.worker_args.iter().cloned());
        for i in 1..=opts.workers {
            let name = unique(&format!("t{i}"));
            cluster.worker_names.push(name.clone());
            cluster.start_worker(&name, &worker_args);
        }
        let mut args = strings(&["-p", "0", "--bind", "127.0.0.1", "-st", opts.manager_store, "--data-dir", &data]);
        args.extend(strings(&["-sct", opts.scheduler, "--log-level", "debug"]));
        for w in &cluster.workers {
            args.extend(["-w".to_string(), w.addr.clone()]);
        }
        for _ in 0..opts.dead_workers {
            args.extend(["-w".to_string(), dead_address()]);
        }
        args.extend(opts.manager_args.iter().cloned());
        cluster.manager_args = args;
        cluster.restart_manager();
        cluster
    }

    /// Starts one more worker (memory store) with these extra flags; the manager does not know it.
    pub fn add_worker(&mut self, name: &str, extra: &[String]) {
        let mut args = strings(&["-st", "memory"]);
        args.extend(extra.iter().cloned());
        self.worker_names.push(name.to_string());
        self.start_worker(name, &args);
    }

    /// Starts a worker with this name; it keeps its port when it is started again.
    fn start_worker(&mut self, name: &str, extra: &[String]) {
        let mut args = strings(&["-n", name, "-p", "0", "--bind", "127.0.0.1", "--stop-grace-s", "2"]);
        args.extend(strings(&["--log-level", "debug"]));
        args.extend(extra.iter().cloned());
        let log = self.dir.join(format!("{name}.log"));
        let daemon = Daemon::start(env!("CARGO_BIN_EXE_worker"), &args, log);
        pin_port(&mut args, daemon.port());
        self.worker_args.push(args);
        self.workers.push(daemon);
    }

    /// Starts worker `i` again with the same command line (after `kill` or `terminate`).
    pub fn restart_worker(&mut self, i: usize) {
        self.restart_worker_with(i, &[]);
    }

    /// Starts worker `i` again with the same command line and, this time only, `extra` too.
    pub fn restart_worker_with(&mut self, i: usize, extra: &[&str]) {
        let log = self.dir.join(format!("{}.restarted-{}.log", self.worker_names[i], uuid::Uuid::new_v4().simple()));
        let mut args = self.worker_args[i].clone();
        args.extend(strings(extra));
        self.workers[i] = Daemon::start(env!("CARGO_BIN_EXE_worker"), &args, log);
    }

    /// Starts the manager (again) with the same command line, on the same port.
    pub fn restart_manager(&mut self) {
        let log = self.dir.join(if self.manager.is_some() { "manager.restarted.log" } else { "manager.log" });
        self.manager = None;
        let daemon = Daemon::start_with_env(env!("CARGO_BIN_EXE_manager"), &self.manager_args, &self.manager_env, log);
        pin_port(&mut self.manager_args, daemon.port());
        self.manager = Some(daemon);
    }

    pub fn manager_mut(&mut self) -> &mut Daemon {
        self.manager.as_mut().expect("manager started")
    }

    pub fn manager(&self) -> &Daemon {
        self.manager.as_ref().expect("manager started")
    }

    pub fn manager_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.manager().addr)
    }

    pub fn worker_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.workers[i].addr)
    }

    /// Runs the client binary with these arguments and this stdin.
    pub fn client(&self, args: &[&str], stdin: &str) -> Output {
        let port = self.manager().port().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
            .env("SKIFF_TOKEN", TOKEN)
            .args(["--host", "127.0.0.1", "-p", &port])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("client ends")
    }

    /// Writes a spec file for the client in this test's directory.
    pub fn spec_file(&self, name: &str, spec: &Value) -> PathBuf {
        let path = self.dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(spec).expect("json")).expect("write spec");
        path
    }

    pub fn get_task(&self, id: &str) -> Value {
        let (status, v) = http("GET", &self.manager_url(&format!("/v1/tasks/{id}")), None);
        assert_eq!(status, 200, "get {id}: {v}");
        v
    }

    pub fn submit(&self, spec: &Value) -> String {
        let (status, v) = http("POST", &self.manager_url("/v1/tasks"), Some(spec.to_string().as_bytes()));
        assert_eq!(status, 201, "submit: {v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Waits until the task reads `state` and returns its record.
    pub fn wait_state(&self, id: &str, state: &str, limit: Duration) -> Value {
        wait_for(&format!("task {id} to be {state}"), limit, || {
            let t = self.get_task(id);
            (t["state"] == state).then_some(t)
        })
    }

    /// Containers carrying the label of one of this cluster's workers.
    pub fn containers(&self) -> Vec<skiff::docker_cli::ContainerSummary> {
        let mut all = Vec::new();
        for name in &self.worker_names {
            all.extend(self.docker.list(&[format!("skiff.node={name}")]).expect("list containers"));
        }
        all
    }

    pub fn nodes(&self) -> Vec<Value> {
        let (status, v) = http("GET", &self.manager_url("/v1/nodes"), None);
        assert_eq!(status, 200);
        v.as_array().expect("list").clone()
    }

    /// Waits until every live worker is up in the manager's view.
    pub fn wait_nodes_up(&self) {
        let names = self.worker_names.clone();
        wait_for("every worker to be up", Duration::from_secs(15), || {
            let nodes = self.nodes();
            // up, and its engine answering: only then is a node a candidate for placement
            names
                .iter()
                .all(|n| {
                    nodes
                        .iter()
                        .any(|x| x["name"] == n.as_str() && x["status"] == "up" && x["engine_reachable"] == true)
                })
                .then_some(())
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.manager = None;
        self.workers.clear();
        for name in &self.worker_names {
            if let Ok(list) = self.docker.list(&[format!("skiff.node={name}")]) {
                for c in list {
                    let _ = self.docker.remove(&c.id);
                }
            }
        }
    }
}

/// Replaces `-p 0` by the port the daemon got, so that a restart uses the same one.
fn pin_port(args: &mut [String], port: u16) {
    if let Some(i) = args.iter().position(|a| a == "-p") {
        args[i + 1] = port.to_string();
    }
}

/// One HTTP call with a raw body; returns the status and the JSON answer (Null if not JSON).
pub fn http(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Value) {
    let (status, bytes) = http_raw(method, url, body);
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn http_raw(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    http_as(method, url, body, Some(TOKEN))
}

/// One HTTP call with the given token (or none); the status and the raw answer.
pub fn http_as(method: &str, url: &str, body: Option<&[u8]>, token: Option<&str>) -> (u16, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.map(<[u8]>::to_vec).unwrap_or_default()).expect("request");
    let mut resp = agent.run(req).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_vec().expect("body"))
}

/// `docker inspect` through the CLI: an independent view of what the engine holds.
pub fn docker_inspect(id: &str) -> Value {
    // `container inspect`: a bare `inspect` looks the id up as an image too, which Podman refuses
    // (500: "cannot specify 64-byte hexadecimal strings") where Docker answers 404
    let out = docker_command().args(["container", "inspect", id]).output().expect("docker CLI runs");
    assert!(out.status.success(), "docker inspect {id}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    v[0].clone()
}

/// A stand-in for the engine's socket: forwards connections to the real one until it is closed,
/// and can be opened again. Lets a test cut a worker off its engine without touching the
/// machine's own daemon.
pub struct EngineProxy {
    pub path: PathBuf,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    open: bool,
    /// New connections are accepted and held without an answer, as a hung engine does.
    hung: bool,
    /// Container lists (`GET /containers/json`) get a 500; everything else goes through.
    refuse_lists: bool,
    conns: Vec<std::os::unix::net::UnixStream>,
    generation: u64,
}

impl EngineProxy {
    pub fn new(dir: &Path) -> EngineProxy {
        let path = dir.join(format!("engine-{}.sock", uuid::Uuid::new_v4().simple()));
        let proxy = EngineProxy { path, state: Default::default() };
        proxy.open();
        proxy
    }

    /// Starts accepting again (a new listener on the same path).
    pub fn open(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = std::os::unix::net::UnixListener::bind(&self.path).expect("bind proxy socket");
        let generation = {
            let mut st = self.state.lock().expect("lock");
            st.open = true;
            st.generation += 1;
            st.generation
        };
        let state = self.state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let refuse_lists = {
                    let mut st = state.lock().expect("lock");
                    if !st.open || st.generation != generation {
                        return; // closed: this listener is done
                    }
                    if st.hung {
                        st.conns.push(client); // held, never answered
                        continue;
                    }
                    st.refuse_lists
                };
                // the request line, when lists are refused (each engine call is a connection)
                let mut first = Vec::new();
                if refuse_lists && refused_list(&mut client, &mut first) {
                    continue;
                }
                let Ok(mut engine) = std::os::unix::net::UnixStream::connect(engine_socket()) else {
                    continue;
                };
                if engine.write_all(&first).is_err() {
                    continue;
                }
                let mut st = state.lock().expect("lock");
                for (mut from, mut to) in [
                    (client.try_clone().expect("clone"), engine.try_clone().expect("clone")),
                    (engine.try_clone().expect("clone"), client.try_clone().expect("clone")),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                st.conns.push(client);
                st.conns.push(engine);
            }
        });
    }

    /// From now on (`true`) or no longer, the engine's container lists fail with a 500, as a
    /// list too big to read would: the engine answers, a worker's sync fails.
    pub fn refuse_lists(&self, refuse: bool) {
        self.state.lock().expect("lock").refuse_lists = refuse;
    }

    /// Cuts the open connections and from now on accepts new ones without ever answering, as a
    /// hung (not dead) engine does.
    pub fn hang(&self) {
        let mut st = self.state.lock().expect("lock");
        st.hung = true;
        for c in st.conns.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Refuses new connections and cuts the open ones, as a dead engine would.
    pub fn close(&self) {
        let mut st = self.state.lock().expect("lock");
        st.open = false;
        for c in st.conns.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        drop(st);
        // wake the listener so that it sees it is closed, then take its path away
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a request line into `first` and, if it asks for a container list, answers 500 and
/// says so (`true`); `false` when the request is to go through (with `first` sent ahead of it).
fn refused_list(client: &mut std::os::unix::net::UnixStream, first: &mut Vec<u8>) -> bool {
    use std::io::Read;
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 1024];
    while !first.contains(&b'\n') {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => first.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client.set_read_timeout(None);
    let line = String::from_utf8_lossy(first.split(|b| *b == b'\n').next().unwrap_or_default()).to_string();
    if !(line.starts_with("GET ") && line.contains("/containers/json")) {
        return false;
    }
    let body = r#"{"message":"container list refused by the test's engine proxy"}"#;
    let answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes());
    true
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.close();
    }
}

/// One GET of `/` on a new connection to `address` with this `Host` (an ingress tells apps
/// apart by it): the status and the body as sent, or why it failed.
pub fn get_by_host(address: &str, host: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let addr = address.parse().map_err(|e| format!("{e}"))?;
    let mut conn =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(conn, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no head in {text:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The body of a 200 by `Host`, trimmed (pages end in a newline), else what came.
pub fn page_by_host(address: &str, host: &str) -> Result<String, String> {
    match get_by_host(address, host)? {
        (200, body) => Ok(body.trim().to_string()),
        (status, body) => Err(format!("{status} {body:?}")),
    }
}

/// `page_by_host` as a browser asks: a connection reset before any byte of an answer came is
/// asked once more on a new one (nothing reached an app). Caddy 2.6 can reset a connection that
/// arrives at the instant of a config reload (see docs/deploy.md). Says whether it retried.
pub fn page_as_a_browser(address: &str, host: &str) -> (Result<String, String>, bool) {
    match page_by_host(address, host) {
        Err(why) if why.contains("reset") || why.contains("no head in \"\"") => (page_by_host(address, host), true),
        other => (other, false),
    }
}
