//! The worker's view checked against the engine: resuming after a restart, applying the sync
//! plan of `decide::plan_sync` (record, repair, adopt, remove), and the records of containers
//! that ended or vanished without the worker seeing it happen.
//!
//! Must not call the engine: it hands ops to the pools like the rest of `State`.

use super::{transition, Entry, OpKind, State};
use crate::docker_cli::{is_podman, ContainerInfo};
use crate::logfmt::q;
use crate::task::{DesiredState, RestartMode, Task, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use crate::worker::budget;
use crate::worker::decide::{self, Backoff, EntryView, ExitContext, ExitDecision, SyncAction};
use crate::worker::ops::{start_op, Observed, Op};
use crate::worker::short_id;
use log::{info, warn};
use std::collections::HashMap;
use std::time::Instant;

impl State {
    /// Carries on after a restart: starts that were cut off are made again (the start op adopts
    /// a container the first attempt left), then every entry gets its follow-up.
    pub(super) fn resume(&mut self) {
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            if entry.task.state == TaskState::Scheduled && entry.task.desired_state == DesiredState::Running {
                entry.op = Some(OpKind::Start);
                let op = start_op(&entry.task, &self.config.name);
                info!("resuming start task_id={id}");
                self.pools.send(op);
            } else {
                self.follow_up(id);
            }
        }
    }

    /// Applies the sync plan: what the engine has against the table.
    pub(super) fn on_synced(&mut self, sync_epoch: u64, seen: Vec<Observed>, now: Timestamp) {
        let node = self.config.name.clone();
        let views: Vec<EntryView> = self
            .entries
            .values()
            .map(|e| EntryView {
                id: e.task.id,
                state: e.task.state,
                container_id: e.task.container_id.clone(),
                container_name: decide::container_name(&node, &e.task.name, &e.task.id),
                // changed after the sync was asked for: its picture may be older than the change
                busy: e.op.is_some() || e.changed_epoch > sync_epoch || e.restart_at.is_some(),
                followed: e.run_started.is_some(),
            })
            .collect();
        let instant = self.instant();
        let plan = decide::plan_sync(&node, &views, seen, &self.suspects, self.config.orphan_grace, instant);
        let mut still_suspect = HashMap::new();
        for action in plan {
            self.apply(action, now, instant, &mut still_suspect);
        }
        // a suspect not seen this time is gone (or owned after all)
        self.suspects = still_suspect;
        if !self.synced {
            info!("containers checked node={} tasks={}", self.config.name, self.entries.len());
            self.synced = true;
        }
    }

    pub(super) fn apply(
        &mut self,
        action: SyncAction,
        now: Timestamp,
        instant: Instant,
        suspects: &mut HashMap<String, Instant>,
    ) {
        match action {
            SyncAction::Running { id, container_id } => {
                let Some(entry) = self.entries.get_mut(&id) else { return };
                let changed = entry.task.state != TaskState::Running;
                if changed {
                    transition(&mut entry.task, TaskState::Running, now);
                }
                entry.task.container_id = Some(container_id);
                if changed {
                    self.after_op(id);
                }
            }
            SyncAction::Exited { id, info } => {
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.task.container_id = Some(info.id.clone());
                }
                self.on_exit(id, &info, now);
                self.after_op(id);
            }
            SyncAction::Leftover { id, container_id } => {
                let Some(entry) = self.entries.get_mut(&id) else { return };
                let changed = !entry.container_present;
                entry.container_present = true;
                entry.task.container_id.get_or_insert(container_id);
                if changed {
                    self.after_op(id);
                }
            }
            SyncAction::Vanished { id } => {
                let Some(entry) = self.entries.get_mut(&id) else { return };
                vanished(&mut entry.task, now);
                entry.container_present = false;
                self.after_op(id);
            }
            SyncAction::Gone { id } => {
                let Some(entry) = self.entries.get_mut(&id) else { return };
                if std::mem::take(&mut entry.container_present) {
                    self.after_op(id);
                }
            }
            SyncAction::Follow { id, container_id } => {
                if let Some(entry) = self.entries.get_mut(&id).filter(|e| e.op.is_none()) {
                    entry.op = Some(OpKind::Inspect);
                    self.pools.send(Op::Inspect { id, container_id });
                }
            }
            SyncAction::Adopt { id, spec, created, observed } => self.adopt(id, *spec, created, *observed, now),
            SyncAction::Suspect { container_id, claims } => {
                let first = self.suspects.get(&container_id).copied().unwrap_or_else(|| {
                    let claims = claims.map(|id| id.to_string()).unwrap_or_default();
                    warn!(
                        "a container that is no task's own; removed after the grace container={} claims_task={claims}",
                        short_id(&container_id),
                        claims = q(&claims)
                    );
                    instant
                });
                suspects.insert(container_id, first);
            }
            SyncAction::Sweep { container_id, claims } => {
                let claimed = claims.map(|id| id.to_string()).unwrap_or_default();
                warn!(
                    "removing a container that is no task's own container={} claims_task={claimed}",
                    short_id(&container_id),
                    claimed = q(&claimed)
                );
                suspects.insert(container_id.clone(), instant);
                if let Some(entry) = claims.and_then(|id| self.entries.get_mut(&id)) {
                    let reason =
                        format!("removed container {} that carried this task's labels", short_id(&container_id));
                    let state = entry.task.state;
                    entry.task.record(Some(state), reason, now);
                    if let Some(id) = claims {
                        self.persist_quietly(&id);
                    }
                }
                self.pools.send(Op::Sweep { container_id });
            }
        }
    }

    /// Takes a labelled container the table does not know back into it (after a restart of the
    /// worker with a memory store, or a start whose answer was lost).
    pub(super) fn adopt(&mut self, id: TaskId, spec: TaskSpec, created: Timestamp, o: Observed, now: Timestamp) {
        let mut task = Task::new(id, spec, created);
        task.node = Some(self.config.name.clone());
        task.container_id = Some(o.summary.id.clone());
        // the budget as the container carries it (its name since its last restart in place, else
        // its labels): a restart of this worker does not start it over
        let base = decide::container_name(&self.config.name, &task.name, &id);
        let budget = budget::of_container(&base, &o.summary.names, &o.summary.labels);
        task.restart_count = budget.restart_count;
        task.recent_restarts = budget.recent_restarts;
        task.last_exit_at = budget.last_exit_at;
        // a service's replica says so in its labels (`ops::labels_for`)
        task.service = o.summary.labels.get(crate::worker::LABEL_SERVICE).cloned();
        task.service_version = o.summary.labels.get(crate::worker::LABEL_SERVICE_VERSION).and_then(|v| v.parse().ok());
        transition(&mut task, TaskState::Scheduled, now);
        // an exited container of a task whose policy may restart it: its exit is handled as
        // any other (this worker never saw it), against the budget of the labels
        let restartable = task.spec.restart().mode != RestartMode::Never;
        match &o.info {
            None => {
                transition(&mut task, TaskState::Running, now);
                info!(
                    "adopted running container task_id={id} container={} restarts={}",
                    short_id(&o.summary.id),
                    task.restart_count
                );
            }
            Some(_) if restartable => transition(&mut task, TaskState::Running, now),
            Some(info) => {
                let podman = self.engine.version.as_deref().is_some_and(is_podman);
                finish_from(&mut task, info, podman, now)
            }
        }
        if let Some(info) = &o.info {
            task.ports = info.ports.clone();
        }
        self.entries.insert(id, Entry::new(task, None, true, self.epoch));
        if let Some(info) = o.info.as_ref().filter(|_| restartable) {
            info!("adopted exited container task_id={id} container={}", short_id(&o.summary.id));
            self.on_exit(id, info, now);
        }
        if o.info.is_none() {
            // a running container: ask for its details (ports, start time)
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.op = Some(OpKind::Inspect);
            }
            self.pools.send(Op::Inspect { id, container_id: o.summary.id });
            self.persist_quietly(&id);
        } else {
            self.after_op(id);
        }
    }
}

/// Records how an adopted container ended: exit 0 is Completed, anything else Failed with the
/// reason. A task being stopped ends Stopped.
fn finish_from(task: &mut Task, info: &ContainerInfo, podman: bool, now: Timestamp) {
    if task.is_terminal() {
        return;
    }
    task.exit_code = Some(info.exit_code);
    let ctx = ExitContext {
        policy: crate::task::RestartPolicy { mode: crate::task::RestartMode::Never, max_restarts: 0 },
        desired: task.desired_state,
        state: task.state,
        recent_restarts: task.recent_restarts,
        last_exit_at: None,
        ran_for: None,
        unhealthy_after: None,
        memory_mb: task.spec.memory_mb.filter(|_| podman),
    };
    let no_backoff = Backoff { first: Default::default(), max: Default::default(), reset_after: Default::default() };
    match decide::on_exit(&ctx, info, no_backoff, now) {
        ExitDecision::Stopped => transition(task, TaskState::Stopped, now),
        ExitDecision::Finish { state, at, error, .. } => {
            if error.is_some() {
                task.error = error;
            }
            transition(task, state, at);
            task.finished_at = Some(at);
        }
        ExitDecision::Nothing | ExitDecision::AlreadyHandled | ExitDecision::Restart { .. } => {}
    }
}

/// The container of a live task is gone (removed behind our back).
pub(super) fn vanished(task: &mut Task, now: Timestamp) {
    if task.is_terminal() {
        return;
    }
    if task.desired_state == DesiredState::Stopped {
        transition(task, TaskState::Stopped, now);
    } else {
        task.error = Some("its container disappeared (removed outside skiff)".into());
        transition(task, TaskState::Failed, now);
    }
}
