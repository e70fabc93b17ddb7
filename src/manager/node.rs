//! One worker as the manager sees it: the dispatcher threads that call it (starts, stops and
//! polls, each kind on its own queue) and report back as `Observation`s, and what the manager
//! knows of it (name, last contact, last report, strays being stopped, orphans seen).
//!
//! The threads here only call the `WorkerLink` and send what happened; they must not touch the
//! task table or decide anything (that is the control thread's, in `state.rs` and `apply.rs`).
//! Whether a node is up is computed from instants the caller reads from its clock.

use super::{LinkError, WorkerLink};
use crate::api::{ChangesCursor, NodeStatus, StartTask, TaskChanges, WorkerHealth};
use crate::control::{spawn_thread, SpawnError};
use crate::logfmt::q;
use crate::reconcile::Report;
use crate::stats::NodeStats;
use crate::task::{Task, TaskId};
use crate::time::Timestamp;
use crossbeam_channel::{bounded, unbounded, Sender};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the dispatcher threads report back.
pub(super) enum Observation {
    Started {
        node: usize,
        id: TaskId,
        result: Result<Task, LinkError>,
    },
    Stopped {
        node: usize,
        id: TaskId,
        result: Result<Task, LinkError>,
    },
    StrayStopped {
        node: usize,
        id: TaskId,
        result: Result<Task, LinkError>,
    },
    /// `generation` tells the poll threads of a node taken over from its successor's.
    Polled {
        node: usize,
        generation: u64,
        epoch: u64,
        result: Result<Poll, LinkError>,
    },
    /// From the ingress thread (`publish.rs`), not a node.
    Ingress(super::publish::Report),
}

/// What one poll of a worker brings back: its health, the pages of its task records changed
/// since the cursor the poll was asked with (in order), and its statistics, which are optional
/// (a worker without them still runs its tasks).
pub(super) struct Poll {
    pub(super) health: WorkerHealth,
    pub(super) changes: Vec<TaskChanges>,
    pub(super) stats: Option<NodeStats>,
}

impl Poll {
    /// The last page said there was no more: the picture is as of this poll.
    pub(super) fn caught_up(&self) -> bool {
        self.changes.last().is_none_or(|c| !c.more)
    }

    /// The worker had checked its containers both when asked for its health and when it
    /// answered the last page (a worker restarted in between has not).
    pub(super) fn synced(&self) -> bool {
        self.health.synced && self.changes.last().is_none_or(|c| c.synced)
    }
}

/// Pages of changes one poll reads at most (each of up to 256 records), and the time it reads
/// them for: a worker with more changes than that is caught up over the next polls, and a poll
/// stays well within the node timeout, since only its end counts as hearing from the node.
const POLL_PAGES: usize = 64;
const POLL_BUDGET: Duration = Duration::from_secs(2);

/// Numbers each `Node` made, so that a poll's answer is applied only to the node that asked.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Applies pages of a worker's changes to the manager's picture of its tasks: a full page
/// starts from nothing, then forgotten tasks go and changed records replace what was there.
/// Returns the cursor to ask from next.
pub(super) fn apply_changes(tasks: &mut HashMap<TaskId, Task>, pages: Vec<TaskChanges>) -> Option<ChangesCursor> {
    let mut cursor = None;
    for page in pages {
        cursor = Some(page.cursor());
        if page.full {
            tasks.clear();
        }
        for id in &page.removed {
            tasks.remove(id);
        }
        tasks.extend(page.tasks.into_iter().map(|t| (t.id, t)));
    }
    cursor
}

/// A call the control thread wants made.
pub(super) enum Job {
    Start(Box<StartTask>),
    Stop(TaskId),
    StopStray(TaskId),
}

/// A call to a worker, with a panic (a bug) turned into an error rather than a lost answer.
fn guarded<T>(call: impl FnOnce() -> Result<T, LinkError>) -> Result<T, LinkError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|_| Err(LinkError::BadAnswer("internal error while calling the worker".into())))
}

/// Threads that take jobs from `rx` and report what happened.
fn dispatchers(
    label: &str,
    count: usize,
    rx: &crossbeam_channel::Receiver<Job>,
    link: &Arc<dyn WorkerLink>,
    obs: &Sender<Observation>,
    index: usize,
) -> Result<(), SpawnError> {
    for t in 0..count.max(1) {
        let (rx, link, obs) = (rx.clone(), link.clone(), obs.clone());
        spawn_thread(format!("{label}-{index}-{t}"), move || {
            for job in rx.iter() {
                let observation = match job {
                    Job::Start(req) => {
                        Observation::Started { node: index, id: req.id, result: guarded(|| link.start(&req)) }
                    }
                    Job::Stop(id) => Observation::Stopped { node: index, id, result: guarded(|| link.stop(id)) },
                    Job::StopStray(id) => {
                        Observation::StrayStopped { node: index, id, result: guarded(|| link.stop(id)) }
                    }
                };
                if obs.send(observation).is_err() {
                    return;
                }
            }
        })?;
    }
    Ok(())
}

/// When a node was heard from, on the control loop's monotonic clock: a step of the wall clock
/// changes nothing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Contact {
    /// When it last answered.
    pub(super) heard: Option<Instant>,
    /// When the manager started following it.
    pub(super) since: Instant,
    /// A poll of it has failed since the manager started.
    pub(super) ever_failed: bool,
}

impl Contact {
    /// Up while heard from within the timeout; down once silent for longer (counted from the
    /// manager's start for a node never heard from, so that a restart with a worker briefly away
    /// does not move its tasks at once).
    pub(super) fn status(&self, timeout: Duration, now: Instant) -> NodeStatus {
        match self.heard {
            Some(t) if now.saturating_duration_since(t) <= timeout => NodeStatus::Up,
            Some(_) => NodeStatus::Down,
            None if self.ever_failed && now.saturating_duration_since(self.since) > timeout => NodeStatus::Down,
            None => NodeStatus::Unknown,
        }
    }

    /// How long the node has been silent.
    pub(super) fn silent(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.heard.unwrap_or(self.since))
    }
}

/// One worker: its link, the dispatcher's queues and what the manager knows of it.
pub(super) struct Node {
    pub(super) address: String,
    /// Which `Node` this is (a node taken over by a join is another one at the same index).
    pub(super) generation: u64,
    /// The name the worker reported; its address until then.
    pub(super) name: Option<String>,
    /// The name is in the store (false after a failed write, retried at the next poll).
    pub(super) name_stored: bool,
    /// Starts may take minutes (an image pull), so stops have their own queue and threads.
    pub(super) starts: Sender<Job>,
    pub(super) stops: Sender<Job>,
    /// Polls, each with the epoch it is asked at and the cursor of `report`.
    pub(super) polls: Sender<(u64, Option<ChangesCursor>)>,
    pub(super) poll_in_flight: bool,
    pub(super) last_contact: Option<Timestamp>,
    pub(super) contact: Contact,
    /// The last poll failed (or the name clashes): no calls are worth making now.
    pub(super) unreachable: bool,
    pub(super) engine_reachable: Option<bool>,
    pub(super) error: Option<String>,
    pub(super) report: Option<Report>,
    /// Where the worker's changes feed stands for `report` (`None`: the next poll asks for all).
    pub(super) cursor: Option<ChangesCursor>,
    /// Tasks whose stray copy on this node is being stopped.
    pub(super) stray_stops: HashSet<TaskId>,
    /// When (the manager's epoch) each stray stop was answered; the next report asked for after
    /// that settles it.
    pub(super) stray_answered: HashMap<TaskId, u64>,
    /// The request epoch of the newest poll answered (or failed): which events it postdates.
    pub(super) polled_epoch: u64,
    /// The worker's last statistics (capacity, usage).
    pub(super) stats: Option<NodeStats>,
    /// Tasks this node runs that the manager does not know, and when each was first seen.
    pub(super) orphans: HashMap<TaskId, Timestamp>,
    /// An operator drained it: nothing new goes there and its tasks move elsewhere.
    pub(super) draining: bool,
    /// Tasks moved off it since its drain began.
    pub(super) moved: u32,
    /// Forgotten by `remove-node`: kept only so that the other nodes keep their indices; no
    /// calls, no listing.
    pub(super) removed: bool,
    /// The history was told it is drained (so that it is told once per drain).
    pub(super) drained_told: bool,
}

impl Node {
    /// Starts the node's dispatcher threads; `since` is now on the control loop's clock.
    pub(super) fn spawn(
        index: usize,
        link: Arc<dyn WorkerLink>,
        threads: usize,
        obs: Sender<Observation>,
        since: Instant,
    ) -> Result<Node, SpawnError> {
        let address = link.address().to_string();
        let (starts_tx, starts_rx) = unbounded::<Job>();
        dispatchers("start", threads, &starts_rx, &link, &obs, index)?;
        let (stops_tx, stops_rx) = unbounded::<Job>();
        dispatchers("stop", 2, &stops_rx, &link, &obs, index)?;
        // one poll at a time per node; the control thread skips a poll while one is in flight
        let (polls_tx, polls_rx) = bounded::<(u64, Option<ChangesCursor>)>(1);
        let poll_metrics = crate::metrics::manager().polls_of(&address);
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        spawn_thread(format!("poll-{index}"), move || {
            for (epoch, since) in polls_rx.iter() {
                let started = crate::metrics::Timer::start();
                let result = guarded(|| {
                    let health = link.health()?;
                    let mut changes: Vec<TaskChanges> = Vec::new();
                    let mut from = since;
                    let reading = Instant::now();
                    while changes.len() < POLL_PAGES && (changes.is_empty() || reading.elapsed() < POLL_BUDGET) {
                        let page = link.changes(from.as_ref())?;
                        from = Some(page.cursor());
                        let more = page.more;
                        changes.push(page);
                        if !more {
                            break;
                        }
                    }
                    let stats = link
                        .stats()
                        .map_err(|e| log::debug!("no statistics address={} error={e}", link.address(), e = q(&e)))
                        .ok();
                    Ok(Poll { health, changes, stats })
                });
                poll_metrics.observe(started, result.is_ok());
                if obs.send(Observation::Polled { node: index, generation, epoch, result }).is_err() {
                    return;
                }
            }
        })?;
        Ok(Node {
            address,
            generation,
            name: None,
            name_stored: true,
            starts: starts_tx,
            stops: stops_tx,
            polls: polls_tx,
            poll_in_flight: false,
            last_contact: None,
            contact: Contact { heard: None, since, ever_failed: false },
            unreachable: false,
            engine_reachable: None,
            error: None,
            report: None,
            cursor: None,
            stray_stops: HashSet::new(),
            stray_answered: HashMap::new(),
            polled_epoch: 0,
            stats: None,
            orphans: HashMap::new(),
            draining: false,
            moved: 0,
            removed: false,
            drained_told: false,
        })
    }

    /// Makes the node a tombstone: its queues are dropped (so its threads end once their calls
    /// under way are answered) and what it reported is forgotten.
    pub(super) fn retire(&mut self) {
        self.starts = unbounded::<Job>().0;
        self.stops = unbounded::<Job>().0;
        self.polls = bounded::<(u64, Option<ChangesCursor>)>(1).0;
        self.removed = true;
        self.report = None;
        self.cursor = None;
        self.stats = None;
        self.orphans.clear();
        self.stray_stops.clear();
        self.stray_answered.clear();
        self.draining = false;
    }

    pub(super) fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(4);

    fn task(state: crate::task::TaskState) -> Task {
        let spec = crate::task::TaskSpec::from_json(br#"{"name":"t","image":"i"}"#).expect("spec");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(1));
        t.state = state;
        t
    }

    fn page(version: u64, full: bool, tasks: Vec<Task>, removed: Vec<TaskId>) -> TaskChanges {
        TaskChanges {
            instance: "run".into(),
            version,
            full,
            more: false,
            removals_from: version,
            synced: true,
            tasks,
            removed,
        }
    }

    #[test]
    fn changes_replace_what_they_name_and_leave_the_rest_as_it_was() {
        use crate::task::TaskState::*;
        let (a, b, c) = (task(Running), task(Running), task(Running));
        let mut tasks = HashMap::new();
        let cursor = apply_changes(&mut tasks, vec![page(3, true, vec![a.clone(), b.clone(), c.clone()], vec![])]);
        assert_eq!(cursor, Some(ChangesCursor { instance: "run".into(), version: 3, removals_from: 3 }));
        assert_eq!(tasks.len(), 3);
        let mut failed = b.clone();
        failed.state = Failed;
        let d = task(Scheduled);
        let cursor = apply_changes(
            &mut tasks,
            vec![page(5, false, vec![failed], vec![c.id]), page(6, false, vec![d.clone()], vec![])],
        );
        assert_eq!(cursor.map(|c| c.version), Some(6));
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[&a.id].state, Running, "unchanged records stay");
        assert_eq!(tasks[&b.id].state, Failed);
        assert!(!tasks.contains_key(&c.id));
        assert!(tasks.contains_key(&d.id));
        // nothing new: nothing changes, the cursor stays where it was
        assert_eq!(apply_changes(&mut tasks, vec![page(6, false, vec![], vec![])]).map(|c| c.version), Some(6));
        assert_eq!(tasks.len(), 3);
        // a full answer starts over: what it does not list is gone
        apply_changes(&mut tasks, vec![page(1, true, vec![a.clone()], vec![])]);
        assert_eq!(tasks.keys().collect::<Vec<_>>(), vec![&a.id]);
    }

    #[test]
    fn a_task_forgotten_then_made_again_in_one_answer_is_kept() {
        let a = task(crate::task::TaskState::Running);
        let mut tasks = HashMap::from([(a.id, a.clone())]);
        apply_changes(&mut tasks, vec![page(9, false, vec![a.clone()], vec![a.id])]);
        assert!(tasks.contains_key(&a.id));
    }

    #[test]
    fn a_node_heard_from_is_up_until_the_timeout_passes() {
        let t0 = Instant::now();
        let c = Contact { heard: Some(t0), since: t0, ever_failed: true };
        assert_eq!(c.status(TIMEOUT, t0 + TIMEOUT), NodeStatus::Up);
        assert_eq!(c.status(TIMEOUT, t0 + TIMEOUT + Duration::from_millis(1)), NodeStatus::Down);
        assert_eq!(c.silent(t0 + Duration::from_secs(3)), Duration::from_secs(3));
    }

    #[test]
    fn a_node_never_heard_from_is_unknown_until_it_has_failed_for_longer_than_the_timeout() {
        let t0 = Instant::now();
        let later = t0 + TIMEOUT * 10;
        let quiet = Contact { heard: None, since: t0, ever_failed: false };
        assert_eq!(quiet.status(TIMEOUT, later), NodeStatus::Unknown, "no answer yet is no failure");
        let failing = Contact { ever_failed: true, ..quiet };
        assert_eq!(failing.status(TIMEOUT, t0 + TIMEOUT), NodeStatus::Unknown);
        assert_eq!(failing.status(TIMEOUT, later), NodeStatus::Down);
        assert_eq!(failing.silent(later), TIMEOUT * 10, "silent since the manager started following it");
    }

    #[test]
    fn an_instant_before_the_last_contact_counts_as_no_silence() {
        let t0 = Instant::now();
        let c = Contact { heard: Some(t0 + Duration::from_secs(1)), since: t0, ever_failed: false };
        assert_eq!(c.silent(t0), Duration::ZERO);
        assert_eq!(c.status(TIMEOUT, t0), NodeStatus::Up);
    }
}
