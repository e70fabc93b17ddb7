//! The Docker Engine API client: HTTP/1.1 over the engine's Unix socket, with the calls a worker
//! needs (image check and pull, create, start, rename, stop, remove, inspect, list by label,
//! events), image builds (`docker_cli::build`), and images exported and loaded
//! (`docker_cli::images`).
//!
//! This file owns the calls: the engine's paths, the API version negotiated with it, and what each
//! status means for a call (a missing container removed is not an error). The framing of HTTP/1.1
//! over the socket is `docker_cli::framing`; Docker JSON and our own types for it
//! (`ContainerInfo`, `ContainerSummary`, `ContainerEvent`) are `docker_cli::wire`, re-exported
//! here, so no Docker JSON leaks to callers. Must not hold task state or decide anything about
//! tasks.
//!
//! Why our own small HTTP client rather than ureq: ureq 3 can carry HTTP over a Unix socket only
//! through its `unversioned` transport traits, which are exempt from semver; the engine needs just
//! a request line, a few headers and a body back (fixed length or chunked), and owning that lets
//! each call set its own deadline on the socket. A connection is opened per call: connecting to a
//! Unix socket costs tens of microseconds, against milliseconds for the cheapest engine call.

mod build;
mod framing;
mod images;
mod logs;
mod wire;

pub use build::{BuildError, BuildFailure, BuildOptions, Built, DEFAULT_BUILD_DEADLINE, DEFAULT_MAX_LOG};
pub use images::{ImageExport, ImageInfo, Loaded};
pub use logs::{Demux, LogOptions, Streams};

pub use framing::parse_response;
pub use wire::{
    create_body, is_podman, parse_event, parse_inspect, parse_list, ContainerEvent, ContainerInfo, ContainerSummary,
    LogRotation,
};

use crate::task::TaskSpec;
use framing::{Response, MAX_BODY, MAX_HEADER_LINE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use wire::{parse_created, parse_root_dir, parse_tty, parse_version_answer};

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The oldest Engine API we speak: Engine 20.10 (Debian 12).
pub const MIN_API: (u32, u32) = (1, 41);
/// The newest Engine API whose shapes we have checked; newer engines are spoken to in this version.
pub const MAX_API: (u32, u32) = (1, 47);
/// Ordinary calls (everything but stop, pull and streams) must answer within this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A container list is read as it is parsed and may be long (many containers, large labels):
/// it gets longer than an ordinary call.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// What went wrong talking to the engine.
#[derive(Debug)]
pub enum DockerError {
    /// The socket could not be reached: the engine is down or the path is wrong.
    Unreachable { socket: PathBuf, source: io::Error },
    /// The exchange broke off half-way (including timeouts).
    Io(io::Error),
    /// The engine answered something that is not HTTP or not the JSON we expect.
    Protocol(String),
    /// The engine refused, with its status code and message.
    Api { status: u16, message: String },
    /// The engine's API version range and ours do not meet.
    UnsupportedEngine(String),
}

impl DockerError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Api { status: 404, .. })
    }

    /// True when the engine itself could not be reached or stopped answering, as opposed to
    /// refusing a request.
    pub fn is_engine_down(&self) -> bool {
        matches!(self, DockerError::Unreachable { .. } | DockerError::Io(_))
    }

    /// A refusal because of a container's current state: a name in use, a removal already under
    /// way. Docker says so with 409; Podman 4 answers 500 with the same words (`… that name is
    /// already in use`), so the words are what count for a 500. The one place where a caller
    /// learns that an engine meant "conflict".
    pub fn is_conflict(&self) -> bool {
        match self {
            DockerError::Api { status: 409, .. } => true,
            DockerError::Api { status: 500, message } => CONFLICT_WORDS.iter().any(|w| message.contains(w)),
            _ => false,
        }
    }

    /// A removal refused because one is already under way (Docker: 409, Podman: 500).
    pub fn is_removal_in_progress(&self) -> bool {
        matches!(self, DockerError::Api { message, .. } if self.is_conflict() && message.contains("already in progress"))
    }

    /// The engine has no init binary for `HostConfig.Init` (Podman without catatonit).
    pub fn is_missing_init(&self) -> bool {
        matches!(self, DockerError::Api { message, .. } if message.contains(MISSING_INIT))
    }
}

/// How Podman words the conflicts it answers with 500.
const CONFLICT_WORDS: [&str; 2] = ["is already in use", "already in progress"];
/// How Podman says it has no init binary (`container-init binary not found on the host: stat
/// /usr/libexec/podman/catatonit: no such file or directory`).
const MISSING_INIT: &str = "container-init binary not found";
/// What to do about it, added to the engine's words.
pub const INSTALL_INIT: &str =
    "the engine has no init binary for the container's PID 1: install catatonit on this node (Debian: apt-get install catatonit)";

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::Unreachable { socket, .. } => {
                write!(f, "docker engine unreachable at {}", socket.display())
            }
            DockerError::Io(_) => f.write_str("docker engine exchange failed"),
            DockerError::Protocol(what) => write!(f, "docker engine answered unexpectedly: {what}"),
            DockerError::Api { status, message } if self.is_missing_init() => {
                write!(f, "{INSTALL_INIT}; docker engine refused ({status}): {message}")
            }
            DockerError::Api { status, message } => write!(f, "docker engine refused ({status}): {message}"),
            DockerError::UnsupportedEngine(what) => write!(f, "unsupported docker engine: {what}"),
        }
    }
}

impl std::error::Error for DockerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DockerError::Unreachable { source, .. } => Some(source),
            DockerError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The socket to use: the flag if given, else `DOCKER_HOST` if it is a `unix://` URL, else the
/// default path. A `DOCKER_HOST` of another scheme is refused rather than ignored.
pub fn socket_path(flag: Option<&Path>, docker_host: Option<&str>) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    match docker_host.filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(format!("DOCKER_HOST={h:?} is not supported: skiff talks to the engine over unix:///path")),
        },
    }
}

/// A client for one engine. Cheap to share between threads (`&Docker` is `Sync`).
pub struct Docker {
    socket: PathBuf,
    log_rotation: LogRotation,
    /// `/v1.41`-style prefix, negotiated on first use (the engine may be down when we start).
    prefix: Mutex<Option<String>>,
}

/// How to create a task's container.
pub struct CreateOptions<'a> {
    pub name: &'a str,
    pub spec: &'a TaskSpec,
    pub labels: &'a BTreeMap<String, String>,
}

impl Docker {
    pub fn new(socket: impl Into<PathBuf>) -> Docker {
        Docker { socket: socket.into(), log_rotation: LogRotation::default(), prefix: Mutex::new(None) }
    }

    /// The log cap every container this client creates gets.
    pub fn with_log_rotation(mut self, rotation: LogRotation) -> Docker {
        self.log_rotation = rotation;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The engine's version and the API version we speak with it, negotiating if needed.
    pub fn version(&self) -> Result<(String, String), DockerError> {
        let resp = framing::exchange(&self.socket, "GET", "/version", None, CALL_TIMEOUT)?;
        let (version, newest, oldest) = parse_version_answer(&resp.ok()?.body)?;
        let chosen = choose_api_version(&newest, &oldest)?;
        *self.prefix.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("/v{chosen}"));
        Ok((version, chosen))
    }

    /// Where the engine keeps its data (`DockerRootDir`): the disk that containers fill.
    pub fn root_dir(&self) -> Result<PathBuf, DockerError> {
        let resp = self.call("GET", "/info", None, CALL_TIMEOUT)?.ok()?;
        Ok(PathBuf::from(parse_root_dir(&resp.body)?))
    }

    fn prefix(&self) -> Result<String, DockerError> {
        if let Some(p) = self.prefix.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(p);
        }
        self.version()?;
        Ok(self.prefix.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default())
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>, timeout: Duration) -> Result<Response, DockerError> {
        let full = format!("{}{path}", self.prefix()?);
        let bytes = body.map(|b| b.to_string().into_bytes());
        framing::exchange(&self.socket, method, &full, bytes.as_deref(), timeout)
    }

    pub fn ping(&self) -> Result<(), DockerError> {
        self.ping_within(Duration::from_secs(5))
    }

    /// `GET /_ping`, answered within `deadline` or failed: an engine that accepts and does not
    /// answer (hung, not dead) is told within that, not after the 30 s of an ordinary call.
    pub fn ping_within(&self, deadline: Duration) -> Result<(), DockerError> {
        framing::exchange(&self.socket, "GET", "/_ping", None, deadline)?.ok().map(drop)
    }

    pub fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.call("GET", &format!("/images/{}/json", encode(image)), None, CALL_TIMEOUT)?.ok() {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Pulls an image. The engine answers 200 and then reports failures inside the progress
    /// stream, so the stream is read to its end and searched for an error.
    pub fn pull(&self, image: &str, timeout: Duration) -> Result<(), DockerError> {
        let (repo, tag) = split_reference(image);
        let path = format!("/images/create?fromImage={}&tag={}", encode(repo), encode(tag));
        let resp = self.call("POST", &path, None, timeout)?.ok()?;
        for line in resp.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line) {
                if let Some(message) = obj.get("error").and_then(Value::as_str) {
                    return Err(DockerError::Api { status: 500, message: message.to_string() });
                }
            }
        }
        Ok(())
    }

    /// Creates a container and returns its id.
    pub fn create(&self, opts: &CreateOptions) -> Result<String, DockerError> {
        let body = create_body(opts.spec, opts.labels, self.log_rotation);
        let path = format!("/containers/create?name={}", encode(opts.name));
        let resp = self.call("POST", &path, Some(&body), CALL_TIMEOUT)?.ok()?;
        parse_created(&resp.body)
    }

    /// Starts a container; starting a running one is not an error.
    pub fn start(&self, id: &str) -> Result<(), DockerError> {
        self.call("POST", &format!("/containers/{}/start", encode(id)), None, CALL_TIMEOUT)?.ok().map(drop)
    }

    /// `POST /containers/{id}/rename?name=…` (Docker, and Podman's compatible API): a name in
    /// use is a conflict (409 from both), a missing container a 404; Docker refuses (400) the
    /// name the container already has, Podman takes it as done.
    pub fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        let path = format!("/containers/{}/rename?name={}", encode(id), encode(name));
        self.call("POST", &path, None, CALL_TIMEOUT)?.ok().map(drop)
    }

    /// SIGTERM, then SIGKILL after `grace`; stopping a stopped container is not an error.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let path = format!("/containers/{}/stop?t={}", encode(id), grace.as_secs());
        self.call("POST", &path, None, grace + CALL_TIMEOUT)?.ok().map(drop)
    }

    /// Removes a container (killing it if it runs); removing a missing one is not an error.
    pub fn remove(&self, id: &str) -> Result<(), DockerError> {
        match self.call("DELETE", &format!("/containers/{}?force=1&v=1", encode(id)), None, CALL_TIMEOUT)?.ok() {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            // "removal of container ... is already in progress"
            Err(e) if e.is_removal_in_progress() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        let resp = self.call("GET", &format!("/containers/{}/json", encode(id)), None, CALL_TIMEOUT)?.ok()?;
        parse_inspect(&resp.body)
    }

    /// Every container (running or not) carrying all the given `key=value` labels. The answer
    /// is parsed as it is read, never held whole, and label values longer than any Skiff makes
    /// are left out: containers made by others cannot make the list too large to read.
    pub fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError> {
        let filters = json!({ "label": labels }).to_string();
        let path = format!("{}/containers/json?all=1&filters={}", self.prefix()?, encode(&filters));
        let (status, body) = framing::exchange_reader(&self.socket, "GET", &path, LIST_TIMEOUT)?;
        if !(200..300).contains(&status) {
            let mut text = Vec::new();
            body.take(MAX_HEADER_LINE as u64).read_to_end(&mut text).map_err(DockerError::Io)?;
            return Err(framing::api_error(status, &text));
        }
        wire::parse_list_from(body)
    }

    /// Opens a container's log (`GET /containers/{id}/logs`): decoded from the engine's frames,
    /// or raw for a container with a TTY. A followed log ends when the container stops; every
    /// other read has the ordinary call's deadline per read.
    pub fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream, DockerError> {
        let inspected = self.call("GET", &format!("/containers/{}/json", encode(id)), None, CALL_TIMEOUT)?.ok()?;
        let tty = parse_tty(&inspected.body)?;
        let path = format!("{}/containers/{}/logs?{}", self.prefix()?, encode(id), opts.query());
        let read_timeout = if opts.follow { None } else { Some(CALL_TIMEOUT) };
        let (status, body, handle) = framing::open_closable(&self.socket, &path, read_timeout)?;
        if !(200..300).contains(&status) {
            let mut text = Vec::new();
            crate::control::best_effort(body.take(MAX_HEADER_LINE as u64).read_to_end(&mut text));
            return Err(framing::api_error(status, &text));
        }
        let reader: Box<dyn Read + Send> = if tty { body } else { Box::new(Demux::new(body)) };
        let close = Box::new(move || {
            crate::control::best_effort(handle.shutdown(std::net::Shutdown::Both));
        });
        Ok(LogStream { reader, close })
    }

    /// Opens the event stream for containers carrying the given labels. The returned reader
    /// yields events until the engine closes the stream or the socket fails.
    pub fn events(&self, labels: &[String]) -> Result<EventStream, DockerError> {
        let filters = json!({ "type": ["container"], "label": labels }).to_string();
        let path = format!("{}/events?filters={}", self.prefix()?, encode(&filters));
        let (status, reader) = framing::open(&self.socket, &path)?;
        if status != 200 {
            let mut body = Vec::new();
            crate::control::best_effort(reader.take(MAX_HEADER_LINE as u64).read_to_end(&mut body));
            return Err(framing::api_error(status, &body));
        }
        Ok(EventStream { reader: BufReader::new(reader) })
    }
}

/// A container's output being read: its bytes (frames decoded) and a way to end the read from
/// another thread.
pub struct LogStream {
    /// The output, frames decoded.
    pub reader: Box<dyn Read + Send>,
    pub close: Box<dyn FnOnce() + Send>,
}

/// The engine's event stream for containers.
pub struct EventStream {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Iterator for EventStream {
    type Item = Result<ContainerEvent, DockerError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut line = Vec::new();
            match (&mut self.reader).take(MAX_BODY).read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(_) => return Some(parse_event(&line)),
                Err(e) => return Some(Err(DockerError::Io(e))),
            }
        }
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The highest API version both sides speak, at least `MIN_API`.
pub fn choose_api_version(engine_max: &str, engine_min: &str) -> Result<String, DockerError> {
    let max = parse_version(engine_max)
        .ok_or_else(|| DockerError::Protocol(format!("engine API version {engine_max:?} is not a version")))?;
    let min = parse_version(engine_min).unwrap_or(MIN_API);
    if max < MIN_API {
        return Err(DockerError::UnsupportedEngine(format!(
            "it speaks API {engine_max} at most; skiff needs {}.{} or newer (Engine 20.10+)",
            MIN_API.0, MIN_API.1
        )));
    }
    let chosen = max.min(MAX_API);
    if chosen < min {
        return Err(DockerError::UnsupportedEngine(format!(
            "it needs API {engine_min} or newer; skiff speaks {}.{} to {}.{}",
            MIN_API.0, MIN_API.1, MAX_API.0, MAX_API.1
        )));
    }
    Ok(format!("{}.{}", chosen.0, chosen.1))
}

/// `repo[:tag]` or `repo@digest` into the two query values of a pull.
fn split_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_precedence() {
        let flag = Path::new("/tmp/x.sock");
        assert_eq!(socket_path(Some(flag), Some("unix:///y")), Ok(flag.to_path_buf()));
        assert_eq!(socket_path(None, Some("unix:///run/d.sock")), Ok(PathBuf::from("/run/d.sock")));
        assert_eq!(socket_path(None, None), Ok(PathBuf::from(DEFAULT_SOCKET)));
        assert_eq!(socket_path(None, Some("")), Ok(PathBuf::from(DEFAULT_SOCKET)));
        assert!(socket_path(None, Some("tcp://1.2.3.4:2375")).is_err());
    }

    #[test]
    fn api_version_choice() {
        assert_eq!(choose_api_version("1.41", "1.12").unwrap(), "1.41");
        assert_eq!(choose_api_version("1.52", "1.44").unwrap(), "1.47");
        assert!(matches!(choose_api_version("1.40", "1.12"), Err(DockerError::UnsupportedEngine(_))));
        assert!(matches!(choose_api_version("1.60", "1.50"), Err(DockerError::UnsupportedEngine(_))));
        assert!(choose_api_version("x", "1.12").is_err());
    }

    #[test]
    fn refusals_classified_for_both_engines() {
        let api = |status, message: &str| DockerError::Api { status, message: message.into() };
        let podman_name = "container create: creating container storage: the container name \"x\" is already in use \
                           by 3a78. You have to remove that container to be able to reuse that name: that name is \
                           already in use";
        // (what, error, conflict, removal in progress, missing init)
        let cases = [
            (
                "docker, name in use",
                api(409, "Conflict. The container name \"/x\" is already in use"),
                true,
                false,
                false,
            ),
            ("podman, name in use", api(500, podman_name), true, false, false),
            ("docker, removal", api(409, "removal of container x is already in progress"), true, true, false),
            ("podman, removal", api(500, "removal of container x is already in progress"), true, true, false),
            ("another 500", api(500, "runc create failed"), false, false, false),
            ("not found", api(404, "No such container: x"), false, false, false),
            ("a 400 with the words", api(400, "x is already in use"), false, false, false),
            (
                "podman, no catatonit",
                api(500, "container-init binary not found on the host: stat /usr/libexec/podman/catatonit"),
                false,
                false,
                true,
            ),
            ("unreachable", DockerError::Io(io::Error::other("x")), false, false, false),
        ];
        for (what, e, conflict, removing, init) in cases {
            assert_eq!(
                (e.is_conflict(), e.is_removal_in_progress(), e.is_missing_init()),
                (conflict, removing, init),
                "{what}"
            );
        }
    }

    #[test]
    fn a_missing_init_says_what_to_install() {
        let e = DockerError::Api { status: 500, message: "container-init binary not found on the host: x".into() };
        let text = e.to_string();
        assert!(text.starts_with(INSTALL_INIT), "{text}");
        assert!(text.contains("apt-get install catatonit") && text.ends_with("not found on the host: x"), "{text}");
    }

    #[test]
    fn references_split_for_pull() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("skiff/busybox:1"), ("skiff/busybox", "1"));
        assert_eq!(split_reference("localhost:5000/a"), ("localhost:5000/a", "latest"));
        assert_eq!(split_reference("a@sha256:ab"), ("a", "sha256:ab"));
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode(r#"{"label":["skiff.node=w1"]}"#), "%7B%22label%22%3A%5B%22skiff.node%3Dw1%22%5D%7D");
        assert_eq!(encode("skiff/busybox"), "skiff%2Fbusybox");
    }
}
