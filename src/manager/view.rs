//! What reads are served from: the control thread's picture of the tasks, the nodes and the
//! health summary, published for the HTTP threads so that a `GET` never queues behind the control
//! thread (which may be busy with a burst of submits or a plan over 10,000 tasks).
//!
//! The control thread is the only writer: each committed task record goes in as it is committed
//! (an `Arc` shared with the task table, so the record is not copied) together with its JSON,
//! serialised once there, so that a page of 100 tasks is 100 slices joined rather than 100
//! records serialised on every read; a forgotten task goes out; the node list and health are
//! replaced whenever the loop has caught up with its input. Readers hold the lock only to look up
//! or to collect `Arc`s, never while they copy. A read sees every task record acknowledged before
//! it began; the node list and health are those of the loop's last pass that caught up with its
//! input (a task placed a moment ago may not be counted on its node yet; a drain, an activation,
//! a removal or a join is published before it is answered).

use super::{Cursor, TaskPage, TaskQuery};
use crate::api::{ManagerHealth, NodeInfo};
use crate::task::{Task, TaskId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A committed record and its JSON as the API sends it.
#[derive(Clone)]
struct Entry {
    task: Arc<Task>,
    json: Arc<[u8]>,
}

#[derive(Default)]
struct Tables {
    tasks: HashMap<TaskId, Entry>,
    /// The list's order: by submission time, then id.
    order: BTreeMap<Cursor, Entry>,
    nodes: Arc<Vec<NodeInfo>>,
    health: Option<ManagerHealth>,
}

/// The published picture; cheap to share (`Arc<View>`).
#[derive(Default)]
pub struct View {
    tables: RwLock<Tables>,
}

impl View {
    // A panic while the lock was held (a bug) leaves tables that are still whole: each change
    // is one insert or remove, so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A task's record as just committed.
    pub(super) fn put(&self, task: &Arc<Task>) {
        // a task record always serialises; an empty one would show the impossible case
        let json: Arc<[u8]> = serde_json::to_vec(&**task).unwrap_or_default().into();
        let entry = Entry { task: task.clone(), json };
        let mut t = self.write();
        t.tasks.insert(task.id, entry.clone());
        t.order.insert(Cursor::of(task), entry);
    }

    /// A task forgotten (pruned).
    pub(super) fn remove(&self, id: &TaskId) {
        let mut t = self.write();
        if let Some(entry) = t.tasks.remove(id) {
            t.order.remove(&Cursor::of(&entry.task));
        }
    }

    pub(super) fn publish(&self, nodes: Vec<NodeInfo>, health: ManagerHealth) {
        let mut t = self.write();
        t.nodes = Arc::new(nodes);
        t.health = Some(health);
    }

    pub fn get(&self, id: &TaskId) -> Option<Task> {
        let found = self.read().tasks.get(id).map(|e| e.task.clone());
        found.map(Arc::unwrap_or_clone)
    }

    /// A task's record as the API sends it.
    pub fn get_json(&self, id: &TaskId) -> Option<Arc<[u8]>> {
        self.read().tasks.get(id).map(|e| e.json.clone())
    }

    /// The entries of one page of the tasks that match `query`, oldest first (only that page is
    /// looked at beyond the filters, whatever the table holds), and where the next one starts.
    fn page_entries(&self, query: &TaskQuery) -> (Vec<Entry>, Option<Cursor>) {
        self.page_entries_within(query, TaskQuery::MAX_PAGE_BYTES)
    }

    /// `page_entries` with a page ending early once its records' JSON would pass `max_bytes`
    /// (a record bigger than that alone still makes a page of one, so a walk always goes on).
    fn page_entries_within(&self, query: &TaskQuery, max_bytes: usize) -> (Vec<Entry>, Option<Cursor>) {
        let limit = query.limit.clamp(1, TaskQuery::MAX_LIMIT);
        let matches = |t: &Task| {
            query.state.is_none_or(|s| t.state == s)
                && query.node.as_deref().is_none_or(|n| t.node.as_deref() == Some(n))
                && query.name.as_deref().is_none_or(|n| t.name == n)
                && query.service.as_deref().is_none_or(|s| t.service.as_deref() == Some(s))
        };
        let mut found: Vec<Entry> = {
            let t = self.read();
            let from = match query.after {
                Some(after) => t.order.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
                None => t.order.range(..),
            };
            from.map(|(_, e)| e).filter(|e| matches(&e.task)).take(limit + 1).cloned().collect()
        };
        let mut bytes = 0;
        let fits = found
            .iter()
            .take(limit)
            .position(|e| {
                bytes += e.json.len() + 1;
                bytes > max_bytes
            })
            .map_or(found.len().min(limit), |at| at.max(1));
        let more = found.len() > fits;
        found.truncate(fits);
        let next = if more { found.last().map(|e| Cursor::of(&e.task)) } else { None };
        (found, next)
    }

    pub fn page(&self, query: &TaskQuery) -> TaskPage {
        let (entries, next) = self.page_entries(query);
        TaskPage { tasks: entries.into_iter().map(|e| Arc::unwrap_or_clone(e.task)).collect(), next }
    }

    /// `page` as the API sends it: the JSON array of the records, joined from their JSON.
    pub fn page_json(&self, query: &TaskQuery) -> (Vec<u8>, Option<Cursor>) {
        let (entries, next) = self.page_entries(query);
        let mut body = Vec::with_capacity(2 + entries.iter().map(|e| e.json.len() + 1).sum::<usize>());
        body.push(b'[');
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&e.json);
        }
        body.push(b']');
        (body, next)
    }

    pub fn nodes(&self) -> Arc<Vec<NodeInfo>> {
        self.read().nodes.clone()
    }

    /// `None` until the control thread has published once.
    pub fn health(&self) -> Option<ManagerHealth> {
        self.read().health.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{TaskSpec, TaskState};
    use crate::time::Timestamp;

    fn task(name: &str, at: u64) -> Arc<Task> {
        let spec = TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"b"}}"#).as_bytes()).expect("valid");
        Arc::new(Task::new(TaskId::new_v4(), spec, Timestamp(at)))
    }

    #[test]
    fn pages_go_on_after_their_cursor_in_submission_order_and_filter() {
        let view = View::default();
        let all: Vec<Arc<Task>> = (0..7).map(|i| task(if i % 2 == 0 { "even" } else { "odd" }, 100 - i)).collect();
        for t in &all {
            view.put(t);
        }
        let mut oldest_first: Vec<TaskId> = all.iter().rev().map(|t| t.id).collect();
        let first = view.page(&TaskQuery { limit: 3, ..TaskQuery::default() });
        assert_eq!(first.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), oldest_first[..3]);
        let rest = view.page(&TaskQuery { limit: 10, after: first.next, ..TaskQuery::default() });
        assert_eq!(rest.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), oldest_first[3..]);
        assert_eq!(rest.next, None, "the last page says so");
        let odd = view.page(&TaskQuery { name: Some("odd".into()), ..TaskQuery::default() });
        assert_eq!(odd.tasks.len(), 3);
        // a change replaces the record in both orders; a removal takes it out of both
        let mut running = Task::clone(&all[0]);
        running.state = TaskState::Running;
        view.put(&Arc::new(running));
        let only = view.page(&TaskQuery { state: Some(TaskState::Running), ..TaskQuery::default() });
        assert_eq!(only.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [all[0].id]);
        view.remove(&all[0].id);
        assert!(view.get(&all[0].id).is_none());
        oldest_first.retain(|id| *id != all[0].id);
        let now = view.page(&TaskQuery::default());
        assert_eq!(now.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), oldest_first);
        // the JSON a page is sent as is the page's records serialised
        let (json, next) = view.page_json(&TaskQuery { limit: 2, ..TaskQuery::default() });
        let two = view.page(&TaskQuery { limit: 2, ..TaskQuery::default() });
        assert_eq!(json, serde_json::to_vec(&two.tasks).expect("serialises"));
        assert_eq!(next, two.next);
        let (empty, _) = view.page_json(&TaskQuery { name: Some("nobody".into()), ..TaskQuery::default() });
        assert_eq!(empty, b"[]");
        let one = view.get_json(&oldest_first[0]).expect("known");
        assert_eq!(&*one, serde_json::to_vec(&view.get(&oldest_first[0]).expect("known")).expect("json").as_slice());
    }

    fn fat(cmd_bytes: usize, at: u64) -> Arc<Task> {
        let spec = format!(r#"{{"name":"fat","image":"b","cmd":["{}"]}}"#, "x".repeat(cmd_bytes));
        let spec = TaskSpec::from_json(spec.as_bytes()).expect("valid");
        Arc::new(Task::new(TaskId::new_v4(), spec, Timestamp(at)))
    }

    #[test]
    fn a_page_ends_at_its_byte_budget_and_a_walk_still_sees_every_task() {
        let view = View::default();
        // records of about 1, 3 and (alone over the budget) 9 KB
        let sizes = [1000, 1000, 3000, 1000, 9000, 1000, 3000, 3000, 1000];
        let all: Vec<Arc<Task>> = sizes.iter().enumerate().map(|(i, n)| fat(*n, 10 + i as u64)).collect();
        for t in &all {
            view.put(t);
        }
        let budget = 6000;
        let bytes = |page: &[Entry]| page.iter().map(|e| e.json.len() + 1).sum::<usize>();
        let (mut pages, mut after): (Vec<Vec<Entry>>, _) = (Vec::new(), None);
        loop {
            let (entries, next) = view.page_entries_within(&TaskQuery { after, ..TaskQuery::default() }, budget);
            assert!(!entries.is_empty(), "a page always holds a record");
            assert!(
                bytes(&entries) <= budget || entries.len() == 1,
                "{} records, {} bytes",
                entries.len(),
                bytes(&entries)
            );
            // the cursor is the page's last record
            if let Some(n) = next {
                assert_eq!(Some(n), entries.last().map(|e| Cursor::of(&e.task)));
            }
            pages.push(entries);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let seen: Vec<TaskId> = pages.iter().flatten().map(|e| e.task.id).collect();
        assert_eq!(seen, all.iter().map(|t| t.id).collect::<Vec<_>>(), "every task once, in order");
        // each page is as full as the budget lets it be: the next record would not have fitted
        for pair in pages.windows(2) {
            assert!(bytes(&pair[0]) + pair[1][0].json.len() + 1 > budget, "a page ended early");
        }
        assert!(pages.iter().any(|p| p.len() == 1 && p[0].task.id == all[4].id), "the 9 KB record alone");
        assert!(pages.len() < sizes.len(), "small records share pages: {}", pages.len());
        // the count still bounds a page under the budget
        let (two, next) = view.page_entries_within(&TaskQuery { limit: 2, ..TaskQuery::default() }, budget);
        assert_eq!((two.len(), next), (2, Some(Cursor::of(&all[1]))));
    }

    #[test]
    fn a_page_of_big_records_stops_at_the_api_budget() {
        let view = View::default();
        // 200 records of about 30 KB: 6 MB, past the 4 MiB a page may be
        let all: Vec<Arc<Task>> = (0..200).map(|i| fat(30_000, 1000 + i)).collect();
        for t in &all {
            view.put(t);
        }
        let (first, next) = view.page_json(&TaskQuery { limit: TaskQuery::MAX_LIMIT, ..TaskQuery::default() });
        assert!(first.len() <= TaskQuery::MAX_PAGE_BYTES, "{} bytes", first.len());
        let first: Vec<Task> = serde_json::from_slice(&first).expect("a JSON array");
        assert!(first.len() > 100 && first.len() < 200, "{} records", first.len());
        let (rest, last) =
            view.page_json(&TaskQuery { after: next, limit: TaskQuery::MAX_LIMIT, ..TaskQuery::default() });
        let rest: Vec<Task> = serde_json::from_slice(&rest).expect("a JSON array");
        assert_eq!(last, None);
        let ids: Vec<TaskId> = first.iter().chain(&rest).map(|t| t.id).collect();
        assert_eq!(ids, all.iter().map(|t| t.id).collect::<Vec<_>>());
    }
}
