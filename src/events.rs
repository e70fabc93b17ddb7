//! The cluster's recent history: task state changes with their reasons (placements, moves and
//! restarts among them) and node changes (up, down), in one bounded log the manager's control
//! thread keeps, numbered in order so that a follower asks for what came after the last it saw.
//!
//! Pure: no clock, no I/O; the control thread appends, the HTTP layer reads copies.

use crate::task::TaskId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Task,
    Node,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// Numbers events in order, from 1; a follower's place in the log.
    pub seq: u64,
    pub at: Timestamp,
    pub subject: Subject,
    #[serde(default)]
    pub task: Option<TaskId>,
    #[serde(default)]
    pub node: Option<String>,
    /// The state before (a task's `Running`, a node's `up`), if there was one.
    #[serde(default)]
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// At or after this time.
    pub since: Option<Timestamp>,
    /// After this sequence number (a follower's last).
    pub after: Option<u64>,
    pub task: Option<TaskId>,
    pub node: Option<String>,
    /// The most recent `limit` of the matching events (all of them up to the log's bound).
    pub limit: Option<usize>,
}

/// The log: the last `capacity` events.
#[derive(Debug, Clone)]
pub struct EventLog {
    events: VecDeque<ClusterEvent>,
    capacity: usize,
    next_seq: u64,
}

/// Events kept by default: a few days of a small cluster's history, a few MB of memory.
pub const DEFAULT_CAPACITY: usize = 10_000;

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog { events: VecDeque::new(), capacity: capacity.max(1), next_seq: 1 }
    }

    /// Takes back events kept from before (oldest first), numbering on after the last.
    pub fn restore(capacity: usize, events: Vec<ClusterEvent>) -> EventLog {
        let mut log = EventLog::new(capacity);
        for e in events {
            log.next_seq = log.next_seq.max(e.seq + 1);
            log.events.push_back(e);
        }
        while log.events.len() > log.capacity {
            log.events.pop_front();
        }
        log
    }

    /// Appends an event, dropping the oldest beyond the bound; returns the event as numbered.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one field of the event; a struct would only repeat them"
    )]
    pub fn push(
        &mut self,
        at: Timestamp,
        subject: Subject,
        task: Option<TaskId>,
        node: Option<String>,
        from: Option<String>,
        to: String,
        reason: String,
    ) -> &ClusterEvent {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push_back(ClusterEvent { seq, at, subject, task, node, from, to, reason });
        if self.events.len() > self.capacity {
            self.events.pop_front();
        }
        self.events.back().expect("just pushed")
    }

    /// The matching events, oldest first.
    pub fn query(&self, q: &EventQuery) -> Vec<ClusterEvent> {
        let matching: Vec<&ClusterEvent> = self
            .events
            .iter()
            .filter(|e| q.after.is_none_or(|a| e.seq > a))
            .filter(|e| q.since.is_none_or(|s| e.at >= s))
            .filter(|e| q.task.is_none_or(|t| e.task == Some(t)))
            .filter(|e| q.node.as_deref().is_none_or(|n| e.node.as_deref() == Some(n)))
            .collect();
        let skip = q.limit.map_or(0, |l| matching.len().saturating_sub(l));
        matching.into_iter().skip(skip).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: u64, capacity: usize) -> (EventLog, TaskId) {
        let mut log = EventLog::new(capacity);
        let id = TaskId::new_v4();
        for i in 0..n {
            let (task, node) = if i % 2 == 0 { (Some(id), Some("w1".to_string())) } else { (None, Some("w2".into())) };
            let subject = if task.is_some() { Subject::Task } else { Subject::Node };
            log.push(Timestamp(i * 1000), subject, task, node, None, format!("to{i}"), format!("why{i}"));
        }
        (log, id)
    }

    #[test]
    fn the_log_is_bounded_and_numbered_in_order() {
        let (log, _) = log_of(10, 4);
        assert_eq!(log.len(), 4);
        let seqs: Vec<u64> = log.query(&EventQuery::default()).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 8, 9, 10]);
        assert_eq!(log.next_seq(), 11);
        let restored = EventLog::restore(3, log.query(&EventQuery::default()));
        assert_eq!(restored.len(), 3);
        assert_eq!(restored.next_seq(), 11, "numbering goes on after a restart");
    }

    #[test]
    fn queries_filter_by_place_time_task_node_and_limit() {
        let (log, id) = log_of(10, 100);
        let seqs = |q: EventQuery| -> Vec<u64> { log.query(&q).iter().map(|e| e.seq).collect() };
        assert_eq!(seqs(EventQuery { after: Some(8), ..EventQuery::default() }), [9, 10]);
        assert_eq!(seqs(EventQuery { since: Some(Timestamp(7000)), ..EventQuery::default() }), [8, 9, 10]);
        assert_eq!(seqs(EventQuery { task: Some(id), ..EventQuery::default() }), [1, 3, 5, 7, 9]);
        assert_eq!(seqs(EventQuery { node: Some("w2".into()), limit: Some(2), ..EventQuery::default() }), [8, 10]);
        assert_eq!(seqs(EventQuery { node: Some("w9".into()), ..EventQuery::default() }), Vec::<u64>::new());
    }
}
