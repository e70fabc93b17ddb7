//! What the server and its handlers exchange: a parsed `Request` (the body whole, or spooled to
//! a file), a `Response` (whole or streamed, with its content type and headers), and the
//! server's `Limits` with their defaults.
//!
//! Must not read or write sockets (`server.rs` and `respond.rs` do).

use super::{Body, Producer, SpoolLimits, SpooledBody, JSON};
use crate::api::ErrorBody;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Limits of one server; the defaults suit both daemons.
#[derive(Debug, Clone)]
pub struct Limits {
    pub threads: usize,
    /// Connections accepted but not yet served; beyond this, 503.
    pub queue: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    /// A request's head and body must arrive within this, from its first byte.
    pub request_deadline: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// Connections kept waiting at once; beyond, the oldest waiting one is closed (so that
    /// idle connections cannot use up the process's file descriptors).
    pub max_waiting: usize,
    /// A whole response must be taken by its reader within this; a reader slower than that
    /// loses its connection (reset) instead of holding a handler thread.
    pub write_timeout: Duration,
    /// The bodies of all requests being read, together, are at most this long; a request whose
    /// body would go past it gets 503 (so memory stays bounded however many clients send).
    pub max_bodies_in_flight: usize,
    /// The bounds of the large bodies spooled to disk, on the routes the service names.
    pub spool: SpoolLimits,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            threads: 16,
            queue: 1024,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            request_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_waiting: 512,
            write_timeout: Duration::from_secs(10),
            max_bodies_in_flight: 16 * 1024 * 1024,
            spool: SpoolLimits::default(),
        }
    }
}

/// A request as the handler sees it: the head parsed, the body read whole (within the limit),
/// or, on a route the service spools, in a temporary file (`spooled`; `body` is then empty).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string, as sent (not percent-decoded; an absolute-form
    /// target's scheme and authority taken off).
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: Option<SocketAddr>,
    /// The body on disk, on a spooled route; the file goes when the last clone is dropped.
    pub spooled: Option<Arc<SpooledBody>>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response: a status, a content type and a body, whole or streamed.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Body,
    /// `application/json` unless a handler says otherwise (`text/plain` logs, NDJSON events).
    pub content_type: &'static str,
    /// Close the connection after this response.
    pub close: bool,
    /// Extra headers, e.g. `Allow` on a 405.
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
        Response { status, body: Body::Bytes(body), content_type: JSON, close: false, headers: Vec::new() }
    }

    /// A streamed answer: `produce` writes the body chunk by chunk on the serving thread (each
    /// chunk within `CHUNK_DEADLINE`); the connection is closed after it.
    pub fn stream(status: u16, content_type: &'static str, produce: Producer) -> Response {
        Response { status, body: Body::Stream(produce), content_type, close: true, headers: Vec::new() }
    }

    /// A whole answer of another type than JSON.
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response { status, body: Body::Bytes(body), content_type, close: false, headers: Vec::new() }
    }

    /// The body, when it is whole (tests and handlers that look at an answer).
    pub fn bytes_of(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(b) => b,
            Body::Stream(_) => &[],
        }
    }

    /// Every error answer of both daemons, in the one error shape (`ErrorBody`).
    pub fn error(status: u16, body: &ErrorBody) -> Response {
        // two strings always serialise; an empty body would show the impossible case
        Response::json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}
