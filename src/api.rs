//! The JSON shapes the daemons exchange besides `Task` and `TaskSpec` (which live in `task.rs`):
//! the worker's start request, health answers, and the manager's node list.
//!
//! Plain data, no behaviour; `docs/openapi.yaml` documents each of them.

use crate::stats::{NodeStats, Resources};
use crate::task::{Task, TaskId, TaskSpec};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The body of a worker's `POST /v1/tasks`: the manager names the task, the worker runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTask {
    pub id: TaskId,
    pub spec: TaskSpec,
    /// Restarts in place so far (on this node or others): they count towards the spec's
    /// `max_restarts` wherever the task runs.
    #[serde(default)]
    pub restart_count: u32,
    /// The service it is a replica of and that service's version, for the container's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_version: Option<u32>,
}

/// The engine as a worker last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub reachable: bool,
    /// The engine's version, once it has answered.
    pub version: Option<String>,
    /// The Engine API version spoken with it.
    pub api_version: Option<String>,
    /// Why the engine is unreachable, while it is.
    pub error: Option<String>,
}

/// A worker's `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHealth {
    /// "ok", or "degraded" while the engine is unreachable.
    pub status: String,
    pub name: String,
    pub version: String,
    pub engine: EngineStatus,
    /// The worker has checked its containers since it started: its task list is complete, so a
    /// task it does not list is not on this node.
    pub synced: bool,
    /// Why checking the containers against the engine keeps failing, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<String>,
    /// Tasks not finished yet.
    pub tasks: usize,
}

/// Where a reader of a worker's changes stands: the worker's run (`instance`, new at each
/// start of the process), the last version it has applied, and the version after which the
/// tasks forgotten concern it (`removals_from`: the version itself, but for the pages after the
/// first of a full answer, which started from nothing at a later version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesCursor {
    pub instance: String,
    pub version: u64,
    pub removals_from: u64,
}

/// A worker's `GET /v1/changes`: its task records changed since a cursor, oldest change first.
/// `full` says the answer starts from nothing (a new reader, another run of the worker, or a
/// cursor older than the removals it remembers): the reader drops its picture first. `more`
/// says a page limit cut the answer; asking again from `instance`/`version` brings the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskChanges {
    pub instance: String,
    /// What the reader has applied once it has applied this answer.
    pub version: u64,
    pub full: bool,
    pub more: bool,
    /// Where the forgotten tasks that concern the reader start, for the next cursor.
    pub removals_from: u64,
    /// The worker had checked its containers when it answered (see `WorkerHealth::synced`).
    pub synced: bool,
    pub tasks: Vec<Task>,
    /// Tasks the worker has forgotten since the cursor (none in a full answer).
    pub removed: Vec<TaskId>,
}

impl TaskChanges {
    /// The cursor to ask from next.
    pub fn cursor(&self) -> ChangesCursor {
        ChangesCursor { instance: self.instance.clone(), version: self.version, removals_from: self.removals_from }
    }
}

/// A manager's `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagerHealth {
    pub status: String,
    pub version: String,
    pub scheduler: String,
    pub storage: String,
    pub nodes_up: usize,
    pub nodes_total: usize,
    pub tasks: usize,
    /// The ingress, when the manager publishes services through one (`--ingress-admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressStatus>,
}

/// The ingress as `GET /v1/health` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngressStatus {
    /// Caddy's admin address.
    pub admin: String,
    /// Where Caddy listens for apps, and the domain they are published under.
    pub listen: String,
    pub domain: String,
    /// Routes handed to the ingress thread, and the last one it applied.
    pub generation: u64,
    pub applied: Option<u64>,
    /// Why the last call to Caddy failed, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Not heard from yet since the manager started.
    Unknown,
    Up,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Unknown => "unknown",
            NodeStatus::Up => "up",
            NodeStatus::Down => "down",
        }
    }
}

/// Whether new tasks may go to a node: `active`; `draining` (nothing new goes there, and its tasks
/// move elsewhere one at a time); `drained` (draining, and nothing of it left to move).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Draining,
    Drained,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Draining => "draining",
            Availability::Drained => "drained",
        }
    }
}

/// How far a drain has come: the tasks moved off the node since the drain began, those still on
/// it, and those that cannot move now, each with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DrainProgress {
    pub moved: u32,
    pub remaining: usize,
    /// The task moving now, if one is.
    #[serde(default)]
    pub moving: Option<TaskId>,
    #[serde(default)]
    pub stuck: Vec<StuckTask>,
}

/// A task a drain could not move, and why (it is tried again later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StuckTask {
    pub task: TaskId,
    pub reason: String,
}

/// One worker as the manager sees it: an item of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The name the worker reports (`worker -n`); its address until it has answered once.
    pub name: String,
    /// `HOST:PORT` the manager dials: as given to `manager -w`, or as the worker advertised when
    /// it joined (`--advertise`, or the address it reaches the manager from).
    pub address: String,
    pub status: NodeStatus,
    pub last_contact: Option<Timestamp>,
    /// Tasks the manager has placed there that are not finished.
    pub tasks: usize,
    /// Whether the worker's engine answers, as the worker last said.
    pub engine_reachable: Option<bool>,
    /// The last failure to reach the worker, or of its engine.
    pub error: Option<String>,
    /// What Skiff may place there (the worker's caps and what the node has), once known.
    pub capacity: Option<Resources>,
    /// What the unfinished tasks placed there request.
    pub allocated: Resources,
    /// The worker's last statistics.
    pub stats: Option<NodeStats>,
    #[serde(default)]
    pub availability: Availability,
    /// While draining or drained: how far the drain has come.
    #[serde(default)]
    pub drain: Option<DrainProgress>,
}

/// The answer to `POST /v1/tasks?dry_run=true`: where the task would go, placing nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRun {
    pub scheduler: String,
    /// The node that would be chosen, if any can take the task.
    pub chosen: Option<String>,
    /// Every node, in the manager's order.
    pub nodes: Vec<NodeVerdict>,
}

/// One node in a dry run: its score if it can take the task (lower goes first: E-PVM's
/// marginal cost, or round-robin's turn), else why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeVerdict {
    pub node: String,
    pub fits: bool,
    pub score: Option<f64>,
    pub reason: Option<String>,
}

/// How a worker's error starts when its engine cannot be reached (its 503 then says nothing
/// else): the manager reads these words to tell a dead engine from a worker that is shutting
/// down, not ready, or too busy, which answer 503 too.
pub const ENGINE_UNREACHABLE: &str = "the container engine does not answer";

/// The error shape of every API, `{"error": "...", "field": "..."}`: every error answer of both
/// daemons is this, written by `http::Response::error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The spec field at fault, for a refused spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    /// An error that names no field.
    pub fn new(message: impl Into<String>) -> ErrorBody {
        ErrorBody { error: message.into(), field: None }
    }
}

/// What a worker's `POST /v1/images` loaded: each tag with its image and app, and the bytes
/// of the tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImagesLoaded {
    pub images: Vec<LoadedImage>,
    pub bytes: u64,
}

/// One image loaded: its tag, its id, the `skiff.app` label it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedImage {
    pub tag: String,
    pub id: String,
    pub app: String,
}
