//! Publishing services through the ingress: which routes the cluster wants (`routes`, pure: each
//! published service's replicas that run, are wanted running and, when checked, healthy, at
//! their node's address and host port), the control thread's side (`Publisher`: routes handed
//! over only when they changed, numbered; which replicas the ingress is known to route to; stops
//! of such replicas held until a route without them is live), and the ingress thread, which owns
//! the `Ingress` and is the only one to wait on it.
//!
//! The ingress thread takes the latest routes handed to it (older ones waiting behind are
//! dropped: only the last matters), applies them, and between changes calls `ensure` every
//! `ENSURE_EVERY`, so that a Caddy that restarted and lost its config gets the routes again. A
//! failed apply is made again at the next of those moments. It reports each applied generation
//! and each change of error back to the control thread as an observation, and logs an error once
//! per change of error.
//!
//! Must not block the control thread: `Publisher` only compares and sends on a channel.

use super::node::Observation;
use super::state::State;
use crate::api::IngressStatus;
use crate::control::{best_effort, spawn_thread, SpawnError};
use crate::ingress::{AppRoute, CaddyIngress, Drift, Ingress, Settings, Tls};
use crate::logfmt::q;
use crate::service::{Publish, Service};
use crate::task::{DesiredState, Protocol, Task, TaskId, TaskState};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use log::{info, warn};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the ingress thread checks that Caddy still holds the routes.
pub const ENSURE_EVERY: Duration = Duration::from_secs(2);
/// The deadline of each call to Caddy's admin API (a config change waits for Caddy's reload).
pub const ADMIN_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a stop of a routed replica waits for a route without it to be live (Caddy down:
/// the stop goes on, and the route's retries cover the replica that goes away).
pub const STOP_HOLD: Duration = Duration::from_secs(3);
/// Generations sent and not yet known applied that are remembered (older ones are dropped: an
/// answer about them changes nothing).
const SENT_KEPT: usize = 64;

/// Makes the ingress the thread will own.
pub type IngressMaker = Arc<dyn Fn() -> Box<dyn Ingress> + Send + Sync>;

/// The manager's ingress: where Caddy's admin API is, the settings of Skiff's server, and how
/// to make the applier (a fake in tests).
#[derive(Clone)]
pub struct PublishConfig {
    pub admin: String,
    pub settings: Settings,
    pub connect: IngressMaker,
}

impl PublishConfig {
    /// Caddy's admin API at `admin`, each call within `ADMIN_DEADLINE`.
    pub fn caddy(admin: &str, settings: Settings) -> PublishConfig {
        let (a, s) = (admin.to_string(), settings.clone());
        let connect: IngressMaker =
            Arc::new(move || Box::new(CaddyIngress::new(&a, s.clone(), ADMIN_DEADLINE)) as Box<dyn Ingress>);
        PublishConfig { admin: admin.to_string(), settings, connect }
    }
}

impl PublishConfig {
    /// The ingress of the manager's flags, each checked (`--ingress-admin` HOST:PORT,
    /// `--ingress-listen` [HOST]:PORT, `--domain` lower-case host labels joined by dots).
    pub fn from_flags(admin: &str, listen: &str, domain: &str) -> Result<PublishConfig, String> {
        crate::cli::check_address(admin).map_err(|m| format!("--ingress-admin: {m}"))?;
        let port = listen.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
        if !matches!(port, Some(Ok(p)) if p > 0) {
            return Err(format!("--ingress-listen {listen:?}: an address caddy can listen on, [HOST]:PORT"));
        }
        let mut settings = Settings::new(listen);
        settings.domain = domain.to_string();
        // the route of a sample app says whether the domain can end a host name
        settings.route("app", &[]).map_err(|e| format!("--domain: {e}"))?;
        Ok(PublishConfig::caddy(admin, settings))
    }
}

impl std::fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishConfig").field("admin", &self.admin).field("settings", &self.settings).finish()
    }
}

/// The routes wanted at one moment, numbered in the order they were handed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub generation: u64,
    pub routes: Vec<AppRoute>,
}

/// What the ingress thread tells the control thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The generation now live in Caddy, when this report is about an apply.
    pub applied: Option<u64>,
    /// The last call's error; `None` once a call succeeded.
    pub error: Option<String>,
}

/// `HOST:PORT` at which a replica of a published service receives requests, if it should:
/// Running and wanted running, healthy when it has a health check (and not known unhealthy
/// otherwise), on a node whose address is known, with a host port for the published port.
pub fn upstream(task: &Task, publish: &Publish, host_of: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if task.state != TaskState::Running || task.desired_state != DesiredState::Running {
        return None;
    }
    let healthy = match task.spec.health_check {
        Some(_) => task.healthy == Some(true),
        None => task.healthy != Some(false),
    };
    if !healthy {
        return None;
    }
    let host = host_of(task.node.as_deref()?)?;
    let binding = task.ports.iter().find(|b| b.container == publish.port && b.protocol == Protocol::Tcp)?;
    (binding.host != 0).then(|| format!("{host}:{}", binding.host))
}

/// The host part of a node's `HOST:PORT` address (`[::1]` keeps its brackets).
pub fn host_of_address(address: &str) -> Option<String> {
    let (host, _) = address.rsplit_once(':')?;
    (!host.is_empty()).then(|| host.to_string())
}

/// Every published service's route, sorted by name, each with its upstreams sorted (so that the
/// same cluster gives the same routes, and an unchanged one no apply); and the replicas routed.
/// A service that cannot be routed (a name or health path the ingress refuses) is left out and
/// said so in the log.
pub fn routes<'t>(
    services: &BTreeMap<String, Service>,
    tasks: impl IntoIterator<Item = &'t Task>,
    host_of: &dyn Fn(&str) -> Option<String>,
    settings: &Settings,
) -> (Vec<AppRoute>, HashSet<TaskId>) {
    let mut upstreams: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut members = HashSet::new();
    for task in tasks {
        let Some(service) = task.service.as_deref().and_then(|name| services.get(name)) else { continue };
        let Some(publish) = &service.publish else { continue };
        if let Some(u) = upstream(task, publish, host_of) {
            upstreams.entry(service.name.as_str()).or_default().push(u);
            members.insert(task.id);
        }
    }
    let mut out = Vec::new();
    for service in services.values() {
        let Some(publish) = &service.publish else { continue };
        let mut list = upstreams.remove(service.name.as_str()).unwrap_or_default();
        list.sort();
        list.dedup();
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        match settings.route(&service.name, &refs).and_then(|r| r.with_health_path(&publish.health_path)) {
            Ok(route) => out.push(route),
            Err(e) => warn!("service not routed service={} error={}", service.name, q(&e.to_string())),
        }
    }
    (out, members)
}

/// The URL a published service is reached at through the ingress: `http://NAME.DOMAIN`, with
/// the port Caddy listens on unless it is the scheme's own.
pub fn url(settings: &Settings, name: &str) -> String {
    let (scheme, default) = match settings.tls {
        Tls::Off => ("http", "80"),
        Tls::Automatic => ("https", "443"),
    };
    let port = settings.listen.rsplit_once(':').map_or("", |(_, p)| p);
    let port = if port.is_empty() || port == default { String::new() } else { format!(":{port}") };
    format!("{scheme}://{name}.{}{port}", settings.domain)
}

/// The control thread's side of the ingress.
pub(super) struct Publisher {
    pub(super) config: PublishConfig,
    tx: Sender<Wanted>,
    /// The routes last handed over.
    last: Option<Vec<AppRoute>>,
    generation: u64,
    /// The replicas routed by each generation handed over and not yet known applied.
    sent: VecDeque<(u64, HashSet<TaskId>)>,
    /// The replicas the routes live in Caddy send requests to, as far as the manager knows.
    live: HashSet<TaskId>,
    applied: Option<u64>,
    /// Since when each replica to be stopped has waited for a route without it, and whether
    /// that wait ran out (then it is not waited for again).
    holds: HashMap<TaskId, (Instant, bool)>,
    pub(super) error: Option<String>,
}

impl Publisher {
    /// Starts the ingress thread, which reports through `report`.
    pub(super) fn spawn(config: PublishConfig, observations: Sender<Observation>) -> Result<Publisher, SpawnError> {
        let report = move |r: Report| best_effort(observations.send(Observation::Ingress(r)));
        Publisher::spawn_with(config, report, ENSURE_EVERY)
    }

    fn spawn_with(
        config: PublishConfig,
        report: impl Fn(Report) + Send + 'static,
        every: Duration,
    ) -> Result<Publisher, SpawnError> {
        let (tx, rx) = unbounded();
        let connect = config.connect.clone();
        // not joined: it ends when the control thread's sender goes, after the call under way
        // (each within its deadline)
        spawn_thread("manager-ingress", move || run(connect(), &rx, &report, every))?;
        Ok(Publisher {
            config,
            tx,
            last: None,
            generation: 0,
            sent: VecDeque::new(),
            live: HashSet::new(),
            applied: None,
            holds: HashMap::new(),
            error: None,
        })
    }

    /// Hands `routes` to the ingress thread if they differ from the last ones; whether they did.
    pub(super) fn offer(&mut self, routes: Vec<AppRoute>, members: HashSet<TaskId>) -> bool {
        if self.last.as_ref() == Some(&routes) {
            return false;
        }
        self.generation += 1;
        info!("ingress routes changed generation={} apps={}", self.generation, routes.len());
        best_effort(self.tx.send(Wanted { generation: self.generation, routes: routes.clone() }));
        self.sent.push_back((self.generation, members));
        while self.sent.len() > SENT_KEPT {
            self.sent.pop_front();
        }
        self.last = Some(routes);
        true
    }

    pub(super) fn on_report(&mut self, report: Report) {
        // an answer about a generation older than the live one (cannot happen from one thread,
        // but costs nothing to refuse) changes nothing of what is live
        if let Some(g) = report.applied.filter(|g| self.applied.is_none_or(|a| a < *g)) {
            while let Some((first, _)) = self.sent.front() {
                if *first > g {
                    break;
                }
                if let Some((n, members)) = self.sent.pop_front() {
                    if n == g {
                        self.live = members;
                    }
                }
            }
            self.applied = Some(g);
            let (live, sent) = (&self.live, &self.sent);
            self.holds.retain(|id, _| live.contains(id) || sent.iter().any(|(_, m)| m.contains(id)));
        }
        self.error = report.error;
    }

    /// Whether the stop of `id` is to wait: routes that may be live in Caddy still send it
    /// requests (the last known applied, or one handed over whose answer has not come: it may be
    /// live already), and it has not waited `STOP_HOLD` yet.
    pub(super) fn hold_stop(&mut self, id: TaskId, now: Instant) -> bool {
        let routed = self.live.contains(&id) || self.sent.iter().any(|(_, members)| members.contains(&id));
        if !routed {
            self.holds.remove(&id);
            return false;
        }
        let (since, ran_out) = self.holds.entry(id).or_insert_with(|| {
            info!("replica stop waits for the route to leave it task_id={id}");
            (now, false)
        });
        if *ran_out {
            return false;
        }
        let held = now.duration_since(*since) < STOP_HOLD;
        if !held {
            *ran_out = true;
            warn!(
                "replica stopped while still routed: the ingress did not apply a route without it in time task_id={id}"
            );
        }
        held
    }

    pub(super) fn status(&self) -> IngressStatus {
        IngressStatus {
            admin: self.config.admin.clone(),
            listen: self.config.settings.listen.clone(),
            domain: self.config.settings.domain.clone(),
            generation: self.generation,
            applied: self.applied,
            error: self.error.clone(),
        }
    }
}

impl State {
    /// The host a node's replicas are reached at: its address as the manager dials it.
    pub(super) fn node_host(&self, node: &str) -> Option<String> {
        self.node_index(node).and_then(|i| host_of_address(&self.nodes[i].address))
    }

    /// After a pass: the routes the cluster wants now, handed to the ingress thread if changed.
    pub(super) fn offer_routes(&mut self) {
        let Some(publisher) = &self.publisher else { return };
        if !self.services.values().any(|s| s.publish.is_some()) {
            // nothing published: no pass over the tasks (an empty route list still goes out
            // once, after the last published service went)
            if let Some(p) = self.publisher.as_mut() {
                p.offer(Vec::new(), HashSet::new());
            }
            return;
        }
        let host_of = |node: &str| self.node_host(node);
        let (routes, members) =
            routes(&self.services, self.tasks.values().map(|t| &*t.task), &host_of, &publisher.config.settings);
        if let Some(p) = self.publisher.as_mut() {
            p.offer(routes, members);
        }
    }

    /// Whether a stop about to be sent waits for the route to leave the replica first.
    pub(super) fn stop_held(&mut self, id: TaskId) -> bool {
        let now = self.clock.now();
        self.publisher.as_mut().is_some_and(|p| p.hold_stop(id, now))
    }
}

/// The ingress thread: the latest routes applied, `ensure` between changes, a failed apply made
/// again at the next check; until the control thread's sender goes.
fn run(mut ingress: Box<dyn Ingress>, rx: &Receiver<Wanted>, report: &dyn Fn(Report), every: Duration) {
    let mut pending: Option<Wanted> = None;
    let mut error: Option<String> = None;
    let mut next_check = Instant::now() + every;
    loop {
        // a failed apply waits for the next check; otherwise a change is taken at once
        let wait = next_check.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(w) => pending = Some(w),
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // coalesce: only the latest routes matter
        while let Ok(w) = rx.try_recv() {
            pending = Some(w);
        }
        let due = Instant::now() >= next_check;
        if due {
            next_check = Instant::now() + every;
        }
        let outcome = match pending.take() {
            Some(w) => match ingress.apply(&w.routes) {
                Ok(()) => Ok(Some(w.generation)),
                Err(e) => {
                    pending = Some(w);
                    Err(e.to_string())
                }
            },
            None if due => match ingress.ensure() {
                Ok(Drift::Reapplied) => {
                    info!("ingress routes applied again: caddy no longer held them");
                    Ok(None)
                }
                Ok(Drift::InSync) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            None => continue,
        };
        match outcome {
            Ok(applied) => {
                if error.take().is_some() {
                    info!("ingress answers again");
                    report(Report { applied, error: None });
                } else if applied.is_some() {
                    report(Report { applied, error: None });
                }
            }
            Err(e) => {
                if error.as_deref() != Some(e.as_str()) {
                    warn!("ingress call failed error={}", q(&e));
                    error = Some(e.clone());
                    report(Report { applied: None, error: Some(e) });
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "publish/tests.rs"]
mod tests;
