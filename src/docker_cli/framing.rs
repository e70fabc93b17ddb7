//! HTTP/1.1 as the engine speaks it over its Unix socket: one request per connection, a status
//! line and headers read within limits, and a body of fixed length, chunked, or up to the end of
//! the stream; every read of an ordinary call shares one deadline.
//!
//! Owns the framing only: it knows no engine path and no Docker JSON beyond the `message` of an
//! error body, and must not decide what a status means for a call (that is `docker_cli.rs`).

use super::{DockerError, CALL_TIMEOUT};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest body read whole.
pub(super) const MAX_BODY: u64 = 64 * 1024 * 1024;
pub(super) const MAX_HEADER_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

fn connect(socket: &Path, timeout: Option<Duration>) -> Result<UnixStream, DockerError> {
    let stream = UnixStream::connect(socket)
        .map_err(|source| DockerError::Unreachable { socket: socket.to_path_buf(), source })?;
    stream.set_read_timeout(timeout).map_err(DockerError::Io)?;
    stream.set_write_timeout(Some(CALL_TIMEOUT)).map_err(DockerError::Io)?;
    Ok(stream)
}

/// One request and its whole response, all within `timeout`.
pub(super) fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, DockerError> {
    let mut stream = connect(socket, Some(timeout))?;
    write_request(&mut stream, method, path, body).map_err(DockerError::Io)?;
    let mut reader = BufReader::new(Deadlined { stream, deadline: Instant::now() + timeout });
    let head = read_head(&mut reader)?;
    let mut body = Vec::new();
    body_reader(reader, &head).take(MAX_BODY + 1).read_to_end(&mut body).map_err(DockerError::Io)?;
    if body.len() as u64 > MAX_BODY {
        return Err(DockerError::Protocol(format!("response body over {MAX_BODY} bytes")));
    }
    Ok(Response { status: head.status, body })
}

/// One request whose body is handed back as a reader, still within `timeout` as a whole: for
/// answers too large to hold at once (a list of many containers), read as they are parsed.
pub(super) fn exchange_reader(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Box<dyn Read + Send>), DockerError> {
    let mut stream = connect(socket, Some(timeout))?;
    write_request(&mut stream, method, path, None).map_err(DockerError::Io)?;
    let mut reader = BufReader::new(Deadlined { stream, deadline: Instant::now() + timeout });
    let head = read_head(&mut reader)?;
    Ok((head.status, body_reader(reader, &head)))
}

/// A GET whose body is read as it comes (no read timeout: streams wait for events).
pub(super) fn open(socket: &Path, path: &str) -> Result<(u16, Box<dyn Read + Send>), DockerError> {
    let mut stream = connect(socket, None)?;
    write_request(&mut stream, "GET", path, None).map_err(DockerError::Io)?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    Ok((head.status, body_reader(reader, &head)))
}

/// A GET whose body is read as it comes, each read waiting at most `read_timeout` (none: as
/// long as it takes), with a second handle on the socket: shutting it down makes a blocked read
/// return, which is how a stream nobody reads any more is ended from another thread.
pub(super) fn open_closable(
    socket: &Path,
    path: &str,
    read_timeout: Option<Duration>,
) -> Result<(u16, Box<dyn Read + Send>, UnixStream), DockerError> {
    let mut stream = connect(socket, read_timeout)?;
    let handle = stream.try_clone().map_err(DockerError::Io)?;
    write_request(&mut stream, "GET", path, None).map_err(DockerError::Io)?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    Ok((head.status, body_reader(reader, &head), handle))
}

/// A POST whose body is streamed from `body` in chunks (an upload of any length: a build
/// context), and whose answer's body is handed back as a reader; the exchange, upload included,
/// ends by `deadline`. An engine that answers before it has taken the whole body (a refusal) is
/// heard: when a write fails, its answer is read. A failure to read `body` ends the exchange.
pub(super) fn upload(
    socket: &Path,
    path: &str,
    content_type: &str,
    body: &mut dyn Read,
    deadline: Instant,
) -> Result<(u16, Box<dyn Read + Send>), DockerError> {
    let mut stream = connect(socket, None)?;
    let sent = write_chunked(&mut stream, path, content_type, body, deadline);
    if let Err(Upload::Source(e)) = sent {
        return Err(DockerError::Io(e));
    }
    let mut reader = BufReader::new(Deadlined { stream, deadline });
    match (sent, read_head(&mut reader)) {
        (_, Ok(head)) => Ok((head.status, body_reader(reader, &head))),
        (Err(Upload::Socket(e)), Err(_)) => Err(DockerError::Io(e)),
        (_, Err(e)) => Err(e),
    }
}

enum Upload {
    /// Reading what is sent failed.
    Source(io::Error),
    Socket(io::Error),
}

fn write_chunked(
    stream: &mut UnixStream,
    path: &str,
    content_type: &str,
    body: &mut dyn Read,
    deadline: Instant,
) -> Result<(), Upload> {
    let mut send = |bytes: &[u8]| -> Result<(), Upload> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Upload::Socket(io::Error::new(io::ErrorKind::TimedOut, "the upload did not end in time")));
        }
        stream.set_write_timeout(Some(left)).map_err(Upload::Socket)?;
        stream.write_all(bytes).map_err(Upload::Socket)
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    send(head.as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Upload::Source(e)),
        };
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend_from_slice(&buf[..n]);
        chunk.extend_from_slice(b"\r\n");
        send(&chunk)?;
    }
    send(b"0\r\n\r\n")
}

/// A socket whose reads share one deadline: a response trickling in cannot hold a thread for
/// longer than its call's timeout.
struct Deadlined {
    stream: UnixStream,
    deadline: Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the engine did not answer in time"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

impl Response {
    /// The response itself if the status is a success (2xx, or 304 "already so"), else the
    /// engine's error.
    pub(super) fn ok(self) -> Result<Response, DockerError> {
        if (200..300).contains(&self.status) || self.status == 304 {
            Ok(self)
        } else {
            Err(api_error(self.status, &self.body))
        }
    }
}

pub(super) fn api_error(status: u16, body: &[u8]) -> DockerError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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
}
