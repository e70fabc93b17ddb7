//! The Docker Engine API client: HTTP/1.1 over the engine's Unix socket, with the calls a worker
//! needs (image check and pull, create, start, stop, remove, inspect, list by label, events).
//!
//! Owns the engine's wire format: Docker JSON stays in this file and callers get our own types
//! (`ContainerInfo`, `ContainerSummary`, `ContainerEvent`). Must not hold task state or decide
//! anything about tasks.
//!
//! Why our own small HTTP client rather than ureq: ureq 3 can carry HTTP over a Unix socket only
//! through its `unversioned` transport traits, which are exempt from semver; the engine needs just
//! a request line, a few headers and a body back (fixed length or chunked), and owning that lets
//! each call set its own deadline on the socket. A connection is opened per call: connecting to a
//! Unix socket costs tens of microseconds, against milliseconds for the cheapest engine call.

use crate::task::{PortBinding, Protocol, TaskSpec};
use crate::time::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The oldest Engine API we speak: Engine 20.10 (Debian 12).
pub const MIN_API: (u32, u32) = (1, 41);
/// The newest Engine API whose shapes we have checked; newer engines are spoken to in this version.
pub const MAX_API: (u32, u32) = (1, 47);
/// Ordinary calls (everything but stop, pull and streams) must answer within this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: u64 = 64 * 1024 * 1024;
const MAX_HEADER_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

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
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::Unreachable { socket, .. } => {
                write!(f, "docker engine unreachable at {}", socket.display())
            }
            DockerError::Io(_) => f.write_str("docker engine exchange failed"),
            DockerError::Protocol(what) => write!(f, "docker engine answered unexpectedly: {what}"),
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
    /// `/v1.41`-style prefix, negotiated on first use (the engine may be down when we start).
    prefix: Mutex<Option<String>>,
}

/// How to create a task's container.
pub struct CreateOptions<'a> {
    pub name: &'a str,
    pub spec: &'a TaskSpec,
    pub labels: &'a BTreeMap<String, String>,
}

/// A container as inspect shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    /// created, running, paused, restarting, removing, exited or dead.
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    /// The engine's own error for this container (e.g. why it could not start), often empty.
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortBinding>,
}

/// A container as the list call shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSummary {
    pub id: String,
    pub names: Vec<String>,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub created: Timestamp,
}

/// One line of the engine's event stream, for containers.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    pub action: String,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub exit_code: Option<i64>,
    pub time: Timestamp,
}

impl Docker {
    pub fn new(socket: impl Into<PathBuf>) -> Docker {
        Docker { socket: socket.into(), prefix: Mutex::new(None) }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The engine's version and the API version we speak with it, negotiating if needed.
    pub fn version(&self) -> Result<(String, String), DockerError> {
        let resp = self.exchange("GET", "/version", None, CALL_TIMEOUT)?;
        let v: VersionWire = parse_json(&resp.ok()?.body)?;
        let chosen = choose_api_version(&v.api_version, &v.min_api_version)?;
        *self.prefix.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("/v{chosen}"));
        Ok((v.version, chosen))
    }

    /// Where the engine keeps its data (`DockerRootDir`): the disk that containers fill.
    pub fn root_dir(&self) -> Result<PathBuf, DockerError> {
        let resp = self.call("GET", "/info", None, CALL_TIMEOUT)?.ok()?;
        let info: InfoWire = parse_json(&resp.body)?;
        Ok(PathBuf::from(info.root_dir))
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
        self.exchange(method, &full, bytes.as_deref(), timeout)
    }

    pub fn ping(&self) -> Result<(), DockerError> {
        self.exchange("GET", "/_ping", None, Duration::from_secs(5))?.ok().map(drop)
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
        let body = create_body(opts.spec, opts.labels);
        let path = format!("/containers/create?name={}", encode(opts.name));
        let resp = self.call("POST", &path, Some(&body), CALL_TIMEOUT)?.ok()?;
        let created: CreatedWire = parse_json(&resp.body)?;
        Ok(created.id)
    }

    /// Starts a container; starting a running one is not an error.
    pub fn start(&self, id: &str) -> Result<(), DockerError> {
        self.call("POST", &format!("/containers/{}/start", encode(id)), None, CALL_TIMEOUT)?.ok().map(drop)
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
            Err(DockerError::Api { status: 409, message }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        let resp = self.call("GET", &format!("/containers/{}/json", encode(id)), None, CALL_TIMEOUT)?.ok()?;
        parse_inspect(&resp.body)
    }

    /// Every container (running or not) carrying all the given `key=value` labels.
    pub fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError> {
        let filters = json!({ "label": labels }).to_string();
        let path = format!("/containers/json?all=1&filters={}", encode(&filters));
        let resp = self.call("GET", &path, None, CALL_TIMEOUT)?.ok()?;
        parse_list(&resp.body)
    }

    /// Opens the event stream for containers carrying the given labels. The returned reader
    /// yields events until the engine closes the stream or the socket fails.
    pub fn events(&self, labels: &[String]) -> Result<EventStream, DockerError> {
        let filters = json!({ "type": ["container"], "label": labels }).to_string();
        let path = format!("{}/events?filters={}", self.prefix()?, encode(&filters));
        let (status, reader) = self.open(&path)?;
        if status != 200 {
            let mut body = Vec::new();
            let _ = reader.take(MAX_HEADER_LINE as u64).read_to_end(&mut body);
            return Err(api_error(status, &body));
        }
        Ok(EventStream { reader: BufReader::new(reader) })
    }

    fn connect(&self, timeout: Option<Duration>) -> Result<UnixStream, DockerError> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|source| DockerError::Unreachable { socket: self.socket.clone(), source })?;
        stream.set_read_timeout(timeout).map_err(DockerError::Io)?;
        stream.set_write_timeout(Some(CALL_TIMEOUT)).map_err(DockerError::Io)?;
        Ok(stream)
    }

    /// One request and its whole response, all within `timeout`.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Response, DockerError> {
        let mut stream = self.connect(Some(timeout))?;
        write_request(&mut stream, method, path, body).map_err(DockerError::Io)?;
        let mut reader = BufReader::new(Deadlined { stream, deadline: std::time::Instant::now() + timeout });
        let head = read_head(&mut reader)?;
        let mut body = Vec::new();
        body_reader(reader, &head).take(MAX_BODY + 1).read_to_end(&mut body).map_err(DockerError::Io)?;
        if body.len() as u64 > MAX_BODY {
            return Err(DockerError::Protocol(format!("response body over {MAX_BODY} bytes")));
        }
        Ok(Response { status: head.status, body })
    }

    /// A GET whose body is read as it comes (no read timeout: streams wait for events).
    fn open(&self, path: &str) -> Result<(u16, Box<dyn Read + Send>), DockerError> {
        let mut stream = self.connect(None)?;
        write_request(&mut stream, "GET", path, None).map_err(DockerError::Io)?;
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader)?;
        Ok((head.status, body_reader(reader, &head)))
    }
}

/// A socket whose reads share one deadline: a response trickling in cannot hold a thread for
/// longer than its call's timeout.
struct Deadlined {
    stream: UnixStream,
    deadline: std::time::Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the engine did not answer in time"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
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

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    /// The response itself if the status is a success (2xx, or 304 "already so"), else the
    /// engine's error.
    fn ok(self) -> Result<Response, DockerError> {
        if (200..300).contains(&self.status) || self.status == 304 {
            Ok(self)
        } else {
            Err(api_error(self.status, &self.body))
        }
    }
}

fn api_error(status: u16, body: &[u8]) -> DockerError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(500).collect());
    DockerError::Api { status, message }
}

fn write_request(stream: &mut UnixStream, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    match body {
        Some(b) => head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", b.len())),
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    let mut message = head.into_bytes();
    message.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&message)?;
    stream.flush()
}

struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
}

fn read_line_limited(reader: &mut impl BufRead) -> Result<String, DockerError> {
    let mut line = Vec::new();
    reader.take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line).map_err(DockerError::Io)?;
    if !line.ends_with(b"\n") {
        return Err(DockerError::Protocol("header line too long or cut off".into()));
    }
    String::from_utf8(line)
        .map(|l| l.trim_end().to_string())
        .map_err(|_| DockerError::Protocol("header is not UTF-8".into()))
}

fn read_head(reader: &mut impl BufRead) -> Result<Head, DockerError> {
    let status_line = read_line_limited(reader)?;
    let status = parse_status_line(&status_line)?;
    let mut head = Head { status, content_length: None, chunked: false };
    for _ in 0..MAX_HEADERS {
        let line = read_line_limited(reader)?;
        if line.is_empty() {
            if matches!(status, 204 | 304) || (100..200).contains(&status) {
                head.content_length = Some(0);
                head.chunked = false;
            }
            return Ok(head);
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| DockerError::Protocol(format!("bad header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value.parse().map_err(|_| DockerError::Protocol(format!("bad content-length {value:?}")))?;
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Err(DockerError::Protocol(format!("more than {MAX_HEADERS} headers")))
}

fn parse_status_line(line: &str) -> Result<u16, DockerError> {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => {
            code.parse().map_err(|_| DockerError::Protocol(format!("bad status line {line:?}")))
        }
        _ => Err(DockerError::Protocol(format!("bad status line {line:?}"))),
    }
}

fn body_reader<R: BufRead + Send + 'static>(reader: R, head: &Head) -> Box<dyn Read + Send> {
    if head.chunked {
        Box::new(ChunkedReader { inner: reader, remaining: 0, done: false })
    } else if let Some(n) = head.content_length {
        Box::new(reader.take(n))
    } else {
        Box::new(reader)
    }
}

/// Decodes `Transfer-Encoding: chunked` as it is read.
struct ChunkedReader<R> {
    inner: R,
    remaining: u64,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    fn next_chunk(&mut self) -> io::Result<()> {
        let mut line = Vec::new();
        (&mut self.inner).take(1024).read_until(b'\n', &mut line)?;
        let text = std::str::from_utf8(&line).map_err(|_| bad_chunk("chunk size is not text"))?;
        let size_text = text.trim().split(';').next().unwrap_or("");
        if line.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside chunked body"));
        }
        let size = u64::from_str_radix(size_text, 16).map_err(|_| bad_chunk("bad chunk size"))?;
        if size == 0 {
            self.done = true;
            // trailers, ended by an empty line; a stream closed right after "0\r\n" is fine too
            loop {
                let mut trailer = Vec::new();
                let n = (&mut self.inner).take(1024).read_until(b'\n', &mut trailer)?;
                if n == 0 || trailer.iter().all(u8::is_ascii_whitespace) {
                    break;
                }
            }
        }
        self.remaining = size;
        Ok(())
    }
}

fn bad_chunk(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.remaining == 0 {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let max = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a chunk"));
        }
        self.remaining -= n as u64;
        if self.remaining == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(bad_chunk("chunk not followed by CRLF"));
            }
        }
        Ok(n)
    }
}

/// Parses a whole HTTP response as the engine would send it (status and body): what every call
/// goes through, exposed for fuzzing.
pub fn parse_response(bytes: &[u8]) -> Result<(u16, Vec<u8>), DockerError> {
    let mut reader = io::Cursor::new(bytes.to_vec());
    let head = read_head(&mut reader)?;
    let mut body = Vec::new();
    body_reader(reader, &head).take(MAX_BODY + 1).read_to_end(&mut body).map_err(DockerError::Io)?;
    Ok((head.status, body))
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, DockerError> {
    serde_json::from_slice(body).map_err(|e| DockerError::Protocol(e.to_string()))
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

/// The body of a create call for a task's spec.
pub fn create_body(spec: &TaskSpec, labels: &BTreeMap<String, String>) -> Value {
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container, p.protocol.as_str());
        // PortBindings publish nothing unless the port is also exposed (the CLI does this for you).
        exposed.insert(key.clone(), json!({}));
        let host_port = p.host.filter(|h| *h != 0).map(|h| h.to_string()).unwrap_or_default();
        bindings.insert(key, json!([{ "HostIp": "", "HostPort": host_port }]));
    }
    // Init: a tiny init (docker-init) is PID 1 and forwards signals, so a task's process gets
    // SIGTERM's default action on stop instead of being ignored as PID 1 and killed after the grace.
    let mut host_config = json!({ "PortBindings": bindings, "Init": true });
    if let Some(mb) = spec.memory_mb {
        let bytes = mb * 1024 * 1024;
        host_config["Memory"] = json!(bytes);
        // equal to Memory: no swap on top of the limit
        host_config["MemorySwap"] = json!(bytes);
    }
    if let Some(cpus) = spec.cpus {
        host_config["NanoCpus"] = json!((cpus * 1e9).round() as i64);
    }
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut body = json!({
        "Image": spec.image,
        "Env": env,
        "Labels": labels,
        "ExposedPorts": exposed,
        "HostConfig": host_config,
    });
    if !spec.cmd.is_empty() {
        body["Cmd"] = json!(spec.cmd);
    }
    body
}

#[derive(Deserialize)]
struct VersionWire {
    #[serde(rename = "Version", default)]
    version: String,
    #[serde(rename = "ApiVersion")]
    api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    min_api_version: String,
}

#[derive(Deserialize)]
struct InfoWire {
    #[serde(rename = "DockerRootDir", default)]
    root_dir: String,
}

#[derive(Deserialize)]
struct CreatedWire {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Deserialize)]
struct InspectWire {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "State")]
    state: StateWire,
    #[serde(rename = "Config", default)]
    config: Option<ConfigWire>,
    #[serde(rename = "NetworkSettings", default)]
    network: Option<NetworkWire>,
}

#[derive(Deserialize)]
struct StateWire {
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Running", default)]
    running: bool,
    #[serde(rename = "ExitCode", default)]
    exit_code: i64,
    #[serde(rename = "Error", default)]
    error: String,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
    #[serde(rename = "StartedAt", default)]
    started_at: String,
    #[serde(rename = "FinishedAt", default)]
    finished_at: String,
}

#[derive(Deserialize, Default)]
struct ConfigWire {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct NetworkWire {
    #[serde(rename = "Ports", default)]
    ports: Option<BTreeMap<String, Option<Vec<HostPortWire>>>>,
}

#[derive(Deserialize)]
struct HostPortWire {
    #[serde(rename = "HostIp", default)]
    host_ip: String,
    #[serde(rename = "HostPort", default)]
    host_port: String,
}

/// Docker writes "0001-01-01T00:00:00Z" for a time that has not happened.
fn docker_time(s: &str) -> Option<Timestamp> {
    Timestamp::parse(s).filter(|t| t.millis() > 0)
}

pub fn parse_inspect(body: &[u8]) -> Result<ContainerInfo, DockerError> {
    let w: InspectWire = parse_json(body)?;
    let config = w.config.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, hosts) in w.network.and_then(|n| n.ports).unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let (Ok(container), Some(protocol)) = (port.parse::<u16>(), parse_protocol(proto)) else {
            continue;
        };
        for h in hosts.unwrap_or_default() {
            if let Ok(host) = h.host_port.parse::<u16>() {
                ports.push(PortBinding { container, protocol, host_ip: h.host_ip, host });
            }
        }
    }
    // IPv4 bindings first, then by port: the first binding is the one to show a user.
    ports.sort_by_key(|p| (p.host_ip.contains(':'), p.container));
    Ok(ContainerInfo {
        id: w.id,
        name: w.name.trim_start_matches('/').to_string(),
        image: config.image,
        status: w.state.status,
        running: w.state.running,
        exit_code: w.state.exit_code,
        error: w.state.error,
        oom_killed: w.state.oom_killed,
        started_at: docker_time(&w.state.started_at),
        finished_at: docker_time(&w.state.finished_at),
        labels: config.labels.unwrap_or_default(),
        ports,
    })
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

#[derive(Deserialize)]
struct SummaryWire {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Created", default)]
    created: i64,
}

pub fn parse_list(body: &[u8]) -> Result<Vec<ContainerSummary>, DockerError> {
    let items: Vec<SummaryWire> = parse_json(body)?;
    Ok(items
        .into_iter()
        .map(|w| ContainerSummary {
            id: w.id,
            names: w.names.unwrap_or_default().into_iter().map(|n| n.trim_start_matches('/').to_string()).collect(),
            state: w.state,
            labels: w.labels.unwrap_or_default(),
            created: Timestamp(w.created.max(0) as u64 * 1000),
        })
        .collect())
}

#[derive(Deserialize)]
struct EventWire {
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: Option<ActorWire>,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Deserialize, Default)]
struct ActorWire {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: Option<BTreeMap<String, String>>,
}

pub fn parse_event(line: &[u8]) -> Result<ContainerEvent, DockerError> {
    let w: EventWire = parse_json(line)?;
    let actor = w.actor.unwrap_or_default();
    let mut attributes = actor.attributes.unwrap_or_default();
    let exit_code = attributes.remove("exitCode").and_then(|c| c.parse().ok());
    // attributes mix labels with name/image; keep what is ours and the name
    let labels = attributes.into_iter().filter(|(k, _)| k.starts_with("skiff.") || k == "name").collect();
    // "exec_start: sh -c ..." style actions carry a suffix; the verb is what matters
    let action = w.action.split(':').next().unwrap_or("").trim().to_string();
    Ok(ContainerEvent {
        action,
        id: actor.id,
        labels,
        exit_code,
        time: Timestamp((w.time_nano.max(0) / 1_000_000) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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

    fn head_and_body(raw: &str) -> Result<(u16, Vec<u8>), DockerError> {
        let mut reader = Cursor::new(raw.as_bytes().to_vec());
        let head = read_head(&mut reader)?;
        let mut body = Vec::new();
        body_reader(reader, &head).read_to_end(&mut body).map_err(DockerError::Io)?;
        Ok((head.status, body))
    }

    #[test]
    fn reads_fixed_length_and_chunked_bodies() {
        let (s, b) = head_and_body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hello"[..]));
        let chunked =
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let (s, b) = head_and_body(chunked).unwrap();
        assert_eq!((s, b.as_slice()), (201, &b"Wikipedia"[..]));
        let (s, b) = head_and_body("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!((s, b.len()), (204, 0));
        let (s, b) = head_and_body("HTTP/1.0 200 OK\r\n\r\nuntil eof").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"until eof"[..]));
    }

    #[test]
    fn refuses_broken_responses() {
        assert!(matches!(head_and_body("SSH-2.0\r\n\r\n"), Err(DockerError::Protocol(_))));
        assert!(matches!(head_and_body("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), Err(DockerError::Protocol(_))));
        assert!(matches!(head_and_body("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Err(DockerError::Protocol(_))));
        assert!(head_and_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(head_and_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort").is_err());
        assert!(head_and_body("HTTP/1.1 200 OK\r\nContent-Length: 5").is_err());
    }

    #[test]
    fn api_errors_carry_the_engine_message() {
        let e = api_error(404, br#"{"message":"No such image: nope:latest"}"#);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "docker engine refused (404): No such image: nope:latest");
        let e = api_error(500, b"plain text\n");
        assert_eq!(e.to_string(), "docker engine refused (500): plain text");
    }

    #[test]
    fn create_body_exposes_published_ports_and_sets_limits() {
        let spec = TaskSpec::from_json(
            br#"{"name":"web","image":"skiff/busybox","cmd":["httpd","-f"],"env":{"A":"1"},
                "cpus":0.5,"memory_mb":64,"ports":[{"container":8080},{"container":53,"host":5353,"protocol":"udp"}]}"#,
        )
        .unwrap();
        let labels = BTreeMap::from([("skiff.task-id".to_string(), "x".to_string())]);
        let body = create_body(&spec, &labels);
        assert_eq!(body["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
        assert_eq!(body["HostConfig"]["PortBindings"]["8080/tcp"], json!([{"HostIp": "", "HostPort": ""}]));
        assert_eq!(body["HostConfig"]["PortBindings"]["53/udp"], json!([{"HostIp": "", "HostPort": "5353"}]));
        assert_eq!(body["HostConfig"]["Memory"], json!(64 * 1024 * 1024));
        assert_eq!(body["HostConfig"]["MemorySwap"], json!(64 * 1024 * 1024));
        assert_eq!(body["HostConfig"]["NanoCpus"], json!(500_000_000));
        assert_eq!(body["Env"], json!(["A=1"]));
        assert_eq!(body["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(body["Labels"], json!({"skiff.task-id": "x"}));
        assert!(body["HostConfig"].get("RestartPolicy").is_none(), "skiff does its own restarts");
        assert_eq!(body["HostConfig"]["Init"], json!(true));
    }

    #[test]
    fn parses_inspect() {
        let body = br#"{"Id":"abc","Name":"/skiff-web","State":{"Status":"exited","Running":false,"ExitCode":3,
            "Error":"","OOMKilled":false,"StartedAt":"2026-11-25T11:54:34.123456789Z","FinishedAt":"0001-01-01T00:00:00Z"},
            "Config":{"Image":"skiff/busybox","Labels":{"skiff.task-id":"t"}},
            "NetworkSettings":{"Ports":{"8080/tcp":[{"HostIp":"::","HostPort":"32769"},{"HostIp":"0.0.0.0","HostPort":"32768"}],"9/udp":null}}}"#;
        let info = parse_inspect(body).unwrap();
        assert_eq!(info.name, "skiff-web");
        assert_eq!((info.status.as_str(), info.running, info.exit_code), ("exited", false, 3));
        assert_eq!(info.started_at, Some(Timestamp(1_795_607_674_123)));
        assert_eq!(info.finished_at, None);
        assert_eq!(info.labels.get("skiff.task-id").map(String::as_str), Some("t"));
        assert_eq!(info.ports.len(), 2);
        assert_eq!((info.ports[0].host_ip.as_str(), info.ports[0].host), ("0.0.0.0", 32768));
        assert!(parse_inspect(b"{}").is_err());
        assert!(parse_inspect(br#"{"Id":"a","State":{},"Config":null,"NetworkSettings":{"Ports":null}}"#).is_ok());
    }

    #[test]
    fn parses_list_and_events() {
        let list = parse_list(
            br#"[{"Id":"a","Names":["/skiff-x"],"State":"running","Labels":{"skiff.node":"w1"},"Created":10},
                                  {"Id":"b","Names":null,"Labels":null}]"#,
        )
        .unwrap();
        assert_eq!(list[0].names, vec!["skiff-x"]);
        assert_eq!(list[0].created, Timestamp(10_000));
        assert!(list[1].labels.is_empty());
        let ev = parse_event(
            br#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137","image":"i","name":"n","skiff.task-id":"t"}},"timeNano":1795607674123456789}"#,
        )
        .unwrap();
        assert_eq!((ev.action.as_str(), ev.id.as_str(), ev.exit_code), ("die", "abc", Some(137)));
        assert_eq!(ev.labels.len(), 2);
        assert_eq!(ev.time, Timestamp(1_795_607_674_123));
        assert_eq!(parse_event(br#"{"Action":"exec_start: sh -c true"}"#).unwrap().action, "exec_start");
        assert!(parse_event(b"not json").is_err());
    }
}
