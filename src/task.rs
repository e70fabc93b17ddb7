//! The task: what Skiff knows of it (`Task`), its identity (`TaskId`), and the states it moves
//! through, with the one table of allowed transitions (`TaskState::can_become`). What a user asks
//! for, and its validation, is `task::spec`, re-exported here.
//!
//! The manager and the workers share these types: a worker reports its tasks as `Task` records too.
//! This module does no I/O and knows nothing of Docker or HTTP.

mod spec;

pub use spec::{
    check_env_key, check_image, check_name, HealthCheck, PortSpec, Protocol, RestartMode, RestartPolicy, SpecError,
    TaskSpec, MAX_CMD_ARGS, MAX_CMD_ENV_BYTES, MAX_CPUS, MAX_DISK_MB, MAX_ENV_VARS, MAX_IMAGE_LEN, MAX_MEMORY_MB,
    MAX_NAME_LEN, MAX_PORTS, MAX_SPEC_BYTES, MIN_CPUS, MIN_MEMORY_MB, SPEC_FIELDS,
};

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A task's identity: a UUID v4 made by the manager, kept for the task's whole life (also when it
/// moves to another node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    pub fn new_v4() -> TaskId {
        TaskId(Uuid::new_v4())
    }

    /// The first eight hex digits, enough to tell tasks apart in names and logs.
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_string()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The text given is not a task id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTaskId(pub String);

impl fmt::Display for InvalidTaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(64).collect();
        write!(f, "{shown:?} is not a task id (a UUID such as 3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b)")
    }
}

impl std::error::Error for InvalidTaskId {}

impl FromStr for TaskId {
    type Err = InvalidTaskId;
    fn from_str(s: &str) -> Result<TaskId, InvalidTaskId> {
        Uuid::parse_str(s).map(TaskId).map_err(|_| InvalidTaskId(s.to_string()))
    }
}

/// Where a task is in its life. Serialised as the capitalised names the APIs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Accepted by the manager, not placed on a node yet.
    Pending,
    /// Sent to a node, which has not reported its container running yet.
    Scheduled,
    /// Its container runs.
    Running,
    /// Stopped because a user asked for it.
    Stopped,
    /// Its container exited 0 by itself.
    Completed,
    /// Its container exited non-zero, or could not be created or started.
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Stopped,
        TaskState::Completed,
        TaskState::Failed,
    ];

    /// The transition table: every move a task may make, and no other.
    ///
    /// - `Scheduled → Pending`: the node could not be reached, so the task is placed again.
    /// - `Running → Pending`: the node was lost and the task is re-scheduled elsewhere.
    /// - `Scheduled → Completed|Failed`: the container ended before anyone saw it run.
    /// - `Stopped`, `Completed` and `Failed` are terminal: a finished task is never revived; a
    ///   user submits it again and gets a new task.
    pub fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Pending, Scheduled | Stopped | Failed)
                | (Scheduled, Pending | Running | Stopped | Completed | Failed)
                | (Running, Pending | Stopped | Completed | Failed)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Stopped | TaskState::Completed | TaskState::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "Pending",
            TaskState::Scheduled => "Scheduled",
            TaskState::Running => "Running",
            TaskState::Stopped => "Stopped",
            TaskState::Completed => "Completed",
            TaskState::Failed => "Failed",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move the transition table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: TaskState,
    pub to: TaskState,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a task cannot go from {} to {}", self.from, self.to)
    }
}

impl std::error::Error for InvalidTransition {}

/// What the user wants of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Stopped,
}

/// A published port as it is bound now. Engine-chosen host ports change at every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortBinding {
    pub container: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host: u16,
}

/// Everything Skiff knows of one task; the record the APIs return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub name: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub desired_state: DesiredState,
    /// The node's name, as given by `worker -n`.
    pub node: Option<String>,
    pub container_id: Option<String>,
    /// The actual host bindings of the published ports, so a user can open `http://NODE:HOST`.
    pub ports: Vec<PortBinding>,
    pub exit_code: Option<i64>,
    /// The last error, in words a user understands (for a Pending task: why it is not placed).
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Restarts in place by the worker (after an exit or failed health checks). Moves to another
    /// node after a node loss are not restarts.
    #[serde(default)]
    pub restart_count: u32,
    /// Restarts since the task last ran a minute without trouble: what counts against the
    /// policy's `max_restarts`.
    #[serde(default)]
    pub recent_restarts: u32,
    /// When its container last stopped by itself (the engine's time), so that one exit is never
    /// handled twice (say, by a worker restarted during the back-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_at: Option<Timestamp>,
    /// The last health check's verdict; `None` without a health check or before the first one.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Since when the manager has seen this run healthy without a break (the first poll that
    /// brought a passing verdict): what a service's `monitor_s` counts for a checked replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<Timestamp>,
    /// Recent changes, oldest first (the last `MAX_EVENTS`).
    #[serde(default)]
    pub events: Vec<TaskEvent>,
    /// The service this task is a replica of, and the service's version it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_version: Option<u32>,
}

/// How many events a task keeps.
pub const MAX_EVENTS: usize = 30;

/// A change in a task's life: a state change, a restart in place, or a move to another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub at: Timestamp,
    /// The state before (`None` for the task's creation).
    pub from: Option<TaskState>,
    pub to: TaskState,
    pub reason: String,
    pub node: Option<String>,
}

impl Task {
    /// Adds an event, keeping the last `MAX_EVENTS`.
    pub fn record(&mut self, from: Option<TaskState>, reason: String, at: Timestamp) {
        self.events.push(TaskEvent { at, from, to: self.state, reason, node: self.node.clone() });
        if self.events.len() > MAX_EVENTS {
            let extra = self.events.len() - MAX_EVENTS;
            self.events.drain(..extra);
        }
    }

    /// The event that the change from `old` to `self` makes, if it is one worth recording: a new
    /// state, a restart in place, or a move to another node. The reason is worked out from the
    /// records themselves.
    pub fn change_since(&self, old: Option<&Task>) -> Option<(Option<TaskState>, String)> {
        let Some(old) = old else {
            return Some((None, "accepted".into()));
        };
        if self.restart_count > old.restart_count {
            let why = self.error.clone().unwrap_or_else(|| "restarted".into());
            return Some((Some(old.state), format!("restarted in place ({} so far): {why}", self.restart_count)));
        }
        if self.state == old.state {
            return None;
        }
        let node = self.node.as_deref().unwrap_or("-");
        let reason = match self.state {
            TaskState::Scheduled => format!("placed on {node}"),
            TaskState::Running => format!("running on {node}"),
            TaskState::Completed => "exited with code 0".into(),
            TaskState::Stopped if self.desired_state == DesiredState::Stopped => "stopped as asked".into(),
            _ => self.error.clone().unwrap_or_else(|| self.state.to_string()),
        };
        Some((Some(old.state), reason))
    }
    pub fn new(id: TaskId, spec: TaskSpec, now: Timestamp) -> Task {
        Task {
            id,
            name: spec.name.clone(),
            spec,
            state: TaskState::Pending,
            desired_state: DesiredState::Running,
            node: None,
            container_id: None,
            ports: Vec::new(),
            exit_code: None,
            error: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            recent_restarts: 0,
            last_exit_at: None,
            healthy: None,
            healthy_since: None,
            events: Vec::new(),
            service: None,
            service_version: None,
        }
    }

    /// Takes in a health verdict seen `now`: healthy since the first passing one seen, and not
    /// at all once a verdict is missing or failing.
    pub fn take_health(&mut self, healthy: Option<bool>, now: Timestamp) {
        self.healthy_since = match healthy {
            Some(true) => self.healthy_since.filter(|_| self.healthy == Some(true)).or(Some(now)),
            _ => None,
        };
        self.healthy = healthy;
    }

    /// Moves the task to `to` if the table allows it, keeping the times true. Staying in the same
    /// state is not a move and always succeeds.
    pub fn set_state(&mut self, to: TaskState, now: Timestamp) -> Result<(), InvalidTransition> {
        if self.state == to {
            return Ok(());
        }
        if !self.state.can_become(to) {
            return Err(InvalidTransition { from: self.state, to });
        }
        self.state = to;
        match to {
            TaskState::Running => {
                self.started_at = Some(now);
                self.finished_at = None;
            }
            TaskState::Pending | TaskState::Scheduled => {}
            TaskState::Stopped | TaskState::Completed | TaskState::Failed => {
                self.finished_at = Some(now);
                // no container, no bindings
                self.ports.clear();
            }
        }
        Ok(())
    }

    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use TaskState::*;

    /// A spec with something in every part a record carries along.
    fn web_spec() -> TaskSpec {
        TaskSpec::from_value(json!({
            "name": "web",
            "image": "skiff/busybox:latest",
            "env": {"GREETING": "hello"},
            "memory_mb": 64,
            "ports": [{"container": 8080, "host": 0}],
            "restart_policy": {"mode": "on-failure", "max_restarts": 3},
            "health_check": {"path": "/", "port": 8080}
        }))
        .expect("valid")
    }

    #[test]
    fn transition_table_pair_by_pair() {
        let allowed = [
            (Pending, Scheduled),
            (Pending, Stopped),
            (Pending, Failed),
            (Scheduled, Pending),
            (Scheduled, Running),
            (Scheduled, Stopped),
            (Scheduled, Completed),
            (Scheduled, Failed),
            (Running, Pending),
            (Running, Stopped),
            (Running, Completed),
            (Running, Failed),
        ];
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in [Stopped, Completed, Failed] {
            assert!(from.is_terminal());
            assert!(TaskState::ALL.iter().all(|to| !from.can_become(*to)), "{from}");
        }
        for from in [Pending, Scheduled, Running] {
            assert!(!from.is_terminal());
        }
    }

    #[test]
    fn set_state_follows_the_table_and_keeps_times() {
        let spec = TaskSpec::from_value(json!({"name": "a", "image": "b"})).expect("valid");
        let mut task = Task::new(TaskId::new_v4(), spec, Timestamp(1));
        task.set_state(Scheduled, Timestamp(2)).expect("allowed");
        task.set_state(Running, Timestamp(3)).expect("allowed");
        assert_eq!(task.started_at, Some(Timestamp(3)));
        task.set_state(Running, Timestamp(4)).expect("same state is no move");
        assert_eq!(task.started_at, Some(Timestamp(3)));
        task.set_state(Completed, Timestamp(5)).expect("allowed");
        assert_eq!(task.finished_at, Some(Timestamp(5)));
        assert_eq!(task.set_state(Running, Timestamp(6)), Err(InvalidTransition { from: Completed, to: Running }));
    }

    #[test]
    fn changes_become_events_with_reasons() {
        let spec = TaskSpec::from_value(json!({"name": "a", "image": "b"})).expect("valid");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(1));
        assert_eq!(t.change_since(None), Some((None, "accepted".to_string())));
        let old = t.clone();
        t.set_state(Scheduled, Timestamp(2)).expect("allowed");
        t.node = Some("w1".into());
        assert_eq!(t.change_since(Some(&old)), Some((Some(Pending), "placed on w1".to_string())));
        assert_eq!(t.change_since(Some(&t.clone())), None, "no change, no event");
        let old = t.clone();
        t.restart_count = 1;
        t.error = Some("exited with code 1".into());
        let (_, reason) = t.change_since(Some(&old)).expect("an event");
        assert_eq!(reason, "restarted in place (1 so far): exited with code 1");
        // a move after a node loss: the reason given when the task is taken off its node
        let old = t.clone();
        t.set_state(Pending, Timestamp(3)).expect("allowed");
        t.error = Some("node w1 lost; placing the task again".into());
        assert_eq!(t.change_since(Some(&old)).map(|e| e.1), Some("node w1 lost; placing the task again".to_string()));
        for i in 0..(MAX_EVENTS + 5) {
            t.record(None, format!("e{i}"), Timestamp(i as u64));
        }
        assert_eq!(t.events.len(), MAX_EVENTS);
        assert_eq!(t.events.last().map(|e| e.reason.as_str()), Some("e34"));
    }

    #[test]
    fn task_ids_parse_and_refuse_garbage() {
        let id = TaskId::new_v4();
        assert_eq!(id.to_string().parse::<TaskId>(), Ok(id));
        assert_eq!(id.short().len(), 8);
        assert!("not-an-id".parse::<TaskId>().is_err());
    }

    #[test]
    fn task_record_round_trips_through_json() {
        let task = Task::new(TaskId::new_v4(), web_spec(), Timestamp(1_795_607_674_123));
        let text = serde_json::to_string(&task).expect("serialises");
        assert!(text.contains("\"state\":\"Pending\"") && text.contains("\"desired_state\":\"running\""), "{text}");
        assert!(text.contains("\"created_at\":\"2026-11-25T11:54:34.123Z\""), "{text}");
        let back: Task = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, task);
    }
}
