//! What the control thread knows of its nodes, as tables: what every node has placed on it, the
//! node table placement works on, the nodes as `GET /v1/nodes` shows them, and publishing those
//! with the health summary for reads (`view.rs`). Methods of `State` (`state.rs`); they only
//! read the tables and build answers.

use super::state::State;
use crate::api::{ManagerHealth, NodeInfo, NodeStatus};
use crate::sched::{self, NodeState, NodeTable, Request, Usage};
use crate::stats::Resources;
use std::collections::HashMap;

impl State {
    /// Publishes the node list and the health summary for reads.
    pub(super) fn publish(&mut self) {
        self.unpublished = 0;
        let live = self.nodes.iter().filter(|n| !n.removed);
        let up = live.clone().filter(|n| self.status_of(n) == NodeStatus::Up).count();
        let health = ManagerHealth {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            scheduler: self.config.scheduler.name().into(),
            storage: self.store.kind().into(),
            nodes_up: up,
            nodes_total: live.count(),
            tasks: self.tasks.values().filter(|t| !t.task.is_terminal()).count(),
            ingress: self.publisher.as_ref().map(|p| p.status()),
        };
        let nodes = self.node_infos();
        crate::metrics::manager().publish(self.tasks.values().map(|t| t.task.state), nodes.clone());
        self.view.publish(nodes, health);
    }

    fn node_infos(&self) -> Vec<NodeInfo> {
        let allocations = self.allocations();
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].removed)
            .map(|i| self.node_info_with(i, &allocations))
            .collect()
    }

    pub(super) fn node_info(&self, index: usize) -> NodeInfo {
        self.node_info_with(index, &self.allocations())
    }

    fn node_info_with(&self, index: usize, allocations: &HashMap<&str, (Resources, u32)>) -> NodeInfo {
        let n = &self.nodes[index];
        {
            {
                let name = n.display_name().to_string();
                let (allocated, tasks) = allocations.get(name.as_str()).copied().unwrap_or_default();
                NodeInfo {
                    name,
                    address: n.address.clone(),
                    status: self.status_of(n),
                    last_contact: n.last_contact,
                    tasks: tasks as usize,
                    engine_reachable: n.engine_reachable,
                    error: n.error.clone(),
                    capacity: n.stats.as_ref().map(|s| s.capacity),
                    allocated,
                    stats: n.stats.clone(),
                    availability: self.availability(index),
                    drain: self.drain_progress(index),
                }
            }
        }
    }

    /// The node with this name (a removed one has none).
    pub(super) fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| !n.removed && n.name.as_deref() == Some(name))
    }

    /// What every node has placed on it: the requests of its unfinished tasks, and their count
    /// (a new copy a drain is starting there counts too).
    pub(super) fn allocations(&self) -> HashMap<&str, (Resources, u32)> {
        fn add<'a>(by_node: &mut HashMap<&'a str, (Resources, u32)>, node: &'a str, req: Request) {
            let entry = by_node.entry(node).or_default();
            entry.0.cpus += req.cpus;
            entry.0.memory_mb += req.memory_mb;
            entry.0.disk_mb += req.disk_mb;
            entry.1 += 1;
        }
        let mut by_node: HashMap<&str, (Resources, u32)> = HashMap::new();
        for t in self.tasks.values().filter(|t| !t.task.is_terminal()) {
            let Some(node) = t.task.node.as_deref() else { continue };
            add(&mut by_node, node, Request::of(&t.task.spec));
        }
        for (id, m) in &self.moves {
            if let Some(t) = self.tasks.get(id) {
                add(&mut by_node, self.nodes[m.to].display_name(), Request::of(&t.task.spec));
            }
        }
        by_node
    }

    /// The node table placement works on, built afresh from the node and task tables.
    pub(super) fn node_table(&self) -> NodeTable {
        let allocations = self.allocations();
        let states = self
            .nodes
            .iter()
            .map(|n| {
                let unavailable = match self.status_of(n) {
                    _ if n.removed => Some(sched::REMOVED.to_string()),
                    NodeStatus::Up if n.draining => Some("draining".to_string()),
                    NodeStatus::Unknown => Some("not heard from yet".to_string()),
                    NodeStatus::Down => Some("down".to_string()),
                    NodeStatus::Up if n.unreachable => Some("not answering".to_string()),
                    NodeStatus::Up if n.engine_reachable == Some(false) => Some("engine unreachable".to_string()),
                    NodeStatus::Up => None,
                };
                let name = n.display_name();
                let (allocated, tasks) = allocations.get(name).copied().unwrap_or_default();
                let usage = n.stats.as_ref().map_or(Usage::default(), |s| Usage {
                    cpu: s.cpu_usage_pct / 100.0,
                    memory: if s.memory_total_mb > 0 {
                        1.0 - s.memory_available_mb as f64 / s.memory_total_mb as f64
                    } else {
                        0.0
                    },
                });
                NodeState {
                    name: name.to_string(),
                    unavailable,
                    capacity: n.stats.as_ref().map(|s| s.capacity),
                    allocated,
                    usage,
                    tasks,
                    disk_free_mb: n.stats.as_ref().map(|s| s.disk_free_mb),
                }
            })
            .collect();
        NodeTable::new(states)
    }
}
