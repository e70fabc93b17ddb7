//! The task spec: what a user asks to run (the body of `POST /v1/tasks`), parsed field by field so
//! that every error names the field at fault, and checked against its limits and syntaxes (names,
//! images, environment, ports, restart policy, health check).
//!
//! Pure: no I/O, no clock, and nothing about a task's life once accepted (that is `task.rs`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A container port to publish; `host` absent or 0 lets the engine pick a free host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub container: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
}

fn default_max_restarts() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    pub port: u16,
    #[serde(default = "default_interval_s")]
    pub interval_s: u32,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u32,
    #[serde(default = "default_failures")]
    pub failures: u32,
}

fn default_interval_s() -> u32 {
    10
}
fn default_timeout_s() -> u32 {
    2
}
fn default_failures() -> u32 {
    3
}

/// What a user asks to run: the body of `POST /v1/tasks` and the file given to `client start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Run the process on a terminal (its log is then one raw stream, stderr within stdout).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

/// The fields of a spec, in the order the docs list them.
pub const SPEC_FIELDS: [&str; 11] =
    ["name", "image", "cmd", "env", "cpus", "memory_mb", "disk_mb", "ports", "restart_policy", "health_check", "tty"];

/// Limits that keep one spec from being absurd; each is far above any real use.
pub const MAX_NAME_LEN: usize = 63;
pub const MAX_IMAGE_LEN: usize = 255;
pub const MAX_CMD_ARGS: usize = 256;
/// A spec, as JSON, is at most this long: it travels in every list and as a container label.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// The arguments of `cmd` and the keys and values of `env`, together, are at most this long.
pub const MAX_CMD_ENV_BYTES: usize = 32 * 1024;
pub const MAX_ENV_VARS: usize = 256;
pub const MAX_PORTS: usize = 64;
pub const MAX_CPUS: f64 = 1024.0;
/// The engine's smallest CPU limit: below it, `NanoCpus` is refused by runc (or, rounded to 0,
/// silently means "no limit").
pub const MIN_CPUS: f64 = 0.01;
/// Docker refuses less than 6 MB of memory.
pub const MIN_MEMORY_MB: u64 = 6;
pub const MAX_MEMORY_MB: u64 = 16 * 1024 * 1024;
pub const MAX_DISK_MB: u64 = 1024 * 1024 * 1024;

/// A spec that cannot be accepted, with the field at fault (`ports[1].container`) when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: Option<String>,
    pub message: String,
}

impl SpecError {
    fn at(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { field: Some(field.into()), message: message.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "invalid task spec: field `{field}`: {}", self.message),
            None => write!(f, "invalid task spec: {}", self.message),
        }
    }
}

impl std::error::Error for SpecError {}

impl TaskSpec {
    /// Parses and validates a spec from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<TaskSpec, SpecError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| SpecError { field: None, message: format!("malformed JSON: {e}") })?;
        TaskSpec::from_value(value)
    }

    /// Parses and validates a spec from a JSON value, field by field, so that every error names
    /// its field (serde alone says "invalid type" without saying where).
    pub fn from_value(value: Value) -> Result<TaskSpec, SpecError> {
        let Value::Object(mut obj) = value else {
            return Err(SpecError { field: None, message: "a task spec must be a JSON object".into() });
        };
        if let Some(unknown) = obj.keys().find(|k| !SPEC_FIELDS.contains(&k.as_str())) {
            return Err(SpecError::at(
                unknown.clone(),
                format!("unknown field; the fields are: {}", SPEC_FIELDS.join(", ")),
            ));
        }
        let spec = TaskSpec {
            name: required(&mut obj, "name")?,
            image: required(&mut obj, "image")?,
            cmd: optional(&mut obj, "cmd")?.unwrap_or_default(),
            env: optional(&mut obj, "env")?.unwrap_or_default(),
            cpus: optional(&mut obj, "cpus")?,
            memory_mb: optional(&mut obj, "memory_mb")?,
            disk_mb: optional(&mut obj, "disk_mb")?,
            ports: ports(&mut obj)?,
            restart_policy: match obj.remove("restart_policy") {
                None | Some(Value::Null) => None,
                Some(v) => Some(restart_policy(v)?),
            },
            health_check: match obj.remove("health_check") {
                None | Some(Value::Null) => None,
                Some(v) => Some(health_check(v)?),
            },
            tty: optional(&mut obj, "tty")?.unwrap_or(false),
        };
        spec.validate()?;
        let size = serde_json::to_vec(&spec).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_SPEC_BYTES {
            return Err(SpecError::at(
                "spec",
                format!("must be at most {MAX_SPEC_BYTES} bytes as JSON (it is {size})"),
            ));
        }
        // what the record says is what the container gets: thousandths of a CPU
        let spec = TaskSpec { cpus: spec.cpus.map(|c| (c * 1000.0).round() / 1000.0), ..spec };
        Ok(spec)
    }

    /// Checks every value against its allowed range and syntax.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_name(&self.name).map_err(|m| SpecError::at("name", m))?;
        check_image(&self.image).map_err(|m| SpecError::at("image", m))?;
        if self.cmd.len() > MAX_CMD_ARGS {
            return Err(SpecError::at("cmd", format!("at most {MAX_CMD_ARGS} arguments")));
        }
        if let Some(i) = self.cmd.iter().position(|a| a.contains('\0')) {
            return Err(SpecError::at(format!("cmd[{i}]"), "must not contain NUL characters"));
        }
        if self.env.len() > MAX_ENV_VARS {
            return Err(SpecError::at("env", format!("at most {MAX_ENV_VARS} variables")));
        }
        for (key, val) in &self.env {
            check_env_key(key).map_err(|m| SpecError::at(format!("env.{key}"), m))?;
            if val.contains('\0') {
                return Err(SpecError::at(format!("env.{key}"), "value must not contain NUL characters"));
            }
        }
        let cmd_env: usize = self.cmd.iter().map(String::len).sum::<usize>()
            + self.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if cmd_env > MAX_CMD_ENV_BYTES {
            let field = if self.env.is_empty() { "cmd" } else { "env" };
            return Err(SpecError::at(
                field,
                format!("cmd and env together must be at most {MAX_CMD_ENV_BYTES} bytes (they are {cmd_env})"),
            ));
        }
        if let Some(cpus) = self.cpus {
            if !cpus.is_finite() || !(MIN_CPUS..=MAX_CPUS).contains(&cpus) {
                return Err(SpecError::at(
                    "cpus",
                    format!("must be from {MIN_CPUS} to {MAX_CPUS} (the engine refuses less than {MIN_CPUS})"),
                ));
            }
        }
        if let Some(mb) = self.memory_mb {
            if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&mb) {
                return Err(SpecError::at(
                    "memory_mb",
                    format!("must be from {MIN_MEMORY_MB} to {MAX_MEMORY_MB} (the engine refuses less than 6 MB)"),
                ));
            }
        }
        if let Some(mb) = self.disk_mb {
            if mb > MAX_DISK_MB {
                return Err(SpecError::at("disk_mb", format!("must be at most {MAX_DISK_MB}")));
            }
        }
        self.validate_ports()?;
        if let Some(policy) = &self.restart_policy {
            if policy.max_restarts > 1000 {
                return Err(SpecError::at("restart_policy.max_restarts", "must be at most 1000"));
            }
        }
        if let Some(check) = &self.health_check {
            self.validate_health_check(check)?;
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), SpecError> {
        if self.ports.len() > MAX_PORTS {
            return Err(SpecError::at("ports", format!("at most {MAX_PORTS} ports")));
        }
        for (i, port) in self.ports.iter().enumerate() {
            if port.container == 0 {
                return Err(SpecError::at(format!("ports[{i}].container"), "must be from 1 to 65535"));
            }
            let earlier = &self.ports[..i];
            if earlier.iter().any(|p| p.container == port.container && p.protocol == port.protocol) {
                return Err(SpecError::at(
                    format!("ports[{i}].container"),
                    format!("port {}/{} is listed twice", port.container, port.protocol.as_str()),
                ));
            }
            if let Some(host) = port.host.filter(|h| *h != 0) {
                if earlier.iter().any(|p| p.host == Some(host) && p.protocol == port.protocol) {
                    return Err(SpecError::at(
                        format!("ports[{i}].host"),
                        format!("host port {host}/{} is listed twice", port.protocol.as_str()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_health_check(&self, check: &HealthCheck) -> Result<(), SpecError> {
        if !check.path.starts_with('/')
            || check.path.len() > 1024
            || check.path.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(SpecError::at(
                "health_check.path",
                "must be a URL path starting with / (at most 1024 characters, no spaces)",
            ));
        }
        let published = self.ports.iter().any(|p| p.container == check.port && p.protocol == Protocol::Tcp);
        if !published {
            return Err(SpecError::at(
                "health_check.port",
                format!(
                    "container port {} must also be listed in `ports` (tcp) so the worker can reach it",
                    check.port
                ),
            ));
        }
        if !(1..=3600).contains(&check.interval_s) {
            return Err(SpecError::at("health_check.interval_s", "must be from 1 to 3600"));
        }
        if check.timeout_s == 0 || check.timeout_s > check.interval_s {
            return Err(SpecError::at("health_check.timeout_s", "must be at least 1 and at most interval_s"));
        }
        if !(1..=100).contains(&check.failures) {
            return Err(SpecError::at("health_check.failures", "must be from 1 to 100"));
        }
        Ok(())
    }

    /// The restart policy in force: the spec's, or `never`.
    pub fn restart(&self) -> RestartPolicy {
        self.restart_policy.unwrap_or(RestartPolicy { mode: RestartMode::Never, max_restarts: 0 })
    }
}

fn required<T: DeserializeOwned>(obj: &mut Map<String, Value>, key: &str) -> Result<T, SpecError> {
    optional(obj, key)?.ok_or_else(|| SpecError::at(key, "is required"))
}

/// A field that may be absent or null.
fn optional<T: DeserializeOwned>(obj: &mut Map<String, Value>, key: &str) -> Result<Option<T>, SpecError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|e| SpecError::at(key, e.to_string())),
    }
}

/// An object inside the spec at `path`, with its unknown fields refused by name
/// (`ports[0].hostIp`), so that every error names the field at fault, however deep.
fn object(value: Value, path: &str, fields: &[&str]) -> Result<Map<String, Value>, SpecError> {
    let Value::Object(obj) = value else { return Err(SpecError::at(path, "must be an object")) };
    if let Some(unknown) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(SpecError::at(
            format!("{path}.{unknown}"),
            format!("unknown field; the fields are: {}", fields.join(", ")),
        ));
    }
    Ok(obj)
}

/// A field of an object at `path`, absent or null as `None`; its errors name `path.key`.
fn field<T: DeserializeOwned>(obj: &mut Map<String, Value>, path: &str, key: &str) -> Result<Option<T>, SpecError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v).map(Some).map_err(|e| SpecError::at(format!("{path}.{key}"), e.to_string()))
        }
    }
}

/// A port number from `min` to 65535, said in those words when it is not one.
fn port_number(obj: &mut Map<String, Value>, path: &str, key: &str, min: u64) -> Result<Option<u16>, SpecError> {
    let range = || SpecError::at(format!("{path}.{key}"), format!("must be a port number from {min} to 65535"));
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=65535).contains(&n) => Ok(u16::try_from(n).ok()),
            _ => Err(range()),
        },
    }
}

/// `ports`: a list of objects, each parsed field by field.
fn ports(obj: &mut Map<String, Value>) -> Result<Vec<PortSpec>, SpecError> {
    let items = match obj.remove("ports") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(SpecError::at("ports", "must be a list")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("ports[{i}]");
        let mut port = object(item, &path, &["container", "host", "protocol"])?;
        let container = port_number(&mut port, &path, "container", 1)?
            .ok_or_else(|| SpecError::at(format!("{path}.container"), "is required"))?;
        let host = port_number(&mut port, &path, "host", 0)?;
        let protocol = field(&mut port, &path, "protocol")?.unwrap_or_default();
        out.push(PortSpec { container, host, protocol });
    }
    Ok(out)
}

fn restart_policy(value: Value) -> Result<RestartPolicy, SpecError> {
    let path = "restart_policy";
    let mut obj = object(value, path, &["mode", "max_restarts"])?;
    let mode = field(&mut obj, path, "mode")?.ok_or_else(|| SpecError::at("restart_policy.mode", "is required"))?;
    let max_restarts = field(&mut obj, path, "max_restarts")?.unwrap_or_else(default_max_restarts);
    Ok(RestartPolicy { mode, max_restarts })
}

fn health_check(value: Value) -> Result<HealthCheck, SpecError> {
    let path = "health_check";
    let mut obj = object(value, path, &["path", "port", "interval_s", "timeout_s", "failures"])?;
    let check_path = field(&mut obj, path, "path")?.ok_or_else(|| SpecError::at("health_check.path", "is required"))?;
    let port =
        port_number(&mut obj, path, "port", 1)?.ok_or_else(|| SpecError::at("health_check.port", "is required"))?;
    Ok(HealthCheck {
        path: check_path,
        port,
        interval_s: field(&mut obj, path, "interval_s")?.unwrap_or_else(default_interval_s),
        timeout_s: field(&mut obj, path, "timeout_s")?.unwrap_or_else(default_timeout_s),
        failures: field(&mut obj, path, "failures")?.unwrap_or_else(default_failures),
    })
}

/// Task names become part of container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 63 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_start || !ok_rest || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_NAME_LEN} characters of letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Environment variable names as shells accept them: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_key(key: &str) -> Result<(), String> {
    let ok_start = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_start || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || key.len() > 255 {
        return Err("a variable name must match [A-Za-z_][A-Za-z0-9_]* (at most 255 characters)".into());
    }
    Ok(())
}

/// An image reference as the Docker distribution grammar has it, simplified:
/// `[host[:port]/]path-component(/path-component)*[:tag][@sha256:64-hex]`, with lowercase path
/// components of `[a-z0-9]` runs joined by `.`, `_`, `__` or `-`s.
pub fn check_image(image: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{image:?} is not an image reference: {why}"));
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return bad(&format!("must be 1 to {MAX_IMAGE_LEN} characters"));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return bad("a digest must be sha256: and 64 lowercase hex digits");
        }
    }
    // A tag is after the last ':' if no '/' follows it (a ':' before a '/' is a registry port).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let ok_start = tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_start
            || tag.len() > 128
            || !tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return bad("a tag is 1 to 128 of letters, digits, '_', '.' or '-', not starting with '.' or '-'");
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // The first component is a registry host when it has a '.' or ':' or is "localhost".
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let (host, port) = match first.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (first, None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return bad("the registry host is not a valid host[:port]");
            }
            components.remove(0);
        }
    }
    for component in components {
        if !is_path_component(component) {
            return bad("path components are lowercase letters and digits, joined by '.', '_', '__' or '-'");
        }
    }
    Ok(())
}

fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'0'..=b'9' => i += 1,
            b'.' | b'_' | b'-' => {
                // a separator: '.', '_', '__' or any run of '-'
                let start = i;
                while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
                    i += 1;
                }
                let sep = &c[start..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web_spec() -> Value {
        json!({
            "name": "web",
            "image": "skiff/busybox:latest",
            "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "env": {"GREETING": "hello"},
            "cpus": 0.5,
            "memory_mb": 64,
            "disk_mb": 100,
            "ports": [{"container": 8080, "host": 0}],
            "restart_policy": {"mode": "on-failure", "max_restarts": 3},
            "health_check": {"path": "/", "port": 8080, "interval_s": 10, "timeout_s": 2, "failures": 3}
        })
    }

    fn field_error(v: Value) -> (Option<String>, String) {
        let e = TaskSpec::from_value(v).expect_err("spec should be refused");
        (e.field, e.message)
    }

    #[test]
    fn full_example_spec_parses() {
        let spec = TaskSpec::from_value(web_spec()).expect("valid");
        assert_eq!(spec.name, "web");
        assert_eq!(spec.cpus, Some(0.5));
        assert_eq!(spec.ports, vec![PortSpec { container: 8080, host: Some(0), protocol: Protocol::Tcp }]);
        assert_eq!(spec.restart_policy.map(|p| p.mode), Some(RestartMode::OnFailure));
        assert_eq!(spec.restart().max_restarts, 3);
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = TaskSpec::from_value(json!({"name": "a", "image": "busybox"})).expect("valid");
        assert!(spec.cmd.is_empty() && spec.env.is_empty() && spec.ports.is_empty());
        assert_eq!((spec.cpus, spec.memory_mb, spec.disk_mb), (None, None, None));
        assert_eq!(spec.restart().mode, RestartMode::Never, "no policy means no restarts");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"name": "a", "image": "b", "colour": 1}), "colour"),
            (json!({"name": "a"}), "image"),
            (json!({"image": "b"}), "name"),
            (json!({"name": "a", "image": 7}), "image"),
            (json!({"name": "-a", "image": "b"}), "name"),
            (json!({"name": "a b", "image": "b"}), "name"),
            (json!({"name": "a", "image": "UPPER/case"}), "image"),
            (json!({"name": "a", "image": "b", "cpus": 0}), "cpus"),
            (json!({"name": "a", "image": "b", "cpus": -1.5}), "cpus"),
            (json!({"name": "a", "image": "b", "cpus": 1e-10}), "cpus"),
            (json!({"name": "a", "image": "b", "cpus": 0.009}), "cpus"),
            (json!({"name": "a", "image": "b", "memory_mb": 2}), "memory_mb"),
            (json!({"name": "a", "image": "b", "memory_mb": -2}), "memory_mb"),
            (json!({"name": "a", "image": "b", "memory_mb": "64"}), "memory_mb"),
            (json!({"name": "a", "image": "b", "env": {"1X": "y"}}), "env.1X"),
            (json!({"name": "a", "image": "b", "env": {"X": 1}}), "env"),
            (json!({"name": "a", "image": "b", "cmd": "sleep 1"}), "cmd"),
            (json!({"name": "a", "image": "b", "ports": [{"container": 0}]}), "ports[0].container"),
            (
                json!({"name": "a", "image": "b", "ports": [{"container": 80}, {"container": 70000}]}),
                "ports[1].container",
            ),
            (json!({"name": "a", "image": "b", "ports": [{"container": -1}]}), "ports[0].container"),
            (json!({"name": "a", "image": "b", "ports": [{"container": 80, "host": 70000}]}), "ports[0].host"),
            (json!({"name": "a", "image": "b", "ports": [{"container": 80, "hots": 1}]}), "ports[0].hots"),
            (json!({"name": "a", "image": "b", "ports": [{"host": 80}]}), "ports[0].container"),
            (json!({"name": "a", "image": "b", "ports": [{"container": 80, "protocol": "sctp"}]}), "ports[0].protocol"),
            (json!({"name": "a", "image": "b", "ports": [7]}), "ports[0]"),
            (
                json!({"name": "a", "image": "b", "restart_policy": {"mode": "always", "tries": 2}}),
                "restart_policy.tries",
            ),
            (json!({"name": "a", "image": "b", "restart_policy": {"max_restarts": 2}}), "restart_policy.mode"),
            (
                json!({"name": "a", "image": "b", "health_check": {"path": "/", "port": 80, "every": 1}}),
                "health_check.every",
            ),
            (
                json!({"name": "a", "image": "b", "health_check": {"path": "/", "port": 80, "interval_s": "1"}}),
                "health_check.interval_s",
            ),
            (json!({"name": "a", "image": "b", "ports": [{"container": 80}, {"container": 80}]}), "ports[1].container"),
            (
                json!({"name": "a", "image": "b", "ports": [{"container": 80, "host": 9000}, {"container": 81, "host": 9000}]}),
                "ports[1].host",
            ),
            (json!({"name": "a", "image": "b", "ports": {"container": 80}}), "ports"),
            (json!({"name": "a", "image": "b", "restart_policy": {"mode": "sometimes"}}), "restart_policy.mode"),
            (json!({"name": "a", "image": "b", "health_check": {"path": "/", "port": 80}}), "health_check.port"),
            (
                json!({"name": "a", "image": "b", "ports": [{"container": 80}], "health_check": {"path": "x", "port": 80}}),
                "health_check.path",
            ),
        ];
        for (spec, field) in cases {
            let shown = spec.to_string();
            let (got, message) = field_error(spec);
            assert_eq!(got.as_deref(), Some(field), "{shown}: {message}");
        }
    }

    #[test]
    fn unknown_field_message_lists_the_known_ones() {
        let e = TaskSpec::from_value(json!({"name": "a", "image": "b", "imagee": "c"})).unwrap_err();
        assert_eq!(e.to_string(), "invalid task spec: field `imagee`: unknown field; the fields are: name, image, cmd, env, cpus, memory_mb, disk_mb, ports, restart_policy, health_check, tty");
    }

    #[test]
    fn malformed_json_and_non_objects_are_refused() {
        let e = TaskSpec::from_json(b"{\"name\": ").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{e}");
        let e = TaskSpec::from_json(b"[1, 2]").unwrap_err();
        assert_eq!(e.message, "a task spec must be a JSON object");
    }

    #[test]
    fn image_references() {
        for good in [
            "busybox",
            "skiff/busybox:latest",
            "localhost:5000/a/b:1.0",
            "registry.example.com/team/app_x__y-z:v1.2-rc_3",
            "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_image(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a/",
            "-a",
            "a:",
            "a:-x",
            "a@sha256:12",
            "a b",
            "a/b:c:d",
            "a___b",
            "exa mple.com/a",
        ] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_are_kept_to_the_thousandth_the_container_gets() {
        for (given, kept, nano) in
            [(0.01, 0.01, 10_000_000), (0.0125, 0.013, 13_000_000), (1.0 / 3.0, 0.333, 333_000_000)]
        {
            let text = format!(r#"{{"name":"a","image":"b","cpus":{given}}}"#);
            let spec = TaskSpec::from_json(text.as_bytes()).expect("valid");
            assert_eq!(spec.cpus, Some(kept), "{given}");
            let body = crate::docker_cli::create_body(&spec, &Default::default(), Default::default());
            assert_eq!(body["HostConfig"]["NanoCpus"], serde_json::json!(nano), "{given}");
        }
    }

    #[test]
    fn a_spec_is_bounded_as_a_whole_and_in_cmd_and_env_together() {
        let long = "x".repeat(20 * 1024);
        let cmd = json!({"name": "a", "image": "b", "cmd": [long, long]});
        let e = TaskSpec::from_json(cmd.to_string().as_bytes()).expect_err("too long");
        assert_eq!(e.field.as_deref(), Some("cmd"), "{e}");
        let env = json!({"name": "a", "image": "b", "cmd": [long], "env": {"A": long}});
        let e = TaskSpec::from_json(env.to_string().as_bytes()).expect_err("too long");
        assert_eq!(e.field.as_deref(), Some("env"), "{e}");
        // within both bounds: accepted, and its JSON fits a label
        let fits = json!({"name": "a", "image": "b", "cmd": ["x".repeat(MAX_CMD_ENV_BYTES - 1)]});
        let spec = TaskSpec::from_json(fits.to_string().as_bytes()).expect("fits");
        assert!(serde_json::to_vec(&spec).expect("json").len() <= MAX_SPEC_BYTES);
    }
}
