//! How the client shows what the manager answers: tables (tasks, nodes, events, a dry run), a
//! task's details and its URLs, sizes and ages in words, and the API's JSON as it came.
//!
//! Must not call the manager but to read the node list a task's URLs need.

use crate::api::{DryRun, NodeInfo};
use crate::http::ManagerClient;
use crate::task::Task;
use crate::time::Timestamp;

/// A task as `get` shows it: its details, then its URLs at its node's address as the manager
/// dials it (a node list that cannot be read costs the URLs, not the answer).
pub(super) fn shown(api: &ManagerClient, task: &Task) -> String {
    let address = match (&task.node, task.ports.is_empty()) {
        (Some(node), false) => {
            api.nodes().ok().and_then(|nodes| nodes.into_iter().find(|n| &n.name == node).map(|n| n.address))
        }
        _ => None,
    };
    task_details(task) + &task_urls(task, address.as_deref())
}

/// The API's JSON, as the manager sent it (the same types, serialised the same way).
pub(super) fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Left-aligned columns separated by two spaces.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// "3s", "5m", "2h", "4d": how long ago, for tables.
pub fn ago(then: Timestamp, now: Timestamp) -> String {
    let s = now.since(then) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub(super) fn ports_text(task: &Task) -> String {
    // one binding per container port (the IPv4 one comes first), as host->container
    let mut seen = Vec::new();
    let mut parts = Vec::new();
    for p in &task.ports {
        if seen.contains(&(p.container, p.protocol)) {
            continue;
        }
        seen.push((p.container, p.protocol));
        parts.push(format!("{}->{}/{}", p.host, p.container, p.protocol.as_str()));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// `urls` lines for `get`: `http://NODEADDR:HOSTPORT` for each published TCP port (one per
/// container port), NODEADDR being the host part of the node's address as the manager knows it
/// (the `-w` entry or the address the worker advertised). Of a container port's bindings, the
/// one of the node address's family (an engine may publish IPv4 and IPv6 on different host
/// ports), else its first. Nothing without that address.
pub fn task_urls(task: &Task, node_address: Option<&str>) -> String {
    let Some(host) = node_address.and_then(|a| a.rsplit_once(':')).map(|(h, _)| h) else {
        return String::new();
    };
    let v6 = host.starts_with('[');
    let tcp: Vec<&crate::task::PortBinding> =
        task.ports.iter().filter(|p| p.protocol == crate::task::Protocol::Tcp).collect();
    let mut seen = Vec::new();
    let mut out = String::new();
    for p in &tcp {
        if seen.contains(&p.container) {
            continue;
        }
        seen.push(p.container);
        let same_family = tcp.iter().find(|b| b.container == p.container && b.host_ip.contains(':') == v6);
        let key = if seen.len() == 1 { "urls" } else { "" };
        out.push_str(&format!("{key:<14}http://{host}:{}\n", same_family.unwrap_or(p).host));
    }
    out
}

/// The history, oldest first: when, what, which, the move and why.
pub fn event_table(events: &[crate::events::ClusterEvent], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let subject = match (e.subject, e.task) {
                (crate::events::Subject::Task, Some(id)) => format!("task {id}"),
                (crate::events::Subject::Service, _) => format!("service {}", e.service.as_deref().unwrap_or("-")),
                _ => format!("node {}", e.node.as_deref().unwrap_or("-")),
            };
            let change = match &e.from {
                Some(from) => format!("{from} -> {}", e.to),
                None => e.to.clone(),
            };
            vec![format!("{} ago", ago(e.at, now)), subject, change, e.reason.clone()]
        })
        .collect();
    table(&["WHEN", "WHAT", "CHANGE", "WHY"], &rows)
}

/// A dry run: the choice, then every node with its score or why not.
pub fn dry_run_table(d: &DryRun) -> String {
    let rows: Vec<Vec<String>> = d
        .nodes
        .iter()
        .map(|n| {
            let verdict = if d.chosen.as_deref() == Some(n.node.as_str()) {
                "chosen"
            } else if n.fits {
                "fits"
            } else {
                "no"
            };
            let detail = match (&n.reason, n.score) {
                (Some(why), _) => why.clone(),
                (None, Some(score)) => format!("score {score:.3}"),
                (None, None) => "-".into(),
            };
            vec![n.node.clone(), verdict.to_string(), detail]
        })
        .collect();
    let head = match &d.chosen {
        Some(node) => format!("would run on {node} ({}); nothing was placed\n", d.scheduler),
        None => "no node can take it; nothing was placed\n".to_string(),
    };
    head + &table(&["NODE", "VERDICT", "SCORE OR REASON"], &rows)
}

pub fn task_table(tasks: &[Task], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let state = if t.desired_state == crate::task::DesiredState::Stopped && !t.is_terminal() {
                format!("{} (stopping)", t.state)
            } else {
                t.state.to_string()
            };
            vec![
                t.id.to_string(),
                t.name.clone(),
                service_of(t),
                state,
                t.node.clone().unwrap_or_else(|| "-".into()),
                ports_text(t),
                ago(t.created_at, now),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "SERVICE", "STATE", "NODE", "PORTS", "AGE", "ERROR"], &rows)
}

/// The service a task is a replica of, as name@version; "-" for a single task.
pub(super) fn service_of(t: &Task) -> String {
    match (&t.service, t.service_version) {
        (Some(s), Some(v)) => format!("{s}@{v}"),
        (Some(s), None) => s.clone(),
        (None, _) => "-".into(),
    }
}

pub fn task_details(t: &Task) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let time = |v: Option<Timestamp>| opt(v.map(|t| t.to_string()));
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    field("id", t.id.to_string());
    field("name", t.name.clone());
    field("service", service_of(t));
    field("image", t.spec.image.clone());
    field("state", t.state.to_string());
    field("desired", format!("{:?}", t.desired_state).to_lowercase());
    field("node", opt(t.node.clone()));
    field("container", opt(t.container_id.as_ref().map(|c| c.chars().take(12).collect())));
    field("ports", ports_text(t));
    field("exit code", opt(t.exit_code.map(|c| c.to_string())));
    field("restarts", t.restart_count.to_string());
    field("healthy", opt(t.healthy.map(|h| if h { "yes".to_string() } else { "no".to_string() })));
    field("error", opt(t.error.clone()));
    field("created", t.created_at.to_string());
    field("started", time(t.started_at));
    field("finished", time(t.finished_at));
    if !t.events.is_empty() {
        out.push_str("events:\n");
        for e in t.events.iter().rev().take(10).rev() {
            let from = e.from.map(|f| format!("{f} -> ")).unwrap_or_default();
            let node = e.node.as_deref().map(|n| format!(" [{n}]")).unwrap_or_default();
            out.push_str(&format!("  {}  {from}{}{node}: {}\n", e.at, e.to, e.reason));
        }
    }
    out
}

/// Megabytes in the largest unit that keeps a number above 1: 512M, 1.5G, 2.1T.
pub fn size_mb(mb: u64) -> String {
    let mb = mb as f64;
    if mb >= 1024.0 * 1024.0 {
        format!("{:.1}T", mb / (1024.0 * 1024.0))
    } else if mb >= 1024.0 {
        format!("{:.1}G", mb / 1024.0)
    } else {
        format!("{mb:.0}M")
    }
}

pub(super) fn cores(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn node_table(nodes: &[NodeInfo], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let a = &n.allocated;
            let (cpu, memory, disk) = match (&n.stats, n.capacity) {
                (Some(s), Some(cap)) => (
                    format!("{}/{} cores, {:.0}% busy", cores(a.cpus), cores(cap.cpus), s.cpu_usage_pct),
                    format!(
                        "{} / {} / {}",
                        size_mb(a.memory_mb),
                        size_mb(s.memory_total_mb.saturating_sub(s.memory_available_mb)),
                        size_mb(cap.memory_mb)
                    ),
                    format!("{} / {} / {}", size_mb(a.disk_mb), size_mb(s.disk_free_mb), size_mb(cap.disk_mb)),
                ),
                _ => ("-".into(), "-".into(), "-".into()),
            };
            vec![
                n.name.clone(),
                n.address.clone(),
                n.status.as_str().to_string(),
                n.availability.as_str().to_string(),
                n.tasks.to_string(),
                cpu,
                memory,
                disk,
                n.last_contact.map(|t| format!("{} ago", ago(t, now))).unwrap_or_else(|| "never".into()),
                n.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let headers = [
        "NAME",
        "ADDRESS",
        "STATUS",
        "AVAILABILITY",
        "TASKS",
        "CPU (alloc/cap)",
        "MEMORY (alloc / used / cap)",
        "DISK (alloc / free / cap)",
        "LAST CONTACT",
        "ERROR",
    ];
    table(&headers, &rows)
}
