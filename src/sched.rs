//! Placement: which node a task goes to. Candidates (nodes up and with room for the task's
//! requests) → score → pick. Round-robin rotates over the candidates; E-PVM picks the candidate
//! where the task adds the least marginal cost (`docs/scheduling.md` has the formula and a worked
//! example).
//!
//! Pure and deterministic: it sees a table of nodes (`NodeTable`), never HTTP, threads or the
//! store. When no node can take a task it says why, node by node, in words a user understands.
//! The table keeps per-node powers precomputed and groups nodes by capacity, so that scoring a
//! node is a few multiplications (see `benches/placement.rs`).

use crate::stats::Resources;
use crate::task::TaskSpec;
use std::collections::HashMap;
use std::fmt;

/// The base of E-PVM's exponential cost: a resource in full use costs 64 times an idle one.
/// (Cube used 1.54, which makes the cost nearly linear: a full node then costs barely more than
/// an empty one and the rule loses its point; see docs/scheduling.md.)
pub const EPVM_BASE: f64 = 64.0;
/// Tasks per core at which the paper's job count alone says a CPU is fully used; the scale
/// doubles while a node holds more tasks than it.
pub const EPVM_JOBS_PER_CORE: f64 = 4.0;
/// What a task that requests no memory is scored as (it is accounted as 0): it still adds load.
pub const NOMINAL_MEMORY_MB: u64 = 32;

/// What a task asks for; absent requests are 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Request {
    pub cpus: f64,
    pub memory_mb: u64,
    pub disk_mb: u64,
}

impl Request {
    pub fn of(spec: &TaskSpec) -> Request {
        Request {
            cpus: spec.cpus.unwrap_or(0.0),
            memory_mb: spec.memory_mb.unwrap_or(0),
            disk_mb: spec.disk_mb.unwrap_or(0),
        }
    }

    fn is_empty(&self) -> bool {
        self.cpus == 0.0 && self.memory_mb == 0 && self.disk_mb == 0
    }
}

/// Measured load of a node, as shares of the whole node (0–1), from its last statistics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub cpu: f64,
    pub memory: f64,
}

/// Why a node the manager removed (`remove-node`) takes nothing: such a node is left out of the
/// reasons a task fits nowhere.
pub const REMOVED: &str = "removed";

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub name: String,
    /// `None` when the node can take tasks; otherwise why not ("down", "engine unreachable").
    pub unavailable: Option<String>,
    /// What Skiff may place there; `None` until the node has sent statistics.
    pub capacity: Option<Resources>,
    /// What the tasks placed there (and not finished) request.
    pub allocated: Resources,
    pub usage: Usage,
    /// Unfinished tasks placed there.
    pub tasks: u32,
    /// Free disk now, in MB, if known.
    pub disk_free_mb: Option<u64>,
}

impl NodeState {
    pub fn new(name: &str) -> NodeState {
        NodeState {
            name: name.to_string(),
            unavailable: None,
            capacity: None,
            allocated: Resources::default(),
            usage: Usage::default(),
            tasks: 0,
            disk_free_mb: None,
        }
    }

    /// Whether the task fits: `fits` without the words, for the hot path.
    pub fn can_take(&self, req: &Request) -> bool {
        if self.unavailable.is_some() {
            return false;
        }
        let Some(cap) = self.capacity else { return req.is_empty() };
        let a = &self.allocated;
        (req.cpus <= 0.0 || a.cpus + req.cpus <= cap.cpus + 1e-9)
            && (req.memory_mb == 0 || a.memory_mb + req.memory_mb <= cap.memory_mb)
            && (req.disk_mb == 0
                || (a.disk_mb + req.disk_mb <= cap.disk_mb && self.disk_free_mb.is_none_or(|f| req.disk_mb <= f)))
    }

    /// Whether the task fits, or why not ("memory 480/512 MB allocated, needs 64").
    pub fn fits(&self, req: &Request) -> Result<(), String> {
        if let Some(why) = &self.unavailable {
            return Err(why.clone());
        }
        let Some(cap) = self.capacity else {
            return if req.is_empty() { Ok(()) } else { Err("no statistics yet".into()) };
        };
        let a = &self.allocated;
        if req.cpus > 0.0 && a.cpus + req.cpus > cap.cpus + 1e-9 {
            return Err(format!("cpu {}/{} cores allocated, needs {}", trim(a.cpus), trim(cap.cpus), trim(req.cpus)));
        }
        if req.memory_mb > 0 && a.memory_mb + req.memory_mb > cap.memory_mb {
            return Err(format!("memory {}/{} MB allocated, needs {}", a.memory_mb, cap.memory_mb, req.memory_mb));
        }
        if req.disk_mb > 0 && a.disk_mb + req.disk_mb > cap.disk_mb {
            return Err(format!("disk {}/{} MB allocated, needs {}", a.disk_mb, cap.disk_mb, req.disk_mb));
        }
        if self.disk_free_mb.is_some_and(|f| req.disk_mb > f) {
            // no figure in the words: free space moves with every sample, and a reason that
            // changes at every poll would be written to the store at every poll
            return Err(format!("too little free disk, needs {} MB", req.disk_mb));
        }
        Ok(())
    }
}

/// A number of cores without needless decimals: 2, 0.5, 1.25.
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Per-node values E-PVM needs, kept current as allocations change.
#[derive(Debug, Clone, Copy, Default)]
struct Derived {
    /// L^u for CPU and memory, u being the node's current utilisation.
    cpu_pow: f64,
    mem_pow: f64,
    /// L^(1/m) − 1: one more task's share of the CPU by the job count (m tasks fill it).
    job_factor: f64,
    /// Index of the node's capacity class (nodes of one size share their L^δ factors).
    class: usize,
}

/// The nodes, with what scoring needs precomputed.
#[derive(Debug, Clone, Default)]
pub struct NodeTable {
    nodes: Vec<NodeState>,
    derived: Vec<Derived>,
    /// Distinct (cpus, memory) capacities of nodes with statistics.
    classes: Vec<(f64, f64)>,
}

impl NodeTable {
    pub fn new(nodes: Vec<NodeState>) -> NodeTable {
        let mut index: HashMap<(u64, u64), usize> = HashMap::new();
        let mut classes = Vec::new();
        let mut derived = Vec::with_capacity(nodes.len());
        for n in &nodes {
            let (cpus, mem) = n.capacity.map_or((0.0, 0.0), |c| (c.cpus, c.memory_mb as f64));
            let class = *index.entry((cpus.to_bits(), mem.to_bits())).or_insert_with(|| {
                classes.push((cpus, mem));
                classes.len() - 1
            });
            derived.push(Derived { class, ..Derived::default() });
        }
        let mut table = NodeTable { nodes, derived, classes };
        for i in 0..table.nodes.len() {
            table.refresh(i);
        }
        table
    }

    pub fn nodes(&self) -> &[NodeState] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Records a placement: the node's allocation and task count grow.
    pub fn allocate(&mut self, i: usize, req: &Request) {
        let n = &mut self.nodes[i];
        n.allocated.cpus += req.cpus;
        n.allocated.memory_mb += req.memory_mb;
        n.allocated.disk_mb += req.disk_mb;
        n.tasks += 1;
        self.refresh(i);
    }

    fn refresh(&mut self, i: usize) {
        let n = &self.nodes[i];
        let d = &mut self.derived[i];
        let Some(cap) = n.capacity else { return };
        let m = job_scale(cap.cpus, n.tasks);
        // CPU use is the highest of what is requested, what is measured, and what the job
        // count implies; memory the higher of requested and measured
        let u_cpu = share(n.allocated.cpus, cap.cpus).max(n.usage.cpu).max(f64::from(n.tasks) / m);
        let u_mem = share(n.allocated.memory_mb as f64, cap.memory_mb as f64).max(n.usage.memory);
        d.cpu_pow = EPVM_BASE.powf(u_cpu);
        d.mem_pow = EPVM_BASE.powf(u_mem);
        d.job_factor = EPVM_BASE.powf(1.0 / m) - 1.0;
    }

    /// Why no node can take the task: one reason per node, in table order (a removed node,
    /// kept in the table only for its index, is no node).
    fn no_fit(&self, req: &Request) -> NoFeasibleNode {
        let reasons = self
            .nodes
            .iter()
            .filter(|n| n.unavailable.as_deref() != Some(REMOVED))
            .map(|n| format!("{} {}", n.name, n.fits(req).err().unwrap_or_else(|| "unavailable".into())))
            .collect();
        NoFeasibleNode { reasons }
    }
}

/// m, the number of tasks that fill a node's CPU by the job count: four per core (at least
/// one), doubled while the node would hold more than m with one more task.
fn job_scale(cores: f64, tasks: u32) -> f64 {
    let mut m = (EPVM_JOBS_PER_CORE * cores).round().max(1.0);
    while f64::from(tasks) + 1.0 > m {
        m *= 2.0;
    }
    m
}

/// `used / total`, 0 for a zero total.
fn share(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        used / total
    } else {
        0.0
    }
}

/// No node can take the task; one reason per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFeasibleNode {
    pub reasons: Vec<String>,
}

impl fmt::Display for NoFeasibleNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reasons.is_empty() {
            f.write_str("no node fits: the manager has no workers")
        } else {
            write!(f, "no node fits: {}", self.reasons.join(", "))
        }
    }
}

impl std::error::Error for NoFeasibleNode {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    RoundRobin,
    Epvm,
}

impl SchedulerKind {
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::RoundRobin => "roundrobin",
            SchedulerKind::Epvm => "epvm",
        }
    }

    pub fn parse(s: &str) -> Option<SchedulerKind> {
        match s {
            "roundrobin" => Some(SchedulerKind::RoundRobin),
            "epvm" => Some(SchedulerKind::Epvm),
            _ => None,
        }
    }

    pub fn build(self) -> Box<dyn Scheduler> {
        match self {
            SchedulerKind::RoundRobin => Box::new(RoundRobin::default()),
            SchedulerKind::Epvm => Box::new(Epvm),
        }
    }
}

/// Chooses a node for a task: the index of the chosen node in the table.
pub trait Scheduler: Send {
    fn pick(&mut self, req: &Request, table: &NodeTable) -> Result<usize, NoFeasibleNode>;
    /// Each node's score for the task, changing nothing: `None` for a node that cannot take it;
    /// `pick` takes the lowest (the first of equals).
    fn scores(&self, req: &Request, table: &NodeTable) -> Vec<Option<f64>>;
}

/// What a placement would do, changing nothing: the node chosen, and for every node its score
/// or why it cannot take the task.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub chosen: Option<usize>,
    pub verdicts: Vec<Result<f64, String>>,
}

/// The dry run of a placement.
pub fn preview(scheduler: &dyn Scheduler, req: &Request, table: &NodeTable) -> Preview {
    let scores = scheduler.scores(req, table);
    let mut chosen: Option<(f64, usize)> = None;
    for (i, s) in scores.iter().enumerate() {
        if let Some(s) = *s {
            if chosen.is_none_or(|(best, _)| s < best) {
                chosen = Some((s, i));
            }
        }
    }
    let verdicts = table
        .nodes
        .iter()
        .zip(&scores)
        .map(|(n, s)| match s {
            Some(score) => Ok(*score),
            None => Err(n.fits(req).err().unwrap_or_else(|| "unavailable".into())),
        })
        .collect();
    Preview { chosen: chosen.map(|(_, i)| i), verdicts }
}

/// Takes the candidates in turn: the next node after the last one chosen that can take the
/// task. Deterministic for a given sequence of tables.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// The node index to try first next time.
    next: usize,
}

impl Scheduler for RoundRobin {
    fn pick(&mut self, req: &Request, table: &NodeTable) -> Result<usize, NoFeasibleNode> {
        let n = table.len();
        let start = if n == 0 { 0 } else { self.next % n };
        let chosen = (start..n).chain(0..start).find(|i| table.nodes[*i].can_take(req));
        match chosen {
            Some(i) => {
                self.next = i + 1;
                Ok(i)
            }
            None => Err(table.no_fit(req)),
        }
    }

    /// A candidate's score is its turn: 0 for the node tried first.
    fn scores(&self, req: &Request, table: &NodeTable) -> Vec<Option<f64>> {
        let n = table.len();
        let start = if n == 0 { 0 } else { self.next % n };
        (0..n).map(|i| table.nodes[i].can_take(req).then(|| ((i + n - start) % n) as f64)).collect()
    }
}

/// The opportunity-cost rule: the candidate where the task adds the least to
/// L^u_cpu + L^u_mem, where a task adds its request's share of each capacity to u, and at least
/// one job's share (1/m) to the CPU. Nodes without statistics are candidates only for tasks that
/// request nothing, and never preferred. Ties go to the first node in the table.
#[derive(Debug, Default)]
pub struct Epvm;

impl Epvm {
    /// The marginal cost of the task on node `i` (infinite for a node without statistics).
    pub fn marginal_cost(req: &Request, table: &NodeTable, i: usize) -> f64 {
        let factors = Epvm::class_factors(req, table);
        Epvm::cost_with(&factors, table, i)
    }

    /// L^δ − 1 for CPU and memory, per capacity class: δ is the task's share of that capacity.
    fn class_factors(req: &Request, table: &NodeTable) -> Vec<(f64, f64)> {
        let mem = if req.memory_mb > 0 { req.memory_mb } else { NOMINAL_MEMORY_MB } as f64;
        let step = |delta: f64| EPVM_BASE.powf(delta) - 1.0;
        table.classes.iter().map(|(c, m)| (step(share(req.cpus, *c)), step(share(mem, *m)))).collect()
    }

    fn cost_with(factors: &[(f64, f64)], table: &NodeTable, i: usize) -> f64 {
        if table.nodes[i].capacity.is_none() {
            return f64::INFINITY;
        }
        let d = &table.derived[i];
        let (f_cpu, f_mem) = factors[d.class];
        // L^(u+δ) − L^u = L^u (L^δ − 1); the CPU's δ is at least one job's share
        d.cpu_pow * f_cpu.max(d.job_factor) + d.mem_pow * f_mem
    }
}

impl Scheduler for Epvm {
    fn pick(&mut self, req: &Request, table: &NodeTable) -> Result<usize, NoFeasibleNode> {
        let factors = Epvm::class_factors(req, table);
        let mut best: Option<(f64, usize)> = None;
        for i in 0..table.len() {
            if !table.nodes[i].can_take(req) {
                continue;
            }
            let cost = Epvm::cost_with(&factors, table, i);
            if best.is_none_or(|(b, _)| cost < b) {
                best = Some((cost, i));
            }
        }
        best.map(|(_, i)| i).ok_or_else(|| table.no_fit(req))
    }

    /// A candidate's score is the task's marginal cost there.
    fn scores(&self, req: &Request, table: &NodeTable) -> Vec<Option<f64>> {
        let factors = Epvm::class_factors(req, table);
        (0..table.len()).map(|i| table.nodes[i].can_take(req).then(|| Epvm::cost_with(&factors, table, i))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpus: f64, memory_mb: u64) -> Request {
        Request { cpus, memory_mb, disk_mb: 0 }
    }

    fn node(name: &str, cpus: f64, memory_mb: u64) -> NodeState {
        NodeState {
            capacity: Some(Resources { cpus, memory_mb, disk_mb: 10_000 }),
            disk_free_mb: Some(10_000),
            ..NodeState::new(name)
        }
    }

    fn down(name: &str) -> NodeState {
        NodeState { unavailable: Some("down".into()), ..NodeState::new(name) }
    }

    #[test]
    fn a_preview_agrees_with_pick_and_changes_nothing() {
        let mut small = node("w2", 2.0, 32);
        small.allocated.memory_mb = 0;
        let busy =
            NodeState { allocated: Resources { cpus: 1.0, memory_mb: 512, disk_mb: 0 }, ..node("w4", 2.0, 1024) };
        let table = NodeTable::new(vec![node("w1", 2.0, 1024), small, down("w3"), busy]);
        let r = req(0.1, 64);
        for kind in [SchedulerKind::RoundRobin, SchedulerKind::Epvm] {
            let mut s = kind.build();
            for _ in 0..3 {
                let p = preview(&*s, &r, &table);
                assert_eq!(p.verdicts[1], Err("memory 0/32 MB allocated, needs 64".into()), "{kind:?}");
                assert_eq!(p.verdicts[2], Err("down".into()), "{kind:?}");
                assert!(p.verdicts[0].is_ok() && p.verdicts[3].is_ok(), "{kind:?}");
                assert_eq!(p.chosen, Some(preview(&*s, &r, &table).chosen.expect("a choice")), "nothing changed");
                assert_eq!(p.chosen, s.pick(&r, &table).ok(), "{kind:?}");
            }
        }
        let none = preview(&RoundRobin::default(), &req(0.1, 4096), &table);
        assert_eq!(none.chosen, None);
        assert!(none.verdicts.iter().all(Result::is_err));
    }

    #[test]
    fn round_robin_alternates_over_healthy_nodes() {
        let mut rr = RoundRobin::default();
        let table = NodeTable::new(vec![node("w1", 2.0, 1024), node("w2", 2.0, 1024)]);
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(&req(0.1, 10), &table).expect("fits")).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn round_robin_skips_down_and_full_nodes() {
        let mut rr = RoundRobin::default();
        let mut full = node("w2", 2.0, 1024);
        full.allocated.memory_mb = 1000;
        let table = NodeTable::new(vec![node("w1", 2.0, 1024), full, down("w3"), node("w4", 2.0, 1024)]);
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(&req(0.1, 64), &table).expect("fits")).collect();
        assert_eq!(picks, [0, 3, 0, 3]);
    }

    #[test]
    fn round_robin_resumes_after_a_node_returns() {
        let mut rr = RoundRobin::default();
        let one_down = NodeTable::new(vec![node("w1", 2.0, 1024), down("w2")]);
        assert_eq!(rr.pick(&req(0.1, 1), &one_down), Ok(0));
        assert_eq!(rr.pick(&req(0.1, 1), &one_down), Ok(0));
        let both = NodeTable::new(vec![node("w1", 2.0, 1024), node("w2", 2.0, 1024)]);
        assert_eq!(rr.pick(&req(0.1, 1), &both), Ok(1));
    }

    #[test]
    fn feasibility_checks_each_resource_and_says_why() {
        let mut n = node("w1", 2.0, 512);
        n.allocated = Resources { cpus: 1.5, memory_mb: 480, disk_mb: 9_990 };
        assert_eq!(n.fits(&req(0.5, 32)), Ok(()));
        assert_eq!(n.fits(&req(0.75, 0)), Err("cpu 1.5/2 cores allocated, needs 0.75".into()));
        assert_eq!(n.fits(&req(0.0, 64)), Err("memory 480/512 MB allocated, needs 64".into()));
        let disk = Request { disk_mb: 20, ..Request::default() };
        assert_eq!(n.fits(&disk), Err("disk 9990/10000 MB allocated, needs 20".into()));
        n.disk_free_mb = Some(5);
        let small_disk = Request { disk_mb: 8, ..Request::default() };
        n.allocated.disk_mb = 0;
        assert_eq!(n.fits(&small_disk), Err("too little free disk, needs 8 MB".into()));
        let no_stats = NodeState::new("w2");
        assert_eq!(no_stats.fits(&req(0.1, 0)), Err("no statistics yet".into()));
        assert_eq!(no_stats.fits(&Request::default()), Ok(()));
    }

    #[test]
    fn the_quick_check_agrees_with_the_worded_one() {
        let mut n = node("w1", 2.0, 512);
        n.allocated = Resources { cpus: 1.5, memory_mb: 480, disk_mb: 9_990 };
        n.disk_free_mb = Some(15);
        let cases = [
            req(0.5, 32),
            req(0.75, 0),
            req(0.0, 64),
            Request { disk_mb: 20, ..Request::default() },
            Request { disk_mb: 10, ..Request::default() },
            Request::default(),
        ];
        for r in cases {
            assert_eq!(n.can_take(&r), n.fits(&r).is_ok(), "{r:?}");
            assert_eq!(down("x").can_take(&r), down("x").fits(&r).is_ok(), "{r:?}");
            assert_eq!(NodeState::new("y").can_take(&r), NodeState::new("y").fits(&r).is_ok(), "{r:?}");
        }
    }

    #[test]
    fn no_node_says_why_for_each() {
        let mut full = node("worker1", 2.0, 512);
        full.allocated.memory_mb = 480;
        let table = NodeTable::new(vec![full, down("worker2")]);
        let e = Epvm.pick(&req(0.0, 64), &table).unwrap_err();
        assert_eq!(e.to_string(), "no node fits: worker1 memory 480/512 MB allocated, needs 64, worker2 down");
        let e = RoundRobin::default().pick(&req(0.0, 64), &NodeTable::new(vec![])).unwrap_err();
        assert_eq!(e.to_string(), "no node fits: the manager has no workers");
    }

    const L: f64 = EPVM_BASE;

    #[test]
    fn epvm_cost_matches_the_formula_by_hand() {
        // idle node, 2 cores (m = 8) and 1024 MB; task 0.5 cores and 256 MB:
        // CPU L^0.25 − L^0 (its request, 0.25, beats one job, 1/8), memory L^0.25 − L^0
        let table = NodeTable::new(vec![node("idle", 2.0, 1024)]);
        let by_hand = 2.0 * (L.powf(0.25) - 1.0);
        assert!((Epvm::marginal_cost(&req(0.5, 256), &table, 0) - by_hand).abs() < 1e-9);
        // half-full node: 1 core and 512 MB allocated by 2 tasks
        let mut half = node("half", 2.0, 1024);
        half.allocated = Resources { cpus: 1.0, memory_mb: 512, disk_mb: 0 };
        half.tasks = 2;
        let table = NodeTable::new(vec![half]);
        let by_hand = 2.0 * (L.powf(0.75) - L.powf(0.5));
        assert!((Epvm::marginal_cost(&req(0.5, 256), &table, 0) - by_hand).abs() < 1e-9);
        // a task that requests no CPU adds one job (1/8 of the CPU) and nominal memory
        let table = NodeTable::new(vec![node("idle", 2.0, 1024)]);
        let by_hand = (L.powf(1.0 / 8.0) - 1.0) + (L.powf(32.0 / 1024.0) - 1.0);
        assert!((Epvm::marginal_cost(&Request::default(), &table, 0) - by_hand).abs() < 1e-9);
    }

    #[test]
    fn epvm_prefers_the_idle_node_to_the_half_full_one() {
        let mut half = node("half", 2.0, 1024);
        half.allocated = Resources { cpus: 1.0, memory_mb: 512, disk_mb: 0 };
        half.tasks = 2;
        let table = NodeTable::new(vec![half, node("idle", 2.0, 1024)]);
        assert_eq!(Epvm.pick(&req(0.5, 256), &table), Ok(1));
    }

    #[test]
    fn epvm_cpu_counts_for_nodes_equal_but_for_cpu() {
        // same memory, same task count; only the CPU differs (allocated, then measured)
        let mut busy = node("busy", 2.0, 1024);
        busy.allocated.cpus = 1.5;
        let table = NodeTable::new(vec![busy.clone(), node("calm", 2.0, 1024)]);
        assert_eq!(Epvm.pick(&req(0.25, 64), &table), Ok(1));
        let mut loaded = node("loaded", 2.0, 1024);
        loaded.usage.cpu = 0.9;
        let table = NodeTable::new(vec![loaded, node("calm", 2.0, 1024)]);
        assert_eq!(Epvm.pick(&req(0.25, 64), &table), Ok(1));
        // and a task that requests no CPU still sees it (it adds one job's share)
        let table = NodeTable::new(vec![busy, node("calm", 2.0, 1024)]);
        assert_eq!(Epvm.pick(&req(0.0, 64), &table), Ok(1));
    }

    #[test]
    fn epvm_keeps_off_a_node_whose_memory_is_nearly_full() {
        // w1 holds one task with 480 of 512 MB; w2 gets small tasks until its job count makes
        // it the costlier one: by hand, five fit on w2 before w1 is worth its last 32 MB
        let mut full = node("w1", 2.0, 512);
        full.allocated.memory_mb = 480;
        full.tasks = 1;
        let mut table = NodeTable::new(vec![full, node("w2", 2.0, 512)]);
        let small = req(0.0, 16);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let i = Epvm.pick(&small, &table).expect("fits");
            table.allocate(i, &small);
            picks.push(i);
        }
        assert_eq!(picks, [1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn epvm_never_prefers_a_node_without_statistics() {
        let table = NodeTable::new(vec![NodeState::new("blind"), node("seen", 2.0, 1024)]);
        assert_eq!(Epvm.pick(&Request::default(), &table), Ok(1));
        // but takes it rather than nothing, for a task that asks for nothing
        let table = NodeTable::new(vec![NodeState::new("blind"), down("gone")]);
        assert_eq!(Epvm.pick(&Request::default(), &table), Ok(0));
    }

    #[test]
    fn epvm_breaks_ties_by_table_order_and_fills_evenly() {
        let mut table = NodeTable::new(vec![node("a", 2.0, 1024), node("b", 2.0, 1024), node("c", 2.0, 1024)]);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let i = Epvm.pick(&req(0.25, 128), &table).expect("fits");
            table.allocate(i, &req(0.25, 128));
            picks.push(i);
        }
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn job_scale_is_four_per_core_and_doubles_past_it() {
        assert_eq!(job_scale(2.0, 0), 8.0);
        assert_eq!(job_scale(2.0, 7), 8.0);
        assert_eq!(job_scale(2.0, 8), 16.0);
        assert_eq!(job_scale(0.1, 0), 1.0);
        assert_eq!(job_scale(0.1, 2), 4.0);
    }

    #[test]
    fn allocate_moves_the_node_along() {
        let mut table = NodeTable::new(vec![node("a", 2.0, 1024)]);
        let before = Epvm::marginal_cost(&req(0.5, 256), &table, 0);
        table.allocate(0, &req(0.5, 256));
        assert_eq!(table.nodes()[0].allocated, Resources { cpus: 0.5, memory_mb: 256, disk_mb: 0 });
        assert_eq!(table.nodes()[0].tasks, 1);
        assert!(Epvm::marginal_cost(&req(0.5, 256), &table, 0) > before, "a fuller node costs more");
    }
}
