//! How the rest of the process talks to the worker: the commands the control thread takes, the
//! cheap-to-clone `WorkerHandle` the HTTP layer calls, and `spawn`, which starts the control
//! thread, the engine pools and the watchers and wires them together.
//!
//! Must not hold task state: every answer comes from the control thread.

use super::engine::Engine;
use super::ops::{engine_pool, OpResult, Pools};
use super::state::State;
use super::watch::{self, follow_events, sample_node, EngineEvent, HealthResult, Sample};
use super::{WorkerConfig, WorkerError};
use crate::api::{ChangesCursor, StartTask, TaskChanges, WorkerHealth};
use crate::control::{ask, spawn_thread, survive, AskError, ControlThread};
use crate::docker_cli::{DockerError, LogOptions, LogStream};
use crate::stats::NodeStats;
use crate::store::Store;
use crate::task::{Task, TaskId};
use crossbeam_channel::{select, tick, unbounded, Sender};
use log::info;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub type Reply<T> = Sender<Result<T, WorkerError>>;

pub enum Command {
    Start { req: Box<StartTask>, reply: Reply<(Task, bool)> },
    Stop { id: TaskId, reply: Reply<Task> },
    Get { id: TaskId, reply: Reply<Task> },
    List { reply: Reply<Vec<Task>> },
    Changes { since: Option<ChangesCursor>, limit: usize, reply: Reply<TaskChanges> },
    Health { reply: Reply<WorkerHealth> },
    Stats { reply: Reply<NodeStats> },
    Shutdown,
}

/// How the HTTP layer talks to the control thread. Cheap to clone.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: Sender<Command>,
    /// For streams only (logs): read by the thread serving the request, so that a long read
    /// never holds the control thread or an engine pool.
    engine: Arc<dyn Engine>,
    start_wait: Duration,
    stop_wait: Duration,
}

const QUICK_WAIT: Duration = Duration::from_secs(5);

impl WorkerHandle {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command, wait: Duration) -> Result<T, WorkerError> {
        match ask(&self.tx, make, wait) {
            Ok(answer) => answer,
            Err(AskError::TimedOut) => Err(WorkerError::TimedOut),
            Err(AskError::Gone) => Err(WorkerError::ShuttingDown),
        }
    }

    /// Starts a task (idempotent per id) and answers once its container runs or has failed;
    /// the flag says whether this call created it.
    pub fn start(&self, req: StartTask) -> Result<(Task, bool), WorkerError> {
        self.ask(|reply| Command::Start { req: Box::new(req), reply }, self.start_wait)
    }

    /// Stops a task and removes its container, answering when that is done.
    pub fn stop(&self, id: TaskId) -> Result<Task, WorkerError> {
        self.ask(|reply| Command::Stop { id, reply }, self.stop_wait)
    }

    pub fn get(&self, id: TaskId) -> Result<Task, WorkerError> {
        self.ask(|reply| Command::Get { id, reply }, QUICK_WAIT)
    }

    pub fn list(&self) -> Result<Vec<Task>, WorkerError> {
        self.ask(|reply| Command::List { reply }, QUICK_WAIT)
    }

    /// The records changed since `since` (all of them without it, or from another run), at
    /// most `limit` of them, oldest change first.
    pub fn changes(&self, since: Option<ChangesCursor>, limit: usize) -> Result<TaskChanges, WorkerError> {
        self.ask(|reply| Command::Changes { since, limit, reply }, QUICK_WAIT)
    }

    pub fn health(&self) -> Result<WorkerHealth, WorkerError> {
        self.ask(|reply| Command::Health { reply }, QUICK_WAIT)
    }

    /// A task's output, as its container's log: the table says which container, the engine is
    /// then read on the caller's thread.
    pub fn logs(&self, id: TaskId, opts: &LogOptions) -> Result<LogStream, WorkerError> {
        let task = self.get(id)?;
        let Some(container_id) = task.container_id else {
            return Err(WorkerError::NoOutput { id, why: "it has no container yet" });
        };
        self.engine.logs(&container_id, opts).map_err(|e| match e {
            e if e.is_not_found() => WorkerError::NoOutput { id, why: "its container was removed" },
            e if e.is_engine_down() => WorkerError::EngineUnreachable(crate::control::error_chain(&e)),
            e => WorkerError::Logs(e),
        })
    }

    /// The node's last statistics sample (cheap: no measurement happens in the call).
    pub fn stats(&self) -> Result<NodeStats, WorkerError> {
        self.ask(|reply| Command::Stats { reply }, QUICK_WAIT)
    }
}

/// A running worker: its handle and its control thread (stopped when this is dropped).
pub struct Worker {
    handle: WorkerHandle,
    control: ControlThread<Command>,
}

impl Worker {
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// Stops the control loop (containers keep running) and waits for it.
    pub fn shutdown(mut self) {
        self.control.stop();
    }
}

/// Starts the worker's threads. Tasks in `store` are loaded, then checked against the engine.
pub fn spawn(config: WorkerConfig, engine: Arc<dyn Engine>, store: Box<dyn Store>) -> Result<Worker, WorkerError> {
    let (cmd_tx, cmd_rx) = unbounded();
    let (results_tx, results_rx) = unbounded::<OpResult>();
    // Starts may take minutes (an image pull): they have their own threads, so that stops,
    // removals, inspects and syncs never wait behind them.
    let pulls = engine_pool("engine-pull", config.pull_threads, &engine, &config, &results_tx)?;
    let starts = engine_pool("engine-start", config.engine_threads, &engine, &config, &results_tx)?;
    let others = engine_pool("engine", config.engine_threads, &engine, &config, &results_tx)?;
    let (samples_tx, samples_rx) = unbounded::<Sample>();
    let (disk_tx, disk_rx) = unbounded::<PathBuf>();
    let (interval, clock) = (config.stats_interval, config.clock.clone());
    spawn_thread("stats", move || sample_node(interval, &*clock, &disk_rx, &samples_tx))?;
    let (events_tx, events_rx) = unbounded::<EngineEvent>();
    let (ev_engine, ev_name) = (engine.clone(), config.name.clone());
    spawn_thread("engine-events", move || follow_events(&*ev_engine, &ev_name, &events_tx))?;

    let (pings_tx, pings_rx) = unbounded::<Result<(), DockerError>>();
    let (ping_engine, every, within) = (engine.clone(), config.ping_interval, config.ping_deadline);
    spawn_thread("engine-ping", move || watch::ping_engine(&*ping_engine, every, within, &pings_tx))?;

    let (health_tx, health_rx) = unbounded::<HealthResult>();
    let mut state = State::new(config.clone(), store, Pools { pulls, starts, others }, disk_tx, health_tx)?;
    let ticker = tick(config.sync_interval);
    let join = spawn_thread("worker-control", move || {
        state.begin();
        loop {
            // restarts in place are due at their own times, not at the next tick
            let timer = state.next_restart().map_or_else(crossbeam_channel::never, crossbeam_channel::at);
            select! {
                recv(cmd_rx) -> cmd => match cmd {
                    Ok(Command::Shutdown) | Err(_) => break,
                    Ok(cmd) => survive("a command", || state.on_command(cmd)),
                },
                recv(timer) -> _ => survive("a restart", || state.on_restart_due()),
                recv(health_rx) -> h => if let Ok(h) = h { survive("a health check", || state.on_health(h)) },
                recv(results_rx) -> res => if let Ok(res) = res { survive("an engine result", || state.on_result(res)) },
                recv(events_rx) -> ev => if let Ok(ev) = ev { survive("an engine event", || state.on_event(ev)) },
                recv(samples_rx) -> s => if let Ok(s) = s { survive("a stats sample", || state.on_sample(s)) },
                recv(pings_rx) -> p => if let Ok(p) = p { survive("an engine ping", || state.on_ping(p)) },
                recv(ticker) -> _ => survive("a tick", || state.on_tick()),
            }
        }
        info!("worker control loop stopped node={}", state.name());
    })?;
    let stop_wait = config.stop_grace + Duration::from_secs(60);
    let handle = WorkerHandle { tx: cmd_tx.clone(), engine, start_wait: config.start_wait, stop_wait };
    Ok(Worker { handle, control: ControlThread::new(cmd_tx, Command::Shutdown, join) })
}

/// Lets the unit tests build a `State` on pools they read themselves.
#[cfg(test)]
pub fn test_pools() -> (Pools, [crossbeam_channel::Receiver<super::ops::Op>; 3]) {
    let (pulls, pulls_rx) = unbounded();
    let (starts, starts_rx) = unbounded();
    let (others, others_rx) = unbounded();
    (Pools { pulls, starts, others }, [pulls_rx, starts_rx, others_rx])
}
