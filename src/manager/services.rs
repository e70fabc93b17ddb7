//! The manager's side of services: the commands of the handle (create, update, scale, rollback,
//! remove, get, list), the service table kept in the store, and the application of each
//! service's plan (`service::plan`) on every reconcile pass, through the control thread's own
//! placement, start and stop paths.
//!
//! Replicas are ordinary tasks carrying the service's name and version: the task plan
//! (`reconcile.rs`) moves, polls and stops them like any other; only their placement is done here,
//! spread first. Everything a service is lives in its record and its tasks' records, both in the
//! store, so a restarted manager with a persisted store takes up an update where it was.
//! Must not block or speak HTTP, like the rest of the control thread.

use super::state::{move_task, State};
use super::{Command, ManagerError, ManagerHandle, Reply};
use crate::control::{answer, error_chain};
use crate::logfmt::q;
use crate::sched::{NodeTable, Request};
use crate::service::plan::{self, Candidate, PlanNode, Step};
use crate::service::{Service, ServiceEvent, ServiceSpec, UpdateState, MAX_REPLICAS, MAX_SERVICE_EVENTS};
use crate::task::{DesiredState, Task, TaskId, TaskState};
use crate::time::Timestamp;
use log::{debug, error, info};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A service request the manager refuses.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceCommandError {
    NotFound(String),
    Exists(String),
    /// A rollback with no earlier version kept.
    NoEarlierVersion(String),
    TooManyReplicas(u32),
}

impl fmt::Display for ServiceCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceCommandError::NotFound(n) => write!(f, "no service {n:?}"),
            ServiceCommandError::Exists(n) => write!(f, "service {n:?} exists already; PUT a new version instead"),
            ServiceCommandError::NoEarlierVersion(n) => {
                write!(f, "service {n:?} has no earlier version to roll back to")
            }
            ServiceCommandError::TooManyReplicas(n) => write!(f, "replicas must be at most {MAX_REPLICAS} (not {n})"),
        }
    }
}

impl std::error::Error for ServiceCommandError {}

/// A replica as a service's answer shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSummary {
    pub id: TaskId,
    pub state: TaskState,
    pub desired_state: DesiredState,
    pub version: Option<u32>,
    pub node: Option<String>,
    pub healthy: Option<bool>,
    pub error: Option<String>,
}

/// A service with what its replicas are doing: the body of `GET /v1/services/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: Service,
    /// Replicas wanted running, by state.
    pub replicas_by_state: BTreeMap<String, usize>,
    /// Replicas wanted running and placed, by node.
    pub replicas_by_node: BTreeMap<String, usize>,
    /// Its unfinished tasks (being stopped too), oldest first.
    pub tasks: Vec<ReplicaSummary>,
    /// Where it answers through the ingress (`http://NAME.DOMAIN[:PORT]`), when it is published
    /// and the manager has an ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When published: each replica that receives requests, straight at its node
    /// (`http://NODEHOST:HOSTPORT`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Why the ingress's last call failed, while it does (the routes may be stale meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_error: Option<String>,
}

pub(super) enum ServiceCommand {
    Create { spec: ServiceSpec, reply: Reply<ServiceView> },
    Update { spec: ServiceSpec, reply: Reply<ServiceView> },
    Scale { name: String, replicas: u32, reply: Reply<ServiceView> },
    Rollback { name: String, reply: Reply<ServiceView> },
    Remove { name: String, reply: Reply<ServiceView> },
    Get { name: String, reply: Reply<ServiceView> },
    List { reply: Reply<Vec<ServiceView>> },
}

impl ManagerHandle {
    fn ask_service<T>(&self, make: impl FnOnce(Reply<T>) -> ServiceCommand) -> Result<T, ManagerError> {
        self.ask(|reply| Command::Service(make(reply)))
    }

    /// Creates a service at version 1 and starts its replicas.
    pub fn create_service(&self, spec: ServiceSpec) -> Result<ServiceView, ManagerError> {
        self.ask_service(|reply| ServiceCommand::Create { spec, reply })
    }

    /// A new version and a rolling update to it (or, with the same template, new settings only).
    pub fn update_service(&self, spec: ServiceSpec) -> Result<ServiceView, ManagerError> {
        self.ask_service(|reply| ServiceCommand::Update { spec, reply })
    }

    pub fn scale_service(&self, name: String, replicas: u32) -> Result<ServiceView, ManagerError> {
        self.ask_service(|reply| ServiceCommand::Scale { name, replicas, reply })
    }

    /// Rolls back to the version before the one wanted now.
    pub fn rollback_service(&self, name: String) -> Result<ServiceView, ManagerError> {
        self.ask_service(|reply| ServiceCommand::Rollback { name, reply })
    }

    /// Forgets the service and stops its replicas.
    pub fn remove_service(&self, name: String) -> Result<ServiceView, ManagerError> {
        self.ask_service(|reply| ServiceCommand::Remove { name, reply })
    }

    pub fn get_service(&self, name: String) -> Result<ServiceView, ManagerError> {
        self.ask_service(|reply| ServiceCommand::Get { name, reply })
    }

    pub fn list_services(&self) -> Result<Vec<ServiceView>, ManagerError> {
        self.ask_service(|reply| ServiceCommand::List { reply })
    }
}

fn not_found(name: &str) -> ManagerError {
    ManagerError::Service(ServiceCommandError::NotFound(name.to_string()))
}

impl State {
    pub(super) fn on_service_command(&mut self, cmd: ServiceCommand) {
        match cmd {
            ServiceCommand::Create { spec, reply } => {
                let r = self.create_service(spec);
                answer(&reply, r);
            }
            ServiceCommand::Update { spec, reply } => {
                let r = self.change_service(&spec.name.clone(), |s, now| {
                    let current = s.template(s.version).cloned();
                    if current.as_ref() == Some(&spec.template) {
                        // the same template: new settings, no new version and no update
                        s.replicas = spec.replicas;
                        s.policy = spec.policy;
                        s.publish = spec.publish;
                        s.note(now, format!("settings changed; {} replicas", s.replicas));
                    } else {
                        s.deploy(spec, now);
                    }
                    Ok(())
                });
                answer(&reply, r);
            }
            ServiceCommand::Scale { name, replicas, reply } => {
                let r = self.change_service(&name, |s, now| {
                    if replicas > MAX_REPLICAS {
                        return Err(ManagerError::Service(ServiceCommandError::TooManyReplicas(replicas)));
                    }
                    s.note(now, format!("scaled from {} to {replicas} replicas", s.replicas));
                    s.replicas = replicas;
                    Ok(())
                });
                answer(&reply, r);
            }
            ServiceCommand::Rollback { name, reply } => {
                let r = self.change_service(&name, |s, now| {
                    let to = s
                        .rollback_target()
                        .ok_or_else(|| ManagerError::Service(ServiceCommandError::NoEarlierVersion(s.name.clone())))?;
                    let from = s.version;
                    s.start_update(from, to, UpdateState::RollingBack, Some("rollback asked".into()), now);
                    s.note(now, format!("rollback from version {from} to {to} asked"));
                    Ok(())
                });
                answer(&reply, r);
            }
            ServiceCommand::Remove { name, reply } => {
                let r = self.remove_service(&name);
                answer(&reply, r);
            }
            ServiceCommand::Get { name, reply } => {
                let r = self.services.get(&name).map(|s| self.view(s)).ok_or_else(|| not_found(&name));
                answer(&reply, r);
            }
            ServiceCommand::List { reply } => {
                let all = self.services.values().map(|s| self.view(s)).collect();
                answer(&reply, Ok(all));
            }
        }
    }

    fn create_service(&mut self, spec: ServiceSpec) -> Result<ServiceView, ManagerError> {
        if self.services.contains_key(&spec.name) {
            return Err(ManagerError::Service(ServiceCommandError::Exists(spec.name)));
        }
        let service = Service::new(spec, self.now());
        let name = service.name.clone();
        self.commit_service(service)?;
        info!("service created service={name}");
        self.reconcile();
        Ok(self.view(&self.services[&name]))
    }

    /// Applies `change` to a copy of the service, commits it, and runs the plan.
    fn change_service(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Service, Timestamp) -> Result<(), ManagerError>,
    ) -> Result<ServiceView, ManagerError> {
        let mut service = self.services.get(name).cloned().ok_or_else(|| not_found(name))?;
        change(&mut service, self.now())?;
        self.commit_service(service)?;
        info!("service changed service={name}");
        self.reconcile();
        Ok(self.view(&self.services[name]))
    }

    fn remove_service(&mut self, name: &str) -> Result<ServiceView, ManagerError> {
        let service = self.services.get(name).cloned().ok_or_else(|| not_found(name))?;
        // the record first: with a persisted store, replicas of a service that has no record are
        // stopped at every pass, so a stop below that is not committed now is made later
        self.store.delete_service(name).map_err(|e| {
            error!("store delete failed service={name} error={}", q(&error_chain(&e)));
            ManagerError::Store(e)
        })?;
        let view = self.view(&service);
        self.services.remove(name);
        info!("service removed service={name}");
        let now = self.now();
        let why = format!("removed; its {} replicas are being stopped", view.tasks.len());
        self.note_service_event(now, name, Some(update_word(service.update.as_ref()).into()), "removed".into(), why);
        for t in &view.tasks {
            self.stop_replica(t.id, "its service was removed", now);
        }
        self.reconcile();
        Ok(view)
    }

    /// Writes a service's record, then keeps it in the table, and puts the events it gained in
    /// the cluster's history too (where they outlive the service's own last 50). On a store
    /// failure nothing changes.
    fn commit_service(&mut self, service: Service) -> Result<(), ManagerError> {
        let before = self.services.get(&service.name);
        if before == Some(&service) {
            return Ok(());
        }
        self.store.put_service(&service).map_err(|e| {
            error!("store write failed service={} error={}", service.name, q(&error_chain(&e)));
            ManagerError::Store(e)
        })?;
        let fresh = new_events(before.map_or(&[][..], |b| &b.events), &service.events).to_vec();
        let was = before.map(|b| update_word(b.update.as_ref()));
        let now = update_word(service.update.as_ref());
        // the move of the update, when this commit made one; a first record is a creation
        let from = match was {
            None => None,
            Some(w) if w == now => None,
            Some(w) => Some(w.to_string()),
        };
        let to = if before.is_none() { "created" } else { now };
        let name = service.name.clone();
        self.services.insert(name.clone(), service);
        for e in fresh {
            self.note_service_event(e.at, &name, from.clone(), to.to_string(), e.message);
        }
        Ok(())
    }

    fn view(&self, service: &Service) -> ServiceView {
        let mut tasks: Vec<&Task> = self
            .tasks
            .values()
            .map(|t| &*t.task)
            .filter(|t| t.service.as_deref() == Some(service.name.as_str()) && !t.is_terminal())
            .collect();
        tasks.sort_by_key(|t| (t.created_at, t.id));
        let mut by_state = BTreeMap::new();
        let mut by_node = BTreeMap::new();
        for t in tasks.iter().filter(|t| t.desired_state == DesiredState::Running) {
            *by_state.entry(t.state.to_string()).or_insert(0) += 1;
            if let Some(n) = &t.node {
                *by_node.entry(n.clone()).or_insert(0) += 1;
            }
        }
        let host_of = |node: &str| self.node_host(node);
        let mut endpoints: Vec<String> = match &service.publish {
            Some(p) => tasks
                .iter()
                .filter_map(|t| super::publish::upstream(t, p, &host_of))
                .map(|u| format!("http://{u}"))
                .collect(),
            None => Vec::new(),
        };
        endpoints.sort();
        let publisher = self.publisher.as_ref().filter(|_| service.publish.is_some());
        ServiceView {
            url: publisher.map(|p| super::publish::url(&p.config.settings, &service.name)),
            endpoints,
            ingress_error: publisher.and_then(|p| p.error.clone()),
            service: service.clone(),
            replicas_by_state: by_state,
            replicas_by_node: by_node,
            tasks: tasks
                .iter()
                .map(|t| ReplicaSummary {
                    id: t.id,
                    state: t.state,
                    desired_state: t.desired_state,
                    version: t.service_version,
                    node: t.node.clone(),
                    healthy: t.healthy,
                    error: t.error.clone(),
                })
                .collect(),
        }
    }

    /// Every service's plan, applied; and replicas of services that are gone, stopped.
    pub(super) fn reconcile_services(&mut self) {
        let now = self.now();
        let table = self.node_table();
        // fixed host ports held on each node by any unfinished task, with the service holding
        // it: each service's plan gets those held outside it (its own it reads from its tasks,
        // where it can tell an old replica it may stop from another task it may not)
        type Held<'t> = (u16, crate::task::Protocol, Option<&'t str>);
        let mut ports_taken: BTreeMap<&str, Vec<Held>> = BTreeMap::new();
        for t in self.tasks.values().filter(|t| !t.task.is_terminal()) {
            if let Some(node) = t.task.node.as_deref() {
                let service = t.task.service.as_deref();
                let fixed = t
                    .task
                    .spec
                    .ports
                    .iter()
                    .filter_map(|p| p.host.filter(|&h| h != 0).map(|h| (h, p.protocol, service)));
                ports_taken.entry(node).or_default().extend(fixed);
            }
        }
        let nodes_for = |service: &str| -> Vec<PlanNode> {
            table
                .nodes()
                .iter()
                .map(|n| PlanNode {
                    name: n.name.clone(),
                    unavailable: n.unavailable.clone(),
                    ports_taken: ports_taken
                        .get(n.name.as_str())
                        .map(|held| {
                            let outside = held.iter().filter(|h| h.2 != Some(service));
                            outside.map(|&(port, proto, _)| (port, proto)).collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        };
        // with a memory store, a restarted manager knows no service: the replicas it adopts from
        // the workers are kept running as tasks, not stopped
        let sweep = self.store.kind() == "persisted";
        let mut orphaned = Vec::new();
        let mut by_service: BTreeMap<&str, Vec<&Task>> =
            self.services.keys().map(|k| (k.as_str(), Vec::new())).collect();
        for t in self.tasks.values() {
            let Some(name) = t.task.service.as_deref() else { continue };
            match by_service.get_mut(name) {
                Some(list) => list.push(&t.task),
                None if sweep && !t.task.is_terminal() && t.task.desired_state == DesiredState::Running => {
                    orphaned.push(t.task.id)
                }
                None => {}
            }
        }
        let plans: Vec<(String, Vec<Step>)> = by_service
            .iter()
            .map(|(name, tasks)| (name.to_string(), plan::plan(&self.services[*name], tasks, &nodes_for(name), now)))
            .collect();
        for id in orphaned {
            self.stop_replica(id, "its service was removed", now);
        }
        for (name, steps) in plans {
            for step in steps {
                self.apply_step(&name, step, now);
            }
        }
    }

    fn apply_step(&mut self, name: &str, step: Step, now: Timestamp) {
        match step {
            Step::Start { version, candidates, why, moved } => {
                let Some(service) = self.services.get(name) else { return };
                let Some(template) = service.template(version) else { return };
                let mut task = Task::new(TaskId::new_v4(), template.clone(), now);
                task.service = Some(name.to_string());
                task.service_version = Some(version);
                task.error = why;
                let id = task.id;
                if self.commit(task).is_err() {
                    return; // the next pass tries again
                }
                info!("replica started service={name} version={version} task_id={id}");
                // a fixed host port that sent it past the node spread would have chosen is said
                let moved = moved.map(|m| format!(", {m}")).unwrap_or_default();
                self.note_service(name, format!("replica {} of version {version} started{moved}", id.short()), now);
                if !candidates.is_empty() {
                    self.place_replica(id, &candidates, now);
                }
            }
            Step::Place { id, candidates, why, moved } => {
                let Some(t) = self.tasks.get(&id) else { return };
                if t.op_on.is_some() || now < t.not_before {
                    return;
                }
                if candidates.is_empty() {
                    self.note_unplaced(id, why.unwrap_or_else(|| "no node can take it".into()));
                } else if self.place_replica(id, &candidates, now) {
                    if let Some(m) = moved {
                        self.note_service(name, format!("replica {} placed again, {m}", id.short()), now);
                    }
                }
            }
            Step::Stop { id, reason } => {
                info!("replica stopping service={name} task_id={id} reason={}", q(&reason));
                self.stop_replica(id, &reason, now);
                self.note_service(name, format!("replica {} stopped: {reason}", id.short()), now);
            }
            Step::Transition { state, reason } => {
                let Some(mut service) = self.services.get(name).cloned() else { return };
                let Some(u) = service.update.as_mut() else { return };
                let (from, to) = (u.from, u.to);
                u.state = state;
                u.step_since = now;
                if reason.is_some() {
                    u.reason = reason.clone();
                }
                if !state.is_active() {
                    u.finished_at = Some(now);
                }
                if state == UpdateState::RollingBack {
                    service.version = from;
                }
                let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
                let message = match state {
                    UpdateState::RollingBack => format!("update to version {to} failed, rolling back to {from}{why}"),
                    UpdateState::Paused => format!("update paused{why}"),
                    UpdateState::Completed => format!("update to version {to} completed"),
                    UpdateState::RolledBack => format!("rolled back to version {}", service.version),
                    UpdateState::Updating => format!("updating to version {to}"),
                };
                info!("service update service={name} state={state:?} message={}", q(&message));
                service.note(now, message);
                if self.commit_service(service).is_err() {
                    debug!("service change left for a later plan");
                }
            }
            Step::Note(note) => {
                let Some(mut service) = self.services.get(name).cloned() else { return };
                let Some(u) = service.update.as_mut() else { return };
                u.note = Some(note.clone());
                info!("service update note service={name} note={}", q(&note));
                service.note(now, note);
                if self.commit_service(service).is_err() {
                    debug!("service change left for a later plan");
                }
            }
        }
    }

    /// Adds an event to a service (every step of an update is one); a store failure loses only
    /// the event.
    fn note_service(&mut self, name: &str, message: String, now: Timestamp) {
        let Some(mut service) = self.services.get(name).cloned() else { return };
        service.note(now, message);
        if self.commit_service(service).is_err() {
            debug!("service event not kept");
        }
    }

    /// Wants a replica stopped; the task plan that runs next sends the stop.
    fn stop_replica(&mut self, id: TaskId, reason: &str, now: Timestamp) {
        let Some(t) = self.tasks.get(&id) else { return };
        if t.task.is_terminal() || t.task.desired_state == DesiredState::Stopped {
            return;
        }
        let mut task = Task::clone(&t.task);
        task.desired_state = DesiredState::Stopped;
        let from = task.state;
        if task.state == TaskState::Pending {
            move_task(&mut task, TaskState::Stopped, now);
        } else {
            task.record(Some(from), format!("stop asked: {reason}"), now);
        }
        if self.commit(task).is_ok() {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.not_before = Timestamp(0);
            }
        }
    }

    /// Places a Pending replica: the nodes with the fewest replicas of its service first, the
    /// configured scheduler choosing among equals; or records why no node can take it. Whether
    /// it was sent to a node.
    fn place_replica(&mut self, id: TaskId, candidates: &[Candidate], now: Timestamp) -> bool {
        let Some(t) = self.tasks.get(&id) else { return false };
        let task = Task::clone(&t.task);
        let req = Request::of(&task.spec);
        let full = self.node_table();
        let mut counts: Vec<u32> = candidates.iter().map(|c| c.replicas).collect();
        counts.dedup();
        let mut last_reason = None;
        for count in counts {
            let group: Vec<&str> = candidates.iter().filter(|c| c.replicas == count).map(|c| c.node.as_str()).collect();
            let states = full
                .nodes()
                .iter()
                .map(|n| {
                    let mut n = n.clone();
                    if n.unavailable.is_none() && !group.contains(&n.name.as_str()) {
                        n.unavailable = Some("holds more replicas of the service".into());
                    }
                    n
                })
                .collect();
            let table = NodeTable::new(states);
            match self.scheduler.pick(&req, &table) {
                Ok(index) => {
                    let name = table.nodes()[index].name.clone();
                    self.start_on(task, index, &name, now);
                    return true;
                }
                Err(why) => last_reason = Some(why.to_string()),
            }
        }
        self.note_unplaced(id, last_reason.unwrap_or_else(|| "no node can take it".into()));
        false
    }

    fn note_unplaced(&mut self, id: TaskId, reason: String) {
        let Some(t) = self.tasks.get(&id) else { return };
        if t.task.error.as_deref() == Some(reason.as_str()) {
            return; // nothing new: nothing written
        }
        let mut task = Task::clone(&t.task);
        info!("replica not placed task_id={id} reason={}", q(&reason));
        crate::metrics::manager().placement_failed(&reason);
        task.error = Some(reason);
        self.commit_quietly(task);
    }
}

/// Where a service's update stands, as its events in the cluster's history say it.
fn update_word(update: Option<&crate::service::Update>) -> &'static str {
    match update.map(|u| u.state) {
        None => "steady",
        Some(UpdateState::Updating) => "updating",
        Some(UpdateState::RollingBack) => "rolling-back",
        Some(UpdateState::Paused) => "paused",
        Some(UpdateState::Completed) => "completed",
        Some(UpdateState::RolledBack) => "rolled-back",
    }
}

/// The events `after` has that `before` did not: the events are only ever appended (the
/// oldest dropped beyond the bound), so they are those after `before`'s last one.
fn new_events<'e>(before: &[ServiceEvent], after: &'e [ServiceEvent]) -> &'e [ServiceEvent] {
    let Some(last) = before.last() else { return after };
    if before.len() < MAX_SERVICE_EVENTS && after.len() >= before.len() && after.get(before.len() - 1) == Some(last) {
        return &after[before.len()..];
    }
    match after.iter().rposition(|e| e == last) {
        Some(i) => &after[i + 1..],
        None => after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(range: std::ops::Range<u64>) -> Vec<ServiceEvent> {
        range.map(|i| ServiceEvent { at: Timestamp(i), message: format!("e{i}") }).collect()
    }

    #[test]
    fn the_events_a_commit_adds_are_those_after_the_last_one_kept() {
        let added = |before: &[ServiceEvent], after: &[ServiceEvent]| -> Vec<u64> {
            new_events(before, after).iter().map(|e| e.at.millis()).collect()
        };
        assert_eq!(added(&[], &events(0..2)), [0, 1], "a new service: all of them");
        assert_eq!(added(&events(0..3), &events(0..5)), [3, 4]);
        assert_eq!(added(&events(0..3), &events(0..3)), Vec::<u64>::new());
        // at the bound the oldest go as new ones come
        let full = events(0..MAX_SERVICE_EVENTS as u64);
        let n = MAX_SERVICE_EVENTS as u64;
        assert_eq!(added(&full, &events(2..n + 2)), [n, n + 1]);
    }
}
