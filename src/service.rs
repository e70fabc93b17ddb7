//! Services: a named, versioned task template from which the manager keeps `replicas` tasks
//! running, and the update policy that says how a new version replaces the old one. This module
//! owns the record (`Service`), the body users send (`ServiceSpec`, parsed field by field so that
//! every error names its field) and the moves of an update (`UpdateState`); what to do about a
//! service now is the pure plan in `service::plan`.
//!
//! Pure: no I/O, no clock (times come in). The template is a `TaskSpec`, validated as one; a
//! service's tasks are ordinary tasks that carry the service's name and version.

pub mod plan;

use crate::ingress::DEFAULT_HEALTH_PATH;
use crate::task::TaskSpec;
use crate::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Versions a service keeps; older ones are forgotten (tasks still running them keep their spec).
pub const MAX_VERSIONS: usize = 10;
/// Replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 100;
/// Events a service keeps, oldest first.
pub const MAX_SERVICE_EVENTS: usize = 50;
/// The longest `monitor_s` accepted (an hour).
pub const MAX_MONITOR_S: u32 = 3600;
/// The fields of a service body, in the order the docs list them.
pub const SERVICE_FIELDS: [&str; 5] = ["name", "template", "replicas", "update_policy", "publish"];
/// The fields of `publish`.
pub const PUBLISH_FIELDS: [&str; 2] = ["port", "health_path"];
/// The fields of an update policy.
pub const POLICY_FIELDS: [&str; 4] = ["parallelism", "order", "monitor_s", "failure_action"];

/// A service body that cannot be accepted, with the field at fault (`template.ports[0].host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub field: Option<String>,
    pub message: String,
}

impl ServiceError {
    fn at(field: impl Into<String>, message: impl Into<String>) -> ServiceError {
        ServiceError { field: Some(field.into()), message: message.into() }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "invalid service: field `{field}`: {}", self.message),
            None => write!(f, "invalid service: {}", self.message),
        }
    }
}

impl std::error::Error for ServiceError {}

/// Whether a new replica starts before an old one stops, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StartFirst,
    StopFirst,
}

/// What a failed update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Rollback,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Replicas replaced at once.
    pub parallelism: u32,
    pub order: UpdateOrder,
    /// How long a new replica must stay Running (and healthy, with a health check) to count.
    pub monitor_s: u32,
    pub failure_action: FailureAction,
}

impl Default for UpdatePolicy {
    fn default() -> UpdatePolicy {
        UpdatePolicy {
            parallelism: 1,
            order: UpdateOrder::StartFirst,
            monitor_s: 5,
            failure_action: FailureAction::Rollback,
        }
    }
}

/// How a service is published through the ingress, at `Host: NAME.DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The container port requests go to (one of the template's tcp `ports`); each replica is
    /// reached at its node's address and the host port the engine gave this port.
    pub port: u16,
    /// What the ingress's health checks ask each replica.
    pub health_path: String,
}

/// What a user sends to create a service or to give it a new version.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub template: TaskSpec,
    pub replicas: u32,
    pub policy: UpdatePolicy,
    /// Published through the ingress when set.
    pub publish: Option<Publish>,
}

/// Where an update is. `Updating` and `RollingBack` move replicas; the others are at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    Updating,
    RollingBack,
    /// A failure stopped it (`failure_action: pause`, or a rollback that failed too).
    Paused,
    Completed,
    RolledBack,
}

impl UpdateState {
    pub fn is_active(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollingBack)
    }
}

/// The last update of a service: from which version to which, where it is and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub from: u32,
    pub to: u32,
    pub state: UpdateState,
    pub started_at: Timestamp,
    /// When the current state began: failures of tasks started before it are not this step's.
    pub step_since: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Why it was rolled back or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the update had to do differently (a host port that forced stop-first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceVersion {
    pub number: u32,
    pub template: TaskSpec,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEvent {
    pub at: Timestamp,
    pub message: String,
}

/// Everything the manager keeps of a service; the record the API returns (with counts added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub replicas: u32,
    pub policy: UpdatePolicy,
    /// The version replicas should run now (during a rollback: the one rolled back to).
    pub version: u32,
    /// The last `MAX_VERSIONS`, oldest first.
    pub versions: Vec<ServiceVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    pub created_at: Timestamp,
    /// Published through the ingress when set (a record written before this field has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
}

impl Service {
    /// A new service at version 1.
    pub fn new(spec: ServiceSpec, now: Timestamp) -> Service {
        let mut s = Service {
            name: spec.name,
            replicas: spec.replicas,
            policy: spec.policy,
            version: 1,
            versions: vec![ServiceVersion { number: 1, template: spec.template, created_at: now }],
            update: None,
            events: Vec::new(),
            created_at: now,
            publish: spec.publish,
        };
        s.note(now, format!("created with {} replicas", s.replicas));
        s
    }

    pub fn template(&self, number: u32) -> Option<&TaskSpec> {
        self.versions.iter().find(|v| v.number == number).map(|v| &v.template)
    }

    pub fn latest(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.number)
    }

    /// Adds an event, keeping the last `MAX_SERVICE_EVENTS`.
    pub fn note(&mut self, at: Timestamp, message: String) {
        self.events.push(ServiceEvent { at, message });
        if self.events.len() > MAX_SERVICE_EVENTS {
            let extra = self.events.len() - MAX_SERVICE_EVENTS;
            self.events.drain(..extra);
        }
    }

    /// A new version from `spec` (same name) and a rolling update to it.
    pub fn deploy(&mut self, spec: ServiceSpec, now: Timestamp) {
        let number = self.latest() + 1;
        self.versions.push(ServiceVersion { number, template: spec.template, created_at: now });
        if self.versions.len() > MAX_VERSIONS {
            let extra = self.versions.len() - MAX_VERSIONS;
            self.versions.drain(..extra);
        }
        self.replicas = spec.replicas;
        self.policy = spec.policy;
        self.publish = spec.publish;
        // after a paused update the cluster still runs the version it came from: a rollback of
        // this one goes there, not to the version that failed
        let from = match &self.update {
            Some(u) if u.state == UpdateState::Paused => u.from,
            _ => self.version,
        };
        self.start_update(from, number, UpdateState::Updating, None, now);
        self.note(now, format!("update from version {from} to {number} started"));
    }

    /// A rollback asked for by a user: back to the version before the one wanted now (the one
    /// an update in progress started from). `None` when there is no earlier version kept.
    pub fn rollback_target(&self) -> Option<u32> {
        match &self.update {
            Some(u) if u.state.is_active() && u.from != self.version => Some(u.from),
            _ => self.versions.iter().rev().map(|v| v.number).find(|&n| n < self.version),
        }
    }

    /// Sets the service moving to `to` (the version wanted from now on).
    pub fn start_update(&mut self, from: u32, to: u32, state: UpdateState, reason: Option<String>, now: Timestamp) {
        self.version = to;
        self.update =
            Some(Update { from, to, state, started_at: now, step_since: now, finished_at: None, reason, note: None });
    }

    /// Parses a service body (for an update, `name` may be left out: it is the path's).
    pub fn parse(bytes: &[u8], name_from_path: Option<&str>) -> Result<ServiceSpec, ServiceError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ServiceError { field: None, message: format!("malformed JSON: {e}") })?;
        ServiceSpec::from_value(value, name_from_path)
    }
}

impl ServiceSpec {
    pub fn from_value(value: Value, name_from_path: Option<&str>) -> Result<ServiceSpec, ServiceError> {
        let Value::Object(mut obj) = value else {
            return Err(ServiceError { field: None, message: "a service must be a JSON object".into() });
        };
        if let Some(unknown) = obj.keys().find(|k| !SERVICE_FIELDS.contains(&k.as_str())) {
            return Err(ServiceError::at(
                unknown.clone(),
                format!("unknown field; the fields are: {}", SERVICE_FIELDS.join(", ")),
            ));
        }
        let name: Option<String> = optional(&mut obj, "name")?;
        let name = match (name, name_from_path) {
            (Some(n), Some(p)) if n != p => {
                return Err(ServiceError::at("name", format!("is {n:?} but the path names service {p:?}")))
            }
            (Some(n), _) => n,
            (None, Some(p)) => p.to_string(),
            (None, None) => return Err(ServiceError::at("name", "is required")),
        };
        check_service_name(&name).map_err(|m| ServiceError::at("name", m))?;
        let replicas: u32 = optional(&mut obj, "replicas")?.unwrap_or(1);
        if replicas > MAX_REPLICAS {
            return Err(ServiceError::at("replicas", format!("must be at most {MAX_REPLICAS}")));
        }
        let policy = match obj.remove("update_policy") {
            None | Some(Value::Null) => UpdatePolicy::default(),
            Some(v) => parse_policy(v)?,
        };
        let mut template = match obj.remove("template") {
            Some(Value::Object(t)) => t,
            Some(_) => return Err(ServiceError::at("template", "must be a task spec (a JSON object)")),
            None => return Err(ServiceError::at("template", "is required")),
        };
        // replicas are named after their service unless the template says otherwise
        template.entry("name").or_insert_with(|| Value::String(name.clone()));
        let template = TaskSpec::from_value(Value::Object(template)).map_err(|e| ServiceError {
            field: Some(e.field.map(|f| format!("template.{f}")).unwrap_or_else(|| "template".into())),
            message: e.message,
        })?;
        let publish = match obj.remove("publish") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_publish(v, &name, &template)?),
        };
        Ok(ServiceSpec { name, template, replicas, policy, publish })
    }
}

/// `publish`: the container port (one the template publishes over tcp, so that each replica has
/// a host port to be reached at) and the health path; the service's name must be a host label.
fn parse_publish(value: Value, name: &str, template: &TaskSpec) -> Result<Publish, ServiceError> {
    let Value::Object(mut obj) = value else {
        return Err(ServiceError::at("publish", "must be a JSON object ({\"port\": 8080})"));
    };
    if let Some(unknown) = obj.keys().find(|k| !PUBLISH_FIELDS.contains(&k.as_str())) {
        return Err(ServiceError::at(
            format!("publish.{unknown}"),
            format!("unknown field; the fields are: {}", PUBLISH_FIELDS.join(", ")),
        ));
    }
    // the name becomes the first label of the service's host
    crate::ingress::AppName::parse(name).map_err(|e| ServiceError::at("name", e.to_string()))?;
    let port: u16 = optional_at(&mut obj, "port", "publish.port")?
        .ok_or_else(|| ServiceError::at("publish.port", "is required: the container port to route requests to"))?;
    if port == 0 {
        return Err(ServiceError::at("publish.port", "must be from 1 to 65535"));
    }
    if !template.ports.iter().any(|p| p.container == port && p.protocol == crate::task::Protocol::Tcp) {
        return Err(ServiceError::at(
            "publish.port",
            format!("container port {port} must also be listed in `template.ports` (tcp) so that each replica has a host port to be reached at"),
        ));
    }
    let health_path: String =
        optional_at(&mut obj, "health_path", "publish.health_path")?.unwrap_or_else(|| DEFAULT_HEALTH_PATH.into());
    if !health_path.starts_with('/')
        || health_path.len() > 1024
        || health_path.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(ServiceError::at(
            "publish.health_path",
            "must start with / and hold no spaces or control characters (at most 1024 bytes)",
        ));
    }
    Ok(Publish { port, health_path })
}

fn parse_policy(value: Value) -> Result<UpdatePolicy, ServiceError> {
    let Value::Object(mut obj) = value else {
        return Err(ServiceError::at("update_policy", "must be a JSON object"));
    };
    if let Some(unknown) = obj.keys().find(|k| !POLICY_FIELDS.contains(&k.as_str())) {
        return Err(ServiceError::at(
            format!("update_policy.{unknown}"),
            format!("unknown field; the fields are: {}", POLICY_FIELDS.join(", ")),
        ));
    }
    let d = UpdatePolicy::default();
    let at = |k: &str| format!("update_policy.{k}");
    let parallelism: u32 = optional_at(&mut obj, "parallelism", &at("parallelism"))?.unwrap_or(d.parallelism);
    if parallelism == 0 || parallelism > MAX_REPLICAS {
        return Err(ServiceError::at(at("parallelism"), format!("must be between 1 and {MAX_REPLICAS}")));
    }
    let monitor_s: u32 = optional_at(&mut obj, "monitor_s", &at("monitor_s"))?.unwrap_or(d.monitor_s);
    if monitor_s > MAX_MONITOR_S {
        return Err(ServiceError::at(at("monitor_s"), format!("must be at most {MAX_MONITOR_S}")));
    }
    Ok(UpdatePolicy {
        parallelism,
        order: optional_at(&mut obj, "order", &at("order"))?.unwrap_or(d.order),
        monitor_s,
        failure_action: optional_at(&mut obj, "failure_action", &at("failure_action"))?.unwrap_or(d.failure_action),
    })
}

fn optional<T: DeserializeOwned>(obj: &mut Map<String, Value>, key: &str) -> Result<Option<T>, ServiceError> {
    optional_at(obj, key, key)
}

fn optional_at<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<T>, ServiceError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|e| ServiceError::at(field, e.to_string())),
    }
}

/// Service names are DNS labels: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63 characters.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 63 || !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err("must be a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ServiceSpec, ServiceError> {
        ServiceSpec::from_value(v, None)
    }

    #[test]
    fn a_minimal_service_gets_the_defaults_and_its_name_on_the_template() {
        let s = parse(json!({"name": "web", "template": {"image": "skiff/busybox"}})).expect("valid");
        assert_eq!((s.replicas, s.policy, s.template.name.as_str()), (1, UpdatePolicy::default(), "web"));
        assert_eq!(s.policy.order, UpdateOrder::StartFirst);
        assert_eq!(s.policy.failure_action, FailureAction::Rollback);
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let cases = [
            (json!({"template": {"image": "x"}}), "name"),
            (json!({"name": "Web", "template": {"image": "x"}}), "name"),
            (json!({"name": "-web", "template": {"image": "x"}}), "name"),
            (json!({"name": "web"}), "template"),
            (json!({"name": "web", "template": 3}), "template"),
            (json!({"name": "web", "template": {"image": "x", "cpus": 0.0001}}), "template.cpus"),
            (json!({"name": "web", "template": {"image": "x", "colour": 1}}), "template.colour"),
            (json!({"name": "web", "template": {"image": "x"}, "replicas": -1}), "replicas"),
            (json!({"name": "web", "template": {"image": "x"}, "replicas": 101}), "replicas"),
            (json!({"name": "web", "template": {"image": "x"}, "size": 1}), "size"),
            (
                json!({"name": "web", "template": {"image": "x"}, "update_policy": {"parallelism": 0}}),
                "update_policy.parallelism",
            ),
            (
                json!({"name": "web", "template": {"image": "x"}, "update_policy": {"order": "sideways"}}),
                "update_policy.order",
            ),
            (json!({"name": "web", "template": {"image": "x"}, "update_policy": {"delay": 1}}), "update_policy.delay"),
            (
                json!({"name": "web", "template": {"image": "x"}, "update_policy": {"failure_action": "cry"}}),
                "update_policy.failure_action",
            ),
            (
                json!({"name": "web", "template": {"image": "x"}, "update_policy": {"monitor_s": 99999}}),
                "update_policy.monitor_s",
            ),
        ];
        for (body, field) in cases {
            let err = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {err}");
        }
    }

    #[test]
    fn publish_is_checked_field_by_field() {
        let web = |publish: Value| json!({"name": "web", "template": {"image": "x", "ports": [{"container": 8080}]}, "publish": publish});
        let s = parse(web(json!({"port": 8080}))).expect("valid");
        assert_eq!(s.publish, Some(Publish { port: 8080, health_path: "/".into() }));
        let s = parse(web(json!({"port": 8080, "health_path": "/healthz"}))).expect("valid");
        assert_eq!(s.publish.expect("published").health_path, "/healthz");
        assert_eq!(parse(web(Value::Null)).expect("valid").publish, None);
        let cases = [
            (web(json!(8080)), "publish", "must be a JSON object"),
            (web(json!({})), "publish.port", "is required"),
            (web(json!({"port": 0})), "publish.port", "from 1 to 65535"),
            (web(json!({"port": 70000})), "publish.port", ""),
            (web(json!({"port": 9090})), "publish.port", "must also be listed in `template.ports`"),
            (web(json!({"port": 8080, "health_path": "healthz"})), "publish.health_path", "must start with /"),
            (web(json!({"port": 8080, "health_path": "/a b"})), "publish.health_path", "no spaces"),
            (web(json!({"port": 8080, "host": "x"})), "publish.host", "unknown field"),
        ];
        for (body, field, words) in cases {
            let err = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {err}");
            assert!(err.message.contains(words), "{body}: {err}");
        }
        // a udp port has no route through an HTTP ingress
        let udp = json!({"name": "dns", "template": {"image": "x", "ports": [{"container": 53, "protocol": "udp"}]},
            "publish": {"port": 53}});
        assert_eq!(parse(udp).expect_err("udp").field.as_deref(), Some("publish.port"));
    }

    #[test]
    fn a_new_version_carries_its_publish_setting() {
        let spec = |publish: Value| {
            let body =
                json!({"name": "web", "template": {"image": "x", "ports": [{"container": 80}]}, "publish": publish});
            parse(body).expect("valid")
        };
        let mut s = Service::new(spec(json!({"port": 80})), Timestamp(1));
        assert_eq!(s.publish.as_ref().map(|p| p.port), Some(80));
        s.deploy(spec(Value::Null), Timestamp(2));
        assert_eq!(s.publish, None, "an update without publish unpublishes");
        let text = serde_json::to_string(&Service::new(spec(json!({"port": 80})), Timestamp(3))).expect("json");
        assert!(text.contains(r#""publish":{"port":80,"health_path":"/"}"#), "{text}");
    }

    #[test]
    fn an_update_takes_its_name_from_the_path_and_refuses_another() {
        let body = json!({"template": {"image": "x"}, "replicas": 2});
        assert_eq!(ServiceSpec::from_value(body, Some("web")).expect("valid").name, "web");
        let err = ServiceSpec::from_value(json!({"name": "api", "template": {"image": "x"}}), Some("web"))
            .expect_err("other name");
        assert_eq!(err.field.as_deref(), Some("name"));
    }

    #[test]
    fn versions_are_numbered_the_last_ten_kept_and_rollback_goes_one_back() {
        let spec = |image: &str| parse(json!({"name": "web", "template": {"image": image}})).expect("valid");
        let mut s = Service::new(spec("a"), Timestamp(1));
        assert_eq!((s.version, s.rollback_target()), (1, None));
        for i in 2..=12 {
            s.deploy(spec(&format!("img{i}")), Timestamp(i));
        }
        assert_eq!(s.versions.len(), MAX_VERSIONS);
        assert_eq!((s.versions[0].number, s.latest(), s.version), (3, 12, 12));
        // in the middle of an update, a rollback goes back to where it started
        assert_eq!(s.rollback_target(), Some(11));
        let u = s.update.as_ref().expect("an update");
        assert_eq!((u.from, u.to, u.state), (11, 12, UpdateState::Updating));
        s.update.as_mut().expect("an update").state = UpdateState::Completed;
        assert_eq!(s.rollback_target(), Some(11));
    }

    #[test]
    fn a_record_survives_json_and_refuses_unknown_fields() {
        let s = Service::new(parse(json!({"name": "web", "template": {"image": "x"}})).expect("valid"), Timestamp(3));
        let text = serde_json::to_string(&s).expect("serialises");
        assert_eq!(serde_json::from_str::<Service>(&text).expect("reads back"), s);
        let mut v: Value = serde_json::from_str(&text).expect("json");
        v["colour"] = json!(1);
        let err = serde_json::from_value::<Service>(v).expect_err("unknown field");
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
