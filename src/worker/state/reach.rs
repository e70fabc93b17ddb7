//! What the worker knows of its engine and its node: whether the engine answers (from every
//! operation's outcome, the pinger's verdicts and the version question), the words unfinished
//! tasks carry while it does not, and the node's statistics from the sampler.
//!
//! Must not call the engine: it hands ops to the pools like the rest of `State`.

use super::{State, ENGINE_AWAY};
use crate::control::error_chain;
use crate::docker_cli::DockerError;
use crate::logfmt::q;
use crate::stats::{self, NodeStats};
use crate::task::TaskId;
use crate::worker::watch::Sample;
use log::{debug, error, info, warn};
use std::path::PathBuf;

impl State {
    /// Keeps the latest statistics; CPU usage is measured against the previous sample.
    pub fn on_sample(&mut self, s: Sample) {
        let proc = match s.proc {
            Ok(p) => p,
            Err(e) => {
                if self.stats.is_some() {
                    warn!("node statistics unreadable error={e}", e = q(&e));
                }
                self.stats = None;
                return;
            }
        };
        let usage = self.last_cpu.map_or(0.0, |before| stats::cpu_usage_pct(before, proc.cpu));
        self.last_cpu = Some(proc.cpu);
        let (disk_total_mb, disk_free_mb) = s.disk.unwrap_or((0, 0));
        let capacity = stats::capacity(self.config.caps, proc.cpu.count, proc.memory_total_mb, disk_total_mb);
        self.stats = Some(NodeStats {
            node: self.config.name.clone(),
            sampled_at: s.at,
            cpu_count: proc.cpu.count,
            cpu_usage_pct: (usage * 10.0).round() / 10.0,
            load_1: proc.load[0],
            load_5: proc.load[1],
            load_15: proc.load[2],
            memory_total_mb: proc.memory_total_mb,
            memory_available_mb: proc.memory_available_mb,
            disk_path: s.disk_path.display().to_string(),
            disk_total_mb,
            disk_free_mb,
            capacity,
            tasks: self.unfinished(),
        });
    }

    /// The pinger's verdict: an engine that does not answer a ping in time is out of reach,
    /// whatever longer calls are still waiting for.
    pub fn on_ping(&mut self, result: Result<(), DockerError>) {
        match result {
            Ok(()) if !self.engine.reachable => self.note_engine(None),
            Ok(()) => {}
            Err(e) => self.note_engine(Some(&e)),
        }
    }

    pub(super) fn on_version(&mut self, result: Result<(String, String, Option<PathBuf>), DockerError>) {
        match result {
            Ok((version, api, root)) => {
                info!("engine answers version={version} api={api}", version = q(&version), api = q(&api));
                // the disk to measure is the one containers fill
                if root.is_some_and(|root| self.disk_path.send(root).is_err()) {
                    debug!("stats thread gone; the disk path is not passed on");
                }
                self.engine.version = Some(version);
                self.engine.api_version = Some(api);
                self.note_engine(None);
            }
            Err(e) => self.note_engine(Some(&e)),
        }
    }

    /// Keeps the engine's reachability, logging only when it changes.
    pub(super) fn note_engine(&mut self, err: Option<&DockerError>) {
        match err {
            Some(e) if e.is_engine_down() || matches!(e, DockerError::UnsupportedEngine(_)) => {
                if self.engine.reachable || self.engine.error.is_none() {
                    error!("engine unreachable node={} error={}", self.config.name, q(&error_chain(e)));
                    self.mark_tasks(Some(&format!("{ENGINE_AWAY}: {}", error_chain(e))));
                }
                self.engine.reachable = false;
                self.engine.error = Some(error_chain(e));
            }
            Some(_) => {}
            None => {
                if !self.engine.reachable {
                    if self.engine.error.is_some() {
                        info!("engine reachable again node={}", self.config.name);
                        self.mark_tasks(None);
                    }
                    self.engine.reachable = true;
                    self.engine.error = None;
                    if self.engine.version.is_none() {
                        self.ask_version();
                    }
                    // what happened while it was away
                    self.request_sync();
                }
            }
        }
    }

    /// While the engine is away, every unfinished task says so in its `error` (its state cannot
    /// be confirmed); when it answers again, those words go.
    pub(super) fn mark_tasks(&mut self, away: Option<&str>) {
        let ids: Vec<TaskId> = self.entries.iter().filter(|(_, e)| !e.task.is_terminal()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            match away {
                Some(why) if entry.task.error.is_none() => entry.task.error = Some(why.to_string()),
                None if entry.task.error.as_deref().is_some_and(|e| e.starts_with(ENGINE_AWAY)) => {
                    entry.task.error = None
                }
                _ => continue,
            }
            self.persist_quietly(&id);
        }
    }
}
