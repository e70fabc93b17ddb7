//! Where a daemon keeps its task records: the `Store` trait and its in-memory implementation.
//!
//! The control thread that owns a store is its only user, so stores need no locking of their own.
//! A store holds records, not rules: it never decides a task's state.

use crate::task::{Task, TaskId};
use std::collections::BTreeMap;
use std::fmt;

/// A store failed to read or write.
#[derive(Debug)]
pub enum StoreError {
    /// The storage medium failed (disk, database).
    Io(Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be decoded.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(_) => f.write_str("store i/o failed"),
            StoreError::Corrupt(what) => write!(f, "store holds a corrupt record: {what}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(e) => Some(e.as_ref()),
            StoreError::Corrupt(_) => None,
        }
    }
}

/// Task records by id. `put_task` returns only once the record is kept (for a durable store:
/// committed), so a caller may acknowledge the change after it.
pub trait Store: Send {
    /// Inserts or replaces the record with this id.
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError>;
    /// `Ok(None)` when there is no such task; `Err` only when the store itself failed.
    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// Every task, oldest first (by `created_at`, then id).
    fn list_tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// Returns whether there was such a task.
    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError>;
    /// "memory" or "persisted", for health answers and logs.
    fn kind(&self) -> &'static str;
}

/// Records in a map; gone when the process ends.
#[derive(Default)]
pub struct MemoryStore {
    tasks: BTreeMap<TaskId, Task>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError> {
        self.tasks.insert(task.id, task.clone());
        Ok(())
    }

    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.tasks.get(id).cloned())
    }

    fn list_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut all: Vec<Task> = self.tasks.values().cloned().collect();
        all.sort_by_key(|t| (t.created_at, t.id));
        Ok(all)
    }

    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError> {
        Ok(self.tasks.remove(id).is_some())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// The contract every store must keep, run against each implementation.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::task::{TaskSpec, TaskState};
    use crate::time::Timestamp;

    fn task(name: &str, created: u64) -> Task {
        let spec = TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"skiff/busybox"}}"#).as_bytes())
            .expect("valid spec");
        Task::new(TaskId::new_v4(), spec, Timestamp(created))
    }

    pub fn run_all(make: &mut dyn FnMut() -> Box<dyn Store>) {
        put_then_get(make());
        put_replaces(make());
        list_is_oldest_first(make());
        delete_reports_presence(make());
        missing_is_none_not_error(make());
    }

    fn put_then_get(mut s: Box<dyn Store>) {
        let t = task("a", 1);
        s.put_task(&t).expect("put");
        assert_eq!(s.get_task(&t.id).expect("get"), Some(t));
    }

    fn put_replaces(mut s: Box<dyn Store>) {
        let mut t = task("a", 1);
        s.put_task(&t).expect("put");
        t.set_state(TaskState::Scheduled, Timestamp(2)).expect("allowed");
        t.node = Some("w1".into());
        s.put_task(&t).expect("put again");
        assert_eq!(s.get_task(&t.id).expect("get"), Some(t.clone()));
        assert_eq!(s.list_tasks().expect("list").len(), 1);
    }

    fn list_is_oldest_first(mut s: Box<dyn Store>) {
        let (a, b, c) = (task("a", 30), task("b", 10), task("c", 20));
        for t in [&a, &b, &c] {
            s.put_task(t).expect("put");
        }
        let names: Vec<String> = s.list_tasks().expect("list").into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["b", "c", "a"]);
    }

    fn delete_reports_presence(mut s: Box<dyn Store>) {
        let t = task("a", 1);
        s.put_task(&t).expect("put");
        assert!(s.delete_task(&t.id).expect("delete"));
        assert!(!s.delete_task(&t.id).expect("delete again"));
        assert_eq!(s.get_task(&t.id).expect("get"), None);
        assert!(s.list_tasks().expect("list").is_empty());
    }

    fn missing_is_none_not_error(s: Box<dyn Store>) {
        assert!(matches!(s.get_task(&TaskId::new_v4()), Ok(None)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_keeps_the_contract() {
        contract::run_all(&mut || Box::new(MemoryStore::new()));
    }
}
