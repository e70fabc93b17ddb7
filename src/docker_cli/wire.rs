//! The engine's JSON and our own types for it: the body of a create call built from a task's spec,
//! and the parsers of inspect, list and event answers into `ContainerInfo`, `ContainerSummary`
//! and `ContainerEvent`. Docker's field names stay in this file.
//!
//! Pure: no socket, no clock; and nothing about tasks beyond reading a spec (what a container
//! means for a task is the worker's business).

use super::DockerError;
use crate::task::{PortBinding, Protocol, TaskSpec};
use crate::time::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A container as inspect shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    /// created, running, paused, restarting, removing, exited or dead.
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    /// The engine's own error for this container (e.g. why it could not start), often empty.
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortBinding>,
}

/// A container as the list call shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSummary {
    pub id: String,
    pub names: Vec<String>,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub created: Timestamp,
}

/// One line of the engine's event stream, for containers.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    pub action: String,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub exit_code: Option<i64>,
    pub time: Timestamp,
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, DockerError> {
    serde_json::from_slice(body).map_err(|e| DockerError::Protocol(e.to_string()))
}

/// Whether an inspected container has a TTY (its log is then a raw stream, not frames).
pub(super) fn parse_tty(body: &[u8]) -> Result<bool, DockerError> {
    #[derive(Deserialize)]
    struct TtyWire {
        #[serde(rename = "Config", default)]
        config: Option<TtyConfig>,
    }
    #[derive(Deserialize)]
    struct TtyConfig {
        #[serde(rename = "Tty", default)]
        tty: bool,
    }
    let w: TtyWire = parse_json(body)?;
    Ok(w.config.is_some_and(|c| c.tty))
}

/// The cap on a container's log on disk: the `json-file` driver's `max-size` per file and
/// `max-file` files, so that a chatty task cannot fill the engine's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    pub max_size_mb: u64,
    pub max_files: u32,
}

impl Default for LogRotation {
    /// 10 MB in at most 3 files: 30 MB per container at most.
    fn default() -> LogRotation {
        LogRotation { max_size_mb: 10, max_files: 3 }
    }
}

/// The body of a create call for a task's spec.
pub fn create_body(spec: &TaskSpec, labels: &BTreeMap<String, String>, logs: LogRotation) -> Value {
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container, p.protocol.as_str());
        // PortBindings publish nothing unless the port is also exposed (the CLI does this for you).
        exposed.insert(key.clone(), json!({}));
        let host_port = p.host.filter(|h| *h != 0).map(|h| h.to_string()).unwrap_or_default();
        bindings.insert(key, json!([{ "HostIp": "", "HostPort": host_port }]));
    }
    // Init: a tiny init (docker-init) is PID 1 and forwards signals, so a task's process gets
    // SIGTERM's default action on stop instead of being ignored as PID 1 and killed after the grace.
    let log_config = json!({
        "Type": "json-file",
        "Config": { "max-size": format!("{}m", logs.max_size_mb), "max-file": logs.max_files.to_string() },
    });
    let mut host_config = json!({ "PortBindings": bindings, "Init": true, "LogConfig": log_config });
    if let Some(mb) = spec.memory_mb {
        let bytes = mb * 1024 * 1024;
        host_config["Memory"] = json!(bytes);
        // equal to Memory: no swap on top of the limit
        host_config["MemorySwap"] = json!(bytes);
    }
    if let Some(cpus) = spec.cpus {
        host_config["NanoCpus"] = json!((cpus * 1e9).round() as i64);
    }
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut body = json!({
        "Image": spec.image,
        "Env": env,
        "Labels": labels,
        "ExposedPorts": exposed,
        "HostConfig": host_config,
    });
    if !spec.cmd.is_empty() {
        body["Cmd"] = json!(spec.cmd);
    }
    if spec.tty {
        body["Tty"] = json!(true);
    }
    body
}

/// How the version of a Podman engine reads (`Podman 4.3.1`): Podman answers `/version` with its
/// own number and names itself only among the components.
pub const PODMAN: &str = "Podman";

/// True for a version as `parse_version_answer` gives it that is Podman's.
pub fn is_podman(version: &str) -> bool {
    version.starts_with(PODMAN)
}

/// The engine's version and the API versions it speaks (newest, oldest), from `/version`.
pub(super) fn parse_version_answer(body: &[u8]) -> Result<(String, String, String), DockerError> {
    let v: VersionWire = parse_json(body)?;
    let podman = v.components.iter().any(|c| c.name.starts_with(PODMAN));
    let version = if podman { format!("{PODMAN} {}", v.version) } else { v.version };
    Ok((version, v.api_version, v.min_api_version))
}

/// Where the engine keeps its data, from `/info`.
pub(super) fn parse_root_dir(body: &[u8]) -> Result<String, DockerError> {
    let info: InfoWire = parse_json(body)?;
    Ok(info.root_dir)
}

/// The id of a container just created.
pub(super) fn parse_created(body: &[u8]) -> Result<String, DockerError> {
    let created: CreatedWire = parse_json(body)?;
    Ok(created.id)
}

#[derive(Deserialize)]
struct VersionWire {
    #[serde(rename = "Version", default)]
    version: String,
    #[serde(rename = "ApiVersion")]
    api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    min_api_version: String,
    #[serde(rename = "Components", default)]
    components: Vec<ComponentWire>,
}

#[derive(Deserialize)]
struct ComponentWire {
    #[serde(rename = "Name", default)]
    name: String,
}

#[derive(Deserialize)]
struct InfoWire {
    #[serde(rename = "DockerRootDir", default)]
    root_dir: String,
}

#[derive(Deserialize)]
struct CreatedWire {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Deserialize)]
struct InspectWire {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "State")]
    state: StateWire,
    #[serde(rename = "Config", default)]
    config: Option<ConfigWire>,
    #[serde(rename = "NetworkSettings", default)]
    network: Option<NetworkWire>,
}

#[derive(Deserialize)]
struct StateWire {
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Running", default)]
    running: bool,
    #[serde(rename = "ExitCode", default)]
    exit_code: i64,
    #[serde(rename = "Error", default)]
    error: String,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
    #[serde(rename = "StartedAt", default)]
    started_at: String,
    #[serde(rename = "FinishedAt", default)]
    finished_at: String,
}

#[derive(Deserialize, Default)]
struct ConfigWire {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct NetworkWire {
    #[serde(rename = "Ports", default)]
    ports: Option<BTreeMap<String, Option<Vec<HostPortWire>>>>,
}

#[derive(Deserialize)]
struct HostPortWire {
    #[serde(rename = "HostIp", default)]
    host_ip: String,
    #[serde(rename = "HostPort", default)]
    host_port: String,
}

/// Docker writes "0001-01-01T00:00:00Z" for a time that has not happened.
fn docker_time(s: &str) -> Option<Timestamp> {
    Timestamp::parse(s).filter(|t| t.millis() > 0)
}

pub fn parse_inspect(body: &[u8]) -> Result<ContainerInfo, DockerError> {
    let w: InspectWire = parse_json(body)?;
    let config = w.config.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, hosts) in w.network.and_then(|n| n.ports).unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let (Ok(container), Some(protocol)) = (port.parse::<u16>(), parse_protocol(proto)) else {
            continue;
        };
        for h in hosts.unwrap_or_default() {
            if let Ok(host) = h.host_port.parse::<u16>() {
                ports.push(PortBinding { container, protocol, host_ip: h.host_ip, host });
            }
        }
    }
    // IPv4 bindings first, then by port: the first binding is the one to show a user.
    ports.sort_by_key(|p| (p.host_ip.contains(':'), p.container));
    Ok(ContainerInfo {
        id: w.id,
        name: w.name.trim_start_matches('/').to_string(),
        image: config.image,
        status: w.state.status,
        running: w.state.running,
        exit_code: w.state.exit_code,
        error: w.state.error,
        oom_killed: w.state.oom_killed,
        started_at: docker_time(&w.state.started_at),
        finished_at: docker_time(&w.state.finished_at),
        labels: config.labels.unwrap_or_default(),
        ports,
    })
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

#[derive(Deserialize)]
struct SummaryWire {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Labels", default, deserialize_with = "bounded_labels")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Created", default)]
    created: i64,
}

/// The longest label value kept from a list: a spec label is at most this long
/// (`task::MAX_SPEC_BYTES`); anything longer was not made by Skiff.
pub const MAX_LABEL_VALUE: usize = crate::task::MAX_SPEC_BYTES;
/// Labels kept per container from a list.
const MAX_LABELS: usize = 256;

/// A container's labels, leaving out values over `MAX_LABEL_VALUE` and labels past
/// `MAX_LABELS`, so that what a list holds stays bounded whatever others put on containers.
fn bounded_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Labels;
    impl<'de> serde::de::Visitor<'de> for Labels {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of labels or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut kept = BTreeMap::new();
            let mut others = 0usize;
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                // Skiff's own labels are always kept: others' labels, however many, must not push
                // out the ones that say whose a container is
                let ours = key.starts_with("skiff.");
                if value.len() <= MAX_LABEL_VALUE && (ours || others < MAX_LABELS) {
                    others += usize::from(!ours);
                    kept.insert(key, value);
                }
            }
            Ok(Some(kept))
        }
    }
    d.deserialize_option(Labels)
}

pub fn parse_list(body: &[u8]) -> Result<Vec<ContainerSummary>, DockerError> {
    parse_list_from(body)
}

/// `parse_list` over a reader: the list is parsed as it is read.
pub fn parse_list_from(body: impl std::io::Read) -> Result<Vec<ContainerSummary>, DockerError> {
    let items: Vec<SummaryWire> = serde_json::from_reader(std::io::BufReader::new(body))
        .map_err(|e| DockerError::Protocol(format!("container list: {e}")))?;
    Ok(items
        .into_iter()
        .map(|w| ContainerSummary {
            id: w.id,
            names: w.names.unwrap_or_default().into_iter().map(|n| n.trim_start_matches('/').to_string()).collect(),
            state: w.state,
            labels: w.labels.unwrap_or_default(),
            created: Timestamp(w.created.max(0) as u64 * 1000),
        })
        .collect())
}

#[derive(Deserialize)]
struct EventWire {
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: Option<ActorWire>,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Deserialize, Default)]
struct ActorWire {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: Option<BTreeMap<String, String>>,
}

pub fn parse_event(line: &[u8]) -> Result<ContainerEvent, DockerError> {
    let w: EventWire = parse_json(line)?;
    let actor = w.actor.unwrap_or_default();
    let mut attributes = actor.attributes.unwrap_or_default();
    let exit_code = attributes.remove("exitCode").and_then(|c| c.parse().ok());
    // attributes mix labels with name/image; keep what is ours and the name
    let labels = attributes.into_iter().filter(|(k, _)| k.starts_with("skiff.") || k == "name").collect();
    // "exec_start: sh -c ..." style actions carry a suffix; the verb is what matters
    let action = w.action.split(':').next().unwrap_or("").trim().to_string();
    Ok(ContainerEvent {
        action,
        id: actor.id,
        labels,
        exit_code,
        time: Timestamp((w.time_nano.max(0) / 1_000_000) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_exposes_published_ports_and_sets_limits() {
        let spec = TaskSpec::from_json(
            br#"{"name":"web","image":"skiff/busybox","cmd":["httpd","-f"],"env":{"A":"1"},
                "cpus":0.5,"memory_mb":64,"ports":[{"container":8080},{"container":53,"host":5353,"protocol":"udp"}]}"#,
        )
        .unwrap();
        let labels = BTreeMap::from([("skiff.task-id".to_string(), "x".to_string())]);
        let body = create_body(&spec, &labels, LogRotation { max_size_mb: 5, max_files: 2 });
        assert_eq!(body["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
        assert_eq!(body["HostConfig"]["PortBindings"]["8080/tcp"], json!([{"HostIp": "", "HostPort": ""}]));
        assert_eq!(body["HostConfig"]["PortBindings"]["53/udp"], json!([{"HostIp": "", "HostPort": "5353"}]));
        assert_eq!(body["HostConfig"]["Memory"], json!(64 * 1024 * 1024));
        assert_eq!(body["HostConfig"]["MemorySwap"], json!(64 * 1024 * 1024));
        assert_eq!(body["HostConfig"]["NanoCpus"], json!(500_000_000));
        assert_eq!(body["Env"], json!(["A=1"]));
        assert_eq!(body["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(body["Labels"], json!({"skiff.task-id": "x"}));
        assert!(body["HostConfig"].get("RestartPolicy").is_none(), "skiff does its own restarts");
        assert_eq!(body["HostConfig"]["Init"], json!(true));
        let logs = json!({"Type": "json-file", "Config": {"max-size": "5m", "max-file": "2"}});
        assert_eq!(body["HostConfig"]["LogConfig"], logs, "a chatty task's log is capped on disk");
        assert!(body.get("Tty").is_none());
    }

    #[test]
    fn podman_is_told_by_its_components() {
        let docker = br#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Components":[{"Name":"Engine","Version":"20.10.24"}]}"#;
        let podman = br#"{"Version":"4.3.1","ApiVersion":"1.41","MinAPIVersion":"1.24","Components":[{"Name":"Podman Engine","Version":"4.3.1"},{"Name":"Conmon"}]}"#;
        let bare = br#"{"Version":"20.10.24","ApiVersion":"1.41"}"#;
        let version = |b: &[u8]| parse_version_answer(b).expect("parses").0;
        assert_eq!(version(docker), "20.10.24");
        assert_eq!(version(podman), "Podman 4.3.1");
        assert_eq!(version(bare), "20.10.24");
        assert!(is_podman(&version(podman)) && !is_podman(&version(docker)));
    }

    #[test]
    fn parses_inspect() {
        let body = br#"{"Id":"abc","Name":"/skiff-web","State":{"Status":"exited","Running":false,"ExitCode":3,
            "Error":"","OOMKilled":false,"StartedAt":"2026-11-25T11:54:34.123456789Z","FinishedAt":"0001-01-01T00:00:00Z"},
            "Config":{"Image":"skiff/busybox","Labels":{"skiff.task-id":"t"}},
            "NetworkSettings":{"Ports":{"8080/tcp":[{"HostIp":"::","HostPort":"32769"},{"HostIp":"0.0.0.0","HostPort":"32768"}],"9/udp":null}}}"#;
        let info = parse_inspect(body).unwrap();
        assert_eq!(info.name, "skiff-web");
        assert_eq!((info.status.as_str(), info.running, info.exit_code), ("exited", false, 3));
        assert_eq!(info.started_at, Some(Timestamp(1_795_607_674_123)));
        assert_eq!(info.finished_at, None);
        assert_eq!(info.labels.get("skiff.task-id").map(String::as_str), Some("t"));
        assert_eq!(info.ports.len(), 2);
        assert_eq!((info.ports[0].host_ip.as_str(), info.ports[0].host), ("0.0.0.0", 32768));
        assert!(parse_inspect(b"{}").is_err());
        assert!(parse_inspect(br#"{"Id":"a","State":{},"Config":null,"NetworkSettings":{"Ports":null}}"#).is_ok());
    }

    #[test]
    fn parses_list_and_events() {
        let list = parse_list(
            br#"[{"Id":"a","Names":["/skiff-x"],"State":"running","Labels":{"skiff.node":"w1"},"Created":10},
                                  {"Id":"b","Names":null,"Labels":null}]"#,
        )
        .unwrap();
        assert_eq!(list[0].names, vec!["skiff-x"]);
        assert_eq!(list[0].created, Timestamp(10_000));
        assert!(list[1].labels.is_empty());
        let ev = parse_event(
            br#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137","image":"i","name":"n","skiff.task-id":"t"}},"timeNano":1795607674123456789}"#,
        )
        .unwrap();
        assert_eq!((ev.action.as_str(), ev.id.as_str(), ev.exit_code), ("die", "abc", Some(137)));
        assert_eq!(ev.labels.len(), 2);
        assert_eq!(ev.time, Timestamp(1_795_607_674_123));
        assert_eq!(parse_event(br#"{"Action":"exec_start: sh -c true"}"#).unwrap().action, "exec_start");
        assert!(parse_event(b"not json").is_err());
    }

    #[test]
    fn a_list_keeps_no_label_longer_than_a_skiff_spec() {
        let huge = "y".repeat(MAX_LABEL_VALUE + 1);
        let body = json!([
            {"Id": "a", "Names": ["/a"], "State": "running", "Created": 5,
             "Labels": {"skiff.node": "w1", "junk": huge, "skiff.spec": "{}"}},
            {"Id": "b", "State": "exited", "Labels": null}
        ])
        .to_string();
        let list = parse_list_from(body.as_bytes()).expect("parses");
        assert_eq!(list[0].labels.keys().collect::<Vec<_>>(), ["skiff.node", "skiff.spec"]);
        assert_eq!((list[0].names.clone(), list[0].created), (vec!["a".to_string()], Timestamp(5000)));
        assert!(list[1].labels.is_empty());
        // however many labels others add, Skiff's are kept
        let mut labels: serde_json::Map<String, Value> =
            (0..300).map(|i| (format!("com.example.{i:03}"), json!("v"))).collect();
        labels.insert("skiff.task-id".into(), json!("t"));
        let body = json!([{"Id": "c", "State": "running", "Labels": labels}]).to_string();
        let list = parse_list_from(body.as_bytes()).expect("parses");
        assert_eq!(list[0].labels.get("skiff.task-id").map(String::as_str), Some("t"));
        assert_eq!(list[0].labels.len(), MAX_LABELS + 1);
    }
}
