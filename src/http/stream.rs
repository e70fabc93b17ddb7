//! Bodies that are not held whole: the server's side (a producer writing chunks of a
//! `Transfer-Encoding: chunked` answer, each within its own deadline, and able to ask whether
//! its reader is still there) and the relay's side (a pump thread reading a source that can be
//! closed from outside, so that a reader who goes away frees every thread behind it).
//!
//! Must not know what is streamed (logs, events): it moves bytes, with deadlines.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long one chunk may take to be taken by its reader before the stream is given up.
pub const CHUNK_DEADLINE: Duration = Duration::from_secs(10);

/// What writes a streamed answer's body, chunk by chunk; it returns when it is done or when a
/// write fails (the reader went away or was too slow).
pub type Producer = Box<dyn FnOnce(&mut Chunks) -> io::Result<()> + Send>;

/// A response's body: bytes (sent with `Content-Length`) or a producer (sent chunked, after
/// which the connection is closed).
pub enum Body {
    Bytes(Vec<u8>),
    Stream(Producer),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Body::Stream(_) => write!(f, "Stream"),
        }
    }
}

/// The writing end of a chunked body, handed to a producer.
pub struct Chunks<'a> {
    stream: &'a mut TcpStream,
    deadline: Duration,
    written: u64,
}

impl<'a> Chunks<'a> {
    pub(super) fn new(stream: &'a mut TcpStream, deadline: Duration) -> Chunks<'a> {
        Chunks { stream, deadline, written: 0 }
    }

    /// Sends `bytes` as one chunk (nothing for an empty slice: an empty chunk ends the body),
    /// within the chunk deadline.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        super::server::write_within(self.stream, &out, self.deadline)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Body bytes sent so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the reader has closed its side (checked without waiting): a stream with nothing
    /// to send learns so this way rather than at its next write, which may be far off.
    pub fn reader_gone(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let gone = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
        };
        crate::control::best_effort(self.stream.set_nonblocking(false));
        gone
    }

    /// The end of the body (the empty chunk).
    pub(super) fn finish(self) -> io::Result<()> {
        super::server::write_within(self.stream, b"0\r\n\r\n", self.deadline)
    }
}

/// Closes a source from another thread, so that a read blocked on it returns.
pub type Closer = Box<dyn FnOnce() + Send>;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The source ended (the task ended, or the stream had no more).
    SourceEnded,
    /// The reader closed its side or could not take a chunk in time.
    ReaderGone,
    /// The bounded maximum duration passed.
    MaxDuration,
}

/// How often a relay with nothing to send checks its reader and its time limit.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Relays `source` to `out` until the source ends, the reader goes away or `max` has passed.
/// The source is read on a thread of its own (a blocking read of a quiet stream must not stop
/// the checks) into a bounded buffer, and what has gathered there is sent as one chunk: a
/// source that gives a line per read (the engine flushes each log line) still makes large
/// chunks while the reader is busy. When the relay ends early, `close` is called so that the
/// thread's read returns, and it ends too.
pub fn relay(source: Box<dyn Read + Send>, close: Closer, out: &mut Chunks, max: Duration) -> io::Result<RelayEnd> {
    let end = Instant::now() + max;
    let shared = Arc::new(Gathered::default());
    let filler = shared.clone();
    std::thread::Builder::new().name("stream-pump".into()).spawn(move || filler.fill_from(source))?;
    let outcome = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Ok(RelayEnd::MaxDuration);
        }
        match shared.take(left.min(IDLE_CHECK)) {
            Taken::Bytes(bytes) => {
                if out.send(&bytes).is_err() {
                    break Ok(RelayEnd::ReaderGone);
                }
            }
            Taken::Ended(Ok(())) => break Ok(RelayEnd::SourceEnded),
            Taken::Ended(Err(e)) => break Err(e),
            Taken::Nothing => {
                if out.reader_gone() {
                    break Ok(RelayEnd::ReaderGone);
                }
            }
        }
    };
    shared.abandon();
    close();
    outcome
}

/// At most this much is gathered from a source before its reader waits for the relay.
const GATHER_MAX: usize = 64 * 1024;

/// What a source's thread has read and the relay has not sent yet.
#[derive(Default)]
struct Gathered {
    state: Mutex<GatherState>,
    changed: Condvar,
}

#[derive(Default)]
struct GatherState {
    bytes: Vec<u8>,
    ended: Option<io::Result<()>>,
    /// The relay is gone: stop reading.
    abandoned: bool,
}

enum Taken {
    Bytes(Vec<u8>),
    Ended(io::Result<()>),
    Nothing,
}

impl Gathered {
    fn lock(&self) -> std::sync::MutexGuard<'_, GatherState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The source's thread: reads until the end, an error or the relay's abandon.
    fn fill_from(&self, mut source: Box<dyn Read + Send>) {
        let mut buf = vec![0u8; 32 * 1024];
        let end = loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            let mut state = self.lock();
            while state.bytes.len() >= GATHER_MAX && !state.abandoned {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.abandoned {
                return;
            }
            state.bytes.extend_from_slice(&buf[..n]);
            self.changed.notify_all();
        };
        self.lock().ended = Some(end);
        self.changed.notify_all();
    }

    /// What has gathered, waiting up to `wait` for something; the end once all is taken.
    fn take(&self, wait: Duration) -> Taken {
        let mut state = self.lock();
        if state.bytes.is_empty() && state.ended.is_none() {
            state = self.changed.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
        if !state.bytes.is_empty() {
            let bytes = std::mem::take(&mut state.bytes);
            self.changed.notify_all();
            return Taken::Bytes(bytes);
        }
        match state.ended.take() {
            Some(end) => Taken::Ended(end),
            None => Taken::Nothing,
        }
    }

    fn abandon(&self) {
        self.lock().abandoned = true;
        self.changed.notify_all();
    }
}

/// A chunked body read from a peer (the relay's source when the manager streams from a worker):
/// chunk sizes within limits, trailers skipped, the end at the empty chunk.
pub struct ChunkedReader<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: io::BufRead> ChunkedReader<R> {
    pub fn new(inner: R) -> ChunkedReader<R> {
        ChunkedReader { inner, left: 0, done: false }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        io::BufRead::read_until(&mut (&mut self.inner).take(4096), b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunked body cut short"));
        }
        Ok(String::from_utf8_lossy(&line).trim().to_string())
    }
}

impl<R: io::BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let size_line = self.line()?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                while !self.line()?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunked body cut short"));
        }
        self.left -= n as u64;
        if self.left == 0 {
            self.line()?;
        }
        Ok(n)
    }
}

/// Sends a whole chunk to a writer: for tests and for clients that build a chunked body.
pub fn write_chunk(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    write!(w, "{:x}\r\n", bytes.len())?;
    w.write_all(bytes)?;
    w.write_all(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_read_back_whole() {
        let mut wire = Vec::new();
        write_chunk(&mut wire, b"hello ").unwrap();
        write_chunk(&mut wire, b"world").unwrap();
        wire.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\nafter");
        let mut r = ChunkedReader::new(io::BufReader::new(&wire[..]));
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn a_cut_or_malformed_chunked_body_is_an_error() {
        let mut out = Vec::new();
        let cut = b"5\r\nhel";
        assert!(ChunkedReader::new(io::BufReader::new(&cut[..])).read_to_end(&mut out).is_err());
        let bad = b"zz\r\nhello\r\n0\r\n\r\n";
        assert!(ChunkedReader::new(io::BufReader::new(&bad[..])).read_to_end(&mut out).is_err());
    }
}
