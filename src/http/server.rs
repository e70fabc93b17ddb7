//! The HTTP/1.1 server both daemons use: a bounded pool of threads serving connections from a
//! bounded queue, with limits and deadlines on everything a client controls.
//!
//! Why our own server on `httparse` rather than tiny_http 0.12: tiny_http aborts the process when
//! a request declaring a huge `Content-Length` is answered without reading its body (its drain
//! allocates the declared size at once), drains unread bodies on the handler thread without a
//! deadline, has no header size limit and cannot send `Connection: close`; the maintained
//! synchronous alternatives either pull in an async runtime (astra via hyper) or share some of
//! these hazards (touche, rouille). `httparse` (already in the tree through ureq, no dependencies)
//! does the parsing; this file owns the policy:
//! - heads over `max_head_bytes` or with too many headers get 431, bodies over `max_body_bytes`
//!   get 413 without a byte of the body being read, and the connection is closed after either;
//! - connections that send nothing, or send slowly, hold no thread: new connections, kept-alive
//!   ones between requests, and ones whose request has only partly arrived wait in one `poll`
//!   (the waiting room) until they have bytes to read; a handler thread takes what has come and
//!   hands the connection back if the request is not whole yet. A new connection is closed if it
//!   sends nothing within `request_deadline`, an idle kept-alive one after `idle_timeout`, and at
//!   most `max_waiting` wait at once (the oldest goes first);
//! - once its first byte is in, a request must arrive whole within `request_deadline` (slow
//!   senders get 408);
//! - when the handlers' queue is full a connection gets 503 and is closed;
//! - the head ends where httparse says (CRLF CRLF, or a bare LF LF); an HTTP/1.1 request without
//!   exactly one `Host` gets 400; an absolute-form target (`http://host/path`) is served as its
//!   path; every answer carries `Date`; a `HEAD` answer is the head of the `GET` answer;
//! - the routes a service's spool policy names from the head (a build context) take a large
//!   body, `Content-Length` or chunked, written to an unlinked temporary file as it arrives
//!   (`server/spool.rs`): bounded by the route's limit, by the bytes and bodies spooled at once
//!   (503), and by a deadline per read and one for the whole body (408); the token's gate still
//!   answers first, and the connection closes after the answer;
//! - `shutdown` stops accepting, lets requests in progress finish and joins every thread.
//!
//! Must not know routes or domain types: it calls one handler with a `Request`.

use super::stream::{Body, Producer, CHUNK_DEADLINE};
mod message;
mod respond;
mod room;
mod spool;

pub use message::{Limits, Request, Response};

use respond::write_response;
pub(in crate::http) use respond::write_within;
use spool::{Framing, SpoolBudget, SpoolFailure};
pub use spool::{SpoolLimits, SpoolPolicy, SpooledBody, SpooledReader};

use crate::api::ErrorBody;
use crate::logfmt::{q, short};
use log::{debug, warn};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const JSON: &str = "application/json";

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// Sees a request as soon as its head is in (its `body` is empty, none of it read yet) and may
/// answer it there: the cluster token is checked before a byte of the body is read and before
/// any `100 Continue`, so an unauthenticated client costs no memory for its body.
pub type Gate = dyn Fn(&Request) -> Option<Response> + Send + Sync + 'static;

/// A daemon's API as the server serves it: the gate, which routes spool their bodies, then the
/// handler.
#[derive(Clone)]
pub struct Service {
    pub gate: Option<Arc<Gate>>,
    pub spool: Option<Arc<SpoolPolicy>>,
    pub handler: Arc<Handler>,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    room: Option<JoinHandle<()>>,
    wake: Option<std::os::unix::net::UnixStream>,
    workers: Vec<JoinHandle<()>>,
}

/// A connection waiting for its next bytes, how long it may, and the request read so far.
struct Waiting {
    stream: TcpStream,
    until: Instant,
    partial: Partial,
}

/// What has arrived of a request that is not whole yet.
#[derive(Default)]
struct Partial {
    buf: Vec<u8>,
    /// When its first byte came: the request must be whole within `request_deadline` of it.
    started: Option<Instant>,
    /// `100 Continue` has been sent for it.
    continued: bool,
    /// Its head passed the gate.
    admitted: bool,
    /// The room its body holds in the servers' budget of bodies in flight.
    reserved: Option<Reservation>,
    /// A refused body is being read and dropped until then (see `linger`).
    drain_until: Option<Instant>,
    drained: usize,
}

/// Room taken in the budget of bodies in flight; given back when dropped (the request is read,
/// or its connection is gone).
struct Reservation {
    budget: Arc<AtomicUsize>,
    bytes: usize,
}

impl Reservation {
    fn take(budget: &Arc<AtomicUsize>, bytes: usize, max: usize) -> Option<Reservation> {
        let mut used = budget.load(Ordering::SeqCst);
        loop {
            let after = used.checked_add(bytes).filter(|a| *a <= max)?;
            match budget.compare_exchange(used, after, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(Reservation { budget: budget.clone(), bytes }),
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Hands idle connections to the waiting room and wakes its `poll`.
#[derive(Clone)]
struct RoomDoor {
    tx: crossbeam_channel::Sender<Waiting>,
    wake: Arc<std::os::unix::net::UnixStream>,
}

impl RoomDoor {
    fn enter(&self, stream: TcpStream, until: Instant, partial: Partial) {
        if self.tx.send(Waiting { stream, until, partial }).is_ok() {
            crate::control::best_effort((&*self.wake).write(&[1]));
        }
    }
}

impl Server {
    /// Serves `listener` with `handler` on `limits.threads` threads.
    pub fn start(listener: TcpListener, limits: Limits, handler: Arc<Handler>) -> io::Result<Server> {
        Server::start_service(listener, limits, Service { gate: None, spool: None, handler })
    }

    /// Serves `listener` with `service` (gate, then handler) on `limits.threads` threads.
    pub fn start_service(listener: TcpListener, limits: Limits, service: Service) -> io::Result<Server> {
        let Service { gate, spool, handler } = service;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let spooling = Arc::new(SpoolBudget::default());
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        // connections with bytes to read, for the handler threads
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<(TcpStream, Partial)>(limits.queue.max(1));
        // idle connections, for the waiting room
        let (room_tx, room_rx) = crossbeam_channel::unbounded::<Waiting>();
        let (wake_tx, wake_rx) = std::os::unix::net::UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let door = RoomDoor { tx: room_tx, wake: Arc::new(wake_tx.try_clone()?) };
        let limits = Arc::new(limits);
        let mut workers = Vec::new();
        for i in 0..limits.threads.max(1) {
            let (rx, limits, handler, stopping, door) =
                (ready_rx.clone(), limits.clone(), handler.clone(), stopping.clone(), door.clone());
            let (gate, in_flight) = (gate.clone(), in_flight.clone());
            let (spool, spooling) = (spool.clone(), spooling.clone());
            let worker = std::thread::Builder::new().name(format!("http-{i}")).spawn(move || {
                for (stream, partial) in rx.iter() {
                    let conn = Connection {
                        stream,
                        linger_for: None,
                        limits: &limits,
                        handler: &*handler,
                        gate: gate.as_deref(),
                        spool: spool.as_deref(),
                        spooling: &spooling,
                        in_flight: &in_flight,
                        stopping: &stopping,
                    };
                    if let Some((stream, until, partial)) = conn.serve(partial) {
                        door.enter(stream, until, partial);
                    }
                }
            })?;
            workers.push(worker);
        }
        let room_stopping = stopping.clone();
        let max_waiting = limits.max_waiting.max(1);
        let room = std::thread::Builder::new()
            .name("http-wait".into())
            .spawn(move || room::waiting_room(&room_rx, &wake_rx, &ready_tx, &room_stopping, max_waiting))?;
        let accept_stopping = stopping.clone();
        let first_byte = limits.request_deadline;
        let accept_door = door.clone();
        let acceptor = std::thread::Builder::new().name("http-accept".into()).spawn(move || {
            for conn in listener.incoming() {
                if accept_stopping.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    // a new connection waits for its first bytes without holding a thread
                    Ok(stream) => accept_door.enter(stream, Instant::now() + first_byte, Partial::default()),
                    Err(e) => {
                        // EMFILE and friends: back off a little rather than spin
                        warn!("accept failed error={}", q(&e));
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
        drop(door);
        Ok(Server { addr, stopping, acceptor: Some(acceptor), room: Some(room), wake: Some(wake_tx), workers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, answers the requests in progress and joins every thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // wake the accepting thread with a connection of our own, and the waiting room
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        crate::control::best_effort(TcpStream::connect_timeout(&wake, Duration::from_secs(1)));
        if let Some(w) = self.wake.take() {
            crate::control::best_effort((&w).write(&[1]));
        }
        if let Some(a) = self.acceptor.take() {
            crate::control::best_effort(a.join());
        }
        if let Some(r) = self.room.take() {
            crate::control::best_effort(r.join());
        }
        for w in self.workers.drain(..) {
            crate::control::best_effort(w.join());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.stop_and_join();
        }
    }
}

struct Connection<'a> {
    stream: TcpStream,
    /// A refused body of this size may still be arriving: read and drop it before closing.
    linger_for: Option<u64>,
    limits: &'a Limits,
    handler: &'a Handler,
    gate: Option<&'a Gate>,
    spool: Option<&'a SpoolPolicy>,
    spooling: &'a Arc<SpoolBudget>,
    in_flight: &'a Arc<AtomicUsize>,
    stopping: &'a AtomicBool,
}

/// Why a request could not be read.
enum ReadFailure {
    /// The peer closed: close without a word.
    Gone,
    /// Answer this and close.
    Reply(u16, &'static str),
    /// The gate's answer: send it and close.
    Answer(Box<Response>),
    /// Not all of it is here yet: wait in the room for more.
    Incomplete,
}

/// How long, and how much, a refused body is read and dropped before the connection closes.
const LINGER_TIME: Duration = Duration::from_millis(300);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

impl Connection<'_> {
    /// Serves the requests the connection has; returns it, with its deadline and what it holds
    /// of a request, when it must wait for more bytes (in the waiting room, not on this thread).
    fn serve(mut self, partial: Partial) -> Option<(TcpStream, Instant, Partial)> {
        crate::control::best_effort(self.stream.set_nodelay(true));
        crate::control::best_effort(self.stream.set_write_timeout(Some(self.limits.write_timeout)));
        let remote = self.stream.peer_addr().ok();
        let mut partial = partial;
        if let Some(until) = partial.drain_until {
            return self.drain(until, partial);
        }
        loop {
            let (req, keep_alive) = match self.read_request(&mut partial, remote) {
                Ok(r) => r,
                Err(ReadFailure::Incomplete) => {
                    let until = match partial.started {
                        Some(t) => t + self.limits.request_deadline,
                        None => Instant::now() + self.limits.idle_timeout,
                    };
                    return Some((self.stream, until, partial));
                }
                Err(ReadFailure::Gone) => break,
                Err(ReadFailure::Reply(status, message)) => {
                    crate::control::best_effort(write_response(
                        &mut self.stream,
                        Response::error(status, &ErrorBody::new(message)),
                        true,
                        false,
                        self.limits.write_timeout,
                    ));
                    debug!("http request refused status={status} reason={}", q(message));
                    if self.linger_for.is_some() {
                        return self.linger();
                    }
                    break;
                }
                Err(ReadFailure::Answer(resp)) => {
                    crate::control::best_effort(write_response(
                        &mut self.stream,
                        *resp,
                        true,
                        false,
                        self.limits.write_timeout,
                    ));
                    if self.linger_for.is_some() {
                        return self.linger();
                    }
                    break;
                }
            };
            let started = partial.started.take().unwrap_or_else(Instant::now);
            partial.continued = false;
            let resp = catch_unwind(AssertUnwindSafe(|| (self.handler)(&req)))
                .unwrap_or_else(|_| Response::error(500, &ErrorBody::new("internal error: the handler panicked")));
            let close = !keep_alive || resp.close || self.stopping.load(Ordering::SeqCst);
            // a HEAD answer has the head of the GET answer and no body
            let status = resp.status;
            let written =
                write_response(&mut self.stream, resp, close, req.method == "HEAD", self.limits.write_timeout);
            debug!(
                "http method={} path={} status={} latency_us={}",
                q(&short(&req.method)),
                q(&short(&req.path)),
                status,
                started.elapsed().as_micros()
            );
            if close || written.is_err() {
                break;
            }
        }
        crate::control::best_effort(self.stream.shutdown(Shutdown::Both));
        None
    }

    /// After refusing a body unread: most clients send the whole body before they read the
    /// answer, and a close with unread data resets the connection under them. So the answer's
    /// side is closed and the connection goes back to the waiting room, where what keeps coming
    /// is read and dropped for a short, bounded while: no thread waits on it.
    fn linger(self) -> Option<(TcpStream, Instant, Partial)> {
        crate::control::best_effort(self.stream.shutdown(Shutdown::Write));
        let until = Instant::now() + LINGER_TIME;
        Some((self.stream, until, Partial { drain_until: Some(until), ..Partial::default() }))
    }

    /// Drops what a refused body sent since; the connection waits again until its linger ends
    /// (or LINGER_BYTES have been dropped), then closes.
    fn drain(mut self, until: Instant, mut partial: Partial) -> Option<(TcpStream, Instant, Partial)> {
        let mut sink = Vec::new();
        let gone = self.read_now(&mut sink, 64 * 1024).is_err();
        partial.drained += sink.len();
        if gone || Instant::now() >= until || partial.drained >= LINGER_BYTES {
            crate::control::best_effort(self.stream.shutdown(Shutdown::Both));
            return None;
        }
        Some((self.stream, until, partial))
    }

    /// Takes what the socket has now, without waiting: whether anything came. A closed peer is
    /// `Gone`.
    fn read_now(&mut self, buf: &mut Vec<u8>, limit: usize) -> Result<bool, ReadFailure> {
        if self.stream.set_nonblocking(true).is_err() {
            return Err(ReadFailure::Gone);
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut got = false;
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Err(ReadFailure::Gone),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    got = true;
                    if n < chunk.len() || buf.len() > limit {
                        break Ok(got);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Err(ReadFailure::Gone),
            }
        };
        crate::control::best_effort(self.stream.set_nonblocking(false));
        result
    }

    /// `Incomplete` while the request's deadline has not passed, else 408.
    fn wait_more(&self, partial: &Partial) -> ReadFailure {
        match partial.started {
            Some(t) if t.elapsed() >= self.limits.request_deadline => {
                ReadFailure::Reply(408, "request not received in time")
            }
            _ => ReadFailure::Incomplete,
        }
    }

    fn read_request(
        &mut self,
        partial: &mut Partial,
        remote: Option<SocketAddr>,
    ) -> Result<(Request, bool), ReadFailure> {
        // what the socket has now (the waiting room saw bytes, or a close): no more than a head
        // until the head has passed the gate and its body has room in the budget
        let limit = if partial.reserved.is_some() {
            self.limits.max_body_bytes + self.limits.max_head_bytes
        } else {
            self.limits.max_head_bytes
        };
        let arrived = self.read_now(&mut partial.buf, limit);
        if partial.buf.is_empty() {
            return match arrived {
                Err(e) => Err(e),
                Ok(_) => Err(ReadFailure::Incomplete),
            };
        }
        partial.started.get_or_insert_with(Instant::now);
        let closed = arrived.is_err();
        let buf = &mut partial.buf;
        // the head: httparse says where it ends (after CRLF CRLF, or a bare LF LF, which
        // RFC 9112 lets a server accept), or that it has not all come yet
        let mut header_slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Request::new(&mut header_slots);
        let head_len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > self.limits.max_head_bytes {
                    return Err(ReadFailure::Reply(431, "request head too large"));
                }
                return Err(if closed { ReadFailure::Gone } else { self.wait_more(partial) });
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ReadFailure::Reply(431, "too many request headers")),
            Err(_) => return Err(ReadFailure::Reply(400, "malformed request head")),
        };
        if head_len > self.limits.max_head_bytes {
            return Err(ReadFailure::Reply(431, "request head too large"));
        }
        let method = parsed.method.unwrap_or("").to_string();
        let target = origin_form(parsed.path.unwrap_or(""));
        let version = parsed.version.unwrap_or(1);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.to_string(), String::new()),
        };
        let mut headers = Vec::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| ReadFailure::Reply(400, "header values must be text"))?
                .trim()
                .to_string();
            headers.push((h.name.to_string(), value));
        }
        let head = Request { method, path, query, headers, body: Vec::new(), remote, spooled: None };
        // a spooled route (decided from the head alone) takes a large body, chunked too
        let spool_max = self.spool.and_then(|policy| policy(&head));
        let Request { method, path, query, headers, .. } = head;
        let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let lengths: Vec<&str> =
            headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.as_str()).collect();
        let encodings = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")).count();
        let chunked = match (header("transfer-encoding"), spool_max) {
            (None, _) => false,
            (Some(_), None) => {
                return Err(ReadFailure::Reply(411, "chunked request bodies are not accepted; send Content-Length"))
            }
            // both framings at once is how requests are smuggled (RFC 9112 section 6.1)
            (Some(te), Some(_)) if te.eq_ignore_ascii_case("chunked") && encodings == 1 && lengths.is_empty() => true,
            (Some(_), Some(_)) => {
                return Err(ReadFailure::Reply(400, "only Transfer-Encoding: chunked, without Content-Length"))
            }
        };
        let content_length: u64 = match lengths.as_slice() {
            [] => 0,
            [one] if !one.is_empty() && one.bytes().all(|c| c.is_ascii_digit()) => one.parse().unwrap_or(u64::MAX),
            _ => return Err(ReadFailure::Reply(400, "invalid Content-Length")),
        };
        if content_length > spool_max.unwrap_or(self.limits.max_body_bytes as u64) {
            // an honest client sending a body a little too big gets to read the answer; a
            // declaration far beyond anything we would read is not worth a thread's time
            self.linger_for = (content_length <= LINGER_BYTES as u64).then_some(content_length);
            return Err(ReadFailure::Reply(413, "request body too large"));
        }
        // RFC 9112 section 3.2: a 1.1 request without exactly one Host is a 400
        let hosts = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host")).count();
        if version == 1 && hosts != 1 {
            return Err(ReadFailure::Reply(400, "an HTTP/1.1 request needs one Host header"));
        }
        let connection = header("connection").map(str::to_ascii_lowercase).unwrap_or_default();
        let keep_alive = if version == 0 { connection.contains("keep-alive") } else { !connection.contains("close") };
        let expects_continue = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        // the gate, once per request, before any of the body is read
        if !partial.admitted {
            if let Some(gate) = self.gate {
                let head = Request {
                    method: method.clone(),
                    path: path.clone(),
                    query: query.clone(),
                    headers: headers.clone(),
                    body: Vec::new(),
                    remote,
                    spooled: None,
                };
                if let Some(resp) = gate(&head) {
                    self.linger_for =
                        (content_length > 0 && content_length <= LINGER_BYTES as u64).then_some(content_length);
                    return Err(ReadFailure::Answer(Box::new(resp)));
                }
            }
            partial.admitted = true;
        }
        if let Some(max) = spool_max {
            return self.spool_body(partial, head_len, max, (chunked, content_length), expects_continue).map(|body| {
                let spooled = Some(Arc::new(body));
                // the connection closes after the answer: what came after the body is not read
                (Request { method, path, query, headers, body: Vec::new(), remote, spooled }, false)
            });
        }
        // the body, within the budget of bodies in flight
        let body_len = content_length as usize;
        if buf.len() < head_len + body_len && partial.reserved.is_none() {
            match Reservation::take(self.in_flight, body_len, self.limits.max_bodies_in_flight) {
                Some(r) => partial.reserved = Some(r),
                None => return Err(ReadFailure::Reply(503, "too many request bodies in flight; retry")),
            }
            if expects_continue && !partial.continued {
                crate::control::best_effort(self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"));
                partial.continued = true;
            }
            // what is already here of the body is read on the next pass, now with room for it
            if !closed {
                return Err(ReadFailure::Incomplete);
            }
        }
        let buf = &mut partial.buf;
        if buf.len() < head_len + body_len {
            if closed {
                return Err(ReadFailure::Gone);
            }
            if expects_continue && !partial.continued {
                crate::control::best_effort(self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"));
                partial.continued = true;
            }
            // the head is parsed again when the rest has come: cheap, and nothing to keep
            return Err(self.wait_more(partial));
        }
        buf.drain(..head_len);
        let body: Vec<u8> = buf.drain(..body_len).collect();
        partial.admitted = false;
        partial.reserved = None;
        Ok((Request { method, path, query, headers, body, remote, spooled: None }, keep_alive))
    }

    /// The body of a spooled route, read on this thread into a temporary file (`spool.rs`),
    /// from what came with the head on.
    fn spool_body(
        &mut self,
        partial: &mut Partial,
        head_len: usize,
        max: u64,
        (chunked, content_length): (bool, u64),
        expects_continue: bool,
    ) -> Result<SpooledBody, ReadFailure> {
        let framing = if chunked { Framing::Chunked } else { Framing::Length(content_length) };
        let already = partial.buf.split_off(head_len.min(partial.buf.len()));
        let continue_first = expects_continue && !partial.continued;
        *partial = Partial { started: partial.started, ..Partial::default() };
        match spool::receive(
            &mut self.stream,
            &already,
            framing,
            max,
            continue_first,
            &self.limits.spool,
            self.spooling,
        ) {
            Ok(body) => Ok(body),
            Err(SpoolFailure::Gone) => Err(ReadFailure::Gone),
            Err(SpoolFailure::Reply(status, message)) => {
                // the rest of the body may still be coming: drop it a while so the answer is read
                self.linger_for = Some(LINGER_BYTES as u64);
                Err(ReadFailure::Reply(status, message))
            }
        }
    }
}

/// The path and query of a request target: an absolute-form target (`http://host:port/path`,
/// as proxies send) is routed like its path.
fn origin_form(target: &str) -> &str {
    let lower = |n: usize| target.get(..n).map(str::to_ascii_lowercase);
    let scheme = if lower(7).as_deref() == Some("http://") {
        7
    } else if lower(8).as_deref() == Some("https://") {
        8
    } else {
        return target;
    };
    let rest = &target[scheme..];
    rest.find(['/', '?']).map_or("/", |i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn echo_server(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handler: Arc<Handler> = Arc::new(|req: &Request| {
            let body = serde_json::json!({ "method": req.method, "path": req.path, "query": req.query, "len": req.body.len() });
            Response::json_bytes(200, body.to_string().into_bytes())
        });
        Server::start(listener, limits, handler).expect("server starts")
    }

    /// Sends raw bytes and returns the status line and the whole answer.
    fn raw(server: &Server, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        crate::control::best_effort(s.write_all(bytes));
        let mut out = String::new();
        crate::control::best_effort(std::io::BufReader::new(s).read_to_string(&mut out));
        out
    }

    #[test]
    fn serves_and_parses_a_request() {
        let server = echo_server(Limits::default());
        let out =
            raw(&server, b"POST /v1/x?y=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains(r#""path":"/v1/x""#) && out.contains(r#""query":"y=1""#) && out.contains(r#""len":3"#));
        server.shutdown();
    }

    #[test]
    fn keeps_alive_and_serves_pipelined_requests() {
        let server = echo_server(Limits::default());
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        std::io::BufReader::new(s).read_to_string(&mut out).expect("read");
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        assert!(out.contains(r#""path":"/a""#) && out.contains(r#""path":"/b""#));
    }

    #[test]
    fn head_answers_carry_no_body() {
        let server = echo_server(Limits::default());
        let out = raw(&server, b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "no body after the head: {out:?}");
        assert!(!out.contains("Content-Length: 0\r\n"), "the length of the body a GET gets: {out}");
    }

    #[test]
    fn a_head_ending_in_bare_newlines_is_answered_at_once() {
        let server = echo_server(Limits::default());
        let started = Instant::now();
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.write_all(b"GET /lf HTTP/1.1\nHost: t\n\n").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut first = [0u8; 12];
        s.read_exact(&mut first).expect("an answer before the request deadline");
        assert_eq!(&first, b"HTTP/1.1 200");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn every_answer_has_a_date_and_errors_too() {
        let server = echo_server(Limits::default());
        for request in [&b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..], b"NONSENSE\r\n\r\n"] {
            let out = raw(&server, request);
            let date = out.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap_or_else(|| panic!("no Date: {out}"));
            // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
            assert_eq!(date.len(), 29, "{date}");
            assert!(date.ends_with(" GMT") && date.as_bytes()[3] == b',', "{date}");
        }
    }

    #[test]
    fn http_1_1_needs_a_host_and_1_0_does_not() {
        let server = echo_server(Limits::default());
        let out = raw(&server, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("Host"), "{out}");
        let out = raw(&server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(raw(&server, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn absolute_form_targets_are_routed_by_their_path() {
        assert_eq!(origin_form("http://h:1/v1/health"), "/v1/health");
        assert_eq!(origin_form("HTTPS://h/v1/tasks?x=1"), "/v1/tasks?x=1");
        assert_eq!(origin_form("http://h:1"), "/");
        assert_eq!(origin_form("/v1/health"), "/v1/health");
        let server = echo_server(Limits::default());
        let out = raw(&server, b"GET http://t:80/v1/x?y=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(out.contains(r#""path":"/v1/x""#) && out.contains(r#""query":"y=1""#), "{out}");
    }

    #[test]
    fn huge_declared_body_gets_413_without_reading_it() {
        let server = echo_server(Limits::default());
        let out = raw(&server, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000000\r\n\r\nabc");
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        let out = raw(&server, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        // and it still serves
        assert!(raw(&server, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn bad_heads_are_refused() {
        let server = echo_server(Limits::default());
        assert!(raw(&server, b"NONSENSE\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw(&server, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .starts_with("HTTP/1.1 400"));
        assert!(raw(&server, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw(&server, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .starts_with("HTTP/1.1 411"));
        let mut long = b"GET / HTTP/1.1\r\nHost: t\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 64 * 1024));
        assert!(raw(&server, &long).starts_with("HTTP/1.1 431"));
        let mut many = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
        for i in 0..100 {
            many.extend(format!("X-{i}: 1\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert!(raw(&server, &many).starts_with("HTTP/1.1 431"));
    }

    #[test]
    fn slow_senders_get_408_within_the_deadline() {
        let limits = Limits { request_deadline: Duration::from_millis(300), ..Limits::default() };
        let server = echo_server(limits);
        let started = Instant::now();
        let out = raw(&server, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nonly nine");
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn idle_connections_give_way_to_waiting_ones() {
        let limits = Limits { threads: 1, idle_timeout: Duration::from_secs(30), ..Limits::default() };
        let server = echo_server(limits);
        // one idle keep-alive connection holds the only thread...
        let mut idle = TcpStream::connect(server.local_addr()).expect("connect");
        idle.write_all(b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        let mut line = String::new();
        std::io::BufReader::new(idle.try_clone().expect("clone")).read_line(&mut line).expect("read");
        assert!(line.starts_with("HTTP/1.1 200"));
        // ...and a second connection is still served promptly
        let started = Instant::now();
        let out = raw(&server, b"GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[test]
    fn full_queue_gets_503() {
        // one thread, held by a handler that waits for the test; a queue of one
        let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(1);
        let handler: Arc<Handler> = Arc::new(move |req: &Request| {
            if req.path == "/hold" {
                crate::control::best_effort(entered_tx.send(()));
                crate::control::best_effort(gate_rx.recv_timeout(Duration::from_secs(10)));
            }
            Response::json_bytes(200, b"{}".to_vec())
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server =
            Server::start(listener, Limits { threads: 1, queue: 1, ..Limits::default() }, handler).expect("starts");
        let mut hold = TcpStream::connect(server.local_addr()).expect("connect");
        hold.write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        entered_rx.recv_timeout(Duration::from_secs(5)).expect("the thread is held");
        // the next request fills the queue, and one more is refused at once
        let mut queued = TcpStream::connect(server.local_addr()).expect("connect");
        queued.write_all(b"GET /q HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("write");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = raw(&server, b"GET /r HTTP/1.1\r\nHost: t\r\n\r\n");
            if out.starts_with("HTTP/1.1 503") {
                break;
            }
            assert!(Instant::now() < deadline, "never got 503: {out}");
        }
        gate_tx.send(()).expect("open the gate");
        let mut answer = String::new();
        queued.read_to_string(&mut answer).expect("the queued request is served");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[test]
    fn partly_sent_requests_hold_no_thread() {
        let server = echo_server(Limits { threads: 2, ..Limits::default() });
        let mut slow = Vec::new();
        for _ in 0..20 {
            let mut s = TcpStream::connect(server.local_addr()).expect("connect");
            s.write_all(b"G").expect("write");
            slow.push(s);
        }
        let mut body = TcpStream::connect(server.local_addr()).expect("connect");
        body.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc").expect("write");
        let started = Instant::now();
        let out = raw(&server, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        // and the slow body, once complete, is served
        body.write_all(b"defghij").expect("write");
        body.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut first = [0u8; 12];
        body.read_exact(&mut first).expect("an answer");
        assert_eq!(&first, b"HTTP/1.1 200");
    }

    #[test]
    fn beyond_max_waiting_the_oldest_waiting_connection_is_closed() {
        let server = echo_server(Limits { max_waiting: 5, ..Limits::default() });
        let mut idle: Vec<TcpStream> =
            (0..10).map(|_| TcpStream::connect(server.local_addr()).expect("connect")).collect();
        // a request on a new connection is still served
        let out = raw(&server, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        // and the first connections were closed by the server
        idle[0].set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut b = [0u8; 1];
        assert_eq!(idle[0].read(&mut b).expect("closed, not timed out"), 0);
    }

    #[test]
    fn connections_that_send_nothing_hold_no_thread() {
        let server = echo_server(Limits { threads: 2, ..Limits::default() });
        let idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(server.local_addr()).expect("connect")).collect();
        let started = Instant::now();
        let out = raw(&server, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        drop(idle);
    }

    #[test]
    fn shutdown_joins_with_idle_connections_open() {
        let server = echo_server(Limits { idle_timeout: Duration::from_secs(60), ..Limits::default() });
        let mut idle = TcpStream::connect(server.local_addr()).expect("connect");
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        let mut line = String::new();
        std::io::BufReader::new(idle.try_clone().expect("clone")).read_line(&mut line).expect("read");
        let started = Instant::now();
        server.shutdown();
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    fn gated_server(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handler: Arc<Handler> = Arc::new(|req: &Request| Response::json_bytes(200, req.body.clone()));
        let gate: Arc<Gate> = Arc::new(|head: &Request| {
            (head.header("authorization") != Some("yes")).then(|| Response::error(401, &ErrorBody::new("no")))
        });
        Server::start_service(listener, limits, Service { gate: Some(gate), spool: None, handler })
            .expect("server starts")
    }

    #[test]
    fn the_gate_answers_before_the_body_is_read_and_before_any_continue() {
        let server = gated_server(Limits::default());
        let out = raw(
            &server,
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 500000\r\nConnection: close\r\n\r\n",
        );
        assert!(out.starts_with("HTTP/1.1 401"), "{out}");
        assert!(!out.contains("100 Continue"), "{out}");
        let ok = raw(
            &server,
            b"POST / HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("abc"), "{ok}");
    }

    #[test]
    fn a_big_answer_written_after_its_head_arrives_whole_and_framed() {
        let server = gated_server(Limits::default());
        // a body past the size sent with its head, then a small one on the same connection
        let big: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut req =
            format!("POST / HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: {}\r\n\r\n{big}", big.len());
        req.push_str(
            "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nend",
        );
        let out = raw(&server, req.as_bytes());
        // the big body is lowercase letters: the last status line is the second answer's
        let (first, second) = out.split_at(out.rfind("HTTP/1.1 200").expect("an answer"));
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "two answers, the big one first");
        assert!(first.contains(&format!("Content-Length: {}\r\n", big.len())), "{}", &first[..200.min(first.len())]);
        assert!(first.ends_with(&format!("\r\n\r\n{big}")), "the big body whole, right after its head");
        assert!(second.starts_with("HTTP/1.1 200") && second.ends_with("\r\n\r\nend"), "{second}");
    }

    #[test]
    fn bodies_past_the_budget_in_flight_get_503() {
        let server = gated_server(Limits { max_bodies_in_flight: 1000, ..Limits::default() });
        // one body holds 800 bytes of the budget while it trickles in
        let mut slow = TcpStream::connect(server.local_addr()).expect("connect");
        slow.write_all(
            b"POST / HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nExpect: 100-continue\r\nContent-Length: 800\r\n\r\n",
        )
        .expect("write");
        // the 100 Continue comes once its room is taken
        let mut got = [0u8; 25];
        slow.read_exact(&mut got).expect("100 Continue");
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
        let out = raw(
            &server,
            b"POST / HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 300\r\nConnection: close\r\n\r\n",
        );
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        drop(slow);
        // given back once that connection is gone
        let body = "x".repeat(300);
        let req = format!("POST / HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\nContent-Length: 300\r\nConnection: close\r\n\r\n{body}");
        let mut tries = 0;
        loop {
            let out = raw(&server, req.as_bytes());
            if out.starts_with("HTTP/1.1 200") {
                break;
            }
            tries += 1;
            assert!(tries < 100, "the budget never came back: {out}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn streamed_answers_are_chunked_typed_and_close_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handler: Arc<Handler> = Arc::new(|_req: &Request| {
            Response::stream(
                200,
                "text/plain; charset=utf-8",
                Box::new(|out| {
                    out.send(b"one\n")?;
                    out.send(b"")?;
                    out.send(b"two\n")
                }),
            )
        });
        let server = Server::start(listener, Limits::default(), handler).expect("start");
        let answer = raw(&server, b"GET /logs HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.contains("Content-Type: text/plain; charset=utf-8\r\n"), "{answer}");
        assert!(answer.contains("Transfer-Encoding: chunked\r\n"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(!answer.contains("Content-Length"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"), "{answer}");
        let head = raw(&server, b"HEAD /logs HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.ends_with("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"), "{head}");
    }
}
