//! The engine operations of the worker, run on its three pools of threads (pulls, which may
//! wait minutes on a registry; starts; and everything else, so that stops and syncs never wait
//! behind a start, and a start whose image is present never waits behind a pull), and the
//! results they send back to the control thread.
//!
//! Must not touch the task table: an operation gets what it needs in the `Op` and reports what
//! the engine did; the control thread decides what that means.

use super::budget::{self, Budget};
use super::engine::Engine;
use super::{
    WorkerConfig, LABEL_CREATED, LABEL_LAST_EXIT, LABEL_NAME, LABEL_NODE, LABEL_RECENT_RESTARTS, LABEL_RESTART_COUNT,
    LABEL_SERVICE, LABEL_SERVICE_VERSION, LABEL_SPEC, LABEL_TASK_ID,
};
use crate::control::{error_chain, spawn_thread, survive, SpawnError};
use crate::docker_cli::{ContainerInfo, ContainerSummary, CreateOptions, DockerError};
use crate::logfmt::q;
use crate::task::{Task, TaskId, TaskSpec};
use crossbeam_channel::{unbounded, Sender};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub enum Op {
    Start {
        id: TaskId,
        spec: Box<TaskSpec>,
        container_name: String,
        labels: BTreeMap<String, String>,
        /// Asked of a worker that has not checked its containers yet: one of the task's that a
        /// restart in place renamed (so no name clash finds it) is looked for by label first.
        unsynced: bool,
    },
    /// Starts the task's exited container again (a restart in place), renamed first to carry
    /// the restart budget as the exit left it (`budget`); a new container of the base name,
    /// spec and labels only if it is gone.
    Restart {
        id: TaskId,
        container_id: String,
        spec: Box<TaskSpec>,
        /// The base name, which a new container gets.
        container_name: String,
        /// The name that carries the budget, which the container gets before it starts.
        renamed: String,
        labels: BTreeMap<String, String>,
    },
    /// Stops a container that failed its health checks, then inspects it (answered as Inspected).
    Kill {
        id: TaskId,
        container_id: String,
    },
    Stop {
        id: TaskId,
        container_id: Option<String>,
    },
    Remove {
        id: TaskId,
        container_id: String,
    },
    /// Pulls an image that starts are waiting for (answered as `Pulled`).
    Pull {
        image: String,
    },
    /// Removes a container that no task owns (answered as `Swept`).
    Sweep {
        container_id: String,
    },
    Inspect {
        id: TaskId,
        container_id: String,
    },
    Sync {
        epoch: u64,
    },
    Version,
}

impl Op {
    /// The result to report if running this op panics (a bug): a failure that clears the op.
    fn failed(&self) -> OpResult {
        let e = || DockerError::Protocol("internal error during the engine call".into());
        match self {
            Op::Start { id, .. } | Op::Restart { id, .. } => {
                OpResult::Started { id: *id, result: Err(StartFailure::Unknown(e().to_string())) }
            }
            Op::Kill { id, .. } | Op::Inspect { id, .. } => OpResult::Inspected { id: *id, result: Err(e()) },
            Op::Stop { id, .. } => OpResult::Stopped { id: *id, result: Err(e()) },
            Op::Remove { id, .. } => OpResult::Removed { id: *id, result: Err(e()) },
            Op::Sweep { container_id } => OpResult::Swept { container_id: container_id.clone(), result: Err(e()) },
            Op::Pull { image } => OpResult::Pulled { image: image.clone(), result: Err(e()) },
            Op::Sync { epoch } => OpResult::Synced { epoch: *epoch, result: Err(e()) },
            Op::Version => OpResult::Version { result: Err(e()) },
        }
    }
}

/// Why a start did not produce a running container.
#[derive(Debug)]
pub enum StartFailure {
    /// The engine could not be reached before anything was created: nothing happened, and the
    /// task may be placed elsewhere.
    NotStarted(String),
    /// The engine refused (no such image, bad config, port taken): the task fails.
    Refused(String),
    /// The engine stopped answering once a container may exist: what runs is unknown until the
    /// next sync, and the start is made again (it adopts what the first attempt left).
    Unknown(String),
    /// The image is not on this node: it is to be pulled (on the pull lane), then the start made
    /// again.
    NeedsImage(String),
}

pub enum OpResult {
    Pulled {
        image: String,
        result: Result<(), DockerError>,
    },
    Started {
        id: TaskId,
        result: Result<ContainerInfo, StartFailure>,
    },
    Stopped {
        id: TaskId,
        result: Result<(), DockerError>,
    },
    Removed {
        id: TaskId,
        result: Result<(), DockerError>,
    },
    Swept {
        container_id: String,
        result: Result<(), DockerError>,
    },
    Inspected {
        id: TaskId,
        result: Result<ContainerInfo, DockerError>,
    },
    Synced {
        epoch: u64,
        result: Result<Vec<Observed>, DockerError>,
    },
    /// The engine's version, the API version spoken, and its data root (if /info answered).
    Version {
        result: Result<(String, String, Option<PathBuf>), DockerError>,
    },
}

/// A labelled container as a sync saw it; `info` is filled for containers that are not running.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub summary: ContainerSummary,
    pub info: Option<ContainerInfo>,
}

/// The three sets of engine threads: pulls, which may wait minutes on a registry; starts; and
/// everything else, so that stops and syncs never wait behind a start, and a start whose image
/// is present never waits behind a pull.
pub struct Pools {
    pub pulls: Sender<Op>,
    pub starts: Sender<Op>,
    pub others: Sender<Op>,
}

impl Pools {
    /// Hands an op to its pool. The pools outlive the control loop that sends to them; if one is
    /// gone all the same, the op is logged as lost (the next sync repairs what it would have).
    pub fn send(&self, op: Op) {
        let pool = match op {
            Op::Pull { .. } => &self.pulls,
            Op::Start { .. } | Op::Restart { .. } => &self.starts,
            _ => &self.others,
        };
        if pool.send(op).is_err() {
            log::error!("engine pool gone; an engine operation is lost");
        }
    }
}

/// Starts `threads` threads that run ops from one queue and send their results to `results`.
pub fn engine_pool(
    label: &str,
    threads: usize,
    engine: &Arc<dyn Engine>,
    config: &WorkerConfig,
    results: &Sender<OpResult>,
) -> Result<Sender<Op>, SpawnError> {
    let (tx, rx) = unbounded::<Op>();
    for i in 0..threads.max(1) {
        let (rx, results, engine, cfg) = (rx.clone(), results.clone(), engine.clone(), config.clone());
        let name = format!("{label}-{i}");
        let what = format!("an engine operation on {name}");
        spawn_thread(name, move || {
            for op in rx.iter() {
                // a panic (a bug) is logged by the shared guard and reported as the op's failure,
                // so that the control thread clears the op and the thread goes on
                let mut result = op.failed();
                survive(&what, || result = run_op(&*engine, &cfg, op));
                if results.send(result).is_err() {
                    break;
                }
            }
        })?;
    }
    Ok(tx)
}

/// Runs one op against the engine.
pub fn run_op(engine: &dyn Engine, cfg: &WorkerConfig, op: Op) -> OpResult {
    match op {
        Op::Start { id, spec, container_name, labels, unsynced } => {
            let result = if unsynced {
                find_renamed(engine, &id, &container_name, &labels).and_then(|found| {
                    found.map_or_else(|| start_container(engine, &spec, &container_name, &labels, &id), Ok)
                })
            } else {
                start_container(engine, &spec, &container_name, &labels, &id)
            };
            OpResult::Started { id, result }
        }
        Op::Restart { id, container_id, spec, container_name, renamed, labels } => {
            let result = restart_container(engine, &container_id, &renamed, &id, || {
                start_container(engine, &spec, &container_name, &labels, &id)
            });
            OpResult::Started { id, result }
        }
        Op::Kill { id, container_id } => {
            let result = engine.stop(&container_id, cfg.stop_grace).and_then(|_| engine.inspect(&container_id));
            OpResult::Inspected { id, result }
        }
        Op::Stop { id, container_id } => {
            let result = match container_id {
                Some(cid) => {
                    engine.stop(&cid, cfg.stop_grace).or_else(not_found_is_ok).and_then(|_| engine.remove(&cid))
                }
                None => Ok(()),
            };
            OpResult::Stopped { id, result }
        }
        Op::Remove { id, container_id } => OpResult::Removed { id, result: engine.remove(&container_id) },
        Op::Pull { image } => {
            let result = engine.pull(&image, cfg.pull_timeout);
            OpResult::Pulled { image, result }
        }
        Op::Sweep { container_id } => {
            let result = engine.remove(&container_id);
            OpResult::Swept { container_id, result }
        }
        Op::Inspect { id, container_id } => OpResult::Inspected { id, result: engine.inspect(&container_id) },
        Op::Sync { epoch } => OpResult::Synced { epoch, result: observe(engine, &cfg.name) },
        Op::Version => {
            OpResult::Version { result: engine.version().map(|(version, api)| (version, api, engine.root_dir().ok())) }
        }
    }
}

fn not_found_is_ok(e: DockerError) -> Result<(), DockerError> {
    if e.is_not_found() {
        Ok(())
    } else {
        Err(e)
    }
}

/// A failure before any container exists: an engine out of reach means nothing happened.
fn before_create(e: DockerError) -> StartFailure {
    if e.is_engine_down() {
        StartFailure::NotStarted(error_chain(&e))
    } else {
        StartFailure::Refused(error_chain(&e))
    }
}

/// A failure once a container may exist: an engine out of reach leaves the outcome unknown.
fn after_create(e: DockerError) -> StartFailure {
    if e.is_engine_down() {
        StartFailure::Unknown(error_chain(&e))
    } else {
        StartFailure::Refused(error_chain(&e))
    }
}

/// Before the first sync a worker with a memory store may be asked to start a task whose
/// container it does not know, and a restart in place may have renamed it, so that the base
/// name is free and a create would make a second container. Such a container (this task's and
/// node's labels, a name `budget::in_name` reads) is resolved as a name clash is: adopted if it
/// runs (`Some`), removed if not (`None`: the start creates the task's container afresh).
fn find_renamed(
    engine: &dyn Engine,
    id: &TaskId,
    base: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Option<ContainerInfo>, StartFailure> {
    let node = labels.get(LABEL_NODE).map(String::as_str).unwrap_or_default();
    let list =
        engine.list(&[format!("{LABEL_TASK_ID}={id}"), format!("{LABEL_NODE}={node}")]).map_err(before_create)?;
    let renamed =
        |c: &ContainerSummary| c.names.iter().any(|n| budget::in_name(base, n.trim_start_matches('/')).is_some());
    let Some(found) = list.iter().find(|c| renamed(c)) else { return Ok(None) };
    match engine.inspect(&found.id) {
        Ok(info) if info.running => Ok(Some(info)),
        Ok(info) => engine.remove(&info.id).map(|()| None).map_err(before_create),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(before_create(e)),
    }
}

/// Create, start, inspect. A missing image is not looked for first: the create says so (404),
/// and the start waits for a pull on the pull lane. A container left by an earlier attempt for
/// the same task is adopted if it runs and replaced if not.
fn start_container(
    engine: &dyn Engine,
    spec: &TaskSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
    id: &TaskId,
) -> Result<ContainerInfo, StartFailure> {
    let opts = CreateOptions { name, spec, labels };
    let container_id = match engine.create(&opts) {
        Ok(cid) => cid,
        Err(e) if e.is_not_found() => return Err(StartFailure::NeedsImage(spec.image.clone())),
        // a name in use (409 from Docker, 500 from Podman: `is_conflict` knows both)
        Err(e) if e.is_conflict() => {
            let existing = engine.inspect(name).map_err(after_create)?;
            let ours = existing.labels.get(LABEL_TASK_ID).map(String::as_str) == Some(id.to_string().as_str());
            if ours && existing.running {
                return Ok(existing);
            }
            if !ours {
                return Err(StartFailure::Refused(format!(
                    "a container named {name} exists and does not belong to this task"
                )));
            }
            engine.remove(&existing.id).map_err(after_create)?;
            engine.create(&opts).map_err(after_create)?
        }
        // the request never arrived: nothing was created
        Err(e @ DockerError::Unreachable { .. }) => return Err(before_create(e)),
        Err(e) => return Err(after_create(e)),
    };
    if let Err(e) = engine.start(&container_id) {
        let failure = after_create(e);
        if let StartFailure::Refused(_) = failure {
            // leave nothing behind; if this fails too, the sync removes it later
            if let Err(e) = engine.remove(&container_id) {
                log::debug!(
                    "removal after a refused start failed container={container_id} error={}",
                    q(&error_chain(&e))
                );
            }
        }
        return Err(failure);
    }
    if spec.ports.is_empty() && spec.health_check.is_none() {
        // nothing to read back (no host port the engine chose, no address to check): the
        // container runs as created, and an exit at once is the event stream's to tell (a die
        // while this start is in flight is inspected as soon as its result is in)
        return Ok(ContainerInfo {
            id: container_id,
            name: name.to_string(),
            image: spec.image.clone(),
            status: "running".into(),
            running: true,
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: None, // the control thread's clock says when
            finished_at: None,
            labels: labels.clone(),
            ports: Vec::new(),
        });
    }
    engine.inspect(&container_id).map_err(|e| StartFailure::Unknown(error_chain(&e)))
}

/// A restart in place: the same container again, so its output and its files are kept across
/// runs. It is renamed first to carry the budget (`budget`), so that whatever becomes of this
/// worker the engine holds the count: a worker that dies before the rename counts the exit again
/// (once: the old name says it was not counted), one that dies after it finds the exit already
/// counted. A name already right (a restart made again) is left as it is. A rename the engine
/// refuses (a name taken by hand) does not keep the task from running again: it is logged, and
/// the budget is then what the name and labels said before. `recreate` makes a new container
/// if this one is gone.
fn restart_container(
    engine: &dyn Engine,
    container_id: &str,
    renamed: &str,
    id: &TaskId,
    recreate: impl FnOnce() -> Result<ContainerInfo, StartFailure>,
) -> Result<ContainerInfo, StartFailure> {
    let unknown = |e: DockerError| StartFailure::Unknown(error_chain(&e));
    match engine.inspect(container_id) {
        Err(e) if e.is_not_found() => return recreate(),
        Err(e) => return Err(after_create(e)),
        Ok(info) if info.name == renamed => {}
        Ok(_) => match engine.rename(container_id, renamed) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return recreate(),
            Err(e) if e.is_engine_down() => return Err(unknown(e)),
            Err(e) => log::warn!(
                "restart budget not kept in the container's name task_id={id} container={} name={} error={}",
                super::short_id(container_id),
                q(renamed),
                q(&error_chain(&e))
            ),
        },
    }
    match engine.start(container_id) {
        Err(e) if e.is_not_found() => recreate(),
        other => other.map_err(after_create).and_then(|_| engine.inspect(container_id).map_err(unknown)),
    }
}

/// Every container labelled with this node, with inspect details for those not running.
fn observe(engine: &dyn Engine, node: &str) -> Result<Vec<Observed>, DockerError> {
    let list = engine.list(&[format!("{LABEL_NODE}={node}")])?;
    let mut seen = Vec::with_capacity(list.len());
    for summary in list {
        let info = if summary.state == "running" {
            None
        } else {
            match engine.inspect(&summary.id) {
                Ok(i) => Some(i),
                Err(e) if e.is_not_found() => continue, // removed since the list
                Err(e) => return Err(e),
            }
        };
        seen.push(Observed { summary, info });
    }
    Ok(seen)
}

/// The op that starts a task's container (also used to resume a start cut off by a restart).
pub fn start_op(task: &Task, node: &str) -> Op {
    start_op_as(task, node, false)
}

/// The op of a start asked of a worker that has not checked its containers yet (`find_renamed`).
pub fn start_op_unsynced(task: &Task, node: &str) -> Op {
    start_op_as(task, node, true)
}

fn start_op_as(task: &Task, node: &str, unsynced: bool) -> Op {
    Op::Start {
        id: task.id,
        spec: Box::new(task.spec.clone()),
        container_name: container_name(task, node),
        labels: labels_for(task, node),
        unsynced,
    }
}

/// The op that restarts a task's exited container in place, renamed to carry the budget as the
/// exit left it.
pub fn restart_op(task: &Task, node: &str, container_id: String) -> Op {
    let base = container_name(task, node);
    Op::Restart {
        id: task.id,
        container_id,
        spec: Box::new(task.spec.clone()),
        renamed: budget::renamed(&base, &Budget::of(task)),
        container_name: base,
        labels: labels_for(task, node),
    }
}

fn container_name(task: &Task, node: &str) -> String {
    super::decide::container_name(node, &task.name, &task.id)
}

/// The labels every container of ours carries; with them a worker can rebuild its table.
pub fn labels_for(task: &Task, node: &str) -> BTreeMap<String, String> {
    // a spec always serialises (plain data); an empty label would only make adoption refuse it
    let spec = serde_json::to_string(&task.spec).unwrap_or_default();
    let mut labels = BTreeMap::from([
        (LABEL_TASK_ID.to_string(), task.id.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_NAME.to_string(), task.name.clone()),
        (LABEL_SPEC.to_string(), spec),
        (LABEL_CREATED.to_string(), task.created_at.to_string()),
        (LABEL_RESTART_COUNT.to_string(), task.restart_count.to_string()),
        (LABEL_RECENT_RESTARTS.to_string(), task.recent_restarts.to_string()),
    ]);
    if let Some(at) = task.last_exit_at {
        labels.insert(LABEL_LAST_EXIT.to_string(), at.to_string());
    }
    labels.extend(task.service.iter().map(|s| (LABEL_SERVICE.to_string(), s.clone())));
    labels.extend(task.service_version.map(|v| (LABEL_SERVICE_VERSION.to_string(), v.to_string())));
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::fake::{FakeEngine, Fault};
    use std::time::Duration;

    #[test]
    fn an_op_that_panics_is_reported_failed_and_its_thread_goes_on() {
        let fake = Arc::new(FakeEngine::with_images(&[]));
        fake.fail_next("remove", Fault::Panic);
        let engine: Arc<dyn Engine> = fake.clone();
        let (results_tx, results) = unbounded();
        let pool = engine_pool("test", 1, &engine, &WorkerConfig::new("w1"), &results_tx).expect("pool");
        let id = TaskId::new_v4();
        let wait = Duration::from_secs(10);
        pool.send(Op::Remove { id, container_id: "c".into() }).expect("the pool takes ops");
        match results.recv_timeout(wait).expect("an answer despite the panic") {
            OpResult::Removed { id: got, result: Err(DockerError::Protocol(why)) } => {
                assert_eq!(got, id);
                assert!(why.contains("internal error"), "{why}");
            }
            _ => panic!("not the op's failure"),
        }
        // the one thread of the pool is still there for the next op
        pool.send(Op::Remove { id, container_id: "c".into() }).expect("the pool takes ops");
        let next = results.recv_timeout(wait).expect("the thread goes on");
        assert!(matches!(next, OpResult::Removed { result: Ok(()), .. }), "the next op runs as any other");
        assert_eq!(fake.count("remove"), 2);
    }
}
