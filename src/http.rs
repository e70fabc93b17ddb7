//! HTTP for both daemons and their clients: the route tables (one `match` each), request bodies
//! to domain types, errors to status codes (`status_of`, the one place that decides), and the
//! HTTP clients: `HttpWorkerLink` (manager → worker) and `ManagerClient` (client → manager).
//!
//! Holds no domain state: handlers turn a request into one call on the daemon's handle.
//! The server itself (threads, limits, parsing) is in `http/server.rs`.

pub mod builds;
pub mod changes;
mod client;
pub mod events;
pub mod images;
pub mod join;

pub use client::{ClientError, HttpWorkerLink, ManagerClient, MAX_ANSWER_VAR};
pub(crate) use parse::percent_decode;
pub use parse::{parse_join, parse_start_task, query_escape, submit_query, task_query, JoinRequest, NEXT_PAGE_HEADER};
pub mod logs;
mod metrics;
mod parse;
pub mod server;
mod services;

pub use services::ServiceRoute;
pub mod stream;

pub use server::{Gate, Handler, Limits, Request, Response, Server, Service, SpoolLimits, SpoolPolicy, SpooledBody};
pub use stream::{Body, Chunks, Producer};

use crate::api::ErrorBody;
use crate::auth::Token;
use crate::control::error_chain;
use crate::dashboard::Asset;
use crate::logfmt::{q, short};
use crate::manager::{LinkError, ManagerError, ManagerHandle};
use crate::metrics::{RequestMetrics, Timer};
use crate::task::{InvalidTaskId, SpecError, TaskId, TaskSpec, TaskState};
use crate::worker::{WorkerError, WorkerHandle};
use serde::Serialize;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Routes

/// Every route of the manager: method and path pattern (also what `docs/openapi.yaml` lists).
pub const MANAGER_ROUTES: [(&str, &str); 24] = [
    ("GET", "/v1/health"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("DELETE", "/v1/tasks/{id}"),
    ("GET", "/v1/tasks/{id}/logs"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/services"),
    ("POST", "/v1/services"),
    ("GET", "/v1/services/{name}"),
    ("PUT", "/v1/services/{name}"),
    ("DELETE", "/v1/services/{name}"),
    ("POST", "/v1/services/{name}/scale"),
    ("POST", "/v1/services/{name}/rollback"),
    ("POST", "/v1/nodes"),
    ("GET", "/v1/nodes/{name}"),
    ("DELETE", "/v1/nodes/{name}"),
    ("POST", "/v1/nodes/{name}/drain"),
    ("POST", "/v1/nodes/{name}/activate"),
    ("GET", "/v1/events"),
    ("GET", "/"),
    ("GET", "/dashboard.js"),
    ("GET", "/dashboard.css"),
    ("GET", "/v1/metrics"),
];

/// Every route of the worker.
pub const WORKER_ROUTES: [(&str, &str); 12] = [
    ("GET", "/v1/health"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/changes"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("DELETE", "/v1/tasks/{id}"),
    ("GET", "/v1/tasks/{id}/logs"),
    ("GET", "/v1/metrics"),
    ("POST", "/v1/builds"),
    ("GET", "/v1/images/{ref}"),
    ("POST", "/v1/images"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum ManagerRoute {
    Health,
    ListTasks,
    SubmitTask,
    GetTask(TaskId),
    StopTask(TaskId),
    TaskLogs(TaskId),
    ListNodes,
    Service(ServiceRoute),
    JoinNode,
    GetNode(String),
    RemoveNode(String),
    DrainNode(String),
    ActivateNode(String),
    Events,
    /// The dashboard's files, served without the token (they hold no data).
    Dashboard(Asset),
    Metrics,
}

impl ManagerRoute {
    /// The method and path pattern it answers to: its entry in `MANAGER_ROUTES`. No catch-all, so
    /// a new route does not compile without one, and the tests check it is listed.
    pub fn pattern(&self) -> (&'static str, &'static str) {
        use ManagerRoute::*;
        match self {
            Health => ("GET", "/v1/health"),
            ListTasks => ("GET", "/v1/tasks"),
            SubmitTask => ("POST", "/v1/tasks"),
            GetTask(_) => ("GET", "/v1/tasks/{id}"),
            StopTask(_) => ("DELETE", "/v1/tasks/{id}"),
            TaskLogs(_) => ("GET", "/v1/tasks/{id}/logs"),
            ListNodes => ("GET", "/v1/nodes"),
            Service(route) => route.pattern(),
            JoinNode => ("POST", "/v1/nodes"),
            GetNode(_) => ("GET", "/v1/nodes/{name}"),
            RemoveNode(_) => ("DELETE", "/v1/nodes/{name}"),
            DrainNode(_) => ("POST", "/v1/nodes/{name}/drain"),
            ActivateNode(_) => ("POST", "/v1/nodes/{name}/activate"),
            Events => ("GET", "/v1/events"),
            Dashboard(asset) => ("GET", asset.path()),
            Metrics => ("GET", "/v1/metrics"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkerRoute {
    Health,
    Stats,
    Changes,
    ListTasks,
    StartTask,
    GetTask(TaskId),
    StopTask(TaskId),
    TaskLogs(TaskId),
    Metrics,
    /// An image built on the node (`http/builds.rs`).
    Build,
    /// An image Skiff built, exported as a `docker save` tar (`http/images.rs`).
    ExportImage(String),
    /// A `docker save` tar loaded (`http/images.rs`).
    ImportImage,
}

impl WorkerRoute {
    /// The method and path pattern it answers to: its entry in `WORKER_ROUTES`.
    pub fn pattern(&self) -> (&'static str, &'static str) {
        use WorkerRoute::*;
        match self {
            Health => ("GET", "/v1/health"),
            Stats => ("GET", "/v1/stats"),
            Changes => ("GET", "/v1/changes"),
            ListTasks => ("GET", "/v1/tasks"),
            StartTask => ("POST", "/v1/tasks"),
            GetTask(_) => ("GET", "/v1/tasks/{id}"),
            StopTask(_) => ("DELETE", "/v1/tasks/{id}"),
            TaskLogs(_) => ("GET", "/v1/tasks/{id}/logs"),
            Metrics => ("GET", "/v1/metrics"),
            Build => ("POST", "/v1/builds"),
            ExportImage(_) => ("GET", "/v1/images/{ref}"),
            ImportImage => ("POST", "/v1/images"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    NotFound,
    /// The path exists with other methods, listed for the `Allow` header.
    MethodNotAllowed(String),
    BadId(InvalidTaskId),
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn task_id(s: &str) -> Result<TaskId, RouteError> {
    s.parse().map_err(RouteError::BadId)
}

/// Whether a path's segments fit a route's pattern (`{id}` takes any one segment).
fn fits(pattern: &str, segs: &[&str]) -> bool {
    let want = segments(pattern);
    want.len() == segs.len() && want.iter().zip(segs).all(|(w, s)| w.starts_with('{') || w == s)
}

/// Why nothing in the `match` took a request, from the route list (so that `Allow` and 404 are
/// derived from the same list the specs are checked against): 405 with the methods the path has,
/// else 404. `HEAD` is allowed wherever `GET` is.
fn unrouted(routes: &[(&str, &str)], segs: &[&str]) -> RouteError {
    let mut methods: Vec<&str> = routes.iter().filter(|(_, p)| fits(p, segs)).map(|(m, _)| *m).collect();
    if methods.is_empty() {
        return RouteError::NotFound;
    }
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    RouteError::MethodNotAllowed(methods.join(", "))
}

/// What the `match` found, checked in debug builds (every test) against the list: the route's
/// pattern is listed and fits the path, so an arm on a path the list lacks fails whichever test
/// asks for it, as the table tests fail a listed path the `match` lacks.
fn listed<R>(
    routes: &[(&str, &str)],
    segs: &[&str],
    found: Result<R, RouteError>,
    pattern: fn(&R) -> (&'static str, &'static str),
) -> Result<R, RouteError> {
    if let Ok(route) = &found {
        let (method, path) = pattern(route);
        debug_assert!(
            routes.contains(&(method, path)) && fits(path, segs),
            "{method} {path} is routed for /{} but not listed",
            segs.join("/")
        );
    }
    found
}

/// `HEAD` is answered as `GET` is, and the server sends no body.
fn routing_method(method: &str) -> &str {
    if method == "HEAD" {
        "GET"
    } else {
        method
    }
}

pub fn manager_route(method: &str, path: &str) -> Result<ManagerRoute, RouteError> {
    use ManagerRoute::*;
    let segs = segments(path);
    let found = match (routing_method(method), segs.as_slice()) {
        ("GET", ["v1", "health"]) => Ok(Health),
        ("GET", ["v1", "tasks"]) => Ok(ListTasks),
        ("POST", ["v1", "tasks"]) => Ok(SubmitTask),
        ("GET", ["v1", "tasks", id]) => Ok(GetTask(task_id(id)?)),
        ("DELETE", ["v1", "tasks", id]) => Ok(StopTask(task_id(id)?)),
        ("GET", ["v1", "tasks", id, "logs"]) => Ok(TaskLogs(task_id(id)?)),
        ("GET", ["v1", "nodes"]) => Ok(ListNodes),
        ("GET", ["v1", "services"]) => Ok(Service(ServiceRoute::List)),
        ("POST", ["v1", "services"]) => Ok(Service(ServiceRoute::Create)),
        ("GET", ["v1", "services", name]) => Ok(Service(ServiceRoute::Get(name.to_string()))),
        ("PUT", ["v1", "services", name]) => Ok(Service(ServiceRoute::Update(name.to_string()))),
        ("DELETE", ["v1", "services", name]) => Ok(Service(ServiceRoute::Remove(name.to_string()))),
        ("POST", ["v1", "services", name, "scale"]) => Ok(Service(ServiceRoute::Scale(name.to_string()))),
        ("POST", ["v1", "services", name, "rollback"]) => Ok(Service(ServiceRoute::Rollback(name.to_string()))),
        ("POST", ["v1", "nodes"]) => Ok(JoinNode),
        ("GET", ["v1", "nodes", name]) => Ok(GetNode(name.to_string())),
        ("DELETE", ["v1", "nodes", name]) => Ok(RemoveNode(name.to_string())),
        ("POST", ["v1", "nodes", name, "drain"]) => Ok(DrainNode(name.to_string())),
        ("POST", ["v1", "nodes", name, "activate"]) => Ok(ActivateNode(name.to_string())),
        ("GET", ["v1", "events"]) => Ok(Events),
        ("GET", []) => Ok(Dashboard(Asset::Page)),
        ("GET", ["dashboard.js"]) => Ok(Dashboard(Asset::Script)),
        ("GET", ["dashboard.css"]) => Ok(Dashboard(Asset::Style)),
        ("GET", ["v1", "metrics"]) => Ok(Metrics),
        _ => Err(unrouted(&MANAGER_ROUTES, &segs)),
    };
    listed(&MANAGER_ROUTES, &segs, found, ManagerRoute::pattern)
}

pub fn worker_route(method: &str, path: &str) -> Result<WorkerRoute, RouteError> {
    use WorkerRoute::*;
    let segs = segments(path);
    let found = match (routing_method(method), segs.as_slice()) {
        ("GET", ["v1", "health"]) => Ok(Health),
        ("GET", ["v1", "stats"]) => Ok(Stats),
        ("GET", ["v1", "changes"]) => Ok(Changes),
        ("GET", ["v1", "tasks"]) => Ok(ListTasks),
        ("POST", ["v1", "tasks"]) => Ok(StartTask),
        ("GET", ["v1", "tasks", id]) => Ok(GetTask(task_id(id)?)),
        ("DELETE", ["v1", "tasks", id]) => Ok(StopTask(task_id(id)?)),
        ("GET", ["v1", "tasks", id, "logs"]) => Ok(TaskLogs(task_id(id)?)),
        ("GET", ["v1", "metrics"]) => Ok(Metrics),
        ("POST", ["v1", "builds"]) => Ok(Build),
        ("GET", ["v1", "images", reference]) => Ok(ExportImage(reference.to_string())),
        ("POST", ["v1", "images"]) => Ok(ImportImage),
        _ => Err(unrouted(&WORKER_ROUTES, &segs)),
    };
    listed(&WORKER_ROUTES, &segs, found, WorkerRoute::pattern)
}

// ---------------------------------------------------------------------------------------------
// Errors to responses

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// No token, or the wrong one, on a route that needs it.
    Unauthorized,
    Route(RouteError),
    Spec(SpecError),
    /// A request body other than a task spec that is refused: what it is (`service`, `node
    /// registration`, `scale request`), the field at fault and why.
    Body {
        what: &'static str,
        error: SpecError,
    },
    /// A query parameter that is unknown or out of range.
    Query {
        param: String,
        message: String,
    },
    Manager(ManagerError),
    Worker(WorkerError),
    /// A task's output asked of the manager before the task was ever placed: it has none yet.
    NeverPlaced {
        id: TaskId,
        state: TaskState,
        /// Why it waits, when it does (no node has room, ...).
        error: Option<String>,
    },
    /// A node's answer to a call relayed to it (its own status and message), or why it could
    /// not be reached.
    Node(LinkError),
    /// A build refused before it began (`http/builds.rs`).
    Build(Box<builds::BuildRefusal>),
    /// An image route's refusal (`http/images.rs`).
    Image(images::ImageRefusal),
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
        ApiError::Unauthorized => 401,
        ApiError::Route(RouteError::NotFound) => 404,
        ApiError::Route(RouteError::MethodNotAllowed(_)) => 405,
        ApiError::Route(RouteError::BadId(_)) => 400,
        ApiError::Spec(_) | ApiError::Body { .. } | ApiError::Query { .. } => 400,
        ApiError::Manager(ManagerError::NotFound(_)) | ApiError::Worker(WorkerError::NotFound(_)) => 404,
        ApiError::Manager(ManagerError::AlreadyFinished { .. })
        | ApiError::Worker(WorkerError::AlreadyFinished { .. } | WorkerError::CleaningUp(_)) => 409,
        ApiError::Manager(ManagerError::InvalidSpec(_)) => 400,
        ApiError::Manager(ManagerError::JoinRefused(_) | ManagerError::NodeBusy(_)) => 409,
        ApiError::Manager(ManagerError::NoNode(_)) => 404,
        ApiError::Manager(ManagerError::NoJoins) => 503,
        ApiError::Manager(ManagerError::Store(_) | ManagerError::Spawn(_))
        | ApiError::Worker(WorkerError::Store(_) | WorkerError::Spawn(_)) => 500,
        ApiError::Manager(ManagerError::Unavailable)
        | ApiError::Worker(WorkerError::EngineUnreachable(_) | WorkerError::ShuttingDown) => 503,
        ApiError::Worker(WorkerError::TimedOut | WorkerError::OutcomeUnknown(_)) => 504,
        ApiError::Worker(WorkerError::NotReady) => 503,
        ApiError::Manager(ManagerError::Service(e)) => services::status_of(e),
        ApiError::Worker(WorkerError::NoOutput { .. }) | ApiError::NeverPlaced { .. } => 404,
        ApiError::Worker(WorkerError::Logs(_) | WorkerError::StopRefused(_)) => 502,
        ApiError::Node(LinkError::Refused { status, .. }) => *status,
        ApiError::Node(LinkError::Unreachable(_)) => 503,
        ApiError::Node(LinkError::Lost(_) | LinkError::BadAnswer(_)) => 502,
        ApiError::Build(e) => builds::status_of(e),
        ApiError::Image(e) => e.status,
    }
}

/// The answer to an error: its status, the one error body (`Response::error`), and the headers
/// the status calls for.
fn error_response(e: ApiError) -> Response {
    let status = status_of(&e);
    let body = match &e {
        ApiError::Unauthorized => {
            ErrorBody::new("missing or wrong token: send Authorization: Bearer <the cluster token>")
        }
        ApiError::Route(RouteError::NotFound) => ErrorBody::new("no such route"),
        ApiError::Route(RouteError::MethodNotAllowed(allow)) => {
            ErrorBody::new(format!("method not allowed; use {allow}"))
        }
        ApiError::Route(RouteError::BadId(bad)) => ErrorBody::new(bad.to_string()),
        ApiError::Spec(s) => ErrorBody { error: s.to_string(), field: s.field.clone() },
        ApiError::Body { what, error } => ErrorBody {
            error: match &error.field {
                Some(field) => format!("invalid {what}: field `{field}`: {}", error.message),
                None => format!("invalid {what}: {}", error.message),
            },
            field: error.field.clone(),
        },
        ApiError::Query { param, message } => {
            ErrorBody { error: format!("query parameter `{param}`: {message}"), field: Some(param.clone()) }
        }
        ApiError::Manager(m) => ErrorBody::new(error_chain(m)),
        ApiError::Worker(w) => ErrorBody::new(error_chain(w)),
        ApiError::NeverPlaced { id, state, error } => ErrorBody::new(match error {
            Some(why) => format!("task {id} has no output yet: it was never placed ({state}: {why})"),
            None => format!("task {id} has no output yet: it was never placed ({state})"),
        }),
        ApiError::Node(LinkError::Refused { message, .. }) => ErrorBody::new(message.clone()),
        ApiError::Node(n) => ErrorBody::new(format!("the task's node: {n}")),
        ApiError::Build(e) => ErrorBody { error: e.to_string(), field: e.field() },
        ApiError::Image(e) => ErrorBody::new(e.message.clone()),
    };
    let resp = Response::error(status, &body);
    match e {
        ApiError::Unauthorized => resp.with_header("WWW-Authenticate", "Bearer"),
        ApiError::Route(RouteError::MethodNotAllowed(allow)) => resp.with_header("Allow", &allow),
        _ => resp,
    }
}

fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    // our own types always serialise; an empty body would show the impossible case
    Ok(Response::json_bytes(status, serde_json::to_vec(value).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// How often at most a daemon warns about refused requests (it counts all of them).
pub const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Requests refused for want of the token: counted, and warned about at most once per interval
/// with how many came since the last warning, so that whoever can reach the port cannot fill the
/// disk with warnings.
#[derive(Debug)]
pub struct Refusals {
    interval: Duration,
    state: Mutex<RefusalCount>,
}

#[derive(Debug, Default)]
struct RefusalCount {
    total: u64,
    since_warning: u64,
    last_warning: Option<Instant>,
}

impl Refusals {
    pub fn new(interval: Duration) -> Refusals {
        Refusals { interval, state: Mutex::new(RefusalCount::default()) }
    }

    /// Counts one refusal at `now`; when a warning is due, how many it covers and the total.
    pub fn note(&self, now: Instant) -> Option<(u64, u64)> {
        // a poisoned lock only means a panic elsewhere mid-count: the count is still good
        let mut c = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total += 1;
        c.since_warning += 1;
        if c.last_warning.is_some_and(|at| now.duration_since(at) < self.interval) {
            return None;
        }
        c.last_warning = Some(now);
        Some((std::mem::take(&mut c.since_warning), c.total))
    }
}

/// `GET` (or `HEAD`) `/v1/health`: the one route open without the token.
fn is_health(req: &Request) -> bool {
    routing_method(&req.method) == "GET" && segments(&req.path) == ["v1", "health"]
}

/// Every route but `GET /v1/health` (and those `open` lets through) needs the cluster token,
/// when there is one (without one the daemon listens on loopback only). The token is never logged.
fn authorize(req: &Request, token: Option<&Token>, refusals: &Refusals, open: Open) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    if is_health(req) || open(req) {
        return Ok(());
    }
    if token.accepts(req.header("authorization")) {
        return Ok(());
    }
    if let Some((count, total)) = refusals.note(Instant::now()) {
        let remote = req.remote.map(|r| r.to_string()).unwrap_or_default();
        let given = if req.header("authorization").is_some() { "wrong" } else { "none" };
        log::warn!(
            "unauthorized requests refused count={count} total={total} interval_s={} method={} path={} remote={remote} token={given}",
            refusals.interval.as_secs(),
            q(&short(&req.method)),
            q(&short(&req.path)),
        );
    }
    Err(ApiError::Unauthorized)
}

/// The one shape of both daemons' APIs: the token (checked by the server's gate as soon as a
/// request's head is in, and again by the handler, which stays the authority), the route, the
/// daemon's own serving, and every failure through `error_response`.
fn api_service<R: 'static>(
    token: Option<Token>,
    route: fn(&str, &str) -> Result<R, RouteError>,
    open: Open,
    spool: Option<Arc<SpoolPolicy>>,
    requests: Arc<RequestMetrics>,
    serve: impl Fn(R, &Request) -> Result<Response, ApiError> + Send + Sync + 'static,
) -> Service {
    let refusals = Arc::new(Refusals::new(REFUSAL_WARNING_INTERVAL));
    let (gate_token, gate_refusals, gate_requests) = (token.clone(), refusals.clone(), requests.clone());
    let gate = move |head: &Request| {
        let refused = authorize(head, gate_token.as_ref(), &gate_refusals, open).err().map(error_response);
        if let Some(resp) = &refused {
            gate_requests.observe(&head.method, &head.path, resp.status, std::time::Duration::ZERO);
        }
        refused
    };
    let answer = move |req: &Request| {
        // without the token, health says only that the daemon is up: versions, counts and the
        // engine's state are for the cluster
        if let Some(t) = token.as_ref() {
            if is_health(req) && !t.accepts(req.header("authorization")) {
                // up means the control thread answers, as it does for the full answer
                return match route(&req.method, &req.path).map_err(ApiError::Route).and_then(|r| serve(r, req)) {
                    Ok(resp) if resp.status == 200 => Response::json_bytes(200, br#"{"status":"up"}"#.to_vec()),
                    Ok(other) => other,
                    Err(e) => error_response(e),
                };
            }
        }
        authorize(req, token.as_ref(), &refusals, open)
            .and_then(|()| route(&req.method, &req.path).map_err(ApiError::Route))
            .and_then(|r| serve(r, req))
            .unwrap_or_else(error_response)
    };
    // every answer counted under its route's pattern (refusals at the gate, above, too)
    let handler = move |req: &Request| {
        let started = Timer::start();
        let resp = answer(req);
        requests.observe(&req.method, &req.path, resp.status, started.elapsed());
        resp
    };
    Service { gate: Some(Arc::new(gate)), spool, handler: Arc::new(handler) }
}

/// Which requests a daemon serves without the token besides health.
type Open = fn(&Request) -> bool;

/// The dashboard's files: open, so that the page can ask for the token the API wants.
fn is_dashboard(req: &Request) -> bool {
    matches!(manager_route(&req.method, &req.path), Ok(ManagerRoute::Dashboard(_)))
}

/// The manager's API over its handle.
pub fn manager_handler(handle: ManagerHandle, token: Option<Token>) -> Service {
    // the token also opens the streams relayed from workers
    let link_token = token.clone();
    let requests = Arc::new(RequestMetrics::new(&MANAGER_ROUTES));
    api_service(token, manager_route, is_dashboard, None, requests.clone(), move |route, req| match route {
        ManagerRoute::Metrics => Ok(metrics::manager_page(&requests)),
        route => serve_manager(&handle, link_token.as_ref(), route, req),
    })
}

/// The worker's API over its handle, and its builds (whose bodies are spooled to disk).
pub fn worker_handler(handle: WorkerHandle, token: Option<Token>, builds: Arc<builds::Builds>) -> Service {
    let requests = Arc::new(RequestMetrics::new(&WORKER_ROUTES));
    api_service(
        token,
        worker_route,
        |_| false,
        Some(Arc::new(|head: &Request| builds::spools(head).or_else(|| images::spools(head)))),
        requests.clone(),
        move |route, req| match route {
            WorkerRoute::Metrics => Ok(metrics::worker_page(&handle, &requests)),
            WorkerRoute::Build => builds::serve_build(&builds, req),
            WorkerRoute::ExportImage(reference) => {
                images::serve_export(builds.docker(), &images::image_ref(&reference)?)
            }
            WorkerRoute::ImportImage => images::serve_import(builds.docker(), req),
            route => serve_worker(&handle, route, req),
        },
    )
}

fn serve_manager(
    h: &ManagerHandle,
    token: Option<&Token>,
    route: ManagerRoute,
    req: &Request,
) -> Result<Response, ApiError> {
    match route {
        ManagerRoute::Health => json(200, &h.health()?),
        ManagerRoute::ListTasks => {
            // the records' JSON as the manager keeps it: nothing serialised per read
            let (body, next) = h.list_json(task_query(&req.query)?);
            let resp = Response::json_bytes(200, body);
            Ok(match next {
                Some(next) => resp.with_header(NEXT_PAGE_HEADER, &next.to_string()),
                None => resp,
            })
        }
        ManagerRoute::SubmitTask => {
            let spec = TaskSpec::from_json(&req.body).map_err(ApiError::Spec)?;
            if submit_query(&req.query)? {
                return json(200, &h.dry_run(spec)?);
            }
            let task = h.submit(spec)?;
            Ok(json(201, &task)?.with_header("Location", &format!("/v1/tasks/{}", task.id)))
        }
        ManagerRoute::GetTask(id) => Ok(Response::json_bytes(200, h.get_json(id)?.to_vec())),
        ManagerRoute::StopTask(id) => json(202, &h.stop(id)?),
        ManagerRoute::ListNodes => json(200, &h.nodes()?),
        ManagerRoute::GetNode(name) => {
            let node = h.nodes()?.into_iter().find(|n| n.name == name);
            json(200, &node.ok_or(ManagerError::NoNode(name))?)
        }
        ManagerRoute::RemoveNode(name) => json(200, &h.remove_node(name)?),
        ManagerRoute::DrainNode(name) => json(200, &h.drain(name)?),
        ManagerRoute::ActivateNode(name) => json(200, &h.activate(name)?),
        ManagerRoute::Service(route) => services::serve(h, route, req),
        ManagerRoute::TaskLogs(id) => logs::manager_logs(h, token, id, &req.query),
        ManagerRoute::Events => events::manager_events(h, &req.query),
        ManagerRoute::Dashboard(asset) => Ok(crate::dashboard::serve(asset, req)),
        ManagerRoute::JoinNode => {
            let join = parse_join(&req.body).map_err(|error| ApiError::Body { what: "node registration", error })?;
            json(200, &h.join(join.name, join.address)?)
        }
        // answered by `manager_handler`, which holds the server's request counts
        ManagerRoute::Metrics => Err(ApiError::Route(RouteError::NotFound)),
    }
}

fn serve_worker(h: &WorkerHandle, route: WorkerRoute, req: &Request) -> Result<Response, ApiError> {
    match route {
        WorkerRoute::Health => json(200, &h.health()?),
        WorkerRoute::Stats => json(200, &h.stats()?),
        WorkerRoute::Changes => {
            let (since, limit) = changes::changes_query(&req.query)?;
            json(200, &h.changes(since, limit)?)
        }
        WorkerRoute::ListTasks => json(200, &h.list()?),
        WorkerRoute::StartTask => {
            let start = parse_start_task(&req.body).map_err(ApiError::Spec)?;
            let (task, created) = h.start(start)?;
            json(if created { 201 } else { 200 }, &task)
        }
        WorkerRoute::GetTask(id) => json(200, &h.get(id)?),
        WorkerRoute::StopTask(id) => json(200, &h.stop(id)?),
        WorkerRoute::TaskLogs(id) => logs::worker_logs(h, id, &req.query),
        // answered by `worker_handler`, which holds the server's request counts and the builds
        WorkerRoute::Metrics | WorkerRoute::Build | WorkerRoute::ExportImage(_) | WorkerRoute::ImportImage => {
            Err(ApiError::Route(RouteError::NotFound))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::TaskQuery;
    use std::collections::BTreeSet;

    const ID: &str = "3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b";

    fn sample_path(pattern: &str) -> String {
        pattern.replace("{id}", ID).replace("{name}", "web").replace("{ref}", "skiff-app%2Fweb%3Av1")
    }

    const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    /// One route of each kind, as the `match` gives them.
    fn every_manager_route() -> Vec<ManagerRoute> {
        use ManagerRoute::*;
        let id: TaskId = ID.parse().expect("valid id");
        let name = || String::from("web");
        let mut every = vec![Health, ListTasks, SubmitTask, GetTask(id), StopTask(id), TaskLogs(id), ListNodes];
        every.extend([JoinNode, GetNode(name()), RemoveNode(name()), DrainNode(name()), ActivateNode(name())]);
        every.extend([Events, Metrics]);
        let services = [ServiceRoute::List, ServiceRoute::Create, ServiceRoute::Get(name())];
        every.extend(services.into_iter().map(Service));
        let services = [ServiceRoute::Update(name()), ServiceRoute::Remove(name()), ServiceRoute::Scale(name())];
        every.extend(services.into_iter().chain([ServiceRoute::Rollback(name())]).map(Service));
        every.extend(Asset::ALL.map(Dashboard));
        // no catch-all: a new kind of route stops this compiling until it has a line above
        for route in &every {
            match route {
                Health | ListTasks | SubmitTask | GetTask(_) | StopTask(_) | TaskLogs(_) | ListNodes => {}
                JoinNode | GetNode(_) | RemoveNode(_) | DrainNode(_) | ActivateNode(_) | Events | Metrics => {}
                Service(_) | Dashboard(_) => {}
            }
        }
        every
    }

    fn every_worker_route() -> Vec<WorkerRoute> {
        use WorkerRoute::*;
        let id: TaskId = ID.parse().expect("valid id");
        let image = ExportImage("skiff-app%2Fweb%3Av1".into());
        let every = vec![
            Health,
            Stats,
            Changes,
            ListTasks,
            StartTask,
            GetTask(id),
            StopTask(id),
            TaskLogs(id),
            Metrics,
            Build,
            image,
            ImportImage,
        ];
        for route in &every {
            match route {
                Health | Stats | Changes | ListTasks | StartTask | GetTask(_) | StopTask(_) | TaskLogs(_) | Metrics
                | Build => {}
                ExportImage(_) | ImportImage => {}
            }
        }
        every
    }

    /// The `(method, pattern)` pairs of some routes, each once.
    fn patterns_of<R>(every: &[R], pattern: fn(&R) -> (&'static str, &'static str)) -> BTreeSet<(String, String)> {
        let pairs: BTreeSet<(String, String)> =
            every.iter().map(pattern).map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(pairs.len(), every.len(), "two kinds of route with one pattern");
        pairs
    }

    fn pairs(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        routes.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
    }

    /// The list and the `match` agree both ways: every listed route is routed to the kind of
    /// route with that pattern, every kind of route has a listed pattern, every method the match
    /// routes on a listed path is listed (HEAD going with GET), and the rest is 405 with the
    /// listed methods or 404.
    fn check_table<R: std::fmt::Debug>(
        routes: &[(&str, &str)],
        route: fn(&str, &str) -> Result<R, RouteError>,
        pattern: fn(&R) -> (&'static str, &'static str),
        every: &[R],
    ) {
        for (method, path) in routes {
            match route(method, &sample_path(path)) {
                Ok(r) => assert_eq!(pattern(&r), (*method, *path), "{method} {path} is routed to {r:?}"),
                Err(e) => panic!("{method} {path} is listed but not routed: {e:?}"),
            }
        }
        assert_eq!(patterns_of(every, pattern), pairs(routes), "the kinds of route against the list");
        let patterns: BTreeSet<&str> = routes.iter().map(|(_, p)| *p).collect();
        for pattern in patterns {
            let listed: Vec<&str> = routes.iter().filter(|(_, p)| *p == pattern).map(|(m, _)| *m).collect();
            for method in METHODS {
                let as_get = if method == "HEAD" { "GET" } else { method };
                match route(method, &sample_path(pattern)) {
                    Ok(r) => assert!(listed.contains(&as_get), "{method} {pattern} is routed ({r:?}) but not listed"),
                    Err(RouteError::MethodNotAllowed(allow)) => {
                        assert!(!listed.contains(&as_get), "{method} {pattern} is listed but refused");
                        let allowed: Vec<&str> = allow.split(", ").filter(|m| *m != "HEAD").collect();
                        assert_eq!(allowed, listed, "Allow of {pattern}");
                    }
                    Err(e) => panic!("{method} {pattern}: {e:?}"),
                }
            }
        }
        for unknown in ["/v1", "/v2/tasks", "/v1/tasks/x/y", "/v1/nothing", "/dashboard.html"] {
            assert!(matches!(route("GET", unknown), Err(RouteError::NotFound)), "{unknown}");
        }
    }

    #[test]
    fn the_route_lists_and_the_matches_agree() {
        check_table(&MANAGER_ROUTES, manager_route, ManagerRoute::pattern, &every_manager_route());
        check_table(&WORKER_ROUTES, worker_route, WorkerRoute::pattern, &every_worker_route());
    }

    /// A route the `match` gives that its list lacks fails the request in debug builds.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "GET /v1/tasks is routed for /v1/elsewhere but not listed")]
    fn a_route_off_the_list_is_caught() {
        let wrong = |_: &()| ("GET", "/v1/tasks");
        let _unreachable = listed(&MANAGER_ROUTES, &["v1", "elsewhere"], Ok(()), wrong);
    }

    /// The `(method, path)` pairs a spec documents: the paths under `paths:` (two-space indent)
    /// and their operations (four-space indent).
    fn documented(file: &str) -> std::collections::BTreeSet<(String, String)> {
        let path = format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"));
        let spec = std::fs::read_to_string(&path).expect("the API spec exists");
        let mut found = std::collections::BTreeSet::new();
        let mut in_paths = false;
        let mut current: Option<String> = None;
        for line in spec.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_paths = line == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(p) = line.strip_prefix("  /") {
                current = p.strip_suffix(':').map(|p| format!("/{p}"));
            } else if let (Some(p), Some(op)) = (&current, line.strip_prefix("    ")) {
                if let Some(method) = op.strip_suffix(':') {
                    if ["get", "head", "post", "put", "patch", "delete", "options"].contains(&method) {
                        found.insert((method.to_uppercase(), p.clone()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn the_api_specs_list_exactly_the_routes() {
        for (file, routes) in [("openapi.yaml", &MANAGER_ROUTES[..]), ("worker-openapi.yaml", &WORKER_ROUTES[..])] {
            assert_eq!(documented(file), pairs(routes), "{file} against the route list");
        }
        let manager = patterns_of(&every_manager_route(), ManagerRoute::pattern);
        assert_eq!(documented("openapi.yaml"), manager, "openapi.yaml against the manager's kinds of route");
        let worker = patterns_of(&every_worker_route(), WorkerRoute::pattern);
        assert_eq!(documented("worker-openapi.yaml"), worker, "worker-openapi.yaml against the worker's");
    }

    /// The error shape, written once in each spec (each must stand alone for the tools that
    /// read it), is the same text in both.
    #[test]
    fn both_specs_document_one_error_shape() {
        let schema = |file: &str| {
            let path = format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"));
            let spec = std::fs::read_to_string(&path).expect("the API spec exists");
            let schemas = spec.split("\n  schemas:\n").nth(1).unwrap_or_else(|| panic!("no schemas in {file}"));
            let schemas = format!("\n{schemas}");
            let error = schemas.split("\n    Error:\n").nth(1).unwrap_or_else(|| panic!("no Error in {file}"));
            error.lines().take_while(|l| l.starts_with("      ")).collect::<Vec<_>>().join("\n")
        };
        let manager = schema("openapi.yaml");
        assert!(manager.contains("required: [error]"), "{manager}");
        assert_eq!(manager, schema("worker-openapi.yaml"));
    }

    #[test]
    fn routes_map_methods_and_ids() {
        let id: TaskId = ID.parse().expect("valid id");
        assert_eq!(manager_route("GET", &format!("/v1/tasks/{ID}")), Ok(ManagerRoute::GetTask(id)));
        assert_eq!(manager_route("DELETE", &format!("/v1/tasks/{ID}/")), Ok(ManagerRoute::StopTask(id)));
        assert_eq!(manager_route("GET", "/v1/tasks/"), Ok(ManagerRoute::ListTasks));
        assert!(matches!(manager_route("GET", "/v1/tasks/nope"), Err(RouteError::BadId(_))));
        assert_eq!(manager_route("PUT", "/v1/tasks"), Err(RouteError::MethodNotAllowed("GET, POST, HEAD".into())));
        assert_eq!(manager_route("POST", "/v1/nodes"), Ok(ManagerRoute::JoinNode));
        assert_eq!(manager_route("PUT", "/v1/nodes"), Err(RouteError::MethodNotAllowed("GET, POST, HEAD".into())));
        assert_eq!(manager_route("HEAD", "/v1/nodes"), Ok(ManagerRoute::ListNodes));
        assert_eq!(manager_route("POST", "/v1/nodes/w1/drain"), Ok(ManagerRoute::DrainNode("w1".into())));
        assert_eq!(manager_route("POST", "/v1/nodes/w1/activate"), Ok(ManagerRoute::ActivateNode("w1".into())));
        assert_eq!(manager_route("DELETE", "/v1/nodes/w1"), Ok(ManagerRoute::RemoveNode("w1".into())));
        assert_eq!(manager_route("GET", "/v1/nodes/w1"), Ok(ManagerRoute::GetNode("w1".into())));
        assert_eq!(
            manager_route("GET", "/v1/nodes/w1/drain"),
            Err(RouteError::MethodNotAllowed("POST".into())),
            "a drain is a POST"
        );
        assert_eq!(manager_route("GET", "/v2/tasks"), Err(RouteError::NotFound));
        assert_eq!(manager_route("GET", "/"), Ok(ManagerRoute::Dashboard(Asset::Page)));
        assert_eq!(manager_route("HEAD", "/dashboard.js"), Ok(ManagerRoute::Dashboard(Asset::Script)));
        assert_eq!(manager_route("POST", "/"), Err(RouteError::MethodNotAllowed("GET, HEAD".into())));
        assert_eq!(worker_route("GET", "/"), Err(RouteError::NotFound), "the worker has no dashboard");
        for asset in Asset::ALL {
            assert_eq!(manager_route("GET", asset.path()), Ok(ManagerRoute::Dashboard(asset)));
        }
    }

    #[test]
    fn the_dashboard_alone_is_open_without_the_token() {
        let token = Token::new("0123456789abcdef-secret").expect("token");
        let refusals = Refusals::new(REFUSAL_WARNING_INTERVAL);
        let req = |method: &str, path: &str| Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            remote: None,
            spooled: None,
        };
        for (method, path) in [("GET", "/"), ("HEAD", "/"), ("GET", "/dashboard.js"), ("GET", "/dashboard.css")] {
            assert!(authorize(&req(method, path), Some(&token), &refusals, is_dashboard).is_ok(), "{method} {path}");
            assert!(
                authorize(&req(method, path), Some(&token), &refusals, |_| false).is_err(),
                "{method} {path} on the worker"
            );
        }
        for (method, path) in [("POST", "/"), ("GET", "/v1/nodes"), ("GET", "/dashboard.html"), ("GET", "/v1/tasks")] {
            let refused = authorize(&req(method, path), Some(&token), &refusals, is_dashboard);
            assert!(matches!(refused, Err(ApiError::Unauthorized)), "{method} {path}");
        }
        assert_eq!(worker_route("GET", "/v1/nodes"), Err(RouteError::NotFound));
        assert_eq!(worker_route("POST", "/v1/tasks"), Ok(WorkerRoute::StartTask));
    }

    #[test]
    fn errors_get_their_status_and_shape() {
        let id: TaskId = ID.parse().expect("valid id");
        let corrupt = || crate::store::StoreError::Corrupt("record 7".into());
        let no_thread = || crate::control::SpawnError {
            thread: "pool".into(),
            source: std::io::Error::new(std::io::ErrorKind::OutOfMemory, "no room"),
        };
        // each error, its status, and words its body must carry (its cause's among them)
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::Unauthorized, 401, "missing or wrong token"),
            (ApiError::Route(RouteError::NotFound), 404, "no such route"),
            (ApiError::Route(RouteError::MethodNotAllowed("GET".into())), 405, "use GET"),
            (ApiError::Route(RouteError::BadId(InvalidTaskId("x".into()))), 400, "x"),
            (ApiError::Spec(SpecError { field: Some("image".into()), message: "is required".into() }), 400, "required"),
            (ApiError::Manager(ManagerError::NotFound(id)), 404, ID),
            (
                ApiError::Manager(ManagerError::AlreadyFinished { id, state: crate::task::TaskState::Completed }),
                409,
                "already finished",
            ),
            (ApiError::Manager(ManagerError::Unavailable), 503, "not answering"),
            (
                ApiError::Manager(ManagerError::Store(corrupt())),
                500,
                "store failed; the change was not made: store is corrupt: record 7",
            ),
            (ApiError::Manager(ManagerError::Spawn(no_thread())), 500, "cannot start the pool thread: no room"),
            (
                ApiError::Worker(WorkerError::EngineUnreachable("down".into())),
                503,
                "the container engine does not answer: down",
            ),
            (ApiError::Worker(WorkerError::StopRefused("busy".into())), 502, "the engine refused the stop (busy)"),
            (ApiError::Worker(WorkerError::TimedOut), 504, "did not finish in time"),
            (
                ApiError::Worker(WorkerError::Store(corrupt())),
                500,
                "store failed; the change is not recorded: store is corrupt: record 7",
            ),
            (
                ApiError::Worker(WorkerError::Spawn(no_thread())),
                500,
                "could not start a thread: cannot start the pool thread: no room",
            ),
            (ApiError::Worker(WorkerError::CleaningUp(id)), 409, "still being cleaned up; retry"),
            (ApiError::Worker(WorkerError::NotReady), 503, "has not checked its containers since it started"),
            (ApiError::Worker(WorkerError::ShuttingDown), 503, "shutting down"),
            (ApiError::Worker(WorkerError::OutcomeUnknown("socket reset".into())), 504, "mid-way (socket reset)"),
        ];
        for (e, status, words) in cases {
            let shown = format!("{e:?}");
            let resp = error_response(e);
            assert_eq!(resp.status, status, "{shown}");
            let body: ErrorBody = serde_json::from_slice(resp.bytes_of()).expect("error shape");
            assert!(body.error.contains(words), "{shown}: {:?} lacks {words:?}", body.error);
        }
        let resp = error_response(ApiError::Route(RouteError::MethodNotAllowed("GET, POST".into())));
        assert!(resp.headers.contains(&("Allow".to_string(), "GET, POST".to_string())));
        let resp = error_response(ApiError::Unauthorized);
        assert!(resp.headers.contains(&("WWW-Authenticate".to_string(), "Bearer".to_string())));
        let resp =
            error_response(ApiError::Spec(SpecError { field: Some("image".into()), message: "is required".into() }));
        let body: ErrorBody = serde_json::from_slice(resp.bytes_of()).expect("error shape");
        assert_eq!(body.field.as_deref(), Some("image"));
        // a body that is not a task spec is named for what it is, once
        let error = SpecError { field: Some("name".into()), message: "must be a DNS label".into() };
        let resp = error_response(ApiError::Body { what: "service", error });
        assert_eq!(resp.status, 400);
        let body: ErrorBody = serde_json::from_slice(resp.bytes_of()).expect("error shape");
        assert_eq!(body.error, "invalid service: field `name`: must be a DNS label");
    }

    #[test]
    fn refusals_are_counted_and_warned_about_once_per_interval() {
        let refusals = Refusals::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(refusals.note(t0), Some((1, 1)), "the first one at once");
        for i in 1..100 {
            assert_eq!(refusals.note(t0 + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(refusals.note(t0 + Duration::from_secs(61)), Some((100, 101)), "then how many since");
        assert_eq!(refusals.note(t0 + Duration::from_secs(62)), None);
        assert_eq!(refusals.note(t0 + Duration::from_secs(122)), Some((2, 103)), "the total counts them all");
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

    #[test]
    fn task_queries_are_read_and_bad_ones_name_the_parameter() {
        let q = task_query("limit=10&state=running&node=w%2D1&name=web").expect("valid");
        assert_eq!(
            (q.limit, q.state, q.node.as_deref(), q.name.as_deref()),
            (10, Some(TaskState::Running), Some("w-1"), Some("web"))
        );
        assert_eq!(task_query("").expect("empty"), TaskQuery::default());
        for (query, param) in [
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("limit=x", "limit"),
            ("state=Sleeping", "state"),
            ("next=garbage", "next"),
            ("sort=name", "sort"),
            ("name=%zz", "name"),
        ] {
            match task_query(query) {
                Err(e @ ApiError::Query { .. }) => {
                    assert_eq!(status_of(&e), 400);
                    assert!(matches!(&e, ApiError::Query { param: p, .. } if p == param), "{query}: {e:?}");
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
