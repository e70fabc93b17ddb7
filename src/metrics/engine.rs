//! The worker's engine calls, by operation and outcome, with their latency: `Metered` wraps the
//! `Engine` seam and times every call; `EngineMetrics` keeps the counts (atomics, one slot per
//! operation).
//!
//! The only part of `metrics` above `worker`: it implements the worker's trait, and `bin/worker`
//! puts it around the Docker client. For a stream (events, logs) the time is the time to open it.

use super::{Counter, Histogram, Kind, Page, Timer};
use crate::docker_cli::{ContainerInfo, ContainerSummary, CreateOptions, DockerError, LogOptions, LogStream};
use crate::worker::{Engine, Events};
use std::path::PathBuf;
use std::time::Duration;

/// Every operation of the seam, in the order of the trait.
const OPS: [&str; 13] = [
    "version", "root_dir", "pull", "ping", "create", "start", "stop", "remove", "inspect", "rename", "list", "events",
    "logs",
];

/// How a call ended.
const OUTCOMES: [&str; 5] = ["ok", "not_found", "conflict", "unreachable", "error"];

fn outcome<T>(result: &Result<T, DockerError>) -> usize {
    match result {
        Ok(_) => 0,
        Err(e) if e.is_not_found() => 1,
        Err(e) if e.is_conflict() => 2,
        Err(e) if e.is_engine_down() => 3,
        Err(_) => 4,
    }
}

#[derive(Debug)]
struct OpSlot {
    by_outcome: [Counter; OUTCOMES.len()],
    latency: Histogram,
}

/// The engine calls of a process.
#[derive(Debug)]
pub struct EngineMetrics {
    ops: [OpSlot; OPS.len()],
}

impl Default for EngineMetrics {
    fn default() -> EngineMetrics {
        EngineMetrics::new()
    }
}

impl EngineMetrics {
    pub const fn new() -> EngineMetrics {
        EngineMetrics {
            ops: [const { OpSlot { by_outcome: [const { Counter::new() }; OUTCOMES.len()], latency: Histogram::new() } };
                OPS.len()],
        }
    }

    fn record<T>(&self, op: &str, started: Timer, result: &Result<T, DockerError>) {
        if let Some(slot) = OPS.iter().position(|o| *o == op).and_then(|i| self.ops.get(i)) {
            slot.latency.observe(started.elapsed());
            slot.by_outcome[outcome(result)].inc();
        }
    }

    /// `skiff_engine_calls_total` and `skiff_engine_call_duration_seconds`, for the operations
    /// made at least once.
    pub fn write(&self, page: &mut Page) {
        let used = || OPS.iter().zip(&self.ops).filter(|(_, s)| s.latency.count() > 0);
        page.family(
            "skiff_engine_calls_total",
            Kind::Counter,
            "Calls to the container engine, by operation and outcome.",
        );
        for (op, slot) in used() {
            for (outcome, c) in OUTCOMES.iter().zip(&slot.by_outcome) {
                page.sample("skiff_engine_calls_total", &[("operation", op), ("outcome", outcome)], c.get() as f64);
            }
        }
        page.family(
            "skiff_engine_call_duration_seconds",
            Kind::Histogram,
            "Time of each call to the container engine (a stream: until it is open), by operation.",
        );
        for (op, slot) in used() {
            page.histogram("skiff_engine_call_duration_seconds", &[("operation", op)], &slot.latency.value());
        }
    }
}

/// An engine whose every call is counted in `metrics::engine()`.
pub struct Metered<E> {
    inner: E,
    metrics: &'static EngineMetrics,
}

impl<E: Engine> Metered<E> {
    pub fn new(inner: E) -> Metered<E> {
        Metered { inner, metrics: super::engine() }
    }

    fn call<T>(&self, op: &str, f: impl FnOnce(&E) -> Result<T, DockerError>) -> Result<T, DockerError> {
        let started = Timer::start();
        let result = f(&self.inner);
        self.metrics.record(op, started, &result);
        result
    }
}

impl<E: Engine> Engine for Metered<E> {
    fn version(&self) -> Result<(String, String), DockerError> {
        self.call("version", |e| e.version())
    }

    fn root_dir(&self) -> Result<PathBuf, DockerError> {
        self.call("root_dir", |e| e.root_dir())
    }

    fn pull(&self, image: &str, timeout: Duration) -> Result<(), DockerError> {
        self.call("pull", |e| e.pull(image, timeout))
    }

    fn ping(&self, deadline: Duration) -> Result<(), DockerError> {
        self.call("ping", |e| e.ping(deadline))
    }

    fn create(&self, opts: &CreateOptions) -> Result<String, DockerError> {
        self.call("create", |e| e.create(opts))
    }

    fn start(&self, id: &str) -> Result<(), DockerError> {
        self.call("start", |e| e.start(id))
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        self.call("stop", |e| e.stop(id, grace))
    }

    fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.call("remove", |e| e.remove(id))
    }

    fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        self.call("inspect", |e| e.inspect(id))
    }

    fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        self.call("rename", |e| e.rename(id, name))
    }

    fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError> {
        self.call("list", |e| e.list(labels))
    }

    fn events(&self, labels: &[String]) -> Result<Events, DockerError> {
        self.call("events", |e| e.events(labels))
    }

    fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream, DockerError> {
        self.call("logs", |e| e.logs(id, opts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker_cli::Docker;

    #[test]
    fn every_call_is_counted_by_operation_and_outcome() {
        let metrics: &'static EngineMetrics = Box::leak(Box::new(EngineMetrics::new()));
        // an engine that is not there: every call fails at once, as unreachable
        let engine = Metered { inner: Docker::new("/nonexistent/skiff-test.sock"), metrics };
        assert!(engine.list(&[]).is_err());
        assert!(engine.inspect("nothing-here").is_err());
        metrics.record("inspect", Timer::start(), &Ok::<(), DockerError>(()));
        metrics.record(
            "create",
            Timer::start(),
            &Err::<(), _>(DockerError::Api { status: 409, message: "in use".into() }),
        );
        let mut page = Page::new();
        metrics.write(&mut page);
        let text = page.into_string();
        for line in [
            "skiff_engine_calls_total{operation=\"list\",outcome=\"unreachable\"} 1\n",
            "skiff_engine_calls_total{operation=\"inspect\",outcome=\"unreachable\"} 1\n",
            "skiff_engine_calls_total{operation=\"inspect\",outcome=\"ok\"} 1\n",
            "skiff_engine_calls_total{operation=\"create\",outcome=\"conflict\"} 1\n",
            "skiff_engine_call_duration_seconds_count{operation=\"inspect\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(!text.contains("operation=\"pull\""), "operations never made are left out: {text}");
    }
}
