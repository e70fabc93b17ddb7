//! The worker's watchers, each on a thread of its own so that none can delay the control thread:
//! the node's statistics sampler, one health checker per checked container, the follower of the
//! engine's event stream, and the engine's pinger. Each sends what it sees to the control thread
//! as a message.
//!
//! Must not change the task table or call the engine for anything but reading.

use super::engine::Engine;
use super::LABEL_NODE;
use super::LABEL_TASK_ID;
use crate::clock::Clock;
use crate::control::error_chain;
use crate::docker_cli::DockerError;
use crate::logfmt::q;
use crate::stats::{self, ProcSample};
use crate::task::{HealthCheck, TaskId};
use crate::time::Timestamp;
use crossbeam_channel::{tick, Receiver, RecvTimeoutError, Sender};
use log::debug;
use std::path::PathBuf;
use std::time::Duration;

/// One reading of the node, taken on the stats thread.
pub struct Sample {
    pub at: Timestamp,
    pub proc: Result<ProcSample, String>,
    pub disk_path: PathBuf,
    pub disk: Result<(u64, u64), String>,
}

/// Samples /proc and the engine's disk every `interval`, on its own thread (reading /proc is I/O,
/// however quick, and a statvfs on a hung filesystem could block); each sample is dated by the
/// worker's clock, as everything else it records.
pub fn sample_node(interval: Duration, clock: &dyn Clock, disk_path: &Receiver<PathBuf>, out: &Sender<Sample>) {
    let ticker = tick(interval);
    let mut path = PathBuf::from("/");
    loop {
        while let Ok(p) = disk_path.try_recv() {
            path = p;
        }
        let sample =
            Sample { at: clock.wall(), proc: stats::read_proc(), disk: stats::disk(&path), disk_path: path.clone() };
        if out.send(sample).is_err() || ticker.recv().is_err() {
            return;
        }
    }
}

/// A health checker's verdict on one check of one run of a task's container.
#[derive(Debug, Clone)]
pub struct HealthResult {
    pub id: TaskId,
    pub run: u64,
    pub ok: bool,
    pub detail: String,
}

/// Checks one run of a container every `interval_s` until told to stop (its sender dropped): an
/// HTTP GET of the path on the published host port, from this host, within `timeout_s`; a 2xx or
/// 3xx answer is healthy. One thread per checked container, so a slow one delays no other.
pub fn health_loop(
    id: TaskId,
    run: u64,
    check: &HealthCheck,
    port: u16,
    stop: &Receiver<()>,
    out: &Sender<HealthResult>,
) {
    let url = format!("http://127.0.0.1:{port}{}", check.path);
    // Only ever the task's own port: no redirect is followed (a 3xx already counts as healthy,
    // and following one would let a container make the worker fetch any URL on its host) and
    // no proxy from the environment is used.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(u64::from(check.timeout_s))))
        .build()
        .new_agent();
    let interval = Duration::from_secs(u64::from(check.interval_s));
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let (ok, detail) = match agent.get(&url).call() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                ((200..400).contains(&status), format!("{url} answered {status}"))
            }
            Err(e) => (false, format!("{url}: {e}")),
        };
        if out.send(HealthResult { id, run, ok, detail }).is_err() {
            return;
        }
    }
}

/// Pings the engine every `interval`, each ping answered within `deadline` or reported failed,
/// so that an engine that accepts and never answers is seen within seconds. Calls that are
/// under way keep their own, longer deadlines.
pub fn ping_engine(engine: &dyn Engine, interval: Duration, deadline: Duration, out: &Sender<Result<(), DockerError>>) {
    let ticker = tick(interval);
    loop {
        let result = engine.ping(deadline).map_err(|e| match e {
            DockerError::Io(io)
                if io.kind() == std::io::ErrorKind::TimedOut || io.kind() == std::io::ErrorKind::WouldBlock =>
            {
                DockerError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to a ping within {} ms", deadline.as_millis()),
                ))
            }
            other => other,
        });
        if out.send(result).is_err() || ticker.recv().is_err() {
            return;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// The stream is (re)connected: events may have been missed, so check everything.
    Connected,
    Died {
        container_id: String,
        task_id: Option<TaskId>,
    },
}

/// Follows the engine's event stream for this node's containers, reconnecting with back-off.
pub fn follow_events(engine: &dyn Engine, node: &str, tx: &Sender<EngineEvent>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match engine.events(&[format!("{LABEL_NODE}={node}")]) {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                if tx.send(EngineEvent::Connected).is_err() {
                    return;
                }
                for ev in stream {
                    match ev {
                        Ok(ev) if ev.action == "die" => {
                            let task_id = ev.labels.get(LABEL_TASK_ID).and_then(|v| v.parse().ok());
                            if tx.send(EngineEvent::Died { container_id: ev.id, task_id }).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            debug!("engine event stream broke error={}", q(&error_chain(&e)));
                            break;
                        }
                    }
                }
            }
            Err(e) => debug!("engine event stream unavailable error={}", q(&error_chain(&e))),
        }
        // retry pacing while the engine is away, not synchronisation
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crossbeam_channel::unbounded;

    #[test]
    fn samples_are_dated_by_the_workers_clock() {
        let clock = ManualClock::new(Timestamp(1_795_000_000_000));
        clock.advance(Duration::from_secs(5));
        let (_paths, paths_rx) = unbounded::<PathBuf>();
        let (tx, rx) = unbounded();
        let sampler = std::thread::spawn(move || sample_node(Duration::from_millis(5), &clock, &paths_rx, &tx));
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("a sample");
        assert_eq!(first.at, Timestamp(1_795_000_005_000), "the manual clock's time, not the system's");
        drop(rx);
        sampler.join().expect("the sampler ends once nobody takes its samples");
    }
}
