//! The runs of a task's container, as the control thread follows them: a start's outcome, the
//! beginning of a run (its health checker), an exit and what `decide::on_exit` makes of it, the
//! restarts in place when they are due, health verdicts and the engine's events.
//!
//! Must not call the engine: it hands ops to the pools like the rest of `State`.

use super::{store_error_copy, transition, OpKind, State};
use crate::control::{answer, error_chain, spawn_thread};
use crate::docker_cli::{is_podman, ContainerInfo, DockerError};
use crate::logfmt::q;
use crate::task::{DesiredState, TaskId, TaskState};
use crate::time::Timestamp;
use crate::worker::decide::{self, Backoff, ExitContext, ExitDecision};
use crate::worker::ops::{restart_op, start_op, Op, StartFailure};
use crate::worker::watch::{health_loop, EngineEvent, HealthResult};
use crate::worker::{short_id, WorkerError};
use crossbeam_channel::bounded;
use log::{debug, error, info, warn};
use std::time::Instant;

/// How a task's error reads while its start waits for its image.
const PULLING: &str = "waiting for the pull of image";

impl State {
    pub(super) fn on_started(&mut self, id: TaskId, result: Result<ContainerInfo, StartFailure>, now: Timestamp) {
        let (epoch, retry_at) = (self.epoch, self.instant() + self.config.sync_interval);
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.op = None;
        entry.changed_epoch = epoch;
        // a restart in place (the task was Running) never gives the task up for placement elsewhere
        let restarting = entry.task.state == TaskState::Running;
        let failure = match result {
            Ok(info) if info.running => {
                entry.task.container_id = Some(info.id.clone());
                entry.task.ports = info.ports.clone();
                transition(&mut entry.task, TaskState::Running, now);
                entry.task.started_at = info.started_at.or(Some(now));
                entry.task.error = None;
                info!("task running task_id={id} container={}", short_id(&info.id));
                self.begin_run(id);
                None
            }
            Ok(info) => {
                entry.task.container_id = Some(info.id.clone());
                entry.task.ports.clear();
                self.on_exit(id, &info, now);
                None
            }
            Err(StartFailure::Refused(why)) => {
                warn!("task failed to start task_id={id} error={why}", why = q(&why));
                entry.task.error = Some(if restarting { format!("restart failed: {why}") } else { why });
                transition(&mut entry.task, TaskState::Failed, now);
                entry.container_present = restarting;
                None
            }
            Err(StartFailure::Unknown(why) | StartFailure::NotStarted(why)) if restarting => {
                // the engine is away: try the restart again later
                warn!("task restart not done task_id={id} error={why}", why = q(&why));
                entry.task.error = Some(format!("restart not done yet: {why}"));
                entry.restart_at = Some(retry_at);
                None
            }
            Err(StartFailure::Unknown(why)) => {
                // Keep the task: the next tick makes the start again, which adopts a container
                // the first attempt left; the caller hears that the outcome is not known yet.
                warn!("task start outcome unknown task_id={id} error={why}", why = q(&why));
                entry.backoff = true;
                Some(WorkerError::OutcomeUnknown(why))
            }
            Err(StartFailure::NotStarted(why)) => {
                self.not_started(id, why);
                return;
            }
            Err(StartFailure::NeedsImage(image)) => {
                self.wait_for_image(id, image);
                return;
            }
        };
        self.answer_start(id, failure);
        self.after_op(id);
    }

    /// Answers those waiting for the task's start: with the record once it is committed, or
    /// with the failure.
    fn answer_start(&mut self, id: TaskId, failure: Option<WorkerError>) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        let task = entry.task.clone();
        let waiters = std::mem::take(&mut entry.start_waiters);
        // committed before it is acknowledged
        let committed = self.persist(&id);
        for (w, created) in waiters {
            let reply = match (&failure, &committed) {
                (Some(WorkerError::OutcomeUnknown(why)), _) => Err(WorkerError::OutcomeUnknown(why.clone())),
                (Some(_), _) => Err(WorkerError::TimedOut),
                (None, Err(e)) => Err(WorkerError::Store(store_error_copy(e))),
                (None, Ok(())) => Ok((task.clone(), created)),
            };
            answer(&w, reply);
        }
    }

    /// A start that created nothing because the engine is out of reach: the task is forgotten,
    /// so that the manager can place it elsewhere.
    pub(super) fn not_started(&mut self, id: TaskId, why: String) {
        warn!("task not started, engine unreachable task_id={id} error={why}", why = q(&why));
        let Some(entry) = self.forget(&id) else { return };
        for (w, _) in entry.start_waiters {
            answer(&w, Err(WorkerError::EngineUnreachable(why.clone())));
        }
        for w in entry.stop_waiters {
            answer(&w, Err(WorkerError::EngineUnreachable(why.clone())));
        }
        if let Err(e) = self.store.delete_task(&id) {
            error!("store delete failed task_id={id} error={}", q(&error_chain(&e)));
        }
        self.engine.reachable = false;
        self.engine.error = Some(why);
    }

    /// A new run of a task's container has begun: its health checks start over.
    pub(super) fn begin_run(&mut self, id: TaskId) {
        let started = self.instant();
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.run += 1;
        entry.run_started = Some(started);
        entry.health_failures = 0;
        entry.unhealthy = false;
        entry.checker = None;
        entry.task.healthy = None;
        let Some(check) = entry.task.spec.health_check.clone() else { return };
        // the check goes to the published host port, from this host
        let port = entry
            .task
            .ports
            .iter()
            .find(|p| p.container == check.port && p.protocol == crate::task::Protocol::Tcp)
            .map(|p| p.host);
        let Some(port) = port else {
            warn!("no published port for the health check task_id={id} port={}", check.port);
            return;
        };
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (tx, run) = (self.health.clone(), entry.run);
        match spawn_thread(format!("health-{}", id.short()), move || health_loop(id, run, &check, port, &stop_rx, &tx))
        {
            Ok(_) => entry.checker = Some(stop_tx),
            Err(e) => error!("cannot start a health checker task_id={id} error={}", q(&error_chain(&e))),
        }
    }

    /// A container of a live task stopped by itself (or for failing its health checks): what
    /// `decide::on_exit` says is applied.
    pub(super) fn on_exit(&mut self, id: TaskId, info: &ContainerInfo, now: Timestamp) {
        let instant = self.instant();
        let backoff = Backoff {
            first: self.config.restart_backoff,
            max: self.config.restart_backoff_max,
            reset_after: self.config.restart_reset_after,
        };
        // Podman 4 never marks an out-of-memory kill: what the reason may infer
        let podman = self.engine.version.as_deref().is_some_and(is_podman);
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.exit_seen = false;
        entry.checker = None;
        let unhealthy = std::mem::take(&mut entry.unhealthy);
        let ctx = ExitContext {
            policy: entry.task.spec.restart(),
            desired: entry.task.desired_state,
            state: entry.task.state,
            recent_restarts: entry.task.recent_restarts,
            last_exit_at: entry.task.last_exit_at,
            // how long the run lasted: the longer of this worker's view (since it saw the run
            // start, or adopted it) and the engine's (its start and finish times), so that a run
            // begun before this worker did, adopted or ended while no worker ran, counts whole
            ran_for: {
                let ours = entry.run_started.map(|t| instant.saturating_duration_since(t));
                let engine = info
                    .started_at
                    .zip(info.finished_at)
                    .map(|(started, finished)| std::time::Duration::from_millis(finished.since(started)));
                ours.max(engine)
            },
            unhealthy_after: unhealthy.then_some(entry.health_failures),
            memory_mb: entry.task.spec.memory_mb.filter(|_| podman),
        };
        let decision = decide::on_exit(&ctx, info, backoff, now);
        let task = &mut entry.task;
        if !matches!(decision, ExitDecision::Nothing | ExitDecision::AlreadyHandled) {
            task.last_exit_at = info.finished_at;
            task.exit_code = Some(info.exit_code);
            task.ports.clear();
            entry.run_started = None;
        }
        match decision {
            ExitDecision::Nothing => {}
            ExitDecision::AlreadyHandled => {
                if entry.restart_at.is_none() {
                    entry.restart_at = Some(instant + backoff.first);
                }
            }
            ExitDecision::Stopped => transition(task, TaskState::Stopped, now),
            ExitDecision::Restart { delay, recent_restarts, reason } => {
                task.recent_restarts = recent_restarts;
                task.restart_count += 1;
                task.error = Some(reason);
                task.healthy = None;
                entry.restart_at = Some(instant + delay);
                info!("task restarting task_id={id} in_ms={} restart={}", delay.as_millis(), task.restart_count);
            }
            ExitDecision::Finish { state, at, error, recent_restarts } => {
                task.recent_restarts = recent_restarts;
                if error.is_some() {
                    task.error = error;
                }
                transition(task, state, at);
                task.finished_at = Some(at);
                info!("task ended task_id={id} state={}", task.state);
            }
        }
    }

    /// When the next restart in place is due, if any.
    pub fn next_restart(&self) -> Option<Instant> {
        self.entries.values().filter(|e| e.op.is_none()).filter_map(|e| e.restart_at).min()
    }

    /// Starts the containers whose restart is due.
    pub fn on_restart_due(&mut self) {
        let now = self.instant();
        let due: Vec<TaskId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.op.is_none() && e.restart_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            entry.restart_at = None;
            if entry.task.desired_state == DesiredState::Stopped || entry.task.is_terminal() {
                continue;
            }
            let Some(container_id) = entry.task.container_id.clone() else { continue };
            entry.op = Some(OpKind::Start);
            info!("restarting task task_id={id} restart={}", entry.task.restart_count);
            let op = restart_op(&entry.task, &self.config.name, container_id);
            self.pools.send(op);
        }
    }

    /// A health checker's verdict: after `failures` failures in a row the container is stopped
    /// and its exit handled like any other (restart or failure).
    pub fn on_health(&mut self, h: HealthResult) {
        let Some(entry) = self.entries.get_mut(&h.id) else { return };
        if h.run != entry.run || entry.task.state != TaskState::Running || entry.unhealthy {
            return; // a verdict on an earlier run, or the container is already being stopped
        }
        let threshold = entry.task.spec.health_check.as_ref().map_or(u32::MAX, |c| c.failures);
        if h.ok {
            entry.health_failures = 0;
            entry.task.healthy = Some(true);
        } else {
            entry.health_failures += 1;
            entry.task.healthy = Some(false);
            debug!("health check failed task_id={} failures={} detail={}", h.id, entry.health_failures, q(&h.detail));
        }
        if entry.health_failures >= threshold && entry.op.is_none() {
            if let Some(container_id) = entry.task.container_id.clone() {
                warn!("task unhealthy task_id={} failures={} detail={}", h.id, entry.health_failures, q(&h.detail));
                entry.unhealthy = true;
                entry.checker = None;
                entry.op = Some(OpKind::Inspect);
                self.pools.send(Op::Kill { id: h.id, container_id });
            }
        }
        self.persist_quietly(&h.id);
    }

    pub fn on_event(&mut self, ev: EngineEvent) {
        match ev {
            EngineEvent::Connected => {
                self.note_engine(None);
                self.request_sync();
            }
            EngineEvent::Died { container_id, task_id } => {
                // by the task's label: a start in flight has not recorded the container id yet
                let Some(id) = task_id.or_else(|| {
                    self.entries
                        .iter()
                        .find(|(_, e)| e.task.container_id.as_deref() == Some(container_id.as_str()))
                        .map(|(id, _)| *id)
                }) else {
                    return;
                };
                // only the container recorded for the task speaks for it: a copy with its labels,
                // made by hand, dies without changing the task
                let recorded = self.entries.get(&id).and_then(|e| e.task.container_id.as_deref());
                if recorded.is_some_and(|r| r != container_id) {
                    debug!(
                        "exit of a container that is not the task's own task_id={id} container={}",
                        short_id(&container_id)
                    );
                    return;
                }
                let Some(entry) = self.entries.get_mut(&id) else { return };
                if entry.restart_at.is_some() {
                    // the exit is known and a restart is due
                } else if entry.op.is_some() {
                    entry.exit_seen = true;
                } else if let (TaskState::Running, Some(recorded)) = (entry.task.state, entry.task.container_id.clone())
                {
                    entry.op = Some(OpKind::Inspect);
                    self.pools.send(Op::Inspect { id, container_id: recorded });
                }
            }
        }
    }

    /// A start found its image missing: it waits for the image on the pull lane, where one pull
    /// serves every task that needs the same image.
    fn wait_for_image(&mut self, id: TaskId, image: String) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        if std::mem::take(&mut entry.pulled) {
            // pulled a moment ago and missing again: do not go round in circles
            let why = format!("image {image} is missing on node {} right after a pull", self.config.name);
            self.start_refused(id, why, self.now());
            return;
        }
        entry.op = Some(OpKind::Pull);
        entry.task.error = Some(format!("{PULLING} {image}"));
        // Those waiting for the start hear now that it waits for its image: a pull may take
        // minutes, and their threads (the manager's dispatchers among them) have other starts
        // to make. The task reads Scheduled until its container runs.
        self.answer_start(id, None);
        let waiting = self.pulls.entry(image.clone()).or_default();
        waiting.push(id);
        if waiting.len() == 1 {
            info!("pulling image image={image} task_id={id}");
            self.pools.send(Op::Pull { image });
        } else {
            debug!("start waits for a pull under way image={image} task_id={id}");
        }
    }

    /// The pull of an image ended: the starts waiting for it are made again, or fail with the
    /// registry's words (or, with the engine out of reach, are given back unstarted).
    pub(super) fn on_pulled(&mut self, image: String, result: Result<(), DockerError>, now: Timestamp) {
        self.note_engine(result.as_ref().err());
        let waiting = self.pulls.remove(&image).unwrap_or_default();
        for id in waiting {
            let Some(entry) = self.entries.get_mut(&id).filter(|e| e.op == Some(OpKind::Pull)) else { continue };
            entry.op = None;
            match &result {
                Ok(()) => {
                    entry.pulled = true;
                    entry.task.error = None;
                    entry.op = Some(OpKind::Start);
                    let op = start_op(&entry.task, &self.config.name);
                    self.pools.send(op);
                }
                Err(e) if e.is_engine_down() && entry.task.state == TaskState::Scheduled => {
                    self.not_started(id, error_chain(e));
                }
                Err(e) => {
                    let message = match e {
                        DockerError::Api { message, .. } => message.clone(),
                        other => error_chain(other),
                    };
                    let why =
                        format!("image {image} is not on node {} and could not be pulled: {message}", self.config.name);
                    self.start_refused(id, why, now);
                }
            }
        }
    }

    /// A start the engine refused (or whose image could not be had): the task fails, and those
    /// waiting for its start hear so.
    fn start_refused(&mut self, id: TaskId, why: String, now: Timestamp) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        warn!("task failed to start task_id={id} error={why}", why = q(&why));
        let restarting = entry.task.state == TaskState::Running;
        entry.op = None;
        entry.task.error = Some(if restarting { format!("restart failed: {why}") } else { why });
        transition(&mut entry.task, TaskState::Failed, now);
        entry.container_present = restarting && entry.task.container_id.is_some();
        self.answer_start(id, None);
        self.after_op(id);
    }

    /// A stop of a task whose start waits for its image: no container exists, so the task is
    /// Stopped at once and drops out of the pull's waiters.
    pub(super) fn stop_before_create(&mut self, id: TaskId) {
        let now = self.now();
        for waiting in self.pulls.values_mut() {
            waiting.retain(|w| *w != id);
        }
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.op = None;
        entry.container_present = false;
        transition(&mut entry.task, TaskState::Stopped, now);
        info!("task stopped before its image arrived task_id={id}");
        self.answer_start(id, None);
        let Some(entry) = self.entries.get_mut(&id) else { return };
        let (task, waiters) = (entry.task.clone(), std::mem::take(&mut entry.stop_waiters));
        let committed = self.persist(&id);
        for w in waiters {
            let reply = match &committed {
                Ok(()) => Ok(task.clone()),
                Err(e) => Err(WorkerError::Store(store_error_copy(e))),
            };
            answer(&w, reply);
        }
    }
}
