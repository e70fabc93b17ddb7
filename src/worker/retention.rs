//! Which finished tasks keep their container, so that their output stays readable: the pure
//! decision, table-tested. A task stopped by a user gives its container up at once; Completed
//! and Failed ones keep it within the node's bound, a count and an age, the most recently
//! finished first; beyond either bound the container is removed (the record stays listed).
//!
//! Must not do anything: the control thread applies the answer.

use crate::task::TaskId;
use crate::time::Timestamp;
use std::collections::HashSet;
use std::time::Duration;

/// The node's bound on the containers of finished tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub count: usize,
    pub age: Duration,
}

impl Default for Retention {
    /// 20 containers, for an hour: enough to read why a task failed, little enough for the disk
    /// (each log is capped by the rotation options of its container).
    fn default() -> Retention {
        Retention { count: 20, age: Duration::from_secs(3600) }
    }
}

/// A finished task whose container is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub id: TaskId,
    pub finished_at: Timestamp,
    /// Stopped on a user's request: nothing to keep it for.
    pub stopped: bool,
}

/// The tasks whose container is to be removed now.
pub fn release(kept: &[Kept], bound: Retention, now: Timestamp) -> HashSet<TaskId> {
    let max_age = bound.age.as_millis() as u64;
    let mut candidates: Vec<&Kept> = kept.iter().filter(|k| !k.stopped).collect();
    // newest first: the count keeps the most recent failures
    candidates.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(a.id.cmp(&b.id)));
    let mut out: HashSet<TaskId> = kept.iter().filter(|k| k.stopped).map(|k| k.id).collect();
    for (i, k) in candidates.iter().enumerate() {
        if i >= bound.count || now.since(k.finished_at) > max_age {
            out.insert(k.id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    #[test]
    fn release_follows_the_count_the_age_and_user_stops() {
        let ids: Vec<TaskId> = (0..4).map(|_| TaskId::new_v4()).collect();
        let k = |i: usize, finished: u64, stopped: bool| Kept { id: ids[i], finished_at: at(finished), stopped };
        let bound = Retention { count: 2, age: Duration::from_secs(100) };
        let now = at(200_000);
        #[allow(clippy::type_complexity, reason = "a table of cases: name, the containers kept, those released")]
        let table: Vec<(&str, Vec<Kept>, Vec<usize>)> = vec![
            ("nothing kept, nothing released", vec![], vec![]),
            ("within both bounds", vec![k(0, 150_000, false), k(1, 190_000, false)], vec![]),
            ("a user stop is released at once", vec![k(0, 199_000, true)], vec![0]),
            ("past the age", vec![k(0, 99_000, false), k(1, 150_000, false)], vec![0]),
            ("exactly at the age is kept", vec![k(0, 100_000, false)], vec![]),
            (
                "past the count: the oldest go",
                vec![k(0, 150_000, false), k(1, 160_000, false), k(2, 170_000, false), k(3, 140_000, false)],
                vec![0, 3],
            ),
            (
                "a stopped task does not take a place in the count",
                vec![k(0, 199_000, true), k(1, 150_000, false), k(2, 160_000, false)],
                vec![0],
            ),
        ];
        for (what, kept, want) in table {
            let want: HashSet<TaskId> = want.into_iter().map(|i| ids[i]).collect();
            assert_eq!(release(&kept, bound, now), want, "{what}");
        }
    }
}
