//! Placement: which node a task goes to. Candidates (nodes that can take the task) → score →
//! pick. Round-robin rotates over the candidates.
//!
//! Pure and deterministic: it sees a table of nodes, never HTTP, threads or the store. When no
//! node can take a task it says why, node by node, in words a user understands.

use crate::task::TaskSpec;
use std::fmt;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    /// `None` when the node can take tasks; otherwise why not ("down", "engine unreachable").
    pub unavailable: Option<String>,
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
}

impl SchedulerKind {
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::RoundRobin => "roundrobin",
        }
    }

    pub fn build(self) -> Box<dyn Scheduler> {
        match self {
            SchedulerKind::RoundRobin => Box::new(RoundRobin::default()),
        }
    }
}

/// Chooses a node for a task: the index of the chosen node in `nodes`.
pub trait Scheduler: Send {
    fn pick(&mut self, spec: &TaskSpec, nodes: &[NodeView]) -> Result<usize, NoFeasibleNode>;
}

/// The indices of the nodes that can take the task, or why none can.
pub fn candidates(_spec: &TaskSpec, nodes: &[NodeView]) -> Result<Vec<usize>, NoFeasibleNode> {
    let ok: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].unavailable.is_none()).collect();
    if ok.is_empty() {
        let reasons =
            nodes.iter().map(|n| format!("{} {}", n.name, n.unavailable.as_deref().unwrap_or("unavailable"))).collect();
        return Err(NoFeasibleNode { reasons });
    }
    Ok(ok)
}

/// Takes the candidates in turn: the next node after the last one chosen, skipping nodes that
/// cannot take the task. Deterministic for a given sequence of tables.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// The node index to try first next time.
    next: usize,
}

impl Scheduler for RoundRobin {
    fn pick(&mut self, spec: &TaskSpec, nodes: &[NodeView]) -> Result<usize, NoFeasibleNode> {
        let ok = candidates(spec, nodes)?;
        let chosen = ok.iter().copied().find(|i| *i >= self.next).unwrap_or(ok[0]);
        self.next = chosen + 1;
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec::from_json(br#"{"name":"a","image":"b"}"#).expect("valid")
    }

    fn nodes(states: &[Option<&str>]) -> Vec<NodeView> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| NodeView { name: format!("w{}", i + 1), unavailable: s.map(str::to_string) })
            .collect()
    }

    #[test]
    fn round_robin_alternates_over_healthy_nodes() {
        let mut rr = RoundRobin::default();
        let table = nodes(&[None, None]);
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(&spec(), &table).expect("fits")).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn round_robin_skips_down_nodes() {
        let mut rr = RoundRobin::default();
        let table = nodes(&[None, Some("down"), None]);
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(&spec(), &table).expect("fits")).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn round_robin_resumes_after_a_node_returns() {
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&spec(), &nodes(&[None, Some("down")])), Ok(0));
        assert_eq!(rr.pick(&spec(), &nodes(&[None, Some("down")])), Ok(0));
        assert_eq!(rr.pick(&spec(), &nodes(&[None, None])), Ok(1));
    }

    #[test]
    fn no_node_says_why_for_each() {
        let mut rr = RoundRobin::default();
        let e = rr.pick(&spec(), &nodes(&[Some("down"), Some("engine unreachable")])).unwrap_err();
        assert_eq!(e.to_string(), "no node fits: w1 down, w2 engine unreachable");
        let e = rr.pick(&spec(), &[]).unwrap_err();
        assert_eq!(e.to_string(), "no node fits: the manager has no workers");
    }
}
