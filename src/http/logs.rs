//! A task's output over HTTP: the query of `GET /v1/tasks/{id}/logs` (both daemons), the
//! worker's answer streamed from its engine, and the manager's relay of its worker's answer,
//! chunk by chunk, never holding a whole log. Also the streaming GET both the manager (to a
//! worker) and the client (to the manager) open.
//!
//! Holds no state: the task's node and container come from the daemons' handles.

use super::stream::{relay, ChunkedReader, Closer, RelayEnd};
use super::{ApiError, Response};
use crate::auth::Token;
use crate::docker_cli::{LogOptions, Streams};
use crate::manager::{LinkError, ManagerHandle};
use crate::task::{DesiredState, TaskId, TaskState};
use crate::time::Timestamp;
use crate::worker::WorkerHandle;
use log::debug;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest a stream (a followed log, followed events) lasts; a client that wants more
/// opens it again (with `since`).
pub const STREAM_MAX: Duration = Duration::from_secs(3600);

pub const TEXT: &str = "text/plain; charset=utf-8";

/// `tail`, `since`, `timestamps`, `stream`, `follow`: a bad one is a 400 that names it.
pub fn log_query(query: &str) -> Result<LogOptions, ApiError> {
    let bad = |param: &str, message: &str| ApiError::Query { param: param.to_string(), message: message.to_string() };
    let flag = |key: &str, value: &str| match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(key, "must be true or false")),
    };
    let mut opts = LogOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::percent_decode(raw).ok_or_else(|| bad(key, "is not valid percent-encoded UTF-8"))?;
        match key {
            "tail" => opts.tail = Some(value.parse::<u64>().map_err(|_| bad(key, "must be a number of lines"))?),
            "since" => {
                let t = Timestamp::parse(&value).ok_or_else(|| bad(key, "must be an RFC 3339 time"))?;
                opts.since = Some((t.millis() / 1000) as i64);
            }
            "timestamps" => opts.timestamps = flag(key, &value)?,
            "follow" => opts.follow = flag(key, &value)?,
            "stream" => {
                opts.streams = Streams::parse(&value).ok_or_else(|| bad(key, "must be stdout, stderr or both"))?
            }
            other => {
                return Err(bad(other, "unknown; the parameters are tail, since, timestamps, stream, follow"));
            }
        }
    }
    Ok(opts)
}

/// The worker's answer: the container's log, streamed until it ends (or the reader goes, or
/// `STREAM_MAX` passes). Errors (no such task, no container) are found before the 200 is sent.
pub fn worker_logs(h: &WorkerHandle, id: TaskId, query: &str) -> Result<Response, ApiError> {
    let opts = log_query(query)?;
    let logs = h.logs(id, &opts)?;
    Ok(Response::stream(
        200,
        TEXT,
        Box::new(move |out| {
            let end = relay(logs.reader, logs.close, out, STREAM_MAX)?;
            debug!("log stream ended task_id={id} end={end:?} bytes={}", out.written());
            Ok(())
        }),
    ))
}

/// The manager's answer: the same call made to the task's node, its body relayed as it comes.
pub fn manager_logs(h: &ManagerHandle, token: Option<&Token>, id: TaskId, query: &str) -> Result<Response, ApiError> {
    let opts = log_query(query)?;
    let mut task = h.get(id)?;
    // following a task that is still being placed or started (`start` then `logs --follow` at
    // once): its output starts once its container does, so wait for that, a bounded while (not
    // for one that waits for room: its reason is the answer), shorter than a client waits for
    // the answer's head
    let until = std::time::Instant::now() + FOLLOW_WAIT;
    while opts.follow
        && (task.state == TaskState::Scheduled || (task.state == TaskState::Pending && task.error.is_none()))
        && task.desired_state == DesiredState::Running
        && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(100));
        task = h.get(id)?;
    }
    let Some(node) = task.node.clone() else {
        return Err(ApiError::NeverPlaced { id, state: task.state, error: task.error });
    };
    let address = h
        .nodes()?
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.address)
        .ok_or_else(|| ApiError::Node(LinkError::Unreachable(format!("node {node} is not known any more"))))?;
    let path = if query.is_empty() { format!("/v1/tasks/{id}/logs") } else { format!("/v1/tasks/{id}/logs?{query}") };
    let authorization = token.map(Token::header_value);
    let (body, close) =
        open_get(&address, &path, authorization.as_deref(), Duration::from_secs(5)).map_err(ApiError::Node)?;
    Ok(Response::stream(
        200,
        TEXT,
        Box::new(move |out| {
            let end = relay(body, close, out, STREAM_MAX)?;
            if end == RelayEnd::MaxDuration {
                debug!("log relay reached its maximum duration task_id={id}");
            }
            Ok(())
        }),
    ))
}

/// How long `follow=true` waits for a task that is still being placed or started to run: under
/// the 10 s that `open_get` (the client's, the manager's) waits for an answer's head.
const FOLLOW_WAIT: Duration = Duration::from_secs(8);

/// The largest head or error body read from a streaming answer.
const MAX_HEAD: usize = 16 * 1024;

/// Opens `GET path` on `address` and hands back its body as it comes (chunked or not), with a
/// way to close it from another thread. A status other than 200 is the other side's error, read
/// as every client reads one (`client::refusal`).
pub fn open_get(
    address: &str,
    path: &str,
    authorization: Option<&str>,
    connect: Duration,
) -> Result<(Box<dyn Read + Send>, Closer), LinkError> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| LinkError::Unreachable(format!("{address}: {e}")))?
        .next()
        .ok_or_else(|| LinkError::Unreachable(format!("{address}: no address")))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, connect).map_err(|e| LinkError::Unreachable(format!("{address}: {e}")))?;
    let lost = |e: io::Error| LinkError::Lost(format!("{address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(lost)?;
    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(lost)?;
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(lost)?;
    // the head, read until its end; what came after it is the start of the body
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let (status, chunked, length, head_len) = loop {
        let n = stream.read(&mut piece).map_err(lost)?;
        if n == 0 {
            return Err(LinkError::Lost(format!("{address}: closed before answering")));
        }
        buf.extend_from_slice(&piece[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).to_string())
                };
                let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
                break (resp.code.unwrap_or(0), chunked, length, len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(LinkError::BadAnswer(format!("{address}: head too long"))),
            Err(e) => return Err(LinkError::BadAnswer(format!("{address}: {e}"))),
        }
    };
    let rest = buf.split_off(head_len);
    let handle = stream.try_clone().map_err(lost)?;
    let raw = io::Cursor::new(rest).chain(stream);
    if status != 200 {
        let mut body = Vec::new();
        let limit = length.unwrap_or(MAX_HEAD as u64).min(MAX_HEAD as u64);
        let reader: Box<dyn Read> =
            if chunked { Box::new(ChunkedReader::new(BufReader::new(raw))) } else { Box::new(raw) };
        crate::control::best_effort(reader.take(limit).read_to_end(&mut body));
        return Err(super::client::refusal(status, &body));
    }
    // a stream waits as long as its source is quiet; its end is the relay's to decide
    handle.set_read_timeout(None).map_err(lost)?;
    let body: Box<dyn Read + Send> = match (chunked, length) {
        (true, _) => Box::new(ChunkedReader::new(BufReader::new(raw))),
        (false, Some(n)) => Box::new(raw.take(n)),
        (false, None) => Box::new(raw),
    };
    let close: Closer = Box::new(move || {
        crate::control::best_effort(handle.shutdown(Shutdown::Both));
    });
    Ok((body, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_of_a_task_never_placed_are_a_404_that_says_why() {
        let id: TaskId = "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b".parse().unwrap();
        let waiting = ApiError::NeverPlaced { id, state: TaskState::Pending, error: Some("no node has room".into()) };
        assert_eq!(super::super::status_of(&waiting), 404);
        let resp = super::super::error_response(waiting);
        let body: crate::api::ErrorBody = serde_json::from_slice(resp.bytes_of()).unwrap();
        assert_eq!(
            (resp.status, body.error.as_str()),
            (404, format!("task {id} has no output yet: it was never placed (Pending: no node has room)").as_str())
        );
    }

    #[test]
    fn log_queries_are_read_and_bad_ones_name_the_parameter() {
        let opts = log_query("tail=5&since=2026-12-04T03%3A00%3A00Z&timestamps=true&stream=stderr&follow=1").unwrap();
        assert_eq!(opts.tail, Some(5));
        assert_eq!(opts.since, Some(1_796_353_200));
        assert!(opts.timestamps && opts.follow);
        assert_eq!(opts.streams, Streams::Stderr);
        assert_eq!(log_query("").unwrap(), LogOptions::default());
        for (query, param) in [
            ("tail=-1", "tail"),
            ("since=yesterday", "since"),
            ("follow=maybe", "follow"),
            ("stream=all", "stream"),
            ("lines=3", "lines"),
        ] {
            match log_query(query) {
                Err(ApiError::Query { param: p, .. }) => assert_eq!(p, param, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
