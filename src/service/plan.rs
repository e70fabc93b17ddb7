//! A service's pure plan: from the service (the version wanted, replicas, policy, the update in
//! progress), its tasks and the nodes to the steps that keep the count and move an update on:
//! start a replica (with the nodes it may go to, spread first), place one waiting again, stop one,
//! and change the update's state (done, failed → rollback or pause, a note).
//!
//! No I/O, no clock (`now` comes in): the manager's control thread applies the steps through its
//! own placement, start and stop paths (`manager::services`). Every rule is tested from tables.
//!
//! The rules, in order:
//! - a task of the version wanted, started since the update's current step began, that failed,
//!   completed or restarted in place fails the update: nothing else is done in that plan;
//! - Pending replicas are placed (again), spread first: nodes with fewer replicas of the service
//!   come first, nodes where a fixed host port of the template is taken are left out (and when
//!   that sends a replica past a node spread would have chosen, the step says so);
//! - at rest (no update moving), the count is kept: missing replicas started, extra ones stopped
//!   newest first;
//! - start-first: up to `parallelism` new replicas beyond the count, and an old one stopped only
//!   when a new one has been ready (Running for `monitor_s`; with a health check, healthy for
//!   `monitor_s` from the first passing verdict the manager saw), so
//!   that never fewer than `replicas` run; when a host port leaves a new replica no node and
//!   only the service's own old replicas hold it somewhere, that step stops one of those first
//!   and the update says so (a port other tasks hold makes a node infeasible: the replica waits
//!   Pending with the reason rather than the old ones being stopped for nothing);
//! - stop-first: `parallelism` old replicas stopped once the new ones before them are ready, then
//!   new ones started in their place;
//! - the update is done when no old replica is left and `replicas` new ones are ready.

use crate::service::{Service, UpdateOrder, UpdateState};
use crate::task::{DesiredState, Protocol, Task, TaskId, TaskSpec, TaskState};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// A node as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub name: String,
    /// `None` when it can take tasks; otherwise why not.
    pub unavailable: Option<String>,
    /// Fixed host ports that unfinished tasks outside the service (single tasks, other
    /// services) hold on the node; the service's own are read from its tasks.
    pub ports_taken: Vec<(u16, Protocol)>,
}

/// A node a replica may go to, with the replicas of the service it has: placement tries the
/// nodes with the fewest first and lets the scheduler choose among equals.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub node: String,
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new replica of `version`; no candidates: it waits Pending with `why`. `moved` says
    /// which node a fixed host port kept it off, when spread alone would have sent it there.
    Start { version: u32, candidates: Vec<Candidate>, why: Option<String>, moved: Option<String> },
    /// A Pending replica (never placed, or back from a lost node) to place.
    Place { id: TaskId, candidates: Vec<Candidate>, why: Option<String>, moved: Option<String> },
    /// Stop a replica, for the reason given.
    Stop { id: TaskId, reason: String },
    /// The update moves to `state` (done, rolled back, failed, paused), for the reason given.
    Transition { state: UpdateState, reason: Option<String> },
    /// The update had to do something differently; recorded once.
    Note(String),
}

/// What the plan needs of the service's versions: their templates' fixed host ports.
fn fixed_ports(spec: &TaskSpec) -> Vec<(u16, Protocol)> {
    spec.ports.iter().filter_map(|p| p.host.filter(|&h| h != 0).map(|h| (h, p.protocol))).collect()
}

/// Whether a new replica of an update counts as up: Running for `monitor_ms` since its
/// container started; with a health check, healthy for `monitor_ms` since the manager first saw
/// it healthy (a failing or missing verdict in between starts the count again).
fn ready(t: &Task, monitor_ms: u64, now: Timestamp) -> bool {
    let since = match t.spec.health_check {
        Some(_) => t.healthy_since.filter(|_| t.healthy == Some(true)),
        None => t.started_at.filter(|_| t.healthy != Some(false)),
    };
    t.state == TaskState::Running && since.is_some_and(|s| now.since(s) >= monitor_ms)
}

/// Why a task of the version wanted means the update failed, if it does.
fn failure(t: &Task) -> Option<String> {
    let short = t.id.short();
    match t.state {
        TaskState::Failed => {
            Some(format!("replica {short} failed: {}", t.error.as_deref().unwrap_or("its container failed")))
        }
        TaskState::Completed => Some(format!("replica {short} exited by itself (code 0)")),
        _ if t.restart_count > 0 => Some(format!(
            "replica {short} restarted in place: {}",
            t.error.as_deref().unwrap_or("its container exited")
        )),
        _ => None,
    }
}

/// Everything to do for one service now. `tasks` are the service's tasks (finished ones too).
pub fn plan(service: &Service, tasks: &[&Task], nodes: &[PlanNode], now: Timestamp) -> Vec<Step> {
    let mut steps = plan_steps(service, tasks, nodes, now);
    // replicas that keep failing are replaced after a back-off, not at every pass: 1 s after the
    // first failure, doubling with each failure in the last ten minutes, at most a minute
    if let Some(until) = replacement_backoff(tasks, now) {
        if now < until {
            steps.retain(|s| !matches!(s, Step::Start { .. }));
        }
    }
    steps
}

/// When the next replacement may start, if replicas failed lately.
fn replacement_backoff(tasks: &[&Task], now: Timestamp) -> Option<Timestamp> {
    const WINDOW_MS: u64 = 10 * 60 * 1000;
    let failed: Vec<Timestamp> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed && t.desired_state == DesiredState::Running)
        .filter_map(|t| t.finished_at)
        .filter(|at| now.since(*at) < WINDOW_MS)
        .collect();
    let last = failed.iter().max()?;
    let delay = (1000u64 << (failed.len() - 1).min(6)).min(60_000);
    Some(Timestamp(last.millis() + delay))
}

fn plan_steps(service: &Service, tasks: &[&Task], nodes: &[PlanNode], now: Timestamp) -> Vec<Step> {
    let mut steps = Vec::new();
    let target = service.version;
    let update = service.update.as_ref().filter(|u| u.state.is_active());
    if let Some(u) = update {
        let failed = tasks
            .iter()
            .filter(|t| t.service_version == Some(target) && t.created_at >= u.step_since)
            .filter(|t| t.desired_state == DesiredState::Running)
            .find_map(|t| failure(t));
        if let Some(why) = failed {
            let to = match (u.state, service.policy.failure_action) {
                (UpdateState::Updating, crate::service::FailureAction::Rollback) => UpdateState::RollingBack,
                _ => UpdateState::Paused,
            };
            steps.push(Step::Transition { state: to, reason: Some(format!("version {target}: {why}")) });
            return steps;
        }
    }
    let mut live: Vec<&Task> =
        tasks.iter().copied().filter(|t| !t.is_terminal() && t.desired_state == DesiredState::Running).collect();
    live.sort_by_key(|t| (t.created_at, t.id));
    // where replicas are, and which fixed host ports are taken where (copies being stopped too:
    // their ports are not free until they are gone)
    let mut counts: BTreeMap<&str, u32> = nodes.iter().map(|n| (n.name.as_str(), 0)).collect();
    let mut taken: BTreeMap<&str, Vec<Held>> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.ports_taken.iter().map(|&(port, proto)| (port, proto, Holder::Other)).collect()))
        .collect();
    for t in tasks.iter().filter(|t| !t.is_terminal() && t.state != TaskState::Pending) {
        let Some(node) = t.node.as_deref() else { continue };
        let wanted = t.desired_state == DesiredState::Running;
        if wanted {
            *counts.entry(node).or_default() += 1;
        }
        let holder = if wanted && t.service_version != Some(target) { Holder::Old } else { Holder::Own };
        taken
            .entry(node)
            .or_default()
            .extend(fixed_ports(&t.spec).into_iter().map(|(port, proto)| (port, proto, holder)));
    }
    let mut spread = Spread { nodes, counts, taken };
    let stopping = tasks.iter().filter(|t| !t.is_terminal() && t.desired_state == DesiredState::Stopped).count();
    // the version a replica started now runs: a paused update keeps the count with the old one
    let paused = service.update.as_ref().filter(|u| u.state == UpdateState::Paused);
    let start_version = paused.map_or(target, |u| u.from);
    let start_spec = service.template(start_version);
    for t in live.iter().filter(|t| t.state == TaskState::Pending) {
        let Choice { candidates, why, moved } = spread.candidates(&t.spec);
        steps.push(Step::Place { id: t.id, candidates, why, moved });
    }
    let replicas = service.replicas as usize;
    let Some(u) = update else {
        keep_count(&live, replicas, start_version, start_spec, &mut spread, &mut steps);
        return steps;
    };
    let (new, old): (Vec<&Task>, Vec<&Task>) = live.iter().partition(|t| t.service_version == Some(target));
    let monitor_ms = u64::from(service.policy.monitor_s) * 1000;
    let new_ready = new.iter().filter(|t| ready(t, monitor_ms, now)).count();
    let new_waiting = new.len() - new_ready;
    let p = service.policy.parallelism as usize;
    if old.is_empty() {
        keep_count(&live, replicas, target, start_spec, &mut spread, &mut steps);
        if new_ready >= replicas {
            let done =
                if u.state == UpdateState::RollingBack { UpdateState::RolledBack } else { UpdateState::Completed };
            steps.push(Step::Transition { state: done, reason: u.reason.clone() });
        }
        return steps;
    }
    // old replicas not running are replaced first: stopping them costs nothing
    let mut old_order: Vec<&Task> = old.clone();
    old_order.sort_by_key(|t| (t.state == TaskState::Running, t.created_at, t.id));
    let reason = format!("replaced by version {target}");
    match service.policy.order {
        UpdateOrder::StartFirst => {
            let room = (replicas + p).saturating_sub(live.len());
            let starts = replicas.saturating_sub(new.len()).min(p.saturating_sub(new_waiting)).min(room);
            // nodes a new replica could go to once an old replica of the service there is gone
            let freeable = start_spec.map(|s| spread.freeable(s)).unwrap_or_default();
            // new replicas already waiting Pending for such a node count as starts held back
            let held_back = if freeable.is_empty() {
                0
            } else {
                let no_node = |t: &&&Task| spread.candidates(&t.spec).candidates.is_empty();
                new.iter().filter(|t| t.state == TaskState::Pending).filter(no_node).count()
            };
            let mut forced = held_back;
            let mut skipped: Vec<Choice> = Vec::new();
            for _ in 0..starts {
                let choice = start_spec.map_or_else(Choice::default, |s| spread.candidates(s));
                if choice.candidates.is_empty() && !freeable.is_empty() {
                    forced += 1;
                    skipped.push(choice);
                    continue;
                }
                spread.count(&choice.candidates, start_spec);
                let Choice { candidates, why, moved } = choice;
                steps.push(Step::Start { version: target, candidates, why, moved });
            }
            let stops = (old.len() + new_ready).saturating_sub(replicas);
            let mut stopped = 0;
            for t in old_order.iter().take(stops) {
                steps.push(Step::Stop { id: t.id, reason: reason.clone() });
                stopped += 1;
            }
            // a host port free on no node but where the service's own old replicas hold it:
            // this step stops one of those first (a port other tasks hold is no reason to), and
            // only while no more than `parallelism` replicas are down with it: a node freed
            // that another task then takes must not cost a second old replica
            let up = live.iter().filter(|t| t.state != TaskState::Pending).count();
            let allowed = forced.min(p).min(p.saturating_sub(replicas.saturating_sub(up)));
            if forced > 0 && allowed == 0 && stopping == 0 {
                // the replacements wait Pending, with why, until room appears (a stop under
                // way frees a node by itself)
                for Choice { candidates, why, moved } in skipped {
                    steps.push(Step::Start { version: target, candidates, why, moved });
                }
            } else if forced > 0 && stopped == 0 && new_waiting == held_back && stopping == 0 {
                let ports = start_spec.map(fixed_ports).unwrap_or_default();
                let port = ports.first().map_or(0, |p| p.0);
                let note = format!(
                    "host port {port} is free on no node but where the old version holds it: replicas are stopped before their replacement starts"
                );
                if u.note.as_deref() != Some(note.as_str()) {
                    steps.push(Step::Note(note));
                }
                let holds = |t: &&&Task| {
                    t.node.as_deref().is_some_and(|n| freeable.contains(&n))
                        && fixed_ports(&t.spec).iter().any(|p| ports.contains(p))
                };
                for t in old_order.iter().filter(holds).take(allowed) {
                    steps.push(Step::Stop { id: t.id, reason: format!("{reason} (stopped first: host port {port})") });
                }
            }
        }
        UpdateOrder::StopFirst => {
            // only at full strength, with nothing new still starting and nothing old still
            // stopping: at most `parallelism` replicas are ever down at once
            let mut stopped = 0;
            if new_waiting == 0 && stopping == 0 && live.len() >= replicas {
                for t in old_order.iter().take(p) {
                    steps.push(Step::Stop { id: t.id, reason: reason.clone() });
                    stopped += 1;
                }
            }
            // the replacements of what this pass stops start in the same pass
            let starts = replicas.saturating_sub(live.len().saturating_sub(stopped));
            for _ in 0..starts {
                let Choice { candidates, why, moved } =
                    start_spec.map_or_else(Choice::default, |s| spread.candidates(s));
                spread.count(&candidates, start_spec);
                steps.push(Step::Start { version: target, candidates, why, moved });
            }
        }
    }
    steps
}

/// At rest: start what is missing, stop the newest of what is too many.
fn keep_count(
    live: &[&Task],
    replicas: usize,
    version: u32,
    spec: Option<&TaskSpec>,
    spread: &mut Spread,
    steps: &mut Vec<Step>,
) {
    if live.len() < replicas {
        for _ in live.len()..replicas {
            let Choice { candidates, why, moved } = match spec {
                Some(s) => spread.candidates(s),
                None => Choice { why: Some(format!("version {version} is no longer kept")), ..Choice::default() },
            };
            spread.count(&candidates, spec);
            steps.push(Step::Start { version, candidates, why, moved });
        }
    } else if live.len() > replicas {
        // newest first, and among those, ones not running yet first
        let mut order: Vec<&Task> = live.to_vec();
        order.sort_by_key(|t| (std::cmp::Reverse(t.created_at), t.state == TaskState::Running, t.id));
        for t in order.into_iter().take(live.len() - replicas) {
            steps.push(Step::Stop { id: t.id, reason: format!("scaled down to {replicas}") });
        }
    }
}

/// Who holds a fixed host port on a node, as placing a replica sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A task outside the service: the node is out for as long as that task runs.
    Other,
    /// A replica of the service of another version than the one wanted, still wanted running:
    /// stopping it frees the port.
    Old,
    /// A replica of the version wanted (running, or sent by this plan), or one being stopped.
    Own,
}

type Held = (u16, Protocol, Holder);

/// Where a replica may go: the candidates, fewest replicas first; why there is none; and which
/// nodes a fixed host port kept it off that spread alone would have chosen.
#[derive(Debug, Clone, Default, PartialEq)]
struct Choice {
    candidates: Vec<Candidate>,
    why: Option<String>,
    moved: Option<String>,
}

/// Spreading across nodes, with the replicas this plan has already sent counted in.
struct Spread<'a> {
    nodes: &'a [PlanNode],
    counts: BTreeMap<&'a str, u32>,
    taken: BTreeMap<&'a str, Vec<Held>>,
}

impl<'a> Spread<'a> {
    /// Who holds which of `ports` on `node`.
    fn clashes(&self, node: &str, ports: &[(u16, Protocol)]) -> Vec<(u16, Holder)> {
        let held = self.taken.get(node).map_or(&[][..], Vec::as_slice);
        held.iter().filter(|(port, proto, _)| ports.contains(&(*port, *proto))).map(|&(port, _, h)| (port, h)).collect()
    }

    /// The nodes a replica of `spec` may go to, fewest replicas first; or why there is none.
    fn candidates(&self, spec: &TaskSpec) -> Choice {
        let ports = fixed_ports(spec);
        let mut why = Vec::new();
        let mut kept_off = Vec::new();
        let mut out = Vec::new();
        for n in self.nodes {
            if let Some(u) = &n.unavailable {
                why.push(format!("{}: {u}", n.name));
                continue;
            }
            let replicas = self.counts.get(n.name.as_str()).copied().unwrap_or(0);
            let clashes = self.clashes(&n.name, &ports);
            // another task's hold is the one to name: it is the one that does not go away
            let clash = clashes.iter().find(|c| c.1 == Holder::Other).or(clashes.first());
            if let Some(&(port, holder)) = clash {
                let by = if holder == Holder::Other { "another task" } else { "a replica of the service" };
                why.push(format!("{}: host port {port} taken by {by}", n.name));
                kept_off.push((replicas, format!("{} (host port {port} taken by {by})", n.name)));
                continue;
            }
            out.push(Candidate { node: n.name.clone(), replicas });
        }
        out.sort_by(|a, b| a.replicas.cmp(&b.replicas).then_with(|| a.node.cmp(&b.node)));
        // a node left out that holds no more replicas than the one chosen: the port moved it
        let moved: Vec<String> = match out.first() {
            Some(first) => kept_off.into_iter().filter(|(r, _)| *r <= first.replicas).map(|(_, n)| n).collect(),
            None => Vec::new(),
        };
        let moved = (!moved.is_empty()).then(|| format!("not on {}", moved.join(", ")));
        let why = if out.is_empty() {
            Some(if why.is_empty() {
                "no nodes".to_string()
            } else {
                format!("no node can take it ({})", why.join("; "))
            })
        } else {
            None
        };
        Choice { candidates: out, why, moved }
    }

    /// The available nodes where only the service's old replicas hold a fixed host port of
    /// `spec`: stopping those would make room there. Ports held by other tasks do not count.
    fn freeable(&self, spec: &TaskSpec) -> Vec<&'a str> {
        let ports = fixed_ports(spec);
        if ports.is_empty() {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|n| n.unavailable.is_none())
            .filter(|n| {
                let clashes = self.clashes(&n.name, &ports);
                !clashes.is_empty() && clashes.iter().all(|c| c.1 == Holder::Old)
            })
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Counts a replica on the first candidate (where placement most likely puts it), so that a
    /// batch of starts spreads too.
    fn count(&mut self, candidates: &[Candidate], spec: Option<&TaskSpec>) {
        let Some(first) = candidates.first() else { return };
        if let Some(n) = self.nodes.iter().find(|n| n.name == first.node) {
            *self.counts.entry(n.name.as_str()).or_default() += 1;
            let ports = spec.map(fixed_ports).unwrap_or_default();
            self.taken
                .entry(n.name.as_str())
                .or_default()
                .extend(ports.into_iter().map(|(p, pr)| (p, pr, Holder::Own)));
        }
    }
}

#[cfg(test)]
mod tests;
