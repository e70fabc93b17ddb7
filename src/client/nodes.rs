//! The client's node commands (`drain`, `activate`, `remove-node`) and how a drain's progress
//! reads under `list-nodes`. The calls are `http::ManagerClient`'s; failures go back to
//! `client.rs`, which prints them once.

use super::{pretty, Failure};
use crate::api::{Availability, NodeInfo};
use crate::http::{ClientError, ManagerClient};

pub const HELP: &str = "
  drain NODE                stop placing tasks on NODE and move its tasks elsewhere, one at a time
  activate NODE             let NODE take tasks again
  remove-node NAME          forget a node that runs nothing and is not up";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCmd {
    Drain(String),
    Activate(String),
    Remove(String),
}

/// A node name as it may go into a URL path: what `worker -n` takes, or the `HOST:PORT` a node
/// is listed under until its worker has answered.
fn name(word: &str) -> Result<String, String> {
    let fine = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
    if fine {
        Ok(word.to_string())
    } else {
        Err(format!("{word:?} is not a node name (letters, digits, '.', '_', '-', or HOST:PORT)"))
    }
}

/// A node command, from its words (the command's own first).
pub fn parse(words: &[&str]) -> Result<NodeCmd, String> {
    match words {
        ["drain", n] => name(n).map(NodeCmd::Drain),
        ["activate", n] => name(n).map(NodeCmd::Activate),
        ["remove-node", n] => name(n).map(NodeCmd::Remove),
        [cmd, ..] => Err(format!("usage: {cmd} NODE")),
        [] => Err(format!("usage:{HELP}")),
    }
}

pub fn run(cmd: &NodeCmd, api: &ManagerClient, json: bool) -> Result<String, Failure> {
    let failed = |e: ClientError| Failure::Failed(e.to_string());
    let (node, done) = match cmd {
        NodeCmd::Drain(n) => (api.node_action("POST", &format!("/v1/nodes/{n}/drain")).map_err(failed)?, "draining"),
        NodeCmd::Activate(n) => {
            (api.node_action("POST", &format!("/v1/nodes/{n}/activate")).map_err(failed)?, "active")
        }
        NodeCmd::Remove(n) => (api.node_action("DELETE", &format!("/v1/nodes/{n}")).map_err(failed)?, "removed"),
    };
    if json {
        return Ok(pretty(&node));
    }
    Ok(match cmd {
        NodeCmd::Remove(_) => format!("{}: {done}\n", node.name),
        _ => format!("{}: {}\n", node.name, progress(&node).unwrap_or_else(|| done.to_string())),
    })
}

/// One line on a drain's progress, for a node that drains.
pub fn progress(n: &NodeInfo) -> Option<String> {
    let d = n.drain.as_ref()?;
    let mut line = format!("{}, {} moved, {} left", n.availability.as_str(), d.moved, d.remaining);
    if let Some(id) = d.moving {
        line.push_str(&format!(", moving {}", id.short()));
    }
    for s in &d.stuck {
        line.push_str(&format!("\n  cannot move {}: {}", s.task.short(), s.reason));
    }
    Some(line)
}

/// The lines under the node table: each draining or drained node's progress.
pub fn drains(nodes: &[NodeInfo]) -> String {
    nodes
        .iter()
        .filter(|n| n.availability != Availability::Active)
        .filter_map(|n| progress(n).map(|p| format!("{}: {p}\n", n.name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DrainProgress, StuckTask};
    use crate::task::TaskId;

    #[test]
    fn node_commands_take_one_node_name() {
        assert_eq!(parse(&["drain", "w1"]), Ok(NodeCmd::Drain("w1".into())));
        assert_eq!(parse(&["activate", "w-2.lan"]), Ok(NodeCmd::Activate("w-2.lan".into())));
        assert_eq!(parse(&["remove-node", "w1"]), Ok(NodeCmd::Remove("w1".into())));
        assert_eq!(parse(&["remove-node", "10.0.0.9:7070"]), Ok(NodeCmd::Remove("10.0.0.9:7070".into())));
        assert!(parse(&["drain"]).is_err_and(|e| e.contains("usage: drain NODE")));
        assert!(parse(&["drain", "w1", "w2"]).is_err());
        assert!(parse(&["drain", "../tasks"]).is_err_and(|e| e.contains("not a node name")), "no path tricks");
    }

    #[test]
    fn a_drain_reads_as_its_progress_with_what_cannot_move() {
        let id = TaskId::new_v4();
        let drain = DrainProgress {
            moved: 2,
            remaining: 1,
            moving: None,
            stuck: vec![StuckTask { task: id, reason: "fits nowhere else: no node has 512 MB".into() }],
        };
        let node = NodeInfo {
            name: "w1".into(),
            address: "h:1".into(),
            status: crate::api::NodeStatus::Up,
            last_contact: None,
            tasks: 1,
            engine_reachable: Some(true),
            error: None,
            capacity: None,
            allocated: Default::default(),
            stats: None,
            availability: Availability::Draining,
            drain: Some(drain),
        };
        let text = drains(std::slice::from_ref(&node));
        assert!(text.starts_with("w1: draining, 2 moved, 1 left\n"), "{text}");
        assert!(text.contains(&format!("cannot move {}: fits nowhere else", id.short())), "{text}");
        let active = NodeInfo { availability: Availability::Active, drain: None, ..node };
        assert_eq!(drains(&[active]), "");
    }
}
