//! The manager's metrics: counters its control loop and poll threads bump (placements, placement
//! failures by reason, restarts, moves, reconcile passes, polls), and the snapshot of its state
//! (tasks by state, nodes) the control thread publishes after each change, which a scrape reads
//! without asking that thread anything.
//!
//! Must not decide anything: the hooks are one call each where the thing happens.

use super::{Counter, Histogram, Kind, Page, Timer};
use crate::api::{NodeInfo, NodeStatus};
use crate::task::TaskState;
use std::sync::{Arc, Mutex, PoisonError};

const MB: f64 = 1024.0 * 1024.0;

/// Why a task left its node for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Its node was lost, left the cluster, or does not have it any more.
    Lost,
    /// Its node is being drained.
    Drain,
}

impl Move {
    const ALL: [Move; 2] = [Move::Lost, Move::Drain];

    fn as_str(self) -> &'static str {
        match self {
            Move::Lost => "lost",
            Move::Drain => "drain",
        }
    }
}

/// Why no node took a task, as a label: from the scheduler's reasons (`placement_failure_reason`).
pub const FAILURE_REASONS: [&str; 7] = ["no_workers", "unavailable", "cpu", "memory", "disk", "spread", "other"];

/// The manager's state at its last change, as the control thread published it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Tasks in the table, by `TaskState::ALL`'s order.
    pub tasks: [u64; TaskState::ALL.len()],
    pub nodes: Vec<NodeInfo>,
}

/// One worker's polls, from the manager's poll thread for it.
#[derive(Debug)]
pub struct PollSeries {
    address: String,
    ok: Counter,
    failed: Counter,
    latency: Histogram,
}

impl PollSeries {
    /// Counts one poll (health, tasks, statistics) that began at `started`.
    pub fn observe(&self, started: Timer, ok: bool) {
        self.latency.observe(started.elapsed());
        if ok {
            self.ok.inc();
        } else {
            self.failed.inc();
        }
    }
}

#[derive(Debug)]
pub struct ManagerMetrics {
    placements: Counter,
    failures: [Counter; FAILURE_REASONS.len()],
    restarts: Counter,
    moves: [Counter; Move::ALL.len()],
    reconcile: Histogram,
    polls: Mutex<Vec<Arc<PollSeries>>>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

impl Default for ManagerMetrics {
    fn default() -> ManagerMetrics {
        ManagerMetrics::new()
    }
}

/// The manager of this process.
pub fn manager() -> &'static ManagerMetrics {
    static MANAGER: ManagerMetrics = ManagerMetrics::new();
    &MANAGER
}

/// The reason label of a placement failure, from the scheduler's words (`sched::NoFeasibleNode`,
/// "no node fits: NODE WHY, NODE WHY"): a lack of a resource on some node that could take tasks
/// comes first (the cluster is full), then the spread of replicas, then nodes unavailable.
/// Node names hold no spaces (`task::check_name`, or an address), which is what splits a node
/// from its reason; a resource's reason goes on after a comma ("cpu 2/2 cores allocated, needs 1").
pub fn placement_failure_reason(text: &str) -> &'static str {
    let Some(list) = text.strip_prefix("no node fits: ") else { return "other" };
    if list == "the manager has no workers" {
        return "no_workers";
    }
    let mut found = [false; FAILURE_REASONS.len()];
    for entry in list.split(", ") {
        // "needs 1" goes on from the entry before
        if entry.strip_prefix("needs ").is_some_and(|n| n.split(' ').next().is_some_and(|n| n.parse::<f64>().is_ok())) {
            continue;
        }
        let Some((_, why)) = entry.split_once(' ') else { continue };
        let reason = if why.starts_with("cpu ") {
            "cpu"
        } else if why.starts_with("memory ") {
            "memory"
        } else if why.starts_with("disk ") || why.starts_with("too little free disk") {
            "disk"
        } else if why.starts_with("holds more replicas") {
            "spread"
        } else {
            "unavailable"
        };
        if let Some(i) = FAILURE_REASONS.iter().position(|r| *r == reason) {
            found[i] = true;
        }
    }
    ["cpu", "memory", "disk", "spread", "unavailable"]
        .into_iter()
        .find(|r| FAILURE_REASONS.iter().position(|x| x == r).is_some_and(|i| found[i]))
        .unwrap_or("other")
}

impl ManagerMetrics {
    pub const fn new() -> ManagerMetrics {
        ManagerMetrics {
            placements: Counter::new(),
            failures: [const { Counter::new() }; FAILURE_REASONS.len()],
            restarts: Counter::new(),
            moves: [const { Counter::new() }; Move::ALL.len()],
            reconcile: Histogram::new(),
            polls: Mutex::new(Vec::new()),
            snapshot: Mutex::new(None),
        }
    }

    /// A task was committed to a node and its start sent.
    pub fn placed(&self) {
        self.placements.inc();
    }

    /// No node could take a task; `reason` is the scheduler's text.
    pub fn placement_failed(&self, reason: &str) {
        let label = placement_failure_reason(reason);
        if let Some(i) = FAILURE_REASONS.iter().position(|r| *r == label) {
            self.failures[i].inc();
        }
    }

    /// Restarts in place a worker reported for a task (the rise of its `restart_count`).
    pub fn restarted(&self, count: u32) {
        self.restarts.add(u64::from(count));
    }

    /// A task goes to another node.
    pub fn moved(&self, why: Move) {
        if let Some(i) = Move::ALL.iter().position(|m| *m == why) {
            self.moves[i].inc();
        }
    }

    /// Runs one reconcile pass and counts it with its duration.
    pub fn reconcile_pass(&self, pass: impl FnOnce()) {
        let started = Timer::start();
        pass();
        self.reconcile.observe(started.elapsed());
    }

    /// The series of one worker's polls (made once, by its poll thread when it starts).
    pub fn polls_of(&self, address: &str) -> Arc<PollSeries> {
        let mut polls = self.polls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = polls.iter().find(|p| p.address == address) {
            return p.clone();
        }
        let p = Arc::new(PollSeries {
            address: address.to_string(),
            ok: Counter::new(),
            failed: Counter::new(),
            latency: Histogram::new(),
        });
        polls.push(p.clone());
        p
    }

    /// Publishes the state after a change: the tasks' states and the node table.
    pub fn publish(&self, states: impl Iterator<Item = TaskState>, nodes: Vec<NodeInfo>) {
        let mut tasks = [0u64; TaskState::ALL.len()];
        for s in states {
            if let Some(i) = TaskState::ALL.iter().position(|x| *x == s) {
                tasks[i] += 1;
            }
        }
        let snapshot = Arc::new(Snapshot { tasks, nodes });
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }

    /// The last published state, if any (the lock is held only to copy the `Arc`).
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every manager family.
    pub fn write(&self, page: &mut Page) {
        let snapshot = self.snapshot().unwrap_or_default();
        page.family("skiff_tasks", Kind::Gauge, "Tasks in the manager's table, by state.");
        for (state, n) in TaskState::ALL.iter().zip(snapshot.tasks) {
            page.sample("skiff_tasks", &[("state", state.as_str())], n as f64);
        }
        write_nodes(page, &snapshot.nodes);
        page.single(
            "skiff_placements_total",
            Kind::Counter,
            "Tasks placed on a node (committed there and their start sent).",
            self.placements.get() as f64,
        );
        page.family(
            "skiff_placement_failures_total",
            Kind::Counter,
            "Tasks no node could take, once per task and distinct scheduler reason, by the reason's kind.",
        );
        for (reason, c) in FAILURE_REASONS.iter().zip(&self.failures) {
            page.sample("skiff_placement_failures_total", &[("reason", reason)], c.get() as f64);
        }
        page.single(
            "skiff_task_restarts_total",
            Kind::Counter,
            "Restarts in place that workers reported for the manager's tasks.",
            self.restarts.get() as f64,
        );
        page.family("skiff_task_moves_total", Kind::Counter, "Tasks placed again on another node, by why.");
        for (m, c) in Move::ALL.iter().zip(&self.moves) {
            page.sample("skiff_task_moves_total", &[("reason", m.as_str())], c.get() as f64);
        }
        page.family("skiff_reconcile_duration_seconds", Kind::Histogram, "Reconcile passes of the control loop.");
        page.histogram("skiff_reconcile_duration_seconds", &[], &self.reconcile.value());
        let polls: Vec<Arc<PollSeries>> = self.polls.lock().unwrap_or_else(PoisonError::into_inner).clone();
        page.family("skiff_worker_polls_total", Kind::Counter, "Polls of each worker, by outcome.");
        for p in &polls {
            page.sample("skiff_worker_polls_total", &[("address", &p.address), ("outcome", "ok")], p.ok.get() as f64);
            let failed = p.failed.get() as f64;
            page.sample("skiff_worker_polls_total", &[("address", &p.address), ("outcome", "failed")], failed);
        }
        page.family(
            "skiff_worker_poll_duration_seconds",
            Kind::Histogram,
            "Time of each poll of a worker (health, tasks and statistics).",
        );
        for p in &polls {
            page.histogram("skiff_worker_poll_duration_seconds", &[("address", &p.address)], &p.latency.value());
        }
    }
}

/// The node families, from the published node table.
fn write_nodes(page: &mut Page, nodes: &[NodeInfo]) {
    // status × availability: every combination, zeros included, so a query sees each
    page.family("skiff_nodes", Kind::Gauge, "Worker nodes, by status and availability.");
    for status in [NodeStatus::Unknown, NodeStatus::Up, NodeStatus::Down] {
        for availability in AVAILABILITIES {
            let n = nodes.iter().filter(|n| n.status == status && availability_of(n) == availability).count();
            page.sample("skiff_nodes", &[("status", status.as_str()), ("availability", availability)], n as f64);
        }
    }
    type Figure = fn(&NodeInfo) -> Option<f64>;
    let families: [(&str, &str, Figure); 10] = [
        ("skiff_node_tasks", "Unfinished tasks the manager placed on the node.", |n| Some(n.tasks as f64)),
        ("skiff_node_capacity_cpus", "Cores Skiff may place on the node.", |n| n.capacity.map(|c| c.cpus)),
        ("skiff_node_capacity_memory_bytes", "Memory Skiff may place on the node.", |n| {
            n.capacity.map(|c| c.memory_mb as f64 * MB)
        }),
        ("skiff_node_capacity_disk_bytes", "Disk Skiff may place on the node.", |n| {
            n.capacity.map(|c| c.disk_mb as f64 * MB)
        }),
        ("skiff_node_allocated_cpus", "Cores the unfinished tasks on the node request.", |n| Some(n.allocated.cpus)),
        ("skiff_node_allocated_memory_bytes", "Memory the unfinished tasks on the node request.", |n| {
            Some(n.allocated.memory_mb as f64 * MB)
        }),
        ("skiff_node_allocated_disk_bytes", "Disk the unfinished tasks on the node request.", |n| {
            Some(n.allocated.disk_mb as f64 * MB)
        }),
        ("skiff_node_cpu_usage_ratio", "Busy share of the node's CPUs (0 to 1), as its worker last sampled.", |n| {
            n.stats.as_ref().map(|s| s.cpu_usage_pct / 100.0)
        }),
        ("skiff_node_memory_used_bytes", "Memory in use on the node (total less available), last sampled.", |n| {
            n.stats.as_ref().map(|s| s.memory_total_mb.saturating_sub(s.memory_available_mb) as f64 * MB)
        }),
        (
            "skiff_node_disk_used_bytes",
            "Disk in use on the engine's filesystem (total less free), last sampled.",
            |n| n.stats.as_ref().map(|s| s.disk_total_mb.saturating_sub(s.disk_free_mb) as f64 * MB),
        ),
    ];
    for (name, help, figure) in families {
        page.family(name, Kind::Gauge, help);
        for n in nodes {
            if let Some(v) = figure(n) {
                page.sample(name, &[("node", &n.name)], v);
            }
        }
    }
}

/// Every availability a node can have.
const AVAILABILITIES: [&str; 3] = ["active", "draining", "drained"];

/// A node's availability, as a label.
fn availability_of(node: &NodeInfo) -> &'static str {
    node.availability.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::{NodeState, NodeTable, Request, Scheduler, SchedulerKind};
    use crate::stats::Resources;

    fn node(name: &str, unavailable: Option<&str>, cpus: f64, allocated_cpus: f64) -> NodeState {
        NodeState {
            name: name.into(),
            unavailable: unavailable.map(str::to_string),
            capacity: Some(Resources { cpus, memory_mb: 1024, disk_mb: 1024 }),
            allocated: Resources { cpus: allocated_cpus, memory_mb: 0, disk_mb: 0 },
            usage: Default::default(),
            tasks: 0,
            disk_free_mb: Some(1024),
        }
    }

    /// The scheduler's own words, so that a change of them fails here.
    fn why(nodes: Vec<NodeState>, req: Request) -> String {
        let mut s: Box<dyn Scheduler> = SchedulerKind::RoundRobin.build();
        s.pick(&req, &NodeTable::new(nodes)).expect_err("no node fits").to_string()
    }

    #[test]
    fn failure_reasons_come_from_the_schedulers_words() {
        let cpu = Request { cpus: 2.0, memory_mb: 0, disk_mb: 0 };
        let mem = Request { cpus: 0.0, memory_mb: 4096, disk_mb: 0 };
        let disk = Request { cpus: 0.0, memory_mb: 0, disk_mb: 4096 };
        // node names that look like the words around them change nothing
        let cases = [
            (why(vec![], cpu), "no_workers"),
            (
                why(
                    vec![node("cpu", Some("down"), 1.0, 0.0), node("needs", Some("not heard from yet"), 1.0, 0.0)],
                    cpu,
                ),
                "unavailable",
            ),
            (why(vec![node("a", Some("down"), 4.0, 0.0), node("memory", None, 1.0, 0.5)], cpu), "cpu"),
            (why(vec![node("disk", None, 1.0, 0.0)], mem), "memory"),
            (why(vec![node("w1", None, 1.0, 0.0), node("w2", Some("engine unreachable"), 1.0, 0.0)], disk), "disk"),
            (why(vec![node("w1", Some("holds more replicas of the service"), 1.0, 0.0)], cpu), "spread"),
            ("no node can take it".to_string(), "other"),
        ];
        for (text, reason) in cases {
            assert_eq!(placement_failure_reason(&text), reason, "{text}");
        }
    }

    #[test]
    fn counters_and_the_snapshot_make_the_families() {
        let m = ManagerMetrics::new();
        m.placed();
        m.placement_failed("no node fits: the manager has no workers");
        m.restarted(2);
        m.moved(Move::Drain);
        m.reconcile_pass(|| {});
        m.polls_of("127.0.0.1:7070").observe(Timer::start(), true);
        assert!(Arc::ptr_eq(&m.polls_of("127.0.0.1:7070"), &m.polls_of("127.0.0.1:7070")), "one series per address");
        let info = NodeInfo {
            name: "w1".into(),
            address: "127.0.0.1:7070".into(),
            status: NodeStatus::Up,
            last_contact: None,
            tasks: 1,
            engine_reachable: Some(true),
            error: None,
            capacity: Some(Resources { cpus: 2.0, memory_mb: 1024, disk_mb: 2048 }),
            allocated: Resources { cpus: 0.5, memory_mb: 64, disk_mb: 0 },
            stats: None,
            availability: crate::api::Availability::Active,
            drain: None,
        };
        let drained = NodeInfo {
            name: "w2".into(),
            status: NodeStatus::Down,
            availability: crate::api::Availability::Drained,
            capacity: None,
            ..info.clone()
        };
        m.publish([TaskState::Running, TaskState::Running, TaskState::Failed].into_iter(), vec![info, drained]);
        let mut page = Page::new();
        m.write(&mut page);
        let text = page.into_string();
        for line in [
            "skiff_tasks{state=\"Running\"} 2\n",
            "skiff_tasks{state=\"Pending\"} 0\n",
            "skiff_nodes{status=\"up\",availability=\"active\"} 1\n",
            "skiff_nodes{status=\"down\",availability=\"drained\"} 1\n",
            "skiff_nodes{status=\"up\",availability=\"drained\"} 0\n",
            "skiff_node_capacity_memory_bytes{node=\"w1\"} 1073741824\n",
            "skiff_node_allocated_cpus{node=\"w1\"} 0.5\n",
            "skiff_placements_total 1\n",
            "skiff_placement_failures_total{reason=\"no_workers\"} 1\n",
            "skiff_task_restarts_total 2\n",
            "skiff_task_moves_total{reason=\"drain\"} 1\n",
            "skiff_task_moves_total{reason=\"lost\"} 0\n",
            "skiff_reconcile_duration_seconds_count 1\n",
            "skiff_worker_polls_total{address=\"127.0.0.1:7070\",outcome=\"ok\"} 1\n",
            "skiff_worker_poll_duration_seconds_count{address=\"127.0.0.1:7070\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(!text.contains("skiff_node_cpu_usage_ratio{"), "no statistics, no usage series");
    }
}
