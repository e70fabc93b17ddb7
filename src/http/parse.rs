//! Request bodies and queries to domain types, each field checked and a bad one named: the
//! task list's query (`task_query`), a submit's (`submit_query`), a join's body, the worker's
//! start body; and the escaping of query values both ways.
//!
//! Must not hold state or answer requests (`http.rs` routes and answers).

use super::ApiError;
use crate::api::StartTask;
use crate::manager::{Cursor, TaskQuery};
use crate::task::{SpecError, TaskId, TaskSpec, TaskState};
use serde::Serialize;
use serde_json::Value;

/// The header that carries where the next page of a list starts (absent on the last page).
pub const NEXT_PAGE_HEADER: &str = "Skiff-Next";

/// `GET /v1/tasks`'s query: `limit`, `next` (from the header of the page before), `state`,
/// `node`, `name`. An unknown parameter, or a value out of range, is a 400 that names it.
pub fn task_query(query: &str) -> Result<TaskQuery, ApiError> {
    let bad = |param: &str, message: String| ApiError::Query { param: param.to_string(), message };
    let mut q = TaskQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| bad(key, "is not valid percent-encoded UTF-8".into()))?;
        match key {
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=TaskQuery::MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad(key, format!("must be a number from 1 to {}", TaskQuery::MAX_LIMIT)))?
            }
            "next" => {
                q.after = Some(Cursor::parse(&value).ok_or_else(|| bad(key, "is not a cursor this list gave".into()))?)
            }
            "state" => {
                let state = TaskState::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(&value));
                let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                q.state = Some(state.ok_or_else(|| bad(key, format!("must be one of {}", names.join(", "))))?)
            }
            "node" => q.node = Some(value),
            "name" => q.name = Some(value),
            "service" => q.service = Some(value),
            other => {
                return Err(bad(other, "unknown; the parameters are limit, next, state, node, name, service".into()))
            }
        }
    }
    Ok(q)
}

/// The body of `POST /v1/nodes`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub name: String,
    pub address: String,
}

/// A join's body, each field checked: a node name, and a `HOST:PORT` the manager can dial.
pub fn parse_join(body: &[u8]) -> Result<JoinRequest, SpecError> {
    let bad = |field: &str, message: String| SpecError { field: Some(field.to_string()), message };
    let join: JoinRequest =
        serde_json::from_slice(body).map_err(|e| SpecError { field: None, message: e.to_string() })?;
    crate::task::check_name(&join.name).map_err(|m| bad("name", m.to_string()))?;
    crate::cli::check_address(&join.address).map_err(|m| bad("address", m))?;
    Ok(join)
}

/// `POST /v1/tasks`'s query: `dry_run=true` (or `false`, the default); whether it is a dry run.
pub fn submit_query(query: &str) -> Result<bool, ApiError> {
    let mut dry = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        let bad = |message: &str| ApiError::Query { param: key.to_string(), message: message.to_string() };
        match (key, value) {
            ("dry_run", "true" | "1" | "") => dry = true,
            ("dry_run", "false" | "0") => dry = false,
            ("dry_run", _) => return Err(bad("must be true or false")),
            _ => return Err(bad("unknown; the one parameter is dry_run")),
        }
    }
    Ok(dry)
}

/// A query value, escaped: everything but unreserved characters as `%XX`.
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `%XX` escapes and `+` for space, as query strings carry them; `None` for a broken escape.
pub(crate) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The worker's start body, `{"id": ..., "spec": {...}}`, with spec errors named `spec.field`.
pub fn parse_start_task(body: &[u8]) -> Result<StartTask, SpecError> {
    let bad = |field: Option<&str>, message: String| SpecError { field: field.map(str::to_string), message };
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(None, format!("malformed JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad(None, "the body must be a JSON object with id and spec".into()));
    };
    const FIELDS: [&str; 5] = ["id", "spec", "restart_count", "service", "service_version"];
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(Some(unknown), format!("unknown field; the fields are: {}", FIELDS.join(", "))));
    }
    let service = match obj.remove("service") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value::<String>(v).map_err(|e| bad(Some("service"), e.to_string()))?),
    };
    let service_version = match obj.remove("service_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value::<u32>(v).map_err(|e| bad(Some("service_version"), e.to_string()))?),
    };
    let restart_count = match obj.remove("restart_count") {
        None | Some(Value::Null) => 0,
        Some(v) => serde_json::from_value::<u32>(v).map_err(|e| bad(Some("restart_count"), e.to_string()))?,
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s.parse::<TaskId>().map_err(|e| bad(Some("id"), e.to_string()))?,
        _ => return Err(bad(Some("id"), "is required and must be a task id string".into())),
    };
    let spec_value = obj.remove("spec").ok_or_else(|| bad(Some("spec"), "is required".into()))?;
    let spec = TaskSpec::from_value(spec_value).map_err(|e| SpecError {
        field: Some(e.field.map(|f| format!("spec.{f}")).unwrap_or_else(|| "spec".into())),
        message: e.message,
    })?;
    Ok(StartTask { id, spec, restart_count, service, service_version })
}
