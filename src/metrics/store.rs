//! Store writes, by operation and outcome, with their latency: `MeteredStore` wraps any `Store`
//! (the daemons' stores are wrapped where they are opened, `cli::prepare`) and counts its writes
//! in `metrics::store()`. Reads are not counted: they happen at start only.

use super::{Counter, Histogram, Kind, Page, Timer};
use crate::events::ClusterEvent;
use crate::service::Service;
use crate::store::{NodeRecord, Store, StoreError};
use crate::task::{Task, TaskId};

/// Every write of the trait.
const OPS: [&str; 7] =
    ["put_task", "delete_task", "put_node", "delete_node", "put_service", "delete_service", "put_event"];

#[derive(Debug)]
struct OpSlot {
    ok: Counter,
    failed: Counter,
}

/// The store writes of a process.
#[derive(Debug)]
pub struct StoreMetrics {
    ops: [OpSlot; OPS.len()],
    latency: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> StoreMetrics {
        StoreMetrics::new()
    }
}

impl StoreMetrics {
    pub const fn new() -> StoreMetrics {
        StoreMetrics {
            ops: [const { OpSlot { ok: Counter::new(), failed: Counter::new() } }; OPS.len()],
            latency: Histogram::new(),
        }
    }

    fn record<T>(&self, op: &str, started: Timer, result: &Result<T, StoreError>) {
        self.latency.observe(started.elapsed());
        if let Some(slot) = OPS.iter().position(|o| *o == op).and_then(|i| self.ops.get(i)) {
            match result {
                Ok(_) => slot.ok.inc(),
                Err(_) => slot.failed.inc(),
            }
        }
    }

    /// `skiff_store_writes_total` and `skiff_store_write_duration_seconds`.
    pub fn write(&self, page: &mut Page) {
        page.family(
            "skiff_store_writes_total",
            Kind::Counter,
            "Writes to the daemon's store (one committed change each), by operation and outcome.",
        );
        for (op, slot) in OPS.iter().zip(&self.ops) {
            for (outcome, c) in [("ok", &slot.ok), ("error", &slot.failed)] {
                page.sample("skiff_store_writes_total", &[("operation", op), ("outcome", outcome)], c.get() as f64);
            }
        }
        page.family("skiff_store_write_duration_seconds", Kind::Histogram, "Time of each write to the store.");
        page.histogram("skiff_store_write_duration_seconds", &[], &self.latency.value());
    }
}

/// A store whose writes are counted.
pub struct MeteredStore {
    inner: Box<dyn Store>,
    metrics: &'static StoreMetrics,
}

impl MeteredStore {
    pub fn new(inner: Box<dyn Store>) -> MeteredStore {
        MeteredStore { inner, metrics: super::store() }
    }

    fn write<T>(&mut self, op: &str, f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let started = Timer::start();
        let result = f(&mut *self.inner);
        self.metrics.record(op, started, &result);
        result
    }
}

impl Store for MeteredStore {
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError> {
        self.write("put_task", |s| s.put_task(task))
    }

    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.inner.get_task(id)
    }

    fn list_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.inner.list_tasks()
    }

    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError> {
        self.write("delete_task", |s| s.delete_task(id))
    }

    fn put_node(&mut self, node: &NodeRecord) -> Result<(), StoreError> {
        self.write("put_node", |s| s.put_node(node))
    }

    fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.list_nodes()
    }

    fn delete_node(&mut self, address: &str) -> Result<bool, StoreError> {
        self.write("delete_node", |s| s.delete_node(address))
    }

    fn put_service(&mut self, service: &Service) -> Result<(), StoreError> {
        self.write("put_service", |s| s.put_service(service))
    }

    fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        self.inner.list_services()
    }

    fn delete_service(&mut self, name: &str) -> Result<bool, StoreError> {
        self.write("delete_service", |s| s.delete_service(name))
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn put_event(&mut self, event: &ClusterEvent, keep: u64) -> Result<(), StoreError> {
        // a memory store keeps no events: nothing is written, nothing counted
        if self.inner.kind() == "memory" {
            return self.inner.put_event(event, keep);
        }
        self.write("put_event", |s| s.put_event(event, keep))
    }

    fn list_events(&self) -> Result<Vec<ClusterEvent>, StoreError> {
        self.inner.list_events()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlakyStore;
    use crate::task::TaskSpec;
    use crate::time::Timestamp;

    #[test]
    fn writes_are_counted_by_operation_and_outcome_and_reads_are_not() {
        let metrics: &'static StoreMetrics = Box::leak(Box::new(StoreMetrics::new()));
        let flaky = FlakyStore::new();
        let mut store = MeteredStore { inner: Box::new(flaky.clone()), metrics };
        let spec = TaskSpec::from_json(br#"{"name":"a","image":"b"}"#).expect("spec");
        let task = Task::new(TaskId::new_v4(), spec, Timestamp(0));
        store.put_task(&task).expect("written");
        assert!(store.get_task(&task.id).expect("read").is_some());
        flaky.fail_writes(true);
        assert!(store.delete_task(&task.id).is_err());
        let mut page = Page::new();
        metrics.write(&mut page);
        let text = page.into_string();
        for line in [
            "skiff_store_writes_total{operation=\"put_task\",outcome=\"ok\"} 1\n",
            "skiff_store_writes_total{operation=\"delete_task\",outcome=\"error\"} 1\n",
            "skiff_store_writes_total{operation=\"delete_task\",outcome=\"ok\"} 0\n",
            "skiff_store_write_duration_seconds_count 2\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }
}
