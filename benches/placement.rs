//! Placements per second of each scheduler over synthetic node tables of 100, 1,000 and 5,000
//! nodes with realistic statistics. Run with `cargo bench --bench placement`.
//!
//! Each placement is what the manager does per task: pick a node (feasibility and scoring over
//! the whole table) and record the allocation in the table. Nodes come in a few machine sizes,
//! carry measured load, some are down, some nearly full; tasks ask for a mix of sizes.
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

use skiff::sched::{NodeState, NodeTable, Request, SchedulerKind, Usage};
use skiff::stats::Resources;
use std::time::Instant;

/// A small deterministic generator (xorshift), so every run sees the same tables.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Machine sizes of a small fleet: cores and memory.
const SIZES: [(f64, u64); 5] = [(2.0, 4096), (4.0, 8192), (8.0, 16384), (16.0, 65536), (4.0, 16384)];

fn table(n: usize, rng: &mut Rng) -> NodeTable {
    let nodes = (0..n)
        .map(|i| {
            let (cpus, memory_mb) = SIZES[rng.below(SIZES.len() as u64) as usize];
            let capacity = Resources { cpus, memory_mb, disk_mb: 100_000 };
            let fill = rng.unit() * 0.7;
            let tasks = rng.below(12) as u32;
            NodeState {
                name: format!("node-{i:05}"),
                // 2 % of nodes are down at any time
                unavailable: (rng.below(50) == 0).then(|| "down".to_string()),
                capacity: Some(capacity),
                allocated: Resources {
                    cpus: (cpus * fill * 4.0).round() / 4.0,
                    memory_mb: (memory_mb as f64 * fill) as u64,
                    disk_mb: (20_000.0 * fill) as u64,
                },
                usage: Usage { cpu: rng.unit() * 0.8, memory: 0.1 + rng.unit() * 0.5 },
                tasks,
                disk_free_mb: Some(60_000),
            }
        })
        .collect();
    NodeTable::new(nodes)
}

/// Task sizes: mostly small services, some bigger ones.
fn request(rng: &mut Rng) -> Request {
    match rng.below(10) {
        0..=5 => Request { cpus: 0.25, memory_mb: 128, disk_mb: 100 },
        6..=8 => Request { cpus: 0.5, memory_mb: 512, disk_mb: 500 },
        _ => Request { cpus: 2.0, memory_mb: 2048, disk_mb: 2000 },
    }
}

fn main() {
    println!("for scale: kube-scheduler places about 1,150 pods/s at 5,000 nodes; the target is ten times that");
    println!("{:<12} {:>6} {:>10} {:>14} {:>12}", "scheduler", "nodes", "placements", "placements/s", "us/placement");
    for kind in [SchedulerKind::RoundRobin, SchedulerKind::Epvm] {
        for n in [100, 1_000, 5_000] {
            let mut rng = Rng(0x5eed_0000 + n as u64);
            // about two tasks per node: the cluster fills up but most placements still find room
            let placements = 2 * n;
            let mut scheduler = kind.build();
            let mut best = f64::INFINITY;
            let mut placed = 0;
            // best of three runs, each on a fresh table, so a hiccup of the machine does not count
            for _ in 0..3 {
                let mut t = table(n, &mut rng);
                let reqs: Vec<Request> = (0..placements).map(|_| request(&mut rng)).collect();
                placed = 0;
                let started = Instant::now();
                for req in &reqs {
                    if let Ok(i) = scheduler.pick(req, &t) {
                        t.allocate(i, req);
                        placed += 1;
                    }
                }
                best = best.min(started.elapsed().as_secs_f64());
            }
            let rate = placements as f64 / best;
            println!(
                "{:<12} {:>6} {:>10} {:>14.0} {:>12.2}",
                kind.name(),
                n,
                format!("{placed}/{placements}"),
                rate,
                1e6 / rate
            );
        }
    }
}
