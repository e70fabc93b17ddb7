//! `GET /v1/metrics` of both daemons: the page in the Prometheus text format.
//!
//! The manager's page asks its control thread nothing: counters are atomics and its state is the
//! snapshot the control thread published (`metrics::manager()`). The worker's page reads its
//! task table, statistics and health through its handle (reads its control thread answers at
//! once); when that thread does not answer, those families are left out and the rest is served.

use crate::metrics::{self, Kind, Page, RequestMetrics, CONTENT_TYPE};
use crate::sched::Request as Needs;
use crate::task::TaskState;
use crate::worker::WorkerHandle;

use super::Response;

const MB: f64 = 1024.0 * 1024.0;

/// What both pages have: the daemon's build, its API requests, its store writes, the process.
fn common(page: &mut Page, daemon: &str, requests: &RequestMetrics) {
    page.family("skiff_build_info", Kind::Gauge, "Always 1: the daemon and its version, as labels.");
    page.sample("skiff_build_info", &[("daemon", daemon), ("version", env!("CARGO_PKG_VERSION"))], 1.0);
    requests.write(page);
    metrics::store().write(page);
    metrics::process::write(page);
}

fn answer(page: Page) -> Response {
    Response::bytes(200, CONTENT_TYPE, page.into_string().into_bytes())
}

/// The manager's page.
pub fn manager_page(requests: &RequestMetrics) -> Response {
    let mut page = Page::new();
    common(&mut page, "manager", requests);
    metrics::manager().write(&mut page);
    answer(page)
}

/// The worker's page.
pub fn worker_page(h: &WorkerHandle, requests: &RequestMetrics) -> Response {
    let mut page = Page::new();
    common(&mut page, "worker", requests);
    metrics::engine().write(&mut page);
    // a control thread that does not answer is asked nothing more
    if let Ok(tasks) = h.list() {
        page.family("skiff_worker_tasks", Kind::Gauge, "Tasks in the worker's table, by state.");
        for state in TaskState::ALL {
            let n = tasks.iter().filter(|t| t.state == state).count();
            page.sample("skiff_worker_tasks", &[("state", state.as_str())], n as f64);
        }
        let mut allocated = Needs::default();
        for t in tasks.iter().filter(|t| !t.is_terminal()) {
            let n = Needs::of(&t.spec);
            allocated.cpus += n.cpus;
            allocated.memory_mb += n.memory_mb;
            allocated.disk_mb += n.disk_mb;
        }
        let help = "What the worker's unfinished tasks request";
        page.single("skiff_worker_allocated_cpus", Kind::Gauge, &format!("{help}: cores."), allocated.cpus);
        let memory = allocated.memory_mb as f64 * MB;
        page.single("skiff_worker_allocated_memory_bytes", Kind::Gauge, &format!("{help}: memory."), memory);
        let disk = allocated.disk_mb as f64 * MB;
        page.single("skiff_worker_allocated_disk_bytes", Kind::Gauge, &format!("{help}: disk."), disk);
        if let Ok(health) = h.health() {
            let up = if health.engine.reachable { 1.0 } else { 0.0 };
            page.single("skiff_worker_engine_up", Kind::Gauge, "1 while the container engine answers.", up);
            let synced = if health.synced { 1.0 } else { 0.0 };
            page.single("skiff_worker_synced", Kind::Gauge, "1 once the worker has checked its containers.", synced);
        }
        if let Ok(s) = h.stats() {
            let c = s.capacity;
            page.single("skiff_worker_capacity_cpus", Kind::Gauge, "Cores Skiff may place here.", c.cpus);
            let help = "Memory Skiff may place here.";
            page.single("skiff_worker_capacity_memory_bytes", Kind::Gauge, help, c.memory_mb as f64 * MB);
            let help = "Disk Skiff may place here.";
            page.single("skiff_worker_capacity_disk_bytes", Kind::Gauge, help, c.disk_mb as f64 * MB);
            let help = "Busy share of the node's CPUs (0 to 1), last sampled.";
            page.single("skiff_worker_cpu_usage_ratio", Kind::Gauge, help, s.cpu_usage_pct / 100.0);
            let used = s.memory_total_mb.saturating_sub(s.memory_available_mb) as f64 * MB;
            page.single(
                "skiff_worker_memory_used_bytes",
                Kind::Gauge,
                "Memory in use on the node, last sampled.",
                used,
            );
            let used = s.disk_total_mb.saturating_sub(s.disk_free_mb) as f64 * MB;
            let help = "Disk in use on the engine's filesystem, last sampled.";
            page.single("skiff_worker_disk_used_bytes", Kind::Gauge, help, used);
        }
    }
    answer(page)
}
