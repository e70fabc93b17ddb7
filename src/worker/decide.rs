//! The worker's pure decisions, in the style of `reconcile.rs`: given what is known, what to do,
//! with no I/O and no clock of their own (time comes in as an argument), so that every branch is
//! tested from a table.
//!
//! - `on_exit`: a container of a live task stopped (by itself, or for failing its health checks):
//!   restart it in place after a back-off, or give the task up as Failed with the reason, or
//!   finish it as Completed, from its policy, its budget, the exit and how long it ran.
//! - `plan_sync`: what the engine shows against the task table: containers to record as running,
//!   exits to handle, finished tasks' leftovers to remove, vanished containers, runs to follow,
//!   containers to adopt, and containers that are no task's own, removed once their grace has
//!   passed (and only if they carry every Skiff label).
//!
//! Must not touch the table or the engine: `state.rs` applies what these return.

use super::budget;
use super::ops::Observed;
use super::{LABEL_CREATED, LABEL_NAME, LABEL_NODE, LABEL_SPEC, LABEL_TASK_ID};
use crate::docker_cli::ContainerInfo;
use crate::task::{DesiredState, RestartMode, RestartPolicy, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The back-off rules of restarts in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Before the first restart; it doubles with each one.
    pub first: Duration,
    pub max: Duration,
    /// A run at least this long gives the task its budget back.
    pub reset_after: Duration,
}

/// What the worker knows of a task when its container is seen stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitContext {
    pub policy: RestartPolicy,
    pub desired: DesiredState,
    pub state: TaskState,
    /// Restarts that count against the budget.
    pub recent_restarts: u32,
    /// The exit handled last (its `finished_at`), to tell a new exit from one seen before.
    pub last_exit_at: Option<Timestamp>,
    /// How long the run that ended lasted, if this worker saw it begin.
    pub ran_for: Option<Duration>,
    /// Failed health checks in a row, if the container was stopped for failing them.
    pub unhealthy_after: Option<u32>,
    /// The container's memory limit, given only when the engine does not mark out-of-memory
    /// kills (Podman 4 never sets `OOMKilled`): then an exit 137 under it is likely one. `None`
    /// on Docker, whose `OOMKilled` is trusted (a `docker kill` is not taken for one).
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExitDecision {
    /// The task is already finished: nothing changes.
    Nothing,
    /// This exit was handled before (by this worker before a restart, say): the restart it
    /// called for is made again, without counting it twice.
    AlreadyHandled,
    /// The container ended while the task was being stopped: the task is Stopped.
    Stopped,
    /// Start the same container again after `delay`.
    Restart { delay: Duration, recent_restarts: u32, reason: String },
    /// No restart: the task ends in `state` (Completed or Failed) at `at`.
    Finish { state: TaskState, at: Timestamp, error: Option<String>, recent_restarts: u32 },
}

/// Whether an exit counts as a failure: non-zero, killed for memory, never started, or stopped
/// for failing its health checks.
fn is_failure(info: &ContainerInfo, unhealthy: bool) -> bool {
    unhealthy || info.exit_code != 0 || info.oom_killed || info.status == "created"
}

/// Decides what a container's exit means for its task.
pub fn on_exit(ctx: &ExitContext, info: &ContainerInfo, backoff: Backoff, now: Timestamp) -> ExitDecision {
    if ctx.state.is_terminal() {
        return ExitDecision::Nothing;
    }
    if info.finished_at.is_some() && ctx.last_exit_at == info.finished_at {
        return ExitDecision::AlreadyHandled;
    }
    let unhealthy = ctx.unhealthy_after.is_some();
    let failed = is_failure(info, unhealthy);
    let at = info.finished_at.unwrap_or(now);
    if ctx.desired == DesiredState::Stopped {
        return if ctx.state == TaskState::Running {
            ExitDecision::Stopped
        } else {
            finish(failed, info, ctx, at, ctx.recent_restarts)
        };
    }
    let wanted = match ctx.policy.mode {
        RestartMode::Never => false,
        RestartMode::OnFailure => failed,
        RestartMode::Always => true,
    };
    let recent = if ctx.ran_for.is_some_and(|d| d >= backoff.reset_after) { 0 } else { ctx.recent_restarts };
    let why = exit_reason(info, ctx.unhealthy_after, ctx.memory_mb);
    if wanted && recent < ctx.policy.max_restarts {
        let recent = recent + 1;
        let delay = backoff.first.saturating_mul(1 << (recent - 1).min(20)).min(backoff.max);
        let reason = format!("{why}; restart {recent} of {} in {} s", ctx.policy.max_restarts, delay.as_secs_f64());
        return ExitDecision::Restart { delay, recent_restarts: recent, reason };
    }
    if wanted {
        let error = Some(format!("{why}, {recent} restarts used"));
        let state = if failed { TaskState::Failed } else { TaskState::Completed };
        return ExitDecision::Finish { state, at, error: error.filter(|_| failed), recent_restarts: recent };
    }
    finish(failed, info, ctx, at, recent)
}

fn finish(failed: bool, info: &ContainerInfo, ctx: &ExitContext, at: Timestamp, recent: u32) -> ExitDecision {
    if failed {
        let error = Some(exit_reason(info, ctx.unhealthy_after, ctx.memory_mb));
        ExitDecision::Finish { state: TaskState::Failed, at, error, recent_restarts: recent }
    } else {
        ExitDecision::Finish { state: TaskState::Completed, at, error: None, recent_restarts: recent }
    }
}

/// What an exit with 137 (128 + SIGKILL) is.
const SIGKILLED: i64 = 137;

/// Why a container stopped, in words. An exit 137 of a container with a memory limit that the
/// engine did not mark as killed for memory is said to be likely that: Podman 4 never sets
/// `OOMKilled`, and the kernel's OOM killer sends SIGKILL; "likely", because a `kill -9` reads
/// the same.
pub fn exit_reason(info: &ContainerInfo, unhealthy_after: Option<u32>, memory_mb: Option<u64>) -> String {
    if let Some(n) = unhealthy_after {
        format!("unhealthy after {n} failed health checks")
    } else if info.status == "created" {
        if info.error.is_empty() {
            "container was created but never started".into()
        } else {
            info.error.clone()
        }
    } else if info.oom_killed {
        format!("killed for using more than its memory limit (exit code {})", info.exit_code)
    } else if let (SIGKILLED, Some(mb)) = (info.exit_code, memory_mb) {
        format!("exited with code {SIGKILLED} (SIGKILL), likely out of memory: limit {mb} MB")
    } else if info.exit_code == SIGKILLED && info.error.is_empty() {
        format!("exited with code {SIGKILLED} (SIGKILL)")
    } else if !info.error.is_empty() {
        format!("exited with code {}: {}", info.exit_code, info.error)
    } else {
        format!("exited with code {}", info.exit_code)
    }
}

/// A task of the table as the sync plan needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryView {
    pub id: TaskId,
    pub state: TaskState,
    /// The container the worker recorded for the task: the only one it trusts to be the task's.
    pub container_id: Option<String>,
    /// The name the worker gives the task's container (names are unique on an engine, so a
    /// container by another hand cannot carry it while the task's own exists). Only the base
    /// name counts here: the container a start creates has it until its first restart in place,
    /// and by then the worker has recorded its id.
    pub container_name: String,
    /// An operation is under way, the entry changed after the sync began, or a restart is due:
    /// the sync's picture is older than what the worker knows, so it is left alone.
    pub busy: bool,
    /// A run of its container is being followed (ports read, health checks going).
    pub followed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SyncAction {
    /// The task's container runs: record it, and the task as Running.
    Running { id: TaskId, container_id: String },
    /// Its container exited and no event said so (the engine was away, say).
    Exited { id: TaskId, info: ContainerInfo },
    /// A finished task's container is still there: it is to be removed.
    Leftover { id: TaskId, container_id: String },
    /// A live task's container is gone (removed behind the worker's back).
    Vanished { id: TaskId },
    /// A finished task's container is gone: nothing is left to remove.
    Gone { id: TaskId },
    /// A running container whose run this worker does not follow yet: read its details.
    Follow { id: TaskId, container_id: String },
    /// A container of a task the table does not know, made by a worker of this node (its name
    /// and labels say so), with a readable spec: take it in.
    Adopt { id: TaskId, spec: Box<TaskSpec>, created: Timestamp, observed: Box<Observed> },
    /// A container with the full set of Skiff labels that is not the task's own (a second copy,
    /// or one made by hand): remember when it was first seen. `claims` is the task it names.
    Suspect { container_id: String, claims: Option<TaskId> },
    /// A suspect seen for longer than the grace: remove it.
    Sweep { container_id: String, claims: Option<TaskId> },
}

/// The labels every container the worker makes carries; a container without all of them is
/// never removed by the worker, whatever it claims.
pub const SKIFF_LABELS: [&str; 5] = [LABEL_TASK_ID, LABEL_NODE, LABEL_NAME, LABEL_SPEC, LABEL_CREATED];

/// The name the worker gives the container of a task.
pub fn container_name(node: &str, task_name: &str, id: &TaskId) -> String {
    format!("skiff-{node}-{task_name}-{}", id.short())
}

fn has_name(o: &Observed, name: &str) -> bool {
    o.summary.names.iter().any(|n| n.trim_start_matches('/') == name)
}

/// Whether the container has the base name or, once restarted in place, the base name renamed to
/// carry the budget (`budget::renamed`).
fn has_name_of(o: &Observed, base: &str) -> bool {
    o.summary.names.iter().any(|n| budget::is_name_of(base, n.trim_start_matches('/')))
}

/// Brings the table in line with what the engine has. Only the container the worker recorded
/// for a task (or, before it recorded one, the container with the task's name) is the task's:
/// an exit, a removal or a copy of any other container never changes the task. `suspects` says
/// when each container that is not its task's own was first seen; it is removed once seen for
/// `grace`, and only if it carries the full set of Skiff labels.
pub fn plan_sync(
    node: &str,
    entries: &[EntryView],
    seen: Vec<Observed>,
    suspects: &HashMap<String, Instant>,
    grace: Duration,
    now: Instant,
) -> Vec<SyncAction> {
    let known: HashMap<TaskId, &EntryView> = entries.iter().map(|e| (e.id, e)).collect();
    let mut by_task: HashMap<TaskId, Observed> = HashMap::new();
    let mut candidates: Vec<(TaskId, Observed)> = Vec::new();
    let mut actions = Vec::new();
    let mut strays: Vec<(String, Option<TaskId>)> = Vec::new();
    for o in seen {
        let complete = SKIFF_LABELS.iter().all(|l| o.summary.labels.contains_key(*l));
        let claim = o.summary.labels.get(LABEL_TASK_ID).and_then(|v| v.parse::<TaskId>().ok());
        let Some(id) = claim else {
            if complete {
                strays.push((o.summary.id, None));
            }
            continue;
        };
        let owned = match known.get(&id) {
            Some(e) => match &e.container_id {
                Some(recorded) => *recorded == o.summary.id,
                None => has_name(&o, &e.container_name),
            },
            None => {
                candidates.push((id, o));
                continue;
            }
        };
        if owned {
            by_task.insert(id, o);
        } else if complete {
            strays.push((o.summary.id, Some(id)));
        }
    }
    for e in entries {
        let seen_now = by_task.remove(&e.id);
        if e.busy {
            continue;
        }
        let id = e.id;
        match seen_now {
            Some(o) if e.state == TaskState::Scheduled => {
                // a start to be made again (its follow-up does it) unless the container runs
                if o.info.is_none() {
                    actions.push(SyncAction::Running { id, container_id: o.summary.id.clone() });
                    actions.push(SyncAction::Follow { id, container_id: o.summary.id });
                }
            }
            None if e.state == TaskState::Scheduled => {}
            Some(o) if e.state.is_terminal() => {
                let container_id = e.container_id.clone().unwrap_or(o.summary.id);
                actions.push(SyncAction::Leftover { id, container_id });
            }
            Some(o) => match o.info {
                None => {
                    actions.push(SyncAction::Running { id, container_id: o.summary.id.clone() });
                    if !e.followed {
                        actions.push(SyncAction::Follow { id, container_id: o.summary.id });
                    }
                }
                Some(info) => actions.push(SyncAction::Exited { id, info }),
            },
            None if !e.state.is_terminal() => actions.push(SyncAction::Vanished { id }),
            None => actions.push(SyncAction::Gone { id }),
        }
    }
    // containers of tasks the table does not know: the one with the name this node's worker
    // gives the task (the base name, or the base name renamed with the budget by a restart in
    // place), carrying a readable spec, is adopted; any other is a stray. A base name and its
    // renamed forms are different names to the engine, so a copy by another hand may carry one
    // beside the task's own: the one the engine created first is taken, as a copy comes later
    candidates.sort_by(|a, b| (a.1.summary.created, &a.1.summary.id).cmp(&(b.1.summary.created, &b.1.summary.id)));
    let mut adopted: HashSet<TaskId> = HashSet::new();
    for (id, o) in candidates {
        let complete = SKIFF_LABELS.iter().all(|l| o.summary.labels.contains_key(*l));
        let labels = &o.summary.labels;
        let spec = labels.get(LABEL_SPEC).and_then(|s| TaskSpec::from_json(s.as_bytes()).ok());
        let ours = spec.as_ref().is_some_and(|s| has_name_of(&o, &container_name(node, &s.name, &id)));
        match spec {
            Some(spec) if ours && complete && adopted.insert(id) => {
                let created = labels.get(LABEL_CREATED).and_then(|c| Timestamp::parse(c)).unwrap_or(o.summary.created);
                actions.push(SyncAction::Adopt { id, spec: Box::new(spec), created, observed: Box::new(o) });
            }
            _ if complete => strays.push((o.summary.id, Some(id))),
            _ => {}
        }
    }
    let mut counted = HashSet::new();
    for (container_id, claims) in strays {
        if !counted.insert(container_id.clone()) {
            continue;
        }
        match suspects.get(&container_id) {
            Some(first) if now.saturating_duration_since(*first) >= grace => {
                actions.push(SyncAction::Sweep { container_id, claims })
            }
            _ => actions.push(SyncAction::Suspect { container_id, claims }),
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker_cli::ContainerSummary;
    use std::collections::BTreeMap;

    const BACKOFF: Backoff =
        Backoff { first: Duration::from_secs(1), max: Duration::from_secs(30), reset_after: Duration::from_secs(60) };

    fn exit(code: i64, oom: bool, status: &str, finished: Option<u64>) -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            name: "n".into(),
            image: "i".into(),
            status: status.into(),
            running: false,
            exit_code: code,
            error: String::new(),
            oom_killed: oom,
            started_at: Some(Timestamp(5)),
            finished_at: finished.map(Timestamp),
            labels: BTreeMap::new(),
            ports: vec![],
        }
    }

    fn ctx(mode: RestartMode, max: u32, recent: u32) -> ExitContext {
        ExitContext {
            policy: RestartPolicy { mode, max_restarts: max },
            desired: DesiredState::Running,
            state: TaskState::Running,
            recent_restarts: recent,
            last_exit_at: None,
            ran_for: Some(Duration::from_secs(5)),
            unhealthy_after: None,
            memory_mb: None,
        }
    }

    fn restart(secs: u64, recent: u32, reason: &str) -> ExitDecision {
        ExitDecision::Restart { delay: Duration::from_secs(secs), recent_restarts: recent, reason: reason.into() }
    }

    fn finish(state: TaskState, error: Option<&str>, recent: u32) -> ExitDecision {
        ExitDecision::Finish { state, at: Timestamp(9), error: error.map(String::from), recent_restarts: recent }
    }

    #[test]
    fn exits_from_a_table() {
        use RestartMode::*;
        use TaskState::*;
        let code = |c| exit(c, false, "exited", Some(9));
        let stopped = ExitContext { desired: DesiredState::Stopped, ..ctx(Always, 3, 0) };
        let scheduled_stopped = ExitContext { state: Scheduled, ..stopped.clone() };
        let seen = ExitContext { last_exit_at: Some(Timestamp(9)), ..ctx(Always, 3, 0) };
        let finished = ExitContext { state: Failed, ..ctx(Always, 3, 0) };
        let long_run = ExitContext { ran_for: Some(Duration::from_secs(60)), ..ctx(OnFailure, 3, 3) };
        let unknown_run = ExitContext { ran_for: None, ..ctx(OnFailure, 3, 3) };
        let unhealthy = ExitContext { unhealthy_after: Some(3), ..ctx(OnFailure, 3, 0) };
        let unhealthy_never = ExitContext { unhealthy_after: Some(2), ..ctx(Never, 0, 0) };
        let cases: Vec<(&str, ExitContext, ContainerInfo, ExitDecision)> = vec![
            ("never, exit 0", ctx(Never, 0, 0), code(0), finish(Completed, None, 0)),
            ("never, exit 2", ctx(Never, 0, 0), code(2), finish(Failed, Some("exited with code 2"), 0)),
            ("on-failure, exit 0", ctx(OnFailure, 3, 0), code(0), finish(Completed, None, 0)),
            (
                "on-failure, exit 1",
                ctx(OnFailure, 3, 0),
                code(1),
                restart(1, 1, "exited with code 1; restart 1 of 3 in 1 s"),
            ),
            (
                "second restart waits 2 s",
                ctx(OnFailure, 3, 1),
                code(1),
                restart(2, 2, "exited with code 1; restart 2 of 3 in 2 s"),
            ),
            (
                "budget spent",
                ctx(OnFailure, 3, 3),
                code(1),
                finish(Failed, Some("exited with code 1, 3 restarts used"), 3),
            ),
            ("a long run gives it back", long_run, code(1), restart(1, 1, "exited with code 1; restart 1 of 3 in 1 s")),
            (
                "a run of unknown length keeps the count",
                unknown_run,
                code(1),
                finish(Failed, Some("exited with code 1, 3 restarts used"), 3),
            ),
            ("always, exit 0", ctx(Always, 3, 0), code(0), restart(1, 1, "exited with code 0; restart 1 of 3 in 1 s")),
            ("always, budget spent, exit 0", ctx(Always, 2, 2), code(0), finish(Completed, None, 2)),
            (
                "the cap holds",
                ctx(Always, 30, 10),
                code(0),
                restart(30, 11, "exited with code 0; restart 11 of 30 in 30 s"),
            ),
            (
                "out of memory",
                ctx(Never, 0, 0),
                exit(137, true, "exited", Some(9)),
                finish(Failed, Some("killed for using more than its memory limit (exit code 137)"), 0),
            ),
            (
                "never started",
                ctx(Never, 0, 0),
                exit(0, false, "created", Some(9)),
                finish(Failed, Some("container was created but never started"), 0),
            ),
            (
                "unhealthy",
                unhealthy,
                code(143),
                restart(1, 1, "unhealthy after 3 failed health checks; restart 1 of 3 in 1 s"),
            ),
            (
                "unhealthy, no policy",
                unhealthy_never,
                code(0),
                finish(Failed, Some("unhealthy after 2 failed health checks"), 0),
            ),
            ("being stopped", stopped, code(143), ExitDecision::Stopped),
            ("stopped before it ran", scheduled_stopped.clone(), code(0), finish(Completed, None, 0)),
            // wanted stopped, never seen running, and it failed: its policy does not count
            (
                "stopped before it ran, failing",
                scheduled_stopped,
                code(2),
                finish(Failed, Some("exited with code 2"), 0),
            ),
            ("seen before", seen, code(1), ExitDecision::AlreadyHandled),
            ("already finished", finished, code(1), ExitDecision::Nothing),
        ];
        for (what, ctx, info, want) in cases {
            assert_eq!(on_exit(&ctx, &info, BACKOFF, Timestamp(100)), want, "{what}");
        }
    }

    #[test]
    fn a_sigkill_under_a_memory_limit_is_likely_out_of_memory() {
        let limited = |mode, max| ExitContext { memory_mb: Some(16), ..ctx(mode, max, 0) };
        let kill = |oom| exit(137, oom, "exited", Some(9));
        let likely = "exited with code 137 (SIGKILL), likely out of memory: limit 16 MB";
        let cases: Vec<(&str, ExitContext, ContainerInfo, ExitDecision)> = vec![
            (
                "podman: 137 under a limit",
                limited(RestartMode::Never, 0),
                kill(false),
                finish(TaskState::Failed, Some(likely), 0),
            ),
            (
                "podman: 137 under a limit, restarted",
                limited(RestartMode::OnFailure, 3),
                kill(false),
                restart(1, 1, &format!("{likely}; restart 1 of 3 in 1 s")),
            ),
            (
                "docker: the engine says so",
                limited(RestartMode::Never, 0),
                kill(true),
                finish(TaskState::Failed, Some("killed for using more than its memory limit (exit code 137)"), 0),
            ),
            (
                "137 without a limit",
                ctx(RestartMode::Never, 0, 0),
                kill(false),
                finish(TaskState::Failed, Some("exited with code 137 (SIGKILL)"), 0),
            ),
            (
                "another code under a limit",
                limited(RestartMode::Never, 0),
                exit(1, false, "exited", Some(9)),
                finish(TaskState::Failed, Some("exited with code 1"), 0),
            ),
            (
                "unhealthy under a limit",
                ExitContext { unhealthy_after: Some(3), ..limited(RestartMode::Never, 0) },
                kill(false),
                finish(TaskState::Failed, Some("unhealthy after 3 failed health checks"), 0),
            ),
        ];
        for (what, ctx, info, want) in cases {
            assert_eq!(on_exit(&ctx, &info, BACKOFF, Timestamp(100)), want, "{what}");
        }
    }

    #[test]
    fn an_exit_without_a_finish_time_is_dated_now_and_never_taken_for_one_seen_before() {
        let c = ctx(RestartMode::Never, 0, 0);
        let c = ExitContext { last_exit_at: None, ..c };
        let d = on_exit(&c, &exit(1, false, "exited", None), BACKOFF, Timestamp(100));
        assert!(matches!(d, ExitDecision::Finish { at: Timestamp(100), .. }), "{d:?}");
    }

    #[test]
    fn exit_reasons_carry_the_engine_error() {
        let mut info = exit(127, false, "exited", Some(1));
        info.error = "exec: not found".into();
        assert_eq!(exit_reason(&info, None, None), "exited with code 127: exec: not found");
        info.status = "created".into();
        assert_eq!(exit_reason(&info, None, None), "exec: not found");
    }

    const SPEC: &str = r#"{"name":"web","image":"skiff/busybox"}"#;

    fn entry(state: TaskState, cid: Option<&str>) -> EntryView {
        let id = TaskId::new_v4();
        EntryView {
            id,
            state,
            container_id: cid.map(String::from),
            container_name: container_name("w1", "web", &id),
            busy: false,
            followed: true,
        }
    }

    /// A container as a sync sees it: with every Skiff label, named as the worker names it.
    fn observed(cid: &str, task: TaskId, running: bool) -> Observed {
        observed_as(cid, task, running, &container_name("w1", "web", &task), SKIFF_LABELS.len())
    }

    /// `labels` of the Skiff labels, in the order of `SKIFF_LABELS`.
    fn observed_as(cid: &str, task: TaskId, running: bool, name: &str, labels: usize) -> Observed {
        let values = [task.to_string(), "w1".into(), "web".into(), SPEC.into(), "2026-01-01T00:00:00Z".into()];
        let labels = SKIFF_LABELS.iter().zip(values).take(labels).map(|(k, v)| (k.to_string(), v)).collect();
        let summary = ContainerSummary {
            id: cid.into(),
            names: vec![format!("/{name}")],
            state: if running { "running" } else { "exited" }.into(),
            labels,
            created: Timestamp(7),
        };
        let info = (!running).then(|| exit(3, false, "exited", Some(9)));
        Observed { summary, info }
    }

    fn plan(entries: &[EntryView], seen: Vec<Observed>) -> Vec<SyncAction> {
        plan_sync("w1", entries, seen, &HashMap::new(), Duration::from_secs(30), Instant::now())
    }

    fn kind(a: &SyncAction) -> String {
        format!("{a:?}").split([' ', '{', '(']).next().unwrap_or_default().to_string()
    }

    fn kinds(actions: &[SyncAction]) -> Vec<String> {
        actions.iter().map(kind).collect()
    }

    #[test]
    fn sync_of_known_tasks_from_a_table() {
        use TaskState::*;
        type Case = (&'static str, EntryView, bool, Option<bool>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            // (what, entry, followed, seen: None = absent / Some(running), expected action kinds)
            ("running and seen running", entry(Running, Some("c")), true, Some(true), vec!["Running"]),
            ("running, not followed yet", entry(Running, Some("c")), false, Some(true), vec!["Running", "Follow"]),
            ("running, seen exited", entry(Running, Some("c")), true, Some(false), vec!["Exited"]),
            ("running, gone", entry(Running, Some("c")), true, None, vec!["Vanished"]),
            ("scheduled, seen running", entry(Scheduled, None), false, Some(true), vec!["Running", "Follow"]),
            ("scheduled, seen exited: the start is made again", entry(Scheduled, None), false, Some(false), vec![]),
            ("scheduled, nothing yet", entry(Scheduled, None), false, None, vec![]),
            ("finished, container left", entry(Completed, Some("c")), true, Some(false), vec!["Leftover"]),
            ("finished, container gone", entry(Failed, Some("c")), true, None, vec!["Gone"]),
        ];
        for (what, mut e, followed, seen, want) in cases {
            e.followed = followed;
            let seen = seen.map(|running| observed("c", e.id, running)).into_iter().collect();
            assert_eq!(kinds(&plan(&[e], seen)), want, "{what}");
        }
    }

    #[test]
    fn a_leftover_of_a_task_that_recorded_no_container_is_the_one_with_its_name() {
        let e = entry(TaskState::Failed, None);
        let actions = plan(std::slice::from_ref(&e), vec![observed("seen", e.id, false)]);
        assert_eq!(actions, vec![SyncAction::Leftover { id: e.id, container_id: "seen".into() }]);
        let recorded = entry(TaskState::Completed, Some("recorded"));
        let actions = plan(std::slice::from_ref(&recorded), vec![observed("recorded", recorded.id, false)]);
        assert_eq!(actions, vec![SyncAction::Leftover { id: recorded.id, container_id: "recorded".into() }]);
    }

    #[test]
    fn a_copy_of_a_known_task_without_every_label_is_left_alone() {
        let e = entry(TaskState::Running, Some("real"));
        for labels in [1, 2, 4] {
            let copy = observed_as("copy", e.id, true, "hand-made", labels);
            let actions = plan(std::slice::from_ref(&e), vec![observed("real", e.id, true), copy]);
            assert_eq!(actions, vec![SyncAction::Running { id: e.id, container_id: "real".into() }], "{labels}");
        }
    }

    #[test]
    fn a_container_of_an_unknown_task_with_an_unreadable_spec_is_a_suspect() {
        let id = TaskId::new_v4();
        let mut o = observed_as("x", id, true, &container_name("w1", "web", &id), 5);
        o.summary.labels.insert(LABEL_SPEC.into(), "{not a spec".into());
        assert_eq!(plan(&[], vec![o]), vec![SyncAction::Suspect { container_id: "x".into(), claims: Some(id) }]);
    }

    #[test]
    fn an_adopted_container_is_dated_from_its_label_or_else_from_the_engine() {
        let id = TaskId::new_v4();
        let ours = container_name("w1", "web", &id);
        let created = |o: Observed| match plan(&[], vec![o]).as_slice() {
            [SyncAction::Adopt { created, .. }] => *created,
            other => panic!("not adopted: {other:?}"),
        };
        let labelled = observed_as("a", id, true, &ours, 5);
        assert_eq!(Some(created(labelled)), Timestamp::parse("2026-01-01T00:00:00Z"));
        let mut garbled = observed_as("a", id, true, &ours, 5);
        garbled.summary.labels.insert(LABEL_CREATED.into(), "yesterday".into());
        assert_eq!(created(garbled), Timestamp(7), "the engine's creation time");
    }

    #[test]
    fn a_container_listed_twice_is_one_suspect() {
        let id = TaskId::new_v4();
        let o = observed_as("x", id, true, "hand-made", 5);
        assert_eq!(
            plan(&[], vec![o.clone(), o]),
            vec![SyncAction::Suspect { container_id: "x".into(), claims: Some(id) }]
        );
        // a copy of a known task and a second copy of an unknown one, each listed twice
        let e = entry(TaskState::Running, Some("real"));
        let copy = observed_as("copy", e.id, true, "hand-made", 5);
        let other = TaskId::new_v4();
        let ours = container_name("w1", "web", &other);
        let (first, second) =
            (observed_as("first", other, true, &ours, 5), observed_as("second", other, true, &ours, 5));
        let seen = vec![observed("real", e.id, true), copy.clone(), copy, first, second.clone(), second];
        let actions = plan(std::slice::from_ref(&e), seen);
        assert_eq!(kinds(&actions), ["Running", "Adopt", "Suspect", "Suspect"], "{actions:?}");
    }

    #[test]
    fn a_busy_entry_is_left_alone() {
        let mut e = entry(TaskState::Running, Some("c"));
        e.busy = true;
        assert!(plan(&[e.clone()], vec![]).is_empty());
        assert!(plan(&[e.clone()], vec![observed("c", e.id, false)]).is_empty());
    }

    #[test]
    fn only_the_recorded_container_is_the_tasks_own() {
        let e = entry(TaskState::Running, Some("b"));
        for order in [["a", "b"], ["b", "a"]] {
            let seen = order.iter().map(|c| observed(c, e.id, c == &"b")).collect();
            let actions = plan(std::slice::from_ref(&e), seen);
            assert_eq!(kinds(&actions), ["Running", "Suspect"], "{actions:?}");
            assert!(actions.contains(&SyncAction::Suspect { container_id: "a".into(), claims: Some(e.id) }));
        }
    }

    #[test]
    fn an_exited_copy_of_a_running_task_changes_nothing_of_it() {
        let e = entry(TaskState::Running, Some("real"));
        let actions =
            plan(std::slice::from_ref(&e), vec![observed("real", e.id, true), observed("spoof", e.id, false)]);
        assert_eq!(kinds(&actions), ["Running", "Suspect"]);
    }

    #[test]
    fn a_copy_of_a_task_whose_container_is_gone_does_not_replace_it() {
        let e = entry(TaskState::Running, Some("real"));
        let actions = plan(std::slice::from_ref(&e), vec![observed("spoof", e.id, true)]);
        assert_eq!(kinds(&actions), ["Vanished", "Suspect"]);
    }

    #[test]
    fn before_a_container_is_recorded_the_one_with_the_tasks_name_is_its_own() {
        let e = entry(TaskState::Scheduled, None);
        let spoof = observed_as("spoof", e.id, true, "someone-else", SKIFF_LABELS.len());
        let actions = plan(std::slice::from_ref(&e), vec![spoof, observed("real", e.id, true)]);
        assert_eq!(kinds(&actions), ["Running", "Follow", "Suspect"]);
        assert!(actions.contains(&SyncAction::Running { id: e.id, container_id: "real".into() }));
    }

    #[test]
    fn unknown_tasks_are_adopted_only_from_the_container_with_their_name_and_every_label() {
        let id = TaskId::new_v4();
        let ours = container_name("w1", "web", &id);
        let cases: Vec<(&str, Observed, Vec<&str>)> = vec![
            ("ours", observed_as("a", id, true, &ours, 5), vec!["Adopt"]),
            ("another name", observed_as("b", id, true, "hand-made", 5), vec!["Suspect"]),
            ("without a spec", observed_as("c", id, true, &ours, 3), vec![]),
            ("without a node label", observed_as("d", id, true, &ours, 1), vec![]),
        ];
        for (what, o, want) in cases {
            assert_eq!(kinds(&plan(&[], vec![o])), want, "{what}");
        }
        let adopted = plan(&[], vec![observed_as("a", id, true, &ours, 5)]);
        assert!(
            matches!(&adopted[0], SyncAction::Adopt { id: a, created, .. } if *a == id && created.millis() > 0),
            "{adopted:?}"
        );
    }

    #[test]
    fn an_unknown_task_is_adopted_from_a_renamed_container_and_of_two_from_the_one_created_first() {
        let id = TaskId::new_v4();
        let base = container_name("w1", "web", &id);
        let renamed = |n: u32| {
            let b = crate::worker::budget::Budget { restart_count: n, recent_restarts: n, last_exit_at: None };
            crate::worker::budget::renamed(&base, &b)
        };
        let at = |mut o: Observed, secs: u64| {
            o.summary.created = Timestamp(secs * 1000);
            o
        };
        let alone = plan(&[], vec![observed_as("a", id, true, &renamed(2), 5)]);
        assert_eq!(kinds(&alone), ["Adopt"]);
        let garbled = plan(&[], vec![observed_as("a", id, true, &format!("{base}.r2.u"), 5)]);
        assert_eq!(kinds(&garbled), ["Suspect"], "a name no worker gives is not the task's");
        for (first, later) in [("a", "b"), ("b", "a")] {
            let seen = vec![
                at(observed_as(later, id, true, &renamed(9), 5), 200),
                at(observed_as(first, id, true, &renamed(2), 5), 100),
            ];
            let actions = plan(&[], seen);
            assert_eq!(kinds(&actions), ["Adopt", "Suspect"], "{actions:?}");
            assert!(matches!(&actions[0], SyncAction::Adopt { observed, .. } if observed.summary.id == first));
        }
    }

    #[test]
    fn a_container_with_an_unreadable_task_id_is_a_suspect_only_with_every_label() {
        let mut full = observed("x", TaskId::new_v4(), true);
        full.summary.labels.insert(LABEL_TASK_ID.into(), "not-a-uuid".into());
        assert_eq!(plan(&[], vec![full]), vec![SyncAction::Suspect { container_id: "x".into(), claims: None }]);
        let mut partial = observed_as("y", TaskId::new_v4(), true, "n", 2);
        partial.summary.labels.insert(LABEL_TASK_ID.into(), "not-a-uuid".into());
        assert!(plan(&[], vec![partial]).is_empty());
    }

    #[test]
    fn a_suspect_is_swept_once_its_grace_has_passed() {
        let now = Instant::now();
        let grace = Duration::from_secs(30);
        let id = TaskId::new_v4();
        let seen = || vec![observed_as("x", id, true, "hand-made", 5)];
        let young = HashMap::from([("x".to_string(), now - Duration::from_secs(29))]);
        let old = HashMap::from([("x".to_string(), now - grace)]);
        let suspect = SyncAction::Suspect { container_id: "x".into(), claims: Some(id) };
        let sweep = SyncAction::Sweep { container_id: "x".into(), claims: Some(id) };
        assert_eq!(plan_sync("w1", &[], seen(), &young, grace, now), vec![suspect]);
        assert_eq!(plan_sync("w1", &[], seen(), &old, grace, now), vec![sweep]);
    }
}
