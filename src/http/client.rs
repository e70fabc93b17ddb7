//! The HTTP clients: `HttpWorkerLink` (the manager's calls to a worker, the `WorkerLink` it
//! needs) and `ManagerClient` (the client's calls to the manager, one typed method per route,
//! streams written out as they come). How a call failed is decided once, in `classify`.
//!
//! Hold no state beyond their connection pools.

use super::logs;
use super::NEXT_PAGE_HEADER;
use crate::api::{ChangesCursor, DryRun, ErrorBody, ImagesLoaded, NodeInfo, StartTask, TaskChanges, WorkerHealth};
use crate::auth::Token;
use crate::manager::{ImageSource, LinkError, WorkerLink};
use crate::stats::NodeStats;
use crate::task::{Task, TaskId};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Responses bigger than this are refused (a page of 256 records of the largest specs fits).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Lowers `MAX_ANSWER` for the process (never raises it): for the tests that need a real
/// worker's answer to be too big without making 64 MiB of tasks.
pub const MAX_ANSWER_VAR: &str = "SKIFF_TEST_MAX_ANSWER_BYTES";

/// `MAX_ANSWER`, or less if `SKIFF_TEST_MAX_ANSWER_BYTES` says so (read once).
fn max_answer() -> u64 {
    static MAX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        let lowered = std::env::var(MAX_ANSWER_VAR).ok().and_then(|v| v.parse().ok()).map(|v: u64| v.min(MAX_ANSWER));
        if let Some(v) = lowered {
            // a value left over from a test shell would make big answers bad ones: say so
            log::warn!("answers from workers limited for tests var={MAX_ANSWER_VAR} bytes={v}");
        }
        lowered.unwrap_or(MAX_ANSWER)
    })
}

pub(super) fn agent(connect: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect))
        .max_idle_connections_per_host(4)
        .build()
        .new_agent()
}

/// How a call failed, decided once for both clients: `LinkError` says whether the request may
/// have reached the other side, which is what both callers need to know.
pub(super) fn classify(e: ureq::Error) -> LinkError {
    use std::io::ErrorKind;
    let text = e.to_string();
    match e {
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound) => {
            LinkError::Unreachable(text)
        }
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::BadUri(_) => {
            LinkError::Unreachable(text)
        }
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => LinkError::Unreachable(text),
        // it answered, with too much or with something that is not what was asked
        ureq::Error::Json(_) | ureq::Error::BodyExceedsLimit(_) | ureq::Error::Protocol(_) => {
            LinkError::BadAnswer(text)
        }
        ureq::Error::Timeout(_) => LinkError::Lost("no answer within the call's deadline".into()),
        _ => LinkError::Lost(text),
    }
}

/// A status other than 2xx: the other side's refusal, its message taken from the error shape
/// (else the start of the body). Every client reads a refusal here, `call` and `logs::open_get`.
pub(super) fn refusal(status: u16, body: &[u8]) -> LinkError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().chars().take(300).collect());
    LinkError::Refused { status, message }
}

/// One JSON call: method, URL, optional body, overall deadline, the `Authorization` value.
pub(super) fn call<T: DeserializeOwned>(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    deadline: Duration,
    authorization: Option<&str>,
) -> Result<T, LinkError> {
    call_paged(agent, method, url, body, deadline, authorization).map(|(v, _)| v)
}

/// `call`, with where the next page starts when the answer is one page of a list.
fn call_paged<T: DeserializeOwned>(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    deadline: Duration,
    authorization: Option<&str>,
) -> Result<(T, Option<String>), LinkError> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(value) = authorization {
        builder = builder.header("Authorization", value);
    }
    if body.is_some() {
        builder = builder.header("Content-Type", "application/json");
    }
    let request = builder
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .map_err(|e| LinkError::Unreachable(e.to_string()))?;
    let request = agent.configure_request(request).timeout_global(Some(deadline)).build();
    let mut resp = agent.run(request).map_err(classify)?;
    let status = resp.status().as_u16();
    let next = resp.headers().get(NEXT_PAGE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    // the head came: a body that does not come whole (too big, too slow) is a bad answer from a
    // peer that answered, not a lost one
    let bytes = resp.body_mut().with_config().limit(max_answer()).read_to_vec().map_err(|e| match classify(e) {
        LinkError::Lost(why) | LinkError::Unreachable(why) => {
            LinkError::BadAnswer(format!("the answer did not arrive whole: {why}"))
        }
        other => other,
    })?;
    if !(200..300).contains(&status) {
        return Err(refusal(status, &bytes));
    }
    serde_json::from_slice(&bytes)
        .map(|v| (v, next))
        .map_err(|e| LinkError::BadAnswer(format!("{e} in {} bytes", bytes.len())))
}

/// The manager's link to one worker over HTTP.
pub struct HttpWorkerLink {
    address: String,
    base: String,
    agent: ureq::Agent,
    authorization: Option<String>,
    /// How long a start may take (image pull included) and a stop (grace period included).
    pub start_deadline: Duration,
    pub stop_deadline: Duration,
    pub poll_deadline: Duration,
    /// How long an image's upload and load may take (`import_image`).
    pub image_deadline: Duration,
}

impl HttpWorkerLink {
    pub fn new(address: &str, token: Option<&Token>) -> HttpWorkerLink {
        HttpWorkerLink {
            address: address.to_string(),
            base: format!("http://{address}"),
            agent: agent(Duration::from_secs(2)),
            authorization: token.map(Token::header_value),
            start_deadline: Duration::from_secs(360),
            stop_deadline: Duration::from_secs(120),
            poll_deadline: Duration::from_secs(3),
            image_deadline: Duration::from_secs(1200),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<T, LinkError> {
        let url = format!("{}{path}", self.base);
        call(&self.agent, method, &url, body, deadline, self.authorization.as_deref())
    }
}

impl WorkerLink for HttpWorkerLink {
    fn address(&self) -> &str {
        &self.address
    }

    fn start(&self, req: &StartTask) -> Result<Task, LinkError> {
        let body = serde_json::to_vec(req).map_err(|e| LinkError::BadAnswer(e.to_string()))?;
        self.call("POST", "/v1/tasks", Some(&body), self.start_deadline)
    }

    fn stop(&self, id: TaskId) -> Result<Task, LinkError> {
        self.call("DELETE", &format!("/v1/tasks/{id}"), None, self.stop_deadline)
    }

    /// From a worker of an earlier release, which has no changes feed (404), its whole list
    /// as one full page, so that a manager can be upgraded before its workers; a cursor the
    /// worker refuses (400) is dropped and everything asked for again.
    fn changes(&self, since: Option<&ChangesCursor>) -> Result<TaskChanges, LinkError> {
        let ask = |since: Option<&ChangesCursor>| {
            let query = super::changes::query_of(since, super::changes::DEFAULT_LIMIT);
            self.call("GET", &format!("/v1/changes?{query}"), None, self.poll_deadline)
        };
        match ask(since) {
            Err(LinkError::Refused { status: 400, .. }) if since.is_some() => ask(None),
            Err(LinkError::Refused { status: 404, .. }) => {
                let tasks: Vec<Task> = self.call("GET", "/v1/tasks", None, self.poll_deadline)?;
                let removed = Vec::new();
                let instance = String::new();
                Ok(TaskChanges {
                    instance,
                    version: 0,
                    full: true,
                    more: false,
                    removals_from: 0,
                    synced: true,
                    tasks,
                    removed,
                })
            }
            answer => answer,
        }
    }

    fn health(&self) -> Result<WorkerHealth, LinkError> {
        self.call("GET", "/v1/health", None, self.poll_deadline)
    }

    fn stats(&self) -> Result<NodeStats, LinkError> {
        self.call("GET", "/v1/stats", None, self.poll_deadline)
    }

    fn export_image(&self, reference: &str) -> Result<ImageSource, LinkError> {
        let (reader, close) = super::images::open_export(&self.address, reference, self.authorization.as_deref())?;
        Ok(ImageSource { reader, close })
    }

    fn import_image(&self, tar: &mut dyn std::io::Read) -> Result<ImagesLoaded, LinkError> {
        let authorization = self.authorization.as_deref();
        super::images::upload(&self.agent, &self.address, tar, authorization, self.image_deadline)
    }
}

/// Why a client call failed: the manager's address and how the call failed.
#[derive(Debug)]
pub struct ClientError {
    pub address: String,
    pub failure: LinkError,
    /// The path asked for: what the failure is about (a task, a service, a node, logs).
    pub path: String,
}

/// What to do after a 404 or a 409, by what the request was about.
fn hint(path: &str, status: u16) -> &'static str {
    let about = path.split('?').next().unwrap_or(path);
    match (about.split('/').nth(2), status) {
        (Some("services"), 404) => "`service ls` shows the services",
        (Some("services"), _) => {
            "`service get NAME` shows where it stands; `service update NAME FILE` makes a new version"
        }
        (Some("nodes"), 404) => "`list-nodes` shows the nodes",
        (Some("nodes"), _) => "`list-nodes` shows where the node stands",
        (_, 404) if about.ends_with("/logs") => {
            "`get ID` says where the task stands (a stopped task's container is gone); `list` shows the tasks"
        }
        (_, 404) => "`list` shows the tasks, `list-nodes` the nodes",
        _ => "`get ID` shows where the task stands",
    }
}

impl ClientError {
    /// The HTTP status of a refusal by the manager.
    pub fn status(&self) -> Option<u16> {
        match self.failure {
            LinkError::Refused { status, .. } => Some(status),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    /// In words for the person at the terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = &self.address;
        match &self.failure {
            LinkError::Unreachable(why) => write!(
                f,
                "cannot reach the manager at {address}: {why}; is it running there? (--host and -p say where)"
            ),
            LinkError::Lost(why) => {
                write!(
                    f,
                    "no answer from the manager at {address}: {why}; is it running there? (--host and -p say where)"
                )
            }
            LinkError::Refused { status: 401, message } => {
                write!(f, "{message} (HTTP 401): give the cluster's token in SKIFF_TOKEN or with --token-file")
            }
            LinkError::Refused { status: status @ (404 | 409), message } => {
                write!(f, "{message} (HTTP {status}): {}", hint(&self.path, *status))
            }
            LinkError::Refused { status, message } => write!(f, "{message} (HTTP {status})"),
            LinkError::BadAnswer(why) => write!(f, "the manager's answer is not understood: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The client's connection to the manager's API, one typed method per route.
pub struct ManagerClient {
    address: String,
    base: String,
    agent: ureq::Agent,
    deadline: Duration,
    authorization: Option<String>,
}

impl ManagerClient {
    pub fn new(host: &str, port: u16, token: Option<&Token>) -> ManagerClient {
        let address = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        ManagerClient {
            base: format!("http://{address}"),
            address,
            agent: agent(Duration::from_secs(5)),
            deadline: Duration::from_secs(30),
            authorization: token.map(Token::header_value),
        }
    }

    pub(crate) fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        call(&self.agent, method, &url, body, self.deadline, self.authorization.as_deref())
            .map_err(|failure| ClientError { address: self.address.clone(), failure, path: path.to_string() })
    }

    pub fn submit(&self, spec_json: &[u8]) -> Result<Task, ClientError> {
        self.call("POST", "/v1/tasks", Some(spec_json))
    }

    pub fn events(&self, query: &str) -> Result<Vec<crate::events::ClusterEvent>, ClientError> {
        self.call("GET", &format!("/v1/events?{query}"), None)
    }

    /// The events' answer as it comes (NDJSON lines when following), written to `out`.
    pub fn events_raw(&self, query: &str, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        self.copy_stream(&format!("/v1/events?{query}"), out)
    }

    pub fn dry_run(&self, spec_json: &[u8]) -> Result<DryRun, ClientError> {
        self.call("POST", "/v1/tasks?dry_run=true", Some(spec_json))
    }

    pub fn get(&self, id: TaskId) -> Result<Task, ClientError> {
        self.call("GET", &format!("/v1/tasks/{id}"), None)
    }

    /// A task's output, written to `out` as it comes (flushed after each piece, so that a
    /// followed log shows at once); `query` is the logs route's query string.
    pub fn logs(&self, id: TaskId, query: &str, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        self.copy_stream(&format!("/v1/tasks/{id}/logs?{query}"), out)
    }

    fn copy_stream(&self, path: &str, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        let fail = |failure| ClientError { address: self.address.clone(), failure, path: path.to_string() };
        let (mut body, _close) =
            logs::open_get(&self.address, path, self.authorization.as_deref(), Duration::from_secs(5)).map_err(fail)?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(LinkError::Lost(e.to_string()))),
            };
            out.write_all(&buf[..n]).and_then(|()| out.flush()).map_err(|e| fail(LinkError::Lost(e.to_string())))?;
            total += n as u64;
        }
    }

    /// Every task (or, with `service`, that service's replicas), page by page, oldest first.
    pub fn list(&self, service: Option<&str>) -> Result<Vec<Task>, ClientError> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        let filter = service.map(|s| format!("service={}", super::query_escape(s)));
        loop {
            let query: Vec<String> = filter.iter().cloned().chain(next.iter().map(|c| format!("next={c}"))).collect();
            let path =
                if query.is_empty() { "/v1/tasks".to_string() } else { format!("/v1/tasks?{}", query.join("&")) };
            let url = format!("{}{path}", self.base);
            let (page, more): (Vec<Task>, Option<String>) =
                call_paged(&self.agent, "GET", &url, None, self.deadline, self.authorization.as_deref())
                    .map_err(|failure| ClientError { address: self.address.clone(), failure, path: path.clone() })?;
            all.extend(page);
            match more {
                Some(cursor) if next.as_deref() != Some(cursor.as_str()) => next = Some(cursor),
                _ => return Ok(all),
            }
        }
    }

    pub fn stop(&self, id: TaskId) -> Result<Task, ClientError> {
        self.call("DELETE", &format!("/v1/tasks/{id}"), None)
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.call("GET", "/v1/nodes", None)
    }

    /// A call on one node (`drain`, `activate`, removal): the node as the manager then sees it.
    pub fn node_action(&self, method: &str, path: &str) -> Result<NodeInfo, ClientError> {
        self.call(method, path, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_the_message_of_the_error_shape_else_the_start_of_the_body() {
        let refused = |status: u16, body: &[u8]| match refusal(status, body) {
            LinkError::Refused { status, message } => (status, message),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(409, br#"{"error":"name taken","field":"name"}"#), (409, "name taken".into()));
        assert_eq!(refused(502, b"  Bad Gateway\r\n"), (502, "Bad Gateway".into()));
        assert_eq!(refused(500, "x".repeat(1000).as_bytes()).1.len(), 300, "a long body is cut");
    }

    #[test]
    fn a_refusal_says_what_to_do_about_what_was_asked() {
        let refused = |path: &str, status: u16| {
            let failure = LinkError::Refused { status, message: "no".into() };
            ClientError { address: "m:1".into(), failure, path: path.into() }.to_string()
        };
        assert!(refused("/v1/tasks/ID", 404).ends_with("`list` shows the tasks, `list-nodes` the nodes"));
        assert!(refused("/v1/services/web", 404).ends_with("`service ls` shows the services"));
        assert!(refused("/v1/services", 409).contains("service update NAME FILE"));
        assert!(refused("/v1/nodes/w1/drain", 404).ends_with("`list-nodes` shows the nodes"));
        assert!(refused("/v1/tasks/ID/logs?follow=true", 404).contains("stopped task's container is gone"));
        assert!(refused("/v1/tasks/ID", 409).ends_with("`get ID` shows where the task stands"));
    }
}
