//! HTTP for both daemons and their clients: the route tables (one `match` each), request bodies
//! to domain types, errors to status codes (`status_of`, the one place that decides), and the
//! HTTP clients: `HttpWorkerLink` (manager → worker) and `ManagerClient` (client → manager).
//!
//! Holds no domain state: handlers turn a request into one call on the daemon's handle.
//! The server itself (threads, limits, parsing) is in `http/server.rs`.

pub mod server;

pub use server::{Handler, Limits, Request, Response, Server};

use crate::api::{ErrorBody, ManagerHealth, NodeInfo, StartTask, WorkerHealth};
use crate::auth::Token;
use crate::control::error_chain;
use crate::manager::{LinkError, ManagerError, ManagerHandle, WorkerLink};
use crate::stats::NodeStats;
use crate::task::{InvalidTaskId, SpecError, Task, TaskId, TaskSpec};
use crate::worker::{WorkerError, WorkerHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Routes

/// Every route of the manager: method and path pattern (also what `docs/openapi.yaml` lists).
pub const MANAGER_ROUTES: [(&str, &str); 6] = [
    ("GET", "/v1/health"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("DELETE", "/v1/tasks/{id}"),
    ("GET", "/v1/nodes"),
];

/// Every route of the worker.
pub const WORKER_ROUTES: [(&str, &str); 6] = [
    ("GET", "/v1/health"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("DELETE", "/v1/tasks/{id}"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum ManagerRoute {
    Health,
    ListTasks,
    SubmitTask,
    GetTask(TaskId),
    StopTask(TaskId),
    ListNodes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkerRoute {
    Health,
    Stats,
    ListTasks,
    StartTask,
    GetTask(TaskId),
    StopTask(TaskId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    NotFound,
    /// The path exists with other methods, listed for the `Allow` header.
    MethodNotAllowed(&'static str),
    BadId(InvalidTaskId),
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn task_id(s: &str) -> Result<TaskId, RouteError> {
    s.parse().map_err(RouteError::BadId)
}

pub fn manager_route(method: &str, path: &str) -> Result<ManagerRoute, RouteError> {
    use ManagerRoute::*;
    match (method, segments(path).as_slice()) {
        ("GET", ["v1", "health"]) => Ok(Health),
        ("GET", ["v1", "tasks"]) => Ok(ListTasks),
        ("POST", ["v1", "tasks"]) => Ok(SubmitTask),
        ("GET", ["v1", "tasks", id]) => Ok(GetTask(task_id(id)?)),
        ("DELETE", ["v1", "tasks", id]) => Ok(StopTask(task_id(id)?)),
        ("GET", ["v1", "nodes"]) => Ok(ListNodes),
        (_, ["v1", "health"] | ["v1", "nodes"]) => Err(RouteError::MethodNotAllowed("GET")),
        (_, ["v1", "tasks"]) => Err(RouteError::MethodNotAllowed("GET, POST")),
        (_, ["v1", "tasks", _]) => Err(RouteError::MethodNotAllowed("GET, DELETE")),
        _ => Err(RouteError::NotFound),
    }
}

pub fn worker_route(method: &str, path: &str) -> Result<WorkerRoute, RouteError> {
    use WorkerRoute::*;
    match (method, segments(path).as_slice()) {
        ("GET", ["v1", "health"]) => Ok(Health),
        ("GET", ["v1", "stats"]) => Ok(Stats),
        ("GET", ["v1", "tasks"]) => Ok(ListTasks),
        ("POST", ["v1", "tasks"]) => Ok(StartTask),
        ("GET", ["v1", "tasks", id]) => Ok(GetTask(task_id(id)?)),
        ("DELETE", ["v1", "tasks", id]) => Ok(StopTask(task_id(id)?)),
        (_, ["v1", "health"] | ["v1", "stats"]) => Err(RouteError::MethodNotAllowed("GET")),
        (_, ["v1", "tasks"]) => Err(RouteError::MethodNotAllowed("GET, POST")),
        (_, ["v1", "tasks", _]) => Err(RouteError::MethodNotAllowed("GET, DELETE")),
        _ => Err(RouteError::NotFound),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors to responses

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    Route(RouteError),
    Spec(SpecError),
    Manager(ManagerError),
    Worker(WorkerError),
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> ApiError {
        match e {
            ManagerError::InvalidSpec(s) => ApiError::Spec(s),
            other => ApiError::Manager(other),
        }
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> ApiError {
        ApiError::Worker(e)
    }
}

/// The one mapping from errors to status codes.
pub fn status_of(e: &ApiError) -> u16 {
    match e {
        ApiError::Route(RouteError::NotFound) => 404,
        ApiError::Route(RouteError::MethodNotAllowed(_)) => 405,
        ApiError::Route(RouteError::BadId(_)) => 400,
        ApiError::Spec(_) => 400,
        ApiError::Manager(ManagerError::NotFound(_)) | ApiError::Worker(WorkerError::NotFound(_)) => 404,
        ApiError::Manager(ManagerError::AlreadyFinished { .. })
        | ApiError::Worker(WorkerError::AlreadyFinished { .. } | WorkerError::CleaningUp(_)) => 409,
        ApiError::Manager(ManagerError::InvalidSpec(_)) => 400,
        ApiError::Manager(ManagerError::Store(_) | ManagerError::Spawn(_))
        | ApiError::Worker(WorkerError::Store(_) | WorkerError::Spawn(_)) => 500,
        ApiError::Manager(ManagerError::Unavailable)
        | ApiError::Worker(WorkerError::EngineUnreachable(_) | WorkerError::ShuttingDown) => 503,
        ApiError::Worker(WorkerError::TimedOut | WorkerError::OutcomeUnknown(_)) => 504,
        ApiError::Worker(WorkerError::NotReady) => 503,
    }
}

fn error_response(e: ApiError) -> Response {
    let status = status_of(&e);
    let (message, field) = match &e {
        ApiError::Route(RouteError::NotFound) => ("no such route".to_string(), None),
        ApiError::Route(RouteError::MethodNotAllowed(allow)) => (format!("method not allowed; use {allow}"), None),
        ApiError::Route(RouteError::BadId(bad)) => (bad.to_string(), None),
        ApiError::Spec(s) => (s.to_string(), s.field.clone()),
        ApiError::Manager(m) => (error_chain(m), None),
        ApiError::Worker(w) => (error_chain(w), None),
    };
    let body = serde_json::to_vec(&ErrorBody { error: message, field }).unwrap_or_default();
    let resp = Response::json_bytes(status, body);
    match e {
        ApiError::Route(RouteError::MethodNotAllowed(allow)) => resp.with_header("Allow", allow),
        _ => resp,
    }
}

fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    // our own types always serialise; an empty body would show the impossible case
    Ok(Response::json_bytes(status, serde_json::to_vec(value).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// The manager's API over its handle.
pub fn manager_handler(handle: ManagerHandle, token: Option<Token>) -> Arc<Handler> {
    Arc::new(move |req: &Request| {
        if let Err(refused) = authorize(req, token.as_ref()) {
            return refused;
        }
        let result = manager_route(&req.method, &req.path)
            .map_err(ApiError::Route)
            .and_then(|route| serve_manager(&handle, route, req));
        result.unwrap_or_else(error_response)
    })
}

/// Every route but `GET /v1/health` needs the cluster token, when there is one (without one the
/// daemon listens on loopback only). The token is never logged.
fn authorize(req: &Request, token: Option<&Token>) -> Result<(), Response> {
    let Some(token) = token else { return Ok(()) };
    if req.method == "GET" && segments(&req.path) == ["v1", "health"] {
        return Ok(());
    }
    if token.accepts(req.header("authorization")) {
        return Ok(());
    }
    let remote = req.remote.map(|r| r.to_string()).unwrap_or_default();
    let given = if req.header("authorization").is_some() { "a wrong token" } else { "no token" };
    log::warn!("unauthorized request method={} path={} remote={remote} with={given}", req.method, req.path);
    let body = serde_json::to_vec(&ErrorBody {
        error: "missing or wrong token: send Authorization: Bearer <the cluster token>".into(),
        field: None,
    })
    .unwrap_or_default();
    Err(Response::json_bytes(401, body).with_header("WWW-Authenticate", "Bearer"))
}

fn serve_manager(h: &ManagerHandle, route: ManagerRoute, req: &Request) -> Result<Response, ApiError> {
    match route {
        ManagerRoute::Health => json(200, &h.health()?),
        ManagerRoute::ListTasks => json(200, &h.list()?),
        ManagerRoute::SubmitTask => {
            let spec = TaskSpec::from_json(&req.body).map_err(ApiError::Spec)?;
            let task = h.submit(spec)?;
            Ok(json(201, &task)?.with_header("Location", &format!("/v1/tasks/{}", task.id)))
        }
        ManagerRoute::GetTask(id) => json(200, &h.get(id)?),
        ManagerRoute::StopTask(id) => json(202, &h.stop(id)?),
        ManagerRoute::ListNodes => json(200, &h.nodes()?),
    }
}

/// The worker's API over its handle.
pub fn worker_handler(handle: WorkerHandle, token: Option<Token>) -> Arc<Handler> {
    Arc::new(move |req: &Request| {
        if let Err(refused) = authorize(req, token.as_ref()) {
            return refused;
        }
        let result = worker_route(&req.method, &req.path)
            .map_err(ApiError::Route)
            .and_then(|route| serve_worker(&handle, route, req));
        result.unwrap_or_else(error_response)
    })
}

fn serve_worker(h: &WorkerHandle, route: WorkerRoute, req: &Request) -> Result<Response, ApiError> {
    match route {
        WorkerRoute::Health => json(200, &h.health()?),
        WorkerRoute::Stats => json(200, &h.stats()?),
        WorkerRoute::ListTasks => json(200, &h.list()?),
        WorkerRoute::StartTask => {
            let start = parse_start_task(&req.body).map_err(ApiError::Spec)?;
            let (task, created) = h.start(start)?;
            json(if created { 201 } else { 200 }, &task)
        }
        WorkerRoute::GetTask(id) => json(200, &h.get(id)?),
        WorkerRoute::StopTask(id) => json(200, &h.stop(id)?),
    }
}

/// The worker's start body, `{"id": ..., "spec": {...}}`, with spec errors named `spec.field`.
pub fn parse_start_task(body: &[u8]) -> Result<StartTask, SpecError> {
    let bad = |field: Option<&str>, message: String| SpecError { field: field.map(str::to_string), message };
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(None, format!("malformed JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad(None, "the body must be a JSON object with id and spec".into()));
    };
    if let Some(unknown) = obj.keys().find(|k| !["id", "spec", "restart_count"].contains(&k.as_str())) {
        return Err(bad(Some(unknown), "unknown field; the fields are: id, spec, restart_count".into()));
    }
    let restart_count = match obj.remove("restart_count") {
        None | Some(Value::Null) => 0,
        Some(v) => serde_json::from_value::<u32>(v).map_err(|e| bad(Some("restart_count"), e.to_string()))?,
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s.parse::<TaskId>().map_err(|e| bad(Some("id"), e.to_string()))?,
        _ => return Err(bad(Some("id"), "is required and must be a task id string".into())),
    };
    let spec_value = obj.remove("spec").ok_or_else(|| bad(Some("spec"), "is required".into()))?;
    let spec = TaskSpec::from_value(spec_value).map_err(|e| SpecError {
        field: Some(e.field.map(|f| format!("spec.{f}")).unwrap_or_else(|| "spec".into())),
        message: e.message,
    })?;
    Ok(StartTask { id, spec, restart_count })
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Responses bigger than this are refused (a task list of many thousands fits easily).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

fn agent(connect: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect))
        .max_idle_connections_per_host(4)
        .build()
        .new_agent()
}

/// How a call ended, before it is turned into the caller's error type.
enum CallFailure {
    NotSent(String),
    Lost(String),
    Status(u16, String),
    BadAnswer(String),
}

fn classify(e: ureq::Error) -> CallFailure {
    use std::io::ErrorKind;
    let text = e.to_string();
    match e {
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound) => {
            CallFailure::NotSent(text)
        }
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::BadUri(_) => {
            CallFailure::NotSent(text)
        }
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => CallFailure::NotSent(text),
        // it answered, with too much or with something that is not what was asked
        ureq::Error::Json(_) | ureq::Error::BodyExceedsLimit(_) | ureq::Error::Protocol(_) => {
            CallFailure::BadAnswer(text)
        }
        _ => CallFailure::Lost(text),
    }
}

/// One JSON call: method, URL, optional body, overall deadline.
fn call<T: DeserializeOwned>(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    deadline: Duration,
    headers: &[(&str, &str)],
) -> Result<(u16, T), CallFailure> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if body.is_some() {
        builder = builder.header("Content-Type", "application/json");
    }
    let request =
        builder.body(body.map(<[u8]>::to_vec).unwrap_or_default()).map_err(|e| CallFailure::NotSent(e.to_string()))?;
    let request = agent.configure_request(request).timeout_global(Some(deadline)).build();
    let mut resp = agent.run(request).map_err(classify)?;
    let status = resp.status().as_u16();
    let bytes = resp.body_mut().with_config().limit(MAX_ANSWER).read_to_vec().map_err(classify)?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(300).collect());
        return Err(CallFailure::Status(status, message));
    }
    serde_json::from_slice(&bytes)
        .map(|v| (status, v))
        .map_err(|e| CallFailure::BadAnswer(format!("{e} in {} bytes", bytes.len())))
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
        let headers: Vec<(&str, &str)> = self.authorization.iter().map(|a| ("Authorization", a.as_str())).collect();
        call(&self.agent, method, &url, body, deadline, &headers).map(|(_, v)| v).map_err(|f| match f {
            CallFailure::NotSent(why) => LinkError::Unreachable(why),
            CallFailure::Lost(why) => LinkError::Lost(why),
            CallFailure::Status(status, message) => LinkError::Refused { status, message },
            CallFailure::BadAnswer(why) => LinkError::BadAnswer(why),
        })
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

    fn tasks(&self) -> Result<Vec<Task>, LinkError> {
        self.call("GET", "/v1/tasks", None, self.poll_deadline)
    }

    fn health(&self) -> Result<WorkerHealth, LinkError> {
        self.call("GET", "/v1/health", None, self.poll_deadline)
    }

    fn stats(&self) -> Result<NodeStats, LinkError> {
        self.call("GET", "/v1/stats", None, self.poll_deadline)
    }
}

/// Why a client call failed, in words for the person at the terminal.
#[derive(Debug)]
pub enum ClientError {
    Unreachable { address: String, why: String },
    Api { status: u16, message: String },
    BadAnswer(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { address, why } => write!(f, "cannot reach the manager at {address}: {why}"),
            ClientError::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            ClientError::BadAnswer(why) => write!(f, "the manager's answer is not understood: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The client's connection to the manager's API.
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

    /// A call whose answer is returned as raw JSON, for `--json` output and for typed use.
    pub fn call_value(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let headers: Vec<(&str, &str)> = self.authorization.iter().map(|a| ("Authorization", a.as_str())).collect();
        call(&self.agent, method, &url, body, self.deadline, &headers).map(|(_, v)| v).map_err(|f| match f {
            CallFailure::NotSent(why) | CallFailure::Lost(why) => {
                ClientError::Unreachable { address: self.address.clone(), why }
            }
            CallFailure::Status(status, message) => ClientError::Api { status, message },
            CallFailure::BadAnswer(why) => ClientError::BadAnswer(why),
        })
    }

    fn typed<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<T, ClientError> {
        let v = self.call_value(method, path, body)?;
        serde_json::from_value(v).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    pub fn submit(&self, spec_json: &[u8]) -> Result<Task, ClientError> {
        self.typed("POST", "/v1/tasks", Some(spec_json))
    }

    pub fn get(&self, id: &str) -> Result<Task, ClientError> {
        self.typed("GET", &format!("/v1/tasks/{id}"), None)
    }

    pub fn list(&self) -> Result<Vec<Task>, ClientError> {
        self.typed("GET", "/v1/tasks", None)
    }

    pub fn stop(&self, id: &str) -> Result<Task, ClientError> {
        self.typed("DELETE", &format!("/v1/tasks/{id}"), None)
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.typed("GET", "/v1/nodes", None)
    }

    pub fn health(&self) -> Result<ManagerHealth, ClientError> {
        self.typed("GET", "/v1/health", None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b";

    fn sample_path(pattern: &str) -> String {
        pattern.replace("{id}", ID)
    }

    #[test]
    fn every_listed_route_is_routed() {
        for (method, pattern) in MANAGER_ROUTES {
            assert!(manager_route(method, &sample_path(pattern)).is_ok(), "manager {method} {pattern}");
        }
        for (method, pattern) in WORKER_ROUTES {
            assert!(worker_route(method, &sample_path(pattern)).is_ok(), "worker {method} {pattern}");
        }
    }

    fn assert_documented(file: &str, routes: &[(&str, &str)]) {
        let path = format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"));
        let spec = std::fs::read_to_string(&path).expect("the API spec exists");
        for (method, pattern) in routes {
            let heading = format!("\n  {pattern}:\n");
            let section = spec.split(&heading).nth(1).unwrap_or_else(|| panic!("{pattern} missing from {file}"));
            let section = format!("\n{}", section.split("\n  /").next().unwrap_or(""));
            let op = format!("\n    {}:", method.to_lowercase());
            assert!(section.contains(&op), "{method} {pattern} missing from {file}");
        }
    }

    #[test]
    fn every_route_is_in_the_api_spec() {
        assert_documented("openapi.yaml", &MANAGER_ROUTES);
        assert_documented("worker-openapi.yaml", &WORKER_ROUTES);
    }

    #[test]
    fn routes_map_methods_and_ids() {
        let id: TaskId = ID.parse().expect("valid id");
        assert_eq!(manager_route("GET", &format!("/v1/tasks/{ID}")), Ok(ManagerRoute::GetTask(id)));
        assert_eq!(manager_route("DELETE", &format!("/v1/tasks/{ID}/")), Ok(ManagerRoute::StopTask(id)));
        assert_eq!(manager_route("GET", "/v1/tasks/"), Ok(ManagerRoute::ListTasks));
        assert!(matches!(manager_route("GET", "/v1/tasks/nope"), Err(RouteError::BadId(_))));
        assert_eq!(manager_route("PUT", "/v1/tasks"), Err(RouteError::MethodNotAllowed("GET, POST")));
        assert_eq!(manager_route("POST", "/v1/nodes"), Err(RouteError::MethodNotAllowed("GET")));
        assert_eq!(manager_route("GET", "/v2/tasks"), Err(RouteError::NotFound));
        assert_eq!(manager_route("GET", "/"), Err(RouteError::NotFound));
        assert_eq!(worker_route("GET", "/v1/nodes"), Err(RouteError::NotFound));
        assert_eq!(worker_route("POST", "/v1/tasks"), Ok(WorkerRoute::StartTask));
    }

    #[test]
    fn errors_get_their_status_and_shape() {
        let id: TaskId = ID.parse().expect("valid id");
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::Route(RouteError::NotFound), 404),
            (ApiError::Route(RouteError::MethodNotAllowed("GET")), 405),
            (ApiError::Route(RouteError::BadId(InvalidTaskId("x".into()))), 400),
            (ApiError::Spec(SpecError { field: Some("image".into()), message: "is required".into() }), 400),
            (ApiError::Manager(ManagerError::NotFound(id)), 404),
            (ApiError::Manager(ManagerError::AlreadyFinished { id, state: crate::task::TaskState::Completed }), 409),
            (ApiError::Manager(ManagerError::Unavailable), 503),
            (ApiError::Worker(WorkerError::EngineUnreachable("down".into())), 503),
            (ApiError::Worker(WorkerError::TimedOut), 504),
        ];
        for (e, status) in cases {
            let shown = format!("{e:?}");
            let resp = error_response(e);
            assert_eq!(resp.status, status, "{shown}");
            let body: ErrorBody = serde_json::from_slice(&resp.body).expect("error shape");
            assert!(!body.error.is_empty());
        }
        let resp = error_response(ApiError::Route(RouteError::MethodNotAllowed("GET, POST")));
        assert!(resp.headers.contains(&("Allow".to_string(), "GET, POST".to_string())));
        let resp =
            error_response(ApiError::Spec(SpecError { field: Some("image".into()), message: "is required".into() }));
        let body: ErrorBody = serde_json::from_slice(&resp.body).expect("error shape");
        assert_eq!(body.field.as_deref(), Some("image"));
    }

    #[test]
    fn start_body_errors_name_spec_fields() {
        let ok = parse_start_task(format!(r#"{{"id":"{ID}","spec":{{"name":"a","image":"b"}}}}"#).as_bytes());
        assert!(ok.is_ok());
        let e = parse_start_task(format!(r#"{{"id":"{ID}","spec":{{"name":"a"}}}}"#).as_bytes()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.image"));
        let e = parse_start_task(br#"{"id":"x","spec":{}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("id"));
        let e = parse_start_task(format!(r#"{{"id":"{ID}","spec":{{}},"extra":1}}"#).as_bytes()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("extra"));
    }
}
