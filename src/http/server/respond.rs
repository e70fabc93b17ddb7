//! Writing an answer: the status line and headers, a body whole within its deadline or a
//! streamed one chunk by chunk, and a reset for a reader too slow to take it.
//!
//! Must not decide what to answer: the handler did.

use super::{Body, Response, CHUNK_DEADLINE};
use crate::http::stream::Chunks;
use crate::time::Timestamp;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A body up to this size is written in one piece with its head.
const SMALL_BODY: usize = 64 * 1024;

/// Writes a response; a whole body must be taken by the reader within `deadline`, a streamed
/// one chunk by chunk within `CHUNK_DEADLINE` each.
pub(super) fn write_response(
    stream: &mut TcpStream,
    resp: Response,
    close: bool,
    head_only: bool,
    deadline: Duration,
) -> io::Result<()> {
    let streamed = matches!(resp.body, Body::Stream(_));
    let length = match &resp.body {
        // a 304 has no body, and a length would claim the 200's (RFC 9110 8.6)
        Body::Bytes(_) if resp.status == 304 => String::new(),
        Body::Bytes(b) => format!("Content-Length: {}\r\n", b.len()),
        Body::Stream(_) => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\n{length}Connection: {}\r\n",
        resp.status,
        reason(resp.status),
        Timestamp::now().http_date(),
        resp.content_type,
        if close || streamed { "close" } else { "keep-alive" }
    );
    for (name, value) in &resp.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    match resp.body {
        // a small body goes in one write with its head; a big one (a page of tasks can be
        // megabytes) is written after it, not copied behind it, so an answer is held once
        Body::Bytes(body) if head_only || body.len() <= SMALL_BODY => {
            if !head_only {
                bytes.extend_from_slice(&body);
            }
            write_within(stream, &bytes, deadline)
        }
        Body::Bytes(body) => {
            let end = Instant::now() + deadline;
            write_within(stream, &bytes, deadline)?;
            write_within(stream, &body, end.saturating_duration_since(Instant::now()))
        }
        Body::Stream(produce) => {
            write_within(stream, &bytes, deadline)?;
            if head_only {
                return Ok(());
            }
            let mut chunks = Chunks::new(stream, CHUNK_DEADLINE);
            produce(&mut chunks)?;
            chunks.finish()
        }
    }
}

/// Writes all of `bytes` within `deadline`, each write waiting only for what is left of it.
pub(in crate::http) fn write_within(stream: &mut TcpStream, mut bytes: &[u8], deadline: Duration) -> io::Result<()> {
    let end = Instant::now() + deadline;
    while !bytes.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            abort_on_close(stream);
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the reader did not take the response in time"));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(&bytes[..bytes.len().min(64 * 1024)]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "connection closed")),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
                    abort_on_close(stream);
                }
                return Err(e);
            }
        }
    }
    stream.flush()
}

/// Makes the close of this connection a reset: what is queued for a reader too slow to take it
/// is dropped, not sent over minutes after the thread has given up on it.
fn abort_on_close(stream: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on an open socket with a pointer to a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
