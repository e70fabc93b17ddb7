//! Whether a worker that registers itself (`POST /v1/nodes`) is a new node, one already known,
//! one taking over a down node of its name, or refused: the pure decision, table-tested. The
//! control thread applies it (`State::join`).
//!
//! Must not do anything: no threads, no store.

use crate::api::NodeStatus;

/// A node as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    pub name: Option<&'a str>,
    pub address: &'a str,
    pub status: NodeStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// A node the manager does not know: add it.
    New,
    /// The node at this index already is this worker (same name and address): nothing to do.
    Known(usize),
    /// The node at this index was dialled at this address but had not told its name yet (a
    /// `-w` entry, or a record from before a restart): it is this worker.
    Named(usize),
    /// The down node at this index had this name: the worker takes it over at its new address.
    TakeOver(usize),
    /// Refused, with the reason.
    Conflict(String),
}

pub fn decide(nodes: &[Known], name: &str, address: &str) -> Join {
    if let Some(i) = nodes.iter().position(|n| n.name == Some(name)) {
        let n = nodes[i];
        if n.address == address {
            return Join::Known(i);
        }
        return match n.status {
            NodeStatus::Up => Join::Conflict(format!(
                "a live node is already named {name} (at {}); give this worker another name with -n",
                n.address
            )),
            NodeStatus::Down | NodeStatus::Unknown => Join::TakeOver(i),
        };
    }
    if let Some(i) = nodes.iter().position(|n| n.address == address) {
        let n = nodes[i];
        return match n.name {
            None => Join::Named(i),
            Some(other) if n.status == NodeStatus::Up => {
                Join::Conflict(format!("{address} is node {other}, which is up; a worker there cannot join as {name}"))
            }
            // the worker at that address was renamed: the record follows it
            Some(_) => Join::Named(i),
        };
    }
    Join::New
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeStatus::{Down, Unknown, Up};

    #[test]
    fn joins_are_new_known_taken_over_or_refused() {
        let k = |name: Option<&'static str>, address: &'static str, status| Known { name, address, status };
        let nodes = [
            k(Some("w1"), "10.0.0.1:7070", Up),
            k(Some("w2"), "10.0.0.2:7070", Down),
            k(None, "10.0.0.3:7070", Unknown),
            k(Some("w4"), "10.0.0.4:7070", Up),
        ];
        let table: [(&str, &str, &str, Join); 7] = [
            ("a new name at a new address", "w9", "10.0.0.9:7070", Join::New),
            ("the same worker again", "w1", "10.0.0.1:7070", Join::Known(0)),
            ("a live name elsewhere", "w1", "10.0.0.8:7070", Join::Conflict(String::new())),
            ("a down name elsewhere", "w2", "10.0.0.8:7070", Join::TakeOver(1)),
            ("an address not named yet", "w3", "10.0.0.3:7070", Join::Named(2)),
            ("a live node's address, another name", "w5", "10.0.0.4:7070", Join::Conflict(String::new())),
            ("a down node's address, another name", "w6", "10.0.0.2:7070", Join::Named(1)),
        ];
        for (what, name, address, want) in table {
            let got = decide(&nodes, name, address);
            match (&got, &want) {
                (Join::Conflict(why), Join::Conflict(_)) => assert!(why.contains(name), "{what}: {why}"),
                _ => assert_eq!(got, want, "{what}"),
            }
        }
        assert_eq!(decide(&[], "w1", "h:1"), Join::New);
    }
}
