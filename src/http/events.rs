//! `GET /v1/events` on the manager: the query, the whole answer (a JSON array) and the followed
//! one (NDJSON, one event a line, streamed until the client goes away or `STREAM_MAX` passes).
//!
//! Holds no state: the history is the control thread's, asked for what came after the last
//! event sent.

use super::logs::STREAM_MAX;
use super::{json, ApiError, Response};
use crate::events::EventQuery;
use crate::manager::ManagerHandle;
use crate::time::Timestamp;
use std::time::{Duration, Instant};

pub const NDJSON: &str = "application/x-ndjson";

/// How often a follower asks the control thread for what is new.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// `since`, `task`, `node`, `service`, `limit`, `follow`: a bad one is a 400 that names it.
pub fn event_query(query: &str) -> Result<(EventQuery, bool), ApiError> {
    let bad = |param: &str, message: &str| ApiError::Query { param: param.to_string(), message: message.to_string() };
    let mut q = EventQuery::default();
    let mut follow = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::percent_decode(raw).ok_or_else(|| bad(key, "is not valid percent-encoded UTF-8"))?;
        match key {
            "since" => q.since = Some(Timestamp::parse(&value).ok_or_else(|| bad(key, "must be an RFC 3339 time"))?),
            "task" => q.task = Some(value.parse().map_err(|_| bad(key, "must be a task id"))?),
            "node" => q.node = Some(value),
            "service" => q.service = Some(value),
            "limit" => {
                q.limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(key, "must be a number above 0"))?,
                )
            }
            "follow" => {
                follow = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(key, "must be true or false")),
                }
            }
            other => return Err(bad(other, "unknown; the parameters are since, task, node, service, limit, follow")),
        }
    }
    Ok((q, follow))
}

pub fn manager_events(h: &ManagerHandle, query: &str) -> Result<Response, ApiError> {
    let (q, follow) = event_query(query)?;
    let first = h.events(q.clone())?;
    if !follow {
        return json(200, &first);
    }
    let h = h.clone();
    Ok(Response::stream(
        200,
        NDJSON,
        Box::new(move |out| {
            let end = Instant::now() + STREAM_MAX;
            let mut last = first.last().map(|e| e.seq);
            let mut batch = first;
            // after the history asked for, everything new that matches (the limit was for the past)
            let mut q = EventQuery { limit: None, ..q };
            loop {
                if batch.is_empty() {
                    if out.reader_gone() || Instant::now() >= end {
                        return Ok(());
                    }
                } else {
                    let mut lines = Vec::new();
                    for e in &batch {
                        lines.extend(serde_json::to_vec(e).unwrap_or_default());
                        lines.push(b'\n');
                    }
                    out.send(&lines)?;
                    last = batch.last().map(|e| e.seq).or(last);
                }
                std::thread::sleep(FOLLOW_EVERY);
                // a follower asks for what came after the last it sent, whatever its time
                q.after = last.or(q.after);
                q.since = if last.is_some() { None } else { q.since };
                batch = match h.events(q.clone()) {
                    Ok(b) => b,
                    Err(_) => return Ok(()), // the manager is going away
                };
            }
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_queries_are_read_and_bad_ones_name_the_parameter() {
        let id = crate::task::TaskId::new_v4();
        let (q, follow) =
            event_query(&format!("task={id}&node=w1&limit=5&since=2026-12-04T03:00:00Z&follow&service=web")).unwrap();
        assert!(follow);
        assert_eq!((q.task, q.node.as_deref(), q.limit), (Some(id), Some("w1"), Some(5)));
        assert!(q.since.is_some());
        assert_eq!(q.service.as_deref(), Some("web"));
        for (query, param) in [("limit=0", "limit"), ("task=x", "task"), ("since=now", "since"), ("kind=node", "kind")]
        {
            match event_query(query) {
                Err(ApiError::Query { param: p, .. }) => assert_eq!(p, param, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
