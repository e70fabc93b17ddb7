//! The worker: the table of the tasks this node runs, kept true against its container engine.
//!
//! One control thread (`state`) owns the table and the store and applies decisions; it never
//! calls the engine itself. Where each concern lives:
//! - `handle`: the commands the HTTP layer sends, `WorkerHandle`, and `spawn`, which wires the
//!   threads together;
//! - `engine`: the seam to the container engine (`Engine`), implemented by the Docker client
//!   (and, in unit tests, by the recording fake in `fake`);
//! - `ops`: the engine operations the control thread hands to its three pools (pulls; starts;
//!   everything else) and what they report back;
//! - `watch`: the watchers on threads of their own: node statistics, health checks, the engine's
//!   event stream, the pinger;
//! - `budget`: the restart budget as a container carries it (its labels at creation, its name
//!   after each restart in place), pure;
//! - `decide`: the pure decisions, table-tested: what a container's exit means (restart after a
//!   back-off, Failed, Completed), and the sync plan (what the engine shows against the table);
//! - `retention`: which finished tasks keep their container for their output, within the
//!   node's bound (pure, table-tested);
//! - `state`: the control thread's state, which applies those decisions: commands, persistence
//!   and ticks in `state.rs`; in `state/`, the engine's reachability and the node's statistics
//!   (`reach`), a container's runs (`runs`: start outcomes, the pull lane, exits, restarts,
//!   health verdicts, events) and the sync plan applied (`sync`); its tests in `state/tests.rs`
//!   and `state/tests/` run it on the fake engine with a manual clock.
//!
//! The engine's labels (`skiff.task-id`, `skiff.node`, `skiff.spec`) are the truth of what runs: a
//! restarted worker adopts the containers that carry its name. Must not speak HTTP: `http.rs`
//! turns requests into calls on `WorkerHandle`.

mod budget;
mod decide;
mod engine;
#[cfg(test)]
mod fake;
mod handle;
mod ops;
mod retention;
mod state;
mod watch;

pub use engine::{Engine, Events};
pub use handle::{spawn, Worker, WorkerHandle};
pub use retention::Retention;

use crate::api::ENGINE_UNREACHABLE;
use crate::clock::{self, Clock};
use crate::control::SpawnError;
use crate::docker_cli::DockerError;
use crate::stats::Caps;
use crate::store::StoreError;
use crate::task::{TaskId, TaskState};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub const LABEL_TASK_ID: &str = "skiff.task-id";
pub const LABEL_NODE: &str = "skiff.node";
pub const LABEL_NAME: &str = "skiff.name";
pub const LABEL_SPEC: &str = "skiff.spec";
pub const LABEL_CREATED: &str = "skiff.created-at";
/// The restart budget as it stood when the container was created (optional: containers of
/// earlier versions lack them). A restart in place starts the same container again, renamed to
/// carry the budget as it stands (`budget`); with the name, and these labels until the first
/// such rename, a worker that lost its table (a memory store) keeps counting where it was.
pub const LABEL_RESTART_COUNT: &str = "skiff.restart-count";
pub const LABEL_RECENT_RESTARTS: &str = "skiff.recent-restarts";
pub const LABEL_LAST_EXIT: &str = "skiff.last-exit-at";
/// A service's replicas also carry its name and version (absent on single tasks).
pub const LABEL_SERVICE: &str = "skiff.service";
pub const LABEL_SERVICE_VERSION: &str = "skiff.service-version";

#[derive(Clone)]
pub struct WorkerConfig {
    /// The node's name: it labels every container and is how the manager knows the node.
    pub name: String,
    /// SIGTERM, then SIGKILL after this.
    pub stop_grace: Duration,
    /// How often the table is checked against the engine (events make it prompt; this is the net).
    pub sync_interval: Duration,
    /// Engine calls at once, for starts and for everything else (each its own pool): 8, since
    /// the engine here creates and starts containers fastest at about 16 at once, and a cluster
    /// has at least two workers (docs/BENCHMARKS.md, the burst).
    pub engine_threads: usize,
    /// Pulls at once: a registry that hangs holds these threads, and nothing else.
    pub pull_threads: usize,
    pub pull_timeout: Duration,
    /// How often the engine is pinged, and how soon it must answer to count as answering.
    pub ping_interval: Duration,
    pub ping_deadline: Duration,
    /// How long finished tasks stay listed for the manager to see.
    pub keep_finished: Duration,
    /// How many finished tasks stay listed at most; the longest finished go first.
    pub keep_finished_count: usize,
    /// The containers of Completed and Failed tasks kept for their output (count and age).
    pub retention: Retention,
    /// How long an HTTP thread waits for a start to finish before answering 504.
    pub start_wait: Duration,
    /// How often the node's statistics are sampled (CPU usage is measured between samples).
    pub stats_interval: Duration,
    /// What the operator lets Skiff use of this node.
    pub caps: Caps,
    /// Back-off before the first restart in place; it doubles with each restart, up to the cap.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// A run this long without trouble gives a task its restart budget and back-off back.
    pub restart_reset_after: Duration,
    /// A container with this node's label that no task owns (and that the worker did not make)
    /// is removed only after it has been seen for this long.
    pub orphan_grace: Duration,
    /// Where the control loop reads the time (tests move it by hand).
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerConfig").field("name", &self.name).finish_non_exhaustive()
    }
}

impl WorkerConfig {
    pub fn new(name: &str) -> WorkerConfig {
        WorkerConfig {
            name: name.to_string(),
            stop_grace: Duration::from_secs(10),
            sync_interval: Duration::from_secs(5),
            engine_threads: 8,
            pull_threads: 2,
            pull_timeout: Duration::from_secs(300),
            ping_interval: Duration::from_secs(2),
            ping_deadline: Duration::from_secs(2),
            // long enough for a manager cut off for a while to still learn how a task ended
            keep_finished: Duration::from_secs(24 * 3600),
            keep_finished_count: 1000,
            retention: Retention::default(),
            start_wait: Duration::from_secs(330),
            stats_interval: Duration::from_secs(2),
            caps: Caps::default(),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
            restart_reset_after: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(30),
            clock: clock::system(),
        }
    }
}

/// Why a worker request failed.
#[derive(Debug)]
pub enum WorkerError {
    NotFound(TaskId),
    AlreadyFinished {
        id: TaskId,
        state: TaskState,
    },
    /// The previous run of this task is still being cleaned up: a new run must wait (a conflict
    /// for now, not a dead engine).
    CleaningUp(TaskId),
    /// The engine could not be reached; the task was not started (or, for a stop, nothing was
    /// stopped). Its words start with `api::ENGINE_UNREACHABLE`, which the manager reads.
    EngineUnreachable(String),
    /// The answer did not come in time; the operation may still complete.
    TimedOut,
    /// The engine stopped answering mid-way: whether the container runs is not known yet (the
    /// worker finds out and carries on by itself).
    OutcomeUnknown(String),
    /// The engine answered and refused to stop or remove the container (its words); the worker
    /// tries again at its next tick.
    StopRefused(String),
    /// The worker has not checked its containers since it started, so it cannot say yet that
    /// it does not have a task.
    NotReady,
    ShuttingDown,
    /// The change could not be recorded, so it is not claimed.
    Store(StoreError),
    /// A thread the worker needs could not be started.
    Spawn(SpawnError),
    /// The task has no output to read here (no container yet, or its container is gone).
    NoOutput {
        id: TaskId,
        why: &'static str,
    },
    /// The engine refused to give a container's output.
    Logs(DockerError),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::NotFound(id) => write!(f, "no task {id} on this worker"),
            WorkerError::AlreadyFinished { id, state } => write!(f, "task {id} is already finished ({state})"),
            WorkerError::CleaningUp(id) => {
                write!(f, "the previous run of task {id} is still being cleaned up; retry")
            }
            WorkerError::EngineUnreachable(why) => write!(f, "{ENGINE_UNREACHABLE}: {why}"),
            WorkerError::TimedOut => f.write_str("the worker did not finish in time; the operation goes on"),
            WorkerError::OutcomeUnknown(why) => {
                write!(f, "the engine stopped answering mid-way ({why}); the worker carries on")
            }
            WorkerError::StopRefused(why) => {
                write!(f, "the engine refused the stop ({why}); the worker tries again")
            }
            WorkerError::NotReady => f.write_str("the worker has not checked its containers since it started; retry"),
            WorkerError::ShuttingDown => f.write_str("the worker is shutting down"),
            WorkerError::Store(_) => f.write_str("the worker's store failed; the change is not recorded"),
            WorkerError::Spawn(_) => f.write_str("the worker could not start a thread"),
            WorkerError::NoOutput { id, why } => write!(f, "no output of task {id} on this worker: {why}"),
            WorkerError::Logs(_) => f.write_str("the engine could not give the container's output"),
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Store(e) => Some(e),
            WorkerError::Spawn(e) => Some(e),
            WorkerError::Logs(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SpawnError> for WorkerError {
    fn from(e: SpawnError) -> WorkerError {
        WorkerError::Spawn(e)
    }
}

/// The first 12 characters of a container id, as `docker ps` shows it.
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
