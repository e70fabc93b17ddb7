//! Hosts for the multi-host tests, on top of `scripts/hosts.sh`: each host is a network namespace
//! with an address of its own on the bridge `skiff-br0` and a Docker Engine of its own. A
//! `HostCluster` builds the hosts, starts a worker inside each namespace (bound to the host's
//! address, on its engine's socket) and a manager in the root namespace that dials them (or,
//! with `HostOptions::join`, that they join), and offers the faults as methods. Dropping it (also when a test fails or panics) stops the
//! daemons and tears the hosts down: containers, engines, namespaces, links, mounts, data.
//!
//! One cluster at a time per machine (the names and addresses are fixed): tests in a process
//! hold `LOCK`, and `hosts.sh up` refuses to build over another run's hosts.

#![allow(dead_code, reason = "each test file uses only some of the helpers")]

use crate::common::{http, wait_for, TOKEN};
use serde_json::Value;
use skiff::docker_cli::{ContainerSummary, Docker};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

static LOCK: Mutex<()> = Mutex::new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hosts.sh")
}

/// Runs `hosts.sh ARGS`; fails the test with its output if it fails.
pub fn hosts_sh(args: &[&str]) -> String {
    let out = Command::new(script()).args(args).output().expect("scripts/hosts.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/hosts.sh {}: failed\n{stderr}", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One host as `hosts.sh list` describes it.
pub struct Host {
    pub name: String,
    pub addr: String,
    pub socket: PathBuf,
    pub netns: PathBuf,
    pub worker_port: u16,
    pub docker: Docker,
    /// A second address of the host (`hosts.sh add-address`) that its worker advertises with
    /// `--advertise`, listening on every address of its host.
    pub second_addr: Option<String>,
}

impl Host {
    fn parse(line: &str) -> Option<Host> {
        let fields: BTreeMap<&str, &str> =
            line.strip_prefix("host ")?.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        let socket = PathBuf::from(fields.get("socket")?);
        Some(Host {
            name: fields.get("name")?.to_string(),
            addr: fields.get("addr")?.to_string(),
            netns: PathBuf::from(fields.get("netns")?),
            worker_port: fields.get("worker_port")?.parse().ok()?,
            docker: Docker::new(&socket),
            socket,
            second_addr: None,
        })
    }

    /// `ADDR:PORT` of its worker, as the manager dials it.
    pub fn worker_addr(&self) -> String {
        format!("{}:{}", self.addr, self.worker_port)
    }

    /// `ADDR:PORT` the manager should know the worker by: its second address when it advertises
    /// one, else its host's address.
    pub fn advertised(&self) -> String {
        format!("{}:{}", self.second_addr.as_deref().unwrap_or(&self.addr), self.worker_port)
    }

    /// The host part of what the manager should know the worker by.
    pub fn advertised_ip(&self) -> &str {
        self.second_addr.as_deref().unwrap_or(&self.addr)
    }

    /// The `skiff`-labelled containers of this host's engine; None while the engine is away.
    pub fn containers(&self) -> Option<Vec<ContainerSummary>> {
        self.docker.list(&["skiff.task-id".to_string()]).ok()
    }
}

/// A daemon with its stderr copied to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` and waits for its `listening addr=` line.
    fn start(mut cmd: Command, log: PathBuf) -> (Proc, String) {
        let mut child = cmd
            .env("SKIFF_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).expect("log file");
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
        let proc = Proc { child, log };
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{cmd:?} did not start listening; see {}", proc.log.display()));
        (proc, addr)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // a paused process dies of SIGKILL too
        self.kill();
    }
}

pub struct HostOptions {
    pub hosts: usize,
    pub manager_args: Vec<String>,
    pub worker_args: Vec<String>,
    /// The workers join the manager (`--join`) instead of being given to it with `-w`: the
    /// manager starts first, with no `-w`, on the bridge's address, which the hosts reach.
    pub join: bool,
    /// Hosts (by index) given a second address that their worker advertises (`--advertise`);
    /// only with `join`.
    pub advertise_second: Vec<usize>,
}

impl Default for HostOptions {
    fn default() -> HostOptions {
        HostOptions {
            hosts: 3,
            manager_args: Vec::new(),
            worker_args: Vec::new(),
            join: false,
            advertise_second: Vec::new(),
        }
    }
}

/// Running containers per task id: the host (by index) and the container id of each.
pub type Copies = BTreeMap<String, Vec<(usize, String)>>;

/// How long `running_copies` and `all_copies` ask again an engine that does not answer.
pub const ENGINE_ANSWER: Duration = Duration::from_secs(10);

/// The bridge's address in the root namespace (`hosts.sh`), where a manager the hosts join listens.
pub const BRIDGE_ADDR: &str = "10.213.0.1";

/// The hosts, a worker on each, and the manager; torn down when dropped.
pub struct HostCluster {
    pub hosts: Vec<Host>,
    pub workers: Vec<Option<Proc>>,
    pub manager: Option<Proc>,
    pub manager_addr: String,
    pub dir: PathBuf,
    worker_args: Vec<String>,
    /// `--join MANAGER` for the workers, when they join.
    join: Option<String>,
    restarts: usize,
    /// `up` succeeded, so the hosts are ours to tear down. A failed `up` cleans up after itself,
    /// and one refused over leftovers must not tear down what may be another run's hosts.
    built: bool,
    _lock: MutexGuard<'static, ()>,
}

impl HostCluster {
    /// Builds the hosts (failing, never skipping, when that cannot be done), starts the workers
    /// and the manager, and waits until the manager sees every worker up.
    pub fn start(test: &str, opts: HostOptions) -> HostCluster {
        let lock = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("logs").join("hosts").join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("log dir");
        let mut cluster = HostCluster {
            hosts: Vec::new(),
            workers: Vec::new(),
            manager: None,
            manager_addr: String::new(),
            dir,
            worker_args: opts.worker_args,
            join: None,
            restarts: 0,
            built: false,
            _lock: lock,
        };
        // from here on, a panic drops `cluster`, which runs `down`
        let started = Instant::now();
        let list = hosts_sh(&["up", &opts.hosts.to_string()]);
        cluster.built = true;
        cluster.hosts = list.lines().filter_map(Host::parse).collect();
        assert_eq!(cluster.hosts.len(), opts.hosts, "hosts.sh up listed:\n{list}");
        println!("{} hosts up in {:.1?}", opts.hosts, started.elapsed());
        assert!(opts.join || opts.advertise_second.is_empty(), "an advertised address needs join");
        for &i in &opts.advertise_second {
            let addr = hosts_sh(&["add-address", &cluster.hosts[i].name]).trim().to_string();
            cluster.hosts[i].second_addr = Some(addr);
        }
        cluster.workers.resize_with(cluster.hosts.len(), || None);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_manager"));
        if opts.join {
            cmd.args(["-p", "0", "--bind", BRIDGE_ADDR, "--log-level", "debug"]);
        } else {
            for i in 0..cluster.hosts.len() {
                cluster.start_worker(i);
            }
            cmd.args(["-p", "0", "--bind", "127.0.0.1", "--log-level", "debug"]);
            for h in &cluster.hosts {
                cmd.args(["-w", &h.worker_addr()]);
            }
        }
        cmd.args(&opts.manager_args);
        let (proc, addr) = Proc::start(cmd, cluster.dir.join("manager.log"));
        cluster.manager = Some(proc);
        cluster.manager_addr = addr;
        if opts.join {
            cluster.join = Some(cluster.manager_addr.clone());
            for i in 0..cluster.hosts.len() {
                cluster.start_worker(i);
            }
        }
        cluster.wait_nodes_up(Duration::from_secs(30));
        cluster
    }

    /// Starts (again) the worker of host `i` inside its namespace, bound to its address.
    pub fn start_worker(&mut self, i: usize) {
        let h = &self.hosts[i];
        let mut cmd = Command::new(script());
        cmd.args(["worker", &h.name, env!("CARGO_BIN_EXE_worker")]);
        // a worker that advertises a second address listens on every address of its host
        let bind = if h.second_addr.is_some() { "0.0.0.0" } else { h.addr.as_str() };
        cmd.args(["-n", &h.name, "-p", &h.worker_port.to_string(), "--bind", bind]);
        cmd.arg("--docker-socket").arg(&h.socket);
        cmd.args(["--stop-grace-s", "2", "--log-level", "debug"]);
        if let Some(manager) = &self.join {
            cmd.args(["--join", manager]);
            if h.second_addr.is_some() {
                cmd.args(["--advertise", &h.advertised()]);
            }
        }
        cmd.args(&self.worker_args);
        self.restarts += 1;
        let log = self.dir.join(format!("{}.{}.log", h.name, self.restarts));
        let (proc, addr) = Proc::start(cmd, log);
        assert_eq!(addr, format!("{bind}:{}", h.worker_port), "the worker listens where it was told");
        self.workers[i] = Some(proc);
    }

    /// SIGKILL of host `i`'s worker, as a crash.
    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].take() {
            w.kill();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.manager_addr)
    }

    pub fn worker_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.hosts[i].worker_addr())
    }

    pub fn submit(&self, spec: &Value) -> String {
        let (status, v) = http("POST", &self.url("/v1/tasks"), Some(spec.to_string().as_bytes()));
        assert_eq!(status, 201, "submit: {v}");
        v["id"].as_str().expect("id").to_string()
    }

    pub fn task(&self, id: &str) -> Value {
        let (status, v) = http("GET", &self.url(&format!("/v1/tasks/{id}")), None);
        assert_eq!(status, 200, "get {id}: {v}");
        v
    }

    pub fn tasks(&self) -> Vec<Value> {
        let (status, v) = http("GET", &self.url("/v1/tasks"), None);
        assert_eq!(status, 200, "list: {v}");
        v.as_array().expect("a list").clone()
    }

    pub fn nodes(&self) -> Vec<Value> {
        let (status, v) = http("GET", &self.url("/v1/nodes"), None);
        assert_eq!(status, 200, "nodes: {v}");
        v.as_array().expect("a list").clone()
    }

    /// Waits until the manager sees every worker up with its engine answering: only then is each
    /// node a placement candidate, so that round-robin places tasks k, k+N, k+2N on one host.
    pub fn wait_nodes_up(&self, limit: Duration) {
        wait_for("every worker up, its engine answering", limit, || {
            let nodes = self.nodes();
            self.hosts
                .iter()
                .all(|h| {
                    nodes
                        .iter()
                        .any(|n| n["name"] == h.name.as_str() && n["status"] == "up" && n["engine_reachable"] == true)
                })
                .then_some(())
        });
    }

    /// The index of the host a node name belongs to.
    pub fn host_of(&self, node: &str) -> usize {
        self.hosts.iter().position(|h| h.name == node).unwrap_or_else(|| panic!("no host named {node}"))
    }

    /// Running `skiff` containers per task id with their host, and the hosts whose engine did not
    /// answer (their containers are unknown, not absent: a caller must not read them as zero).
    pub fn read_running_copies(&self) -> (Copies, Vec<usize>) {
        let mut copies = Copies::new();
        let mut unreadable = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let Some(list) = h.containers() else {
                unreadable.push(i);
                continue;
            };
            for c in list {
                if c.state == "running" {
                    let id = c.labels.get("skiff.task-id").cloned().unwrap_or_default();
                    copies.entry(id).or_default().push((i, c.id));
                }
            }
        }
        (copies, unreadable)
    }

    /// Running `skiff` containers per task id, with their host, over every engine: an engine that
    /// does not answer is asked again until `ENGINE_ANSWER` runs out, then the test fails (a copy
    /// it runs must not go uncounted).
    pub fn running_copies(&self) -> Copies {
        let deadline = Instant::now() + ENGINE_ANSWER;
        loop {
            let (copies, unreadable) = self.read_running_copies();
            if unreadable.is_empty() {
                return copies;
            }
            let names: Vec<&str> = unreadable.iter().map(|&i| self.hosts[i].name.as_str()).collect();
            assert!(Instant::now() < deadline, "the engines of {names:?} did not answer within {ENGINE_ANSWER:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// All `skiff` containers (any state) per task id, over every engine (each must answer, as
    /// for `running_copies`).
    pub fn all_copies(&self) -> BTreeMap<String, Vec<(usize, ContainerSummary)>> {
        let mut copies: BTreeMap<String, Vec<(usize, ContainerSummary)>> = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let list = wait_for(&format!("the engine of {} to answer", h.name), ENGINE_ANSWER, || h.containers());
            for c in list {
                let id = c.labels.get("skiff.task-id").cloned().unwrap_or_default();
                copies.entry(id).or_default().push((i, c));
            }
        }
        copies
    }

    /// `docker inspect` of a container on host `i`, through that host's engine.
    pub fn inspect(&self, i: usize, id: &str) -> Value {
        docker_cli_json(&self.hosts[i], &["inspect", id])[0].clone()
    }

    /// `docker kill` of a container on host `i`.
    pub fn docker_kill(&self, i: usize, id: &str) {
        docker_cli(&self.hosts[i], &["kill", id]);
    }

    // faults, each through the script

    /// Cuts host `i` off the network: its link goes down.
    pub fn cut(&self, i: usize) {
        hosts_sh(&["cut", &self.hosts[i].name]);
    }

    /// Drops only the traffic between the manager and host `i`'s worker.
    pub fn cut_manager(&self, i: usize) {
        hosts_sh(&["cut-manager", &self.hosts[i].name]);
    }

    pub fn heal(&self, i: usize) {
        hosts_sh(&["heal", &self.hosts[i].name]);
    }

    /// Stops host `i`'s engine: SIGTERM (its containers are stopped) or SIGKILL (a crash).
    pub fn engine_stop(&self, i: usize, crash: bool) {
        let name = &self.hosts[i].name;
        if crash {
            hosts_sh(&["engine-stop", name, "--kill"]);
        } else {
            hosts_sh(&["engine-stop", name]);
        }
    }

    pub fn engine_start(&self, i: usize) {
        hosts_sh(&["engine-start", &self.hosts[i].name]);
    }

    /// SIGSTOP (`on`) or SIGCONT of host `i`'s worker.
    pub fn pause_worker(&self, i: usize, on: bool) {
        hosts_sh(&[if on { "pause" } else { "resume" }, &self.hosts[i].name]);
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        self.manager = None;
        self.workers.clear();
        if !self.built {
            return;
        }
        // `down` removes every container of the hosts' engines, then the engines and the rest
        let out = Command::new(script()).arg("down").output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("hosts.sh down failed:\n{}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("hosts.sh down did not run: {e}"),
        }
    }
}

fn docker_cli_out(h: &Host, args: &[&str]) -> Vec<u8> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", h.socket.display()))
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(out.status.success(), "docker {args:?} on {}: {}", h.name, String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn docker_cli(h: &Host, args: &[&str]) {
    docker_cli_out(h, args);
}

fn docker_cli_json(h: &Host, args: &[&str]) -> Value {
    serde_json::from_slice(&docker_cli_out(h, args)).expect("docker JSON")
}

/// GET `path` at `addr:port` with a short deadline; the body of a 200, or None. For published
/// ports, which must answer at their own host's address and nowhere else.
pub fn probe(addr: &str, port: u16, path: &str) -> Option<String> {
    let sock: SocketAddr = format!("{addr}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}
