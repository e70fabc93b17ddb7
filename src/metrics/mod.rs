//! Prometheus metrics of both daemons (`GET /v1/metrics`): what is counted, where it is kept,
//! and how a page is written.
//!
//! Counting is cheap and never waits: counters and histogram buckets are atomics, updated where
//! things happen (the manager's control loop, its poll threads, the HTTP handlers, the engine
//! and store wrappers). What describes the state rather than events (tasks by state, nodes) is
//! a snapshot the manager's control thread publishes after each change (`ManagerMetrics::publish`),
//! so a scrape never queues behind that thread. The worker's state comes from its handle at
//! scrape time (`http::metrics`).
//!
//! The map:
//! - `text`: the exposition format (families, samples, escaping, histograms);
//! - `requests`: API requests by route pattern, method and status, per server;
//! - `manager`: the manager's counters (placements, failures by reason, restarts, moves,
//!   reconcile passes, polls) and its published snapshot;
//! - `engine`: the worker's engine calls by operation and outcome (`Metered`, a wrapper of the
//!   `Engine` seam: the only part that sits above `worker`);
//! - `store`: store writes by operation and outcome (`MeteredStore`, wraps any `Store`);
//! - `process`: the standard `process_*` series, read from `/proc/self`.
//!
//! The registries are per process (`manager()`, `engine()`, `store()`): one daemon runs per
//! process. Request counts are per server (`RequestMetrics`), since tests run several in one.
//! Must not decide anything or hold domain state beyond the published snapshot.

pub mod engine;
pub mod manager;
pub mod process;
pub mod requests;
pub mod store;
pub mod text;

pub use engine::Metered;
pub use manager::{manager, ManagerMetrics, Move};
pub use requests::RequestMetrics;
pub use store::MeteredStore;
pub use text::{HistogramValue, Kind, Page, CONTENT_TYPE};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of every latency histogram, in seconds: from half a millisecond (a read on the
/// control thread) to a minute (an image pull, a stop with its grace period).
pub const LATENCY_BOUNDS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        // a count needs no ordering with other memory: each is read on its own
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Durations in the `LATENCY_BOUNDS` buckets, and their sum (in nanoseconds): one atomic add per
/// bucket and one for the sum, no lock.
#[derive(Debug)]
pub struct Histogram {
    /// One per bound, and one more for what is above the last.
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram { counts: [const { AtomicU64::new(0) }; LATENCY_BOUNDS.len() + 1], sum_ns: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How many observations there are (not atomic with the buckets: for tests and checks).
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn value(&self) -> HistogramValue<'static> {
        HistogramValue {
            bounds: &LATENCY_BOUNDS,
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// When a measured thing began. Measures on the system's monotonic clock even in the manager's
/// control loop (which otherwise reads its `Clock`): a duration reported is never a decision,
/// and a test's manual clock would make every one zero.
#[derive(Debug, Clone, Copy)]
pub struct Timer(Instant);

impl Timer {
    pub fn start() -> Timer {
        Timer(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The engine calls of this process (a worker's).
pub fn engine() -> &'static engine::EngineMetrics {
    static ENGINE: engine::EngineMetrics = engine::EngineMetrics::new();
    &ENGINE
}

/// The store writes of this process.
pub fn store() -> &'static store::StoreMetrics {
    static STORE: store::StoreMetrics = store::StoreMetrics::new();
    &STORE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_duration_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(500)); // on a bound: in that bucket
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(120));
        let v = h.value();
        assert_eq!(v.counts[0], 2);
        assert_eq!(v.counts[3], 1, "3 ms is under the 5 ms bound");
        assert_eq!(v.counts[LATENCY_BOUNDS.len()], 1, "above the last bound");
        assert_eq!(h.count(), 4);
        assert!((v.sum - 120.0036).abs() < 1e-9, "{}", v.sum);
    }

    #[test]
    fn counters_add() {
        let c = Counter::new();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
    }
}
