//! The worker's changes feed (`GET /v1/changes`), which the manager polls: every record carries
//! the version at which it last changed, and the worker remembers which tasks it forgot and
//! when, so that a poll brings only what changed since the reader's cursor ("nothing new" is an
//! empty answer), oldest change first, in pages.
//!
//! A record is versioned where it is committed (`State::persist`), and the tick persists every
//! entry, so a change is in the feed at once or by the next tick at the latest. A cursor from
//! another run of the process, or older than the oldest forgotten task remembered, gets a full
//! answer.
//!
//! Must not change the table.

use super::State;
use crate::api::{ChangesCursor, TaskChanges};
use crate::task::{Task, TaskId};
use std::collections::VecDeque;

/// Forgotten tasks remembered for readers behind; a reader further behind gets a full answer.
const REMOVALS_KEPT: usize = 4096;

/// The versions of this run of the worker.
pub(in crate::worker) struct Versions {
    /// New at each start of the process: a cursor from another run means nothing here.
    instance: String,
    /// The last version given out.
    current: u64,
    /// Tasks forgotten, with the version at which each was, oldest first.
    removed: VecDeque<(u64, TaskId)>,
    /// Removals up to this version are no longer remembered.
    horizon: u64,
}

impl Versions {
    pub(super) fn new() -> Versions {
        Versions {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            current: 0,
            removed: VecDeque::new(),
            horizon: 0,
        }
    }

    /// The version of a change being made now.
    pub(super) fn bump(&mut self) -> u64 {
        self.current += 1;
        self.current
    }

    /// Remembers that a task left the table.
    pub(super) fn forgotten(&mut self, id: TaskId) {
        let at = self.bump();
        self.removed.push_back((at, id));
        while self.removed.len() > REMOVALS_KEPT {
            if let Some((at, _)) = self.removed.pop_front() {
                self.horizon = at;
            }
        }
    }

    /// Where a reader asking from `since` starts (the records after one version, the removals
    /// after another): `None` for a full answer. What counts against the removals remembered
    /// is where the reader's removals start, not its records: the later pages of a full answer
    /// carry records older than the removals, which do not concern them.
    fn start_of(&self, since: Option<&ChangesCursor>) -> Option<(u64, u64)> {
        let since = since?;
        let known = since.instance == self.instance
            && since.removals_from >= self.horizon
            && since.version <= self.current
            && since.removals_from <= self.current;
        known.then_some((since.version, since.removals_from))
    }
}

impl State {
    /// The records changed since `since`, at most `limit` of them (at least one), oldest
    /// change first, with the tasks forgotten meanwhile.
    pub(in crate::worker) fn changes(&self, since: Option<&ChangesCursor>, limit: usize) -> TaskChanges {
        let start = self.versions.start_of(since);
        let from = start.map_or(0, |(records, _)| records);
        let mut changed: Vec<(u64, &Task)> =
            self.entries.values().filter(|e| e.version > from).map(|e| (e.version, &e.task)).collect();
        changed.sort_unstable_by_key(|(v, _)| *v);
        let more = changed.len() > limit.max(1);
        changed.truncate(limit.max(1));
        // a page cut short ends at its last record; removals after it come with the next page
        let upto = match changed.last() {
            Some((v, _)) if more => *v,
            _ => self.versions.current,
        };
        // a full answer starts from nothing now: only removals after now concern its reader
        let (removed, removals_from) = match start {
            None => (Vec::new(), self.versions.current),
            Some((_, gone)) => {
                let removed = self.versions.removed.iter().filter(|(at, _)| *at > gone && *at <= upto);
                (removed.map(|(_, id)| *id).collect(), gone.max(upto))
            }
        };
        TaskChanges {
            instance: self.versions.instance.clone(),
            version: upto,
            full: start.is_none(),
            more,
            removals_from,
            synced: self.synced,
            tasks: changed.into_iter().map(|(_, t)| t.clone()).collect(),
            removed,
        }
    }

    /// Takes a task out of the table, remembering it for the readers of the changes.
    pub(super) fn forget(&mut self, id: &TaskId) -> Option<super::Entry> {
        let entry = self.entries.remove(id)?;
        self.versions.forgotten(*id);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(v: &Versions, version: u64) -> ChangesCursor {
        ChangesCursor { instance: v.instance.clone(), version, removals_from: version }
    }

    #[test]
    fn a_cursor_of_this_run_within_what_is_remembered_gets_a_delta() {
        let mut v = Versions::new();
        for _ in 0..5 {
            v.bump();
        }
        assert_eq!(v.start_of(Some(&cursor(&v, 3))), Some((3, 3)));
        assert_eq!(v.start_of(Some(&cursor(&v, 5))), Some((5, 5)));
        assert_eq!(v.start_of(Some(&cursor(&v, 0))), Some((0, 0)));
    }

    #[test]
    fn no_cursor_another_run_or_a_version_from_the_future_gets_a_full_answer() {
        let mut v = Versions::new();
        v.bump();
        assert_eq!(v.start_of(None), None);
        assert_eq!(v.start_of(Some(&ChangesCursor { instance: "other".into(), version: 1, removals_from: 1 })), None);
        assert_eq!(v.start_of(Some(&cursor(&v, 2))), None);
    }

    #[test]
    fn a_reader_behind_the_removals_remembered_gets_a_full_answer() {
        let mut v = Versions::new();
        let first = v.bump();
        for _ in 0..=REMOVALS_KEPT {
            v.forgotten(TaskId::new_v4());
        }
        assert_eq!(v.removed.len(), REMOVALS_KEPT);
        assert!(v.horizon > first);
        assert_eq!(v.start_of(Some(&cursor(&v, first))), None);
        assert_eq!(v.start_of(Some(&cursor(&v, v.horizon))), Some((v.horizon, v.horizon)));
        // the later pages of a full answer: records from before the horizon, removals after it
        let continuation = ChangesCursor { instance: v.instance.clone(), version: first, removals_from: v.current };
        assert_eq!(v.start_of(Some(&continuation)), Some((first, v.current)));
    }
}
