//! A recording fake of the container engine for the worker's unit tests: containers are entries
//! in a map, every call is recorded, and the fake can be told to refuse a call, to be out of
//! reach, to hang past the client's deadline (answered as the real client would after it), or
//! to lose a container behind the worker's back. `FakeEngine::podman` answers the way Podman 4
//! does where it differs from Docker: a name in use is a 500, `OOMKilled` is never set, and
//! (`without_init`) a create asking for an init fails when catatonit is missing. Renames answer
//! as each engine does (see `rename`).

use super::engine::{Engine, Events};
use crate::docker_cli::{ContainerInfo, ContainerSummary, CreateOptions, DockerError, LogOptions, LogStream};
use crate::task::{PortBinding, Protocol};
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// What a call the fake was told to spoil does.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The engine answers with this status and message.
    Refuse(u16, String),
    /// The socket cannot be reached: nothing happened.
    Down,
    /// The call was sent and no answer came before the deadline (it may have happened: `Hang`
    /// does the work, then times out).
    Hang,
    /// The call panics (a bug in the engine client, say).
    Panic,
}

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub status: String,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub created: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub ports: Vec<PortBinding>,
    /// The container ports to publish on start (host port chosen by the "engine").
    wanted_ports: Vec<u16>,
}

#[derive(Default)]
struct Inner {
    containers: BTreeMap<String, FakeContainer>,
    images: HashSet<String>,
    /// Images a pull brings (any other pull fails as a registry would).
    pullable: HashSet<String>,
    calls: Vec<String>,
    faults: VecDeque<(String, Fault)>,
    down: bool,
    next_id: u64,
    next_port: u16,
    clock: u64,
    /// Answers as Podman 4.3 does.
    podman: bool,
    /// An init is asked for and the engine has none (Podman without catatonit).
    no_init: bool,
}

#[derive(Default)]
pub struct FakeEngine {
    inner: Mutex<Inner>,
}

fn timed_out() -> DockerError {
    DockerError::Io(io::Error::new(io::ErrorKind::TimedOut, "no answer within the deadline"))
}

fn unreachable() -> DockerError {
    DockerError::Unreachable {
        socket: PathBuf::from("/fake/docker.sock"),
        source: io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"),
    }
}

fn no_such(what: &str) -> DockerError {
    DockerError::Api { status: 404, message: format!("No such container: {what}") }
}

impl FakeEngine {
    /// An engine that has these images.
    pub fn with_images(images: &[&str]) -> FakeEngine {
        let fake = FakeEngine::default();
        {
            let mut inner = fake.lock();
            inner.images = images.iter().map(|s| s.to_string()).collect();
            inner.next_port = 32768;
            inner.clock = 1_000_000;
        }
        fake
    }

    /// An engine that answers as Podman 4.3 does, with these images.
    pub fn podman(images: &[&str]) -> FakeEngine {
        let fake = FakeEngine::with_images(images);
        fake.lock().podman = true;
        fake
    }

    /// The engine has no init binary: every create (the worker always asks for an init) fails
    /// as Podman's does without catatonit.
    pub fn without_init(self) -> FakeEngine {
        self.lock().no_init = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pull of this image succeeds.
    pub fn set_pullable(&self, image: &str) {
        self.lock().pullable.insert(image.to_string());
    }

    /// The next call of `op` (e.g. "create", "start", "inspect", "list") fails this way.
    pub fn fail_next(&self, op: &str, fault: Fault) {
        self.lock().faults.push_back((op.to_string(), fault));
    }

    /// The whole engine is out of reach (or back).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Every call so far, as "op argument".
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn count(&self, op: &str) -> usize {
        self.lock().calls.iter().filter(|c| c.split(' ').next() == Some(op)).count()
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.values().cloned().collect()
    }

    pub fn container(&self, id: &str) -> Option<FakeContainer> {
        self.lock().containers.get(id).cloned()
    }

    /// The container exits by itself with this code.
    /// Time passes on the engine's own clock (what its start and finish times read).
    pub fn pass(&self, by: std::time::Duration) {
        self.lock().clock += by.as_millis() as u64;
    }

    pub fn exit(&self, id: &str, code: i64, oom: bool) {
        let mut inner = self.lock();
        // not a whole second: what is kept of an exit's time must keep its milliseconds
        inner.clock += 1_007;
        let (at, inner_podman) = (Timestamp(inner.clock), inner.podman);
        if let Some(c) = inner.containers.get_mut(id) {
            c.status = "exited".into();
            c.exit_code = code;
            // Podman 4 never sets OOMKilled: an out-of-memory kill reads as exit 137
            c.oom_killed = oom && !inner_podman;
            c.finished_at = Some(at);
        }
    }

    /// The container is removed behind the worker's back.
    pub fn lose(&self, id: &str) {
        self.lock().containers.remove(id);
    }

    /// A container made by someone else, with this name and these labels, running or not.
    pub fn add_foreign(&self, name: &str, labels: BTreeMap<String, String>, running: bool) -> String {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = format!("{:064x}", 0xf0_0000 + inner.next_id);
        let created = Timestamp(inner.clock);
        let c = FakeContainer {
            id: id.clone(),
            name: name.to_string(),
            image: "skiff/busybox:latest".into(),
            labels,
            status: if running { "running" } else { "exited" }.into(),
            exit_code: 0,
            oom_killed: false,
            created,
            started_at: Some(created),
            finished_at: (!running).then_some(created),
            ports: vec![],
            wanted_ports: vec![],
        };
        inner.containers.insert(id.clone(), c);
        id
    }

    /// Records the call and applies a fault meant for it; `Ok(true)` means "do the work, then
    /// time out" (a hang).
    fn enter(&self, op: &str, arg: &str) -> Result<bool, DockerError> {
        let mut inner = self.lock();
        inner.calls.push(format!("{op} {arg}"));
        if inner.down {
            return Err(unreachable());
        }
        let Some(pos) = inner.faults.iter().position(|(o, _)| o == op) else { return Ok(false) };
        let (_, fault) = inner.faults.remove(pos).expect("position just found");
        match fault {
            Fault::Refuse(status, message) => Err(DockerError::Api { status, message }),
            Fault::Down => Err(unreachable()),
            Fault::Hang => Ok(true),
            Fault::Panic => {
                drop(inner);
                panic!("the fake engine was told to panic in {op}")
            }
        }
    }

    fn find(inner: &Inner, id_or_name: &str) -> Option<String> {
        if inner.containers.contains_key(id_or_name) {
            return Some(id_or_name.to_string());
        }
        inner.containers.values().find(|c| c.name == id_or_name).map(|c| c.id.clone())
    }

    fn info(c: &FakeContainer) -> ContainerInfo {
        ContainerInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            status: c.status.clone(),
            running: c.status == "running",
            exit_code: c.exit_code,
            error: String::new(),
            oom_killed: c.oom_killed,
            started_at: c.started_at,
            finished_at: c.finished_at,
            labels: c.labels.clone(),
            ports: c.ports.clone(),
        }
    }
}

impl Engine for FakeEngine {
    fn version(&self) -> Result<(String, String), DockerError> {
        self.enter("version", "")?;
        let version = if self.lock().podman { "Podman 4.3.1-fake" } else { "20.10.24-fake" };
        Ok((version.into(), "1.41".into()))
    }

    fn root_dir(&self) -> Result<PathBuf, DockerError> {
        self.enter("info", "")?;
        Ok(PathBuf::from("/var/lib/docker"))
    }

    fn pull(&self, image: &str, _timeout: Duration) -> Result<(), DockerError> {
        if self.enter("pull", image)? {
            return Err(timed_out());
        }
        let mut inner = self.lock();
        if inner.pullable.contains(image) {
            inner.images.insert(image.to_string());
            return Ok(());
        }
        Err(DockerError::Api { status: 500, message: format!("pull access denied for {image}") })
    }

    fn ping(&self, _deadline: Duration) -> Result<(), DockerError> {
        if self.enter("ping", "")? {
            return Err(timed_out());
        }
        Ok(())
    }

    fn create(&self, opts: &CreateOptions) -> Result<String, DockerError> {
        let hang = self.enter("create", opts.name)?;
        let mut inner = self.lock();
        if !inner.images.contains(&opts.spec.image) {
            return Err(DockerError::Api { status: 404, message: format!("No such image: {}", opts.spec.image) });
        }
        if inner.no_init {
            let message = "container-init binary not found on the host: stat /usr/libexec/podman/catatonit: no such \
                           file or directory";
            return Err(DockerError::Api { status: 500, message: message.into() });
        }
        if let Some(other) = inner.containers.values().find(|c| c.name == opts.name) {
            return Err(if inner.podman {
                let message = format!(
                    "container create: creating container storage: the container name \"{}\" is already in use by \
                     {}. You have to remove that container to be able to reuse that name: that name is already in use",
                    opts.name, other.id
                );
                DockerError::Api { status: 500, message }
            } else {
                let message = format!("Conflict. The container name \"/{}\" is already in use", opts.name);
                DockerError::Api { status: 409, message }
            });
        }
        inner.next_id += 1;
        let id = format!("{:064x}", inner.next_id);
        let created = Timestamp(inner.clock);
        let c = FakeContainer {
            id: id.clone(),
            name: opts.name.to_string(),
            image: opts.spec.image.clone(),
            labels: opts.labels.clone(),
            status: "created".into(),
            exit_code: 0,
            oom_killed: false,
            created,
            started_at: None,
            finished_at: None,
            ports: vec![],
            wanted_ports: opts.spec.ports.iter().map(|p| p.container).collect(),
        };
        inner.containers.insert(id.clone(), c);
        if hang {
            return Err(timed_out());
        }
        Ok(id)
    }

    fn start(&self, id: &str) -> Result<(), DockerError> {
        let hang = self.enter("start", id)?;
        let mut inner = self.lock();
        inner.clock += 1_000;
        let (at, mut port) = (Timestamp(inner.clock), inner.next_port);
        let Some(key) = Self::find(&inner, id) else { return Err(no_such(id)) };
        let c = inner.containers.get_mut(&key).expect("found above");
        if c.status != "running" {
            c.status = "running".into();
            c.started_at = Some(at);
            c.finished_at = None;
            c.exit_code = 0;
            c.oom_killed = false;
            c.ports = c
                .wanted_ports
                .iter()
                .map(|&container| {
                    port += 1;
                    PortBinding { container, host: port, protocol: Protocol::Tcp, host_ip: "0.0.0.0".into() }
                })
                .collect();
        }
        inner.next_port = port;
        if hang {
            return Err(timed_out());
        }
        Ok(())
    }

    /// As the engines do (both checked by hand against Docker 20.10 and Podman 4.3): a name in
    /// use is a 409 on both (Podman's rename, unlike its create, says 409); the container's own
    /// name is refused by Docker (400) and taken as done by Podman (204); a name outside
    /// `[a-zA-Z0-9][a-zA-Z0-9_.-]+` is a 400 from Docker, a 500 from Podman.
    fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        let hang = self.enter("rename", &format!("{id} {name}"))?;
        let mut inner = self.lock();
        let Some(key) = Self::find(&inner, id) else { return Err(no_such(id)) };
        let valid = name.len() >= 2
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
        if !valid {
            let status = if inner.podman { 500 } else { 400 };
            let message = format!("Invalid container name (/{name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
            return Err(DockerError::Api { status, message });
        }
        if inner.containers[&key].name == name && !inner.podman {
            let message = "Renaming a container with the same name as its current name".to_string();
            return Err(DockerError::Api { status: 400, message });
        }
        if let Some(other) = inner.containers.values().find(|c| c.name == name && c.id != key) {
            let message = if inner.podman {
                format!("renaming container {key}: name {name} already in use, cannot rename container {key}: container already exists")
            } else {
                format!("Error when allocating new name: Conflict. The container name \"/{name}\" is already in use by container \"{}\"", other.id)
            };
            return Err(DockerError::Api { status: 409, message });
        }
        inner.containers.get_mut(&key).expect("found above").name = name.to_string();
        if hang {
            return Err(timed_out());
        }
        Ok(())
    }

    fn stop(&self, id: &str, _grace: Duration) -> Result<(), DockerError> {
        let hang = self.enter("stop", id)?;
        let mut inner = self.lock();
        inner.clock += 1_000;
        let at = Timestamp(inner.clock);
        let Some(key) = Self::find(&inner, id) else { return Err(no_such(id)) };
        let c = inner.containers.get_mut(&key).expect("found above");
        if c.status == "running" {
            c.status = "exited".into();
            c.exit_code = 143;
            c.finished_at = Some(at);
        }
        if hang {
            return Err(timed_out());
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), DockerError> {
        let hang = self.enter("remove", id)?;
        let mut inner = self.lock();
        if let Some(key) = Self::find(&inner, id) {
            inner.containers.remove(&key);
        }
        if hang {
            return Err(timed_out());
        }
        Ok(())
    }

    fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        if self.enter("inspect", id)? {
            return Err(timed_out());
        }
        let inner = self.lock();
        let key = Self::find(&inner, id).ok_or_else(|| no_such(id))?;
        Ok(Self::info(&inner.containers[&key]))
    }

    /// The fake's containers print their own id, once.
    fn logs(&self, id: &str, _opts: &LogOptions) -> Result<LogStream, DockerError> {
        if self.enter("logs", id)? {
            return Err(timed_out());
        }
        let inner = self.lock();
        let key = Self::find(&inner, id).ok_or_else(|| no_such(id))?;
        let output = format!("{key}\n").into_bytes();
        Ok(LogStream { reader: Box::new(io::Cursor::new(output)), close: Box::new(|| {}) })
    }

    fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError> {
        if self.enter("list", &labels.join(","))? {
            return Err(timed_out());
        }
        let inner = self.lock();
        let wanted: Vec<(&str, &str)> = labels.iter().filter_map(|l| l.split_once('=')).collect();
        Ok(inner
            .containers
            .values()
            .filter(|c| wanted.iter().all(|(k, v)| c.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                names: vec![format!("/{}", c.name)],
                state: c.status.clone(),
                labels: c.labels.clone(),
                created: c.created,
            })
            .collect())
    }

    fn events(&self, _labels: &[String]) -> Result<Events, DockerError> {
        self.enter("events", "")?;
        Ok(Box::new(std::iter::empty()))
    }
}
