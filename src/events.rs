//! The cluster's recent history: task state changes with their reasons (placements, moves and
//! restarts among them), node changes (up, down) and service events (created, scaled, an
//! update's every step), in one bounded log the manager's control thread keeps, numbered in
//! order so that a follower asks for what came after the last it saw.
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
    Service,
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
    /// The service a service event is about (absent for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
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
    pub service: Option<String>,
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
        self.append(ClusterEvent { seq, at, subject, task, node, service: None, from, to, reason })
    }

    /// Appends a service's event: `to` is where its update stands after it.
    pub fn push_service(
        &mut self,
        at: Timestamp,
        service: String,
        from: Option<String>,
        to: String,
        reason: String,
    ) -> &ClusterEvent {
        let seq = self.next_seq;
        let subject = Subject::Service;
        self.append(ClusterEvent { seq, at, subject, task: None, node: None, service: Some(service), from, to, reason })
    }

    fn append(&mut self, event: ClusterEvent) -> &ClusterEvent {
        self.next_seq = event.seq + 1;
        self.events.push_back(event);
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
            .filter(|e| q.service.as_deref().is_none_or(|s| e.service.as_deref() == Some(s)))
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

    #[test]
    fn service_events_are_numbered_with_the_rest_and_found_by_service() {
        let (mut log, _) = log_of(3, 100);
        let e = log.push_service(Timestamp(5000), "web".into(), None, "updating".into(), "update started".into());
        assert_eq!((e.seq, e.subject, e.service.as_deref()), (4, Subject::Service, Some("web")));
        log.push_service(Timestamp(6000), "api".into(), None, "steady".into(), "created".into());
        log.push(Timestamp(7000), Subject::Node, None, Some("w1".into()), None, "up".into(), "r".into());
        let q = EventQuery { service: Some("web".into()), ..EventQuery::default() };
        let found: Vec<(u64, String)> = log.query(&q).into_iter().map(|e| (e.seq, e.to)).collect();
        assert_eq!(found, [(4, "updating".to_string())]);
        // the shape on the wire: `service` only where there is one, and it reads back
        let text = serde_json::to_string(&log.query(&EventQuery::default())).expect("serialises");
        assert_eq!(text.matches("\"service\":").count(), 2, "{text}");
        let back: Vec<ClusterEvent> = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, log.query(&EventQuery::default()));
        assert_eq!(back[3].subject, Subject::Service);
    }
}
