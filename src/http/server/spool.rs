//! Large request bodies, spooled to disk: for the routes a service names from a request's head
//! (a build context on the worker), the body is written to a temporary file as it arrives, so
//! that it costs a chunk of memory and not its size. The file is unlinked as soon as it is
//! created: it goes when the request's `SpooledBody` is dropped, or with the process.
//!
//! What bounds it: the route's own limit (`Content-Length` over it is a 413 before a byte is
//! read, a chunked body going past it is a 413 when it does), the bytes and the bodies being
//! spooled at once across connections (`SpoolBudget`: 503 past either), a deadline for each read
//! (a sender that stalls) and one for the whole body (a sender that trickles), both 408.
//!
//! Must not know routes: the policy that names them is the service's.

use super::Request;
use crate::http::stream::ChunkedReader;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sees a request's head (its `body` empty) and says whether its body is spooled, and up to
/// how many bytes; `None`: the ordinary in-memory body within `Limits::max_body_bytes`.
pub type SpoolPolicy = dyn Fn(&Request) -> Option<u64> + Send + Sync + 'static;

/// Bounds of the spooled bodies of one server.
#[derive(Debug, Clone)]
pub struct SpoolLimits {
    /// Bytes spooled at once across every connection; past it, 503.
    pub max_bytes_in_flight: u64,
    /// Bodies spooled at once (each holds a handler thread while it arrives); past it, 503.
    pub max_bodies: usize,
    /// The longest wait for the next bytes of a body.
    pub idle: Duration,
    /// The longest a whole body may take.
    pub deadline: Duration,
    /// Where the temporary files go.
    pub dir: PathBuf,
}

impl Default for SpoolLimits {
    fn default() -> SpoolLimits {
        SpoolLimits {
            max_bytes_in_flight: 1024 * 1024 * 1024,
            max_bodies: 4,
            idle: Duration::from_secs(30),
            deadline: Duration::from_secs(600),
            dir: std::env::temp_dir(),
        }
    }
}

/// A request's body on disk: read it with `reader` (as many times as needed).
pub struct SpooledBody {
    file: File,
    len: u64,
    _room: Room,
}

impl std::fmt::Debug for SpooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpooledBody({} bytes)", self.len)
    }
}

impl SpooledBody {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body from its first byte.
    pub fn reader(&self) -> SpooledReader<'_> {
        SpooledReader { file: &self.file, at: 0, len: self.len }
    }
}

/// Reads a spooled body at its own offset (so that readers do not move each other).
pub struct SpooledReader<'a> {
    file: &'a File,
    at: u64,
    len: u64,
}

impl Read for SpooledReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.at;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// What is being spooled at once, across connections.
#[derive(Debug, Default)]
pub(super) struct SpoolBudget {
    bytes: AtomicU64,
    bodies: AtomicUsize,
}

/// One body's share of the budget: a body slot and its bytes, given back when dropped.
struct Room {
    budget: Arc<SpoolBudget>,
    bytes: u64,
}

impl Room {
    fn take(budget: &Arc<SpoolBudget>, limits: &SpoolLimits) -> Option<Room> {
        let mut bodies = budget.bodies.load(Ordering::SeqCst);
        loop {
            if bodies >= limits.max_bodies {
                return None;
            }
            match budget.bodies.compare_exchange(bodies, bodies + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(Room { budget: budget.clone(), bytes: 0 }),
                Err(now) => bodies = now,
            }
        }
    }

    /// Takes `more` bytes of the budget, or says there is no room.
    fn grow(&mut self, more: u64, max: u64) -> bool {
        let mut used = self.budget.bytes.load(Ordering::SeqCst);
        loop {
            let Some(after) = used.checked_add(more).filter(|a| *a <= max) else { return false };
            match self.budget.bytes.compare_exchange(used, after, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.bytes += more;
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.budget.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        self.budget.bodies.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
}

/// Why a body could not be spooled.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SpoolFailure {
    /// The peer closed: nothing to answer.
    Gone,
    /// Answer this and close.
    Reply(u16, &'static str),
}

/// The socket read with a deadline for each read and one for the whole body.
struct Timed<'a> {
    stream: &'a TcpStream,
    idle: Duration,
    until: Instant,
    late: bool,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.late = true;
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the whole body's deadline passed"));
        }
        self.stream.set_read_timeout(Some(self.idle.min(left)))?;
        match self.stream.read(buf) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                self.late = true;
                Err(io::Error::new(io::ErrorKind::TimedOut, "no bytes within the idle deadline"))
            }
            other => other,
        }
    }
}

/// A temporary file, unlinked at once: only the open descriptor keeps it.
fn anonymous_file(dir: &Path) -> io::Result<File> {
    let path = dir.join(format!(".skiff-body-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Reads a body framed as `framing`, `already` being what came with the head, into a
/// temporary file: at most `max` bytes, within the budget and the deadlines. `continue_first`
/// sends `100 Continue` once the body has room.
pub(super) fn receive(
    stream: &mut TcpStream,
    already: &[u8],
    framing: Framing,
    max: u64,
    continue_first: bool,
    limits: &SpoolLimits,
    budget: &Arc<SpoolBudget>,
) -> Result<SpooledBody, SpoolFailure> {
    const BUSY: SpoolFailure = SpoolFailure::Reply(503, "too many large request bodies in flight; retry");
    let mut room = Room::take(budget, limits).ok_or(BUSY)?;
    if let Framing::Length(len) = framing {
        if !room.grow(len, limits.max_bytes_in_flight) {
            return Err(BUSY);
        }
    }
    let file = anonymous_file(&limits.dir).map_err(|e| {
        log::warn!("cannot make a file for a request body dir={} error={e}", limits.dir.display());
        SpoolFailure::Reply(500, "cannot store the request body")
    })?;
    if continue_first {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|_| SpoolFailure::Gone)?;
    }
    let read_half = &*stream;
    let mut timed =
        Timed { stream: read_half, idle: limits.idle, until: Instant::now() + limits.deadline, late: false };
    let outcome = {
        let wire = io::Cursor::new(already).chain(&mut timed);
        match framing {
            Framing::Length(len) => copy_into(wire.take(len), &file, max, None, limits).and_then(|n| {
                if n < len {
                    Err(SpoolFailure::Gone)
                } else {
                    Ok(n)
                }
            }),
            Framing::Chunked => {
                let mut body = ChunkedReader::new(BufReader::with_capacity(16 * 1024, wire));
                copy_into(&mut body, &file, max, Some(&mut room), limits)
            }
        }
    };
    crate::control::best_effort(stream.set_read_timeout(None));
    match outcome {
        Ok(len) => Ok(SpooledBody { file, len, _room: room }),
        Err(SpoolFailure::Gone) if timed.late => Err(SpoolFailure::Reply(408, "request body not received in time")),
        Err(e) => Err(e),
    }
}

/// Copies `from` into `file`, at most `max` bytes; a chunked body (`room` given) takes its
/// bytes from the budget as they come.
fn copy_into(
    mut from: impl Read,
    file: &File,
    max: u64,
    mut room: Option<&mut Room>,
    limits: &SpoolLimits,
) -> Result<u64, SpoolFailure> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(SpoolFailure::Reply(400, "malformed chunked request body"))
            }
            Err(_) => return Err(SpoolFailure::Gone),
        };
        if written + n as u64 > max {
            return Err(SpoolFailure::Reply(413, "request body too large"));
        }
        if let Some(room) = room.as_deref_mut() {
            if !room.grow(n as u64, limits.max_bytes_in_flight) {
                return Err(SpoolFailure::Reply(503, "too many large request bodies in flight; retry"));
            }
        }
        file.write_all_at(&buf[..n], written).map_err(|e| {
            log::warn!("cannot store a request body error={e}");
            SpoolFailure::Reply(500, "cannot store the request body")
        })?;
        written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Gate, Handler, Limits, Response, Server, Service};
    use super::*;
    use crate::api::ErrorBody;
    use std::net::TcpListener;

    /// A server whose `/big` spools up to `max` bytes; it answers the body's length and byte
    /// sum, and whether it came spooled. The gate wants `Authorization: yes`.
    fn spool_server(limits: Limits, max: u64) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handler: Arc<Handler> = Arc::new(|req: &Request| {
            let (len, sum) = match &req.spooled {
                Some(body) => {
                    let mut bytes = Vec::new();
                    body.reader().read_to_end(&mut bytes).expect("the spooled body reads");
                    (bytes.len(), bytes.iter().map(|b| u64::from(*b)).sum::<u64>())
                }
                None => (req.body.len(), req.body.iter().map(|b| u64::from(*b)).sum()),
            };
            let body = serde_json::json!({ "len": len, "sum": sum, "spooled": req.spooled.is_some() });
            Response::json_bytes(200, body.to_string().into_bytes())
        });
        let gate: Arc<Gate> = Arc::new(|head: &Request| {
            (head.header("authorization") != Some("yes")).then(|| Response::error(401, &ErrorBody::new("no")))
        });
        let spool: Arc<SpoolPolicy> =
            Arc::new(move |head: &Request| (head.method == "POST" && head.path == "/big").then_some(max));
        Server::start_service(listener, limits, Service { gate: Some(gate), spool: Some(spool), handler })
            .expect("server starts")
    }

    fn small_limits(dir: &Path) -> Limits {
        let spool = SpoolLimits { dir: dir.to_path_buf(), ..SpoolLimits::default() };
        Limits { max_body_bytes: 1024, spool, ..Limits::default() }
    }

    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-spool-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("test dir");
        dir
    }

    /// Sends `head` then `body` and reads the whole answer.
    fn send(server: &Server, head: &str, body: &[u8]) -> String {
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        crate::control::best_effort(s.write_all(head.as_bytes()));
        crate::control::best_effort(s.write_all(body));
        let mut out = String::new();
        crate::control::best_effort(s.read_to_string(&mut out));
        out
    }

    fn pattern(len: usize) -> (Vec<u8>, u64) {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sum = bytes.iter().map(|b| u64::from(*b)).sum();
        (bytes, sum)
    }

    #[test]
    fn a_spooled_route_takes_a_body_far_past_the_memory_limit_and_its_file_goes() {
        let dir = test_dir("length");
        let server = spool_server(small_limits(&dir), 8 * 1024 * 1024);
        let (body, sum) = pattern(3 * 1024 * 1024 + 7);
        let head =
            format!("POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: {}\r\n\r\n", body.len());
        let out = send(&server, &head, &body);
        assert!(out.starts_with("HTTP/1.1 200"), "{}", &out[..out.len().min(300)]);
        assert!(out.contains(&format!(r#""len":{},"spooled":true,"sum":{sum}"#, body.len())), "{out}");
        // the file was unlinked at once: nothing is left in the spool's folder
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        // another route keeps the in-memory limit
        let head = format!("POST /small HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: {}\r\n\r\n", 2000);
        assert!(send(&server, &head, &body[..2000]).starts_with("HTTP/1.1 413"));
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn a_chunked_body_is_taken_on_a_spooled_route_only() {
        let dir = test_dir("chunked");
        let server = spool_server(small_limits(&dir), 1024 * 1024);
        let (body, sum) = pattern(300_000);
        let mut wire = Vec::new();
        for piece in body.chunks(70_000) {
            crate::http::stream::write_chunk(&mut wire, piece).expect("chunk");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let head = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nTransfer-Encoding: chunked\r\n\r\n";
        let out = send(&server, head, &wire);
        assert!(out.contains(&format!(r#""len":300000,"spooled":true,"sum":{sum}"#)), "{out}");
        let head = "POST /small HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(send(&server, head, &wire).starts_with("HTTP/1.1 411"));
        // both framings at once, or another coding, are refused
        let both = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        assert!(send(&server, both, b"hello").starts_with("HTTP/1.1 400"));
        let gzip = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(send(&server, gzip, &wire).starts_with("HTTP/1.1 400"));
        let bad = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(send(&server, bad, b"zz\r\nhello\r\n0\r\n\r\n").starts_with("HTTP/1.1 400"));
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn past_the_route_limit_is_413_declared_or_chunked() {
        let dir = test_dir("limit");
        let server = spool_server(small_limits(&dir), 100_000);
        let head = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 100001\r\n\r\n";
        assert!(send(&server, head, b"").starts_with("HTTP/1.1 413"));
        let (body, _) = pattern(150_000);
        let mut wire = Vec::new();
        crate::http::stream::write_chunk(&mut wire, &body).expect("chunk");
        wire.extend_from_slice(b"0\r\n\r\n");
        let head = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nTransfer-Encoding: chunked\r\n\r\n";
        let out = send(&server, head, &wire);
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn the_gate_answers_401_before_a_byte_of_a_spooled_body_and_before_any_continue() {
        let dir = test_dir("gate");
        let server = spool_server(small_limits(&dir), 256 * 1024 * 1024);
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"POST /big HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 200000000\r\n\r\n")
            .expect("the head");
        // no body byte sent: the answer comes anyway, and it is the gate's
        let mut out = Vec::new();
        crate::control::best_effort(s.read_to_end(&mut out));
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 401"), "{out}");
        assert!(!out.contains("100 Continue"), "{out}");
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn continue_comes_once_a_spooled_body_has_room() {
        let dir = test_dir("continue");
        let server = spool_server(small_limits(&dir), 1024 * 1024);
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
            .expect("the head");
        let mut got = [0u8; 25];
        s.read_exact(&mut got).expect("100 Continue");
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(&[1u8; 5000]).expect("the body");
        let mut out = String::new();
        crate::control::best_effort(s.read_to_string(&mut out));
        assert!(out.contains(r#""len":5000,"spooled":true,"sum":5000"#), "{out}");
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn spooled_bodies_past_the_budget_get_503_and_it_comes_back() {
        let dir = test_dir("budget");
        let mut limits = small_limits(&dir);
        limits.spool.max_bodies = 1;
        limits.spool.max_bytes_in_flight = 50_000;
        let server = spool_server(limits, 1024 * 1024);
        // more bytes than the whole budget: refused before it is read
        let head = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 60000\r\n\r\n";
        assert!(send(&server, head, b"").starts_with("HTTP/1.1 503"));
        // one body trickling in holds the one slot
        let mut slow = TcpStream::connect(server.local_addr()).expect("connect");
        slow.write_all(b"POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
            .expect("the head");
        slow.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = [0u8; 25];
        slow.read_exact(&mut got).expect("100 Continue: the slot is taken");
        let head = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 10\r\n\r\n";
        assert!(send(&server, head, b"0123456789").starts_with("HTTP/1.1 503"));
        slow.write_all(b"0123456789").expect("the rest");
        let mut out = String::new();
        crate::control::best_effort(slow.read_to_string(&mut out));
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        // the slot is given back when that request ends
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = send(&server, head, b"0123456789");
            if out.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "the slot never came back: {out}");
        }
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn a_stalled_or_trickling_spooled_body_gets_408_within_its_deadlines() {
        let dir = test_dir("slow");
        let mut limits = small_limits(&dir);
        limits.spool.idle = Duration::from_millis(300);
        limits.spool.deadline = Duration::from_millis(1500);
        let server = spool_server(limits, 1024 * 1024);
        // stalls after a few bytes: the idle deadline
        let started = Instant::now();
        let head = "POST /big HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 1000\r\n\r\n";
        let out = send_and_hold(&server, head, &[b"abc"], Duration::ZERO);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // a byte every 100 ms never stalls, and the whole body's deadline ends it
        let started = Instant::now();
        let pieces: Vec<&[u8]> = vec![b"x"; 40];
        let out = send_and_hold(&server, head, &pieces, Duration::from_millis(100));
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(4), "{took:?}");
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    /// Sends `head`, then each piece `gap` apart (the slow sender the test plays), then waits
    /// for the answer without closing.
    fn send_and_hold(server: &Server, head: &str, pieces: &[&[u8]], gap: Duration) -> String {
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.write_all(head.as_bytes()).expect("the head");
        let reader = s.try_clone().expect("clone");
        let answer = std::thread::spawn(move || {
            let mut reader = reader;
            reader.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut out = Vec::new();
            crate::control::best_effort(reader.read_to_end(&mut out));
            String::from_utf8_lossy(&out).into_owned()
        });
        for piece in pieces {
            if s.write_all(piece).is_err() {
                break;
            }
            std::thread::sleep(gap);
        }
        answer.join().expect("the reader")
    }
}
