//! `GET /v1/changes` on the worker: the query (`since`, `instance`, `removals_from`, `limit`)
//! and the answer,
//! the worker's task records changed since a reader's cursor (`worker/state/changes.rs`).
//!
//! Must not hold state: the cursor is the reader's.

use super::{percent_decode, ApiError};
use crate::api::ChangesCursor;

/// Records in one page when the reader names no limit; at most `MAX_LIMIT`. A record is at
/// most a 64 KiB spec and its state, so a page stays far below the manager's answer limit.
pub const DEFAULT_LIMIT: usize = 256;
pub const MAX_LIMIT: usize = 1000;

/// The reader's cursor (both `instance` and `since`, or neither) and the page limit; a bad
/// parameter is a 400 that names it.
pub fn changes_query(query: &str) -> Result<(Option<ChangesCursor>, usize), ApiError> {
    let bad = |param: &str, message: &str| ApiError::Query { param: param.to_string(), message: message.to_string() };
    let (mut instance, mut since, mut removals_from, mut limit) = (None, None, None, DEFAULT_LIMIT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| bad(key, "is not valid percent-encoded UTF-8"))?;
        match key {
            "instance" if !value.is_empty() && value.len() <= 64 => instance = Some(value),
            "instance" => return Err(bad(key, "must be the instance of an earlier answer")),
            "since" => since = Some(value.parse::<u64>().map_err(|_| bad(key, "must be a version number"))?),
            "removals_from" => {
                removals_from = Some(value.parse::<u64>().map_err(|_| bad(key, "must be a version number"))?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad(key, "must be a number from 1 to 1000"))?
            }
            other => return Err(bad(other, "unknown; the parameters are since, instance, removals_from, limit")),
        }
    }
    let cursor = match (instance, since) {
        (Some(instance), Some(version)) => {
            Some(ChangesCursor { instance, version, removals_from: removals_from.unwrap_or(version) })
        }
        (None, None) => None,
        (None, Some(_)) => return Err(bad("instance", "is needed with since")),
        (Some(_), None) => return Err(bad("since", "is needed with instance")),
    };
    Ok((cursor, limit))
}

/// The query that asks from a cursor.
pub fn query_of(since: Option<&ChangesCursor>, limit: usize) -> String {
    match since {
        // the fallback for a worker without a feed leaves a cursor of no run
        Some(c) if !c.instance.is_empty() => {
            format!("since={}&instance={}&removals_from={}&limit={limit}", c.version, c.instance, c.removals_from)
        }
        _ => format!("limit={limit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_and_a_limit_are_read_back_from_the_query_made_of_them() {
        let c = ChangesCursor { instance: "0a1b".into(), version: 42, removals_from: 50 };
        assert_eq!(changes_query(&query_of(Some(&c), 10)).unwrap(), (Some(c), 10));
        assert_eq!(changes_query(&query_of(None, 7)).unwrap(), (None, 7));
        assert_eq!(changes_query("").unwrap(), (None, DEFAULT_LIMIT));
        // without removals_from, removals count from the version
        let (c, _) = changes_query("since=7&instance=ab").unwrap();
        assert_eq!(c.map(|c| c.removals_from), Some(7));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, param) in [
            ("since=x&instance=a", "since"),
            ("since=1&instance=a&removals_from=y", "removals_from"),
            ("since=3", "instance"),
            ("instance=a", "since"),
            ("instance=", "instance"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=-1", "limit"),
            ("page=2", "page"),
        ] {
            match changes_query(query) {
                Err(ApiError::Query { param: p, .. }) => assert_eq!(p, param, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
