//! The restart budget as a container carries it, so that a worker that keeps no table (a memory
//! store) counts on from where it was after a restart of its own.
//!
//! Labels are fixed when a container is created, and a restart in place starts the same
//! container again (its output and its files are kept), so the labels say what the budget was
//! at creation. The container's *name* says what it is now: before each restart in place the
//! worker renames the container from its base name (`skiff-{node}-{task}-{short id}`, see
//! `decide::container_name`) to the base name followed by the budget as that exit left it:
//! `.r{restarts}.u{restarts counted against the budget}`, then `.e{the exit's finished_at in
//! ms}` when the exit has a time, as in `skiff-w1-web-0a1b2c3d.r3.u2.e1733300000123`. The time is
//! kept to the millisecond because it is how an exit already handled is told from a new one
//! (`decide::on_exit`): a worker that dies between the rename and the start finds the exit
//! already counted, and one that dies before the rename counts it then, once.
//!
//! Pure: the suffix written, the suffix read (only what `renamed` writes is read: any other name
//! is not the task's), and which of name and labels a container's budget comes from. Must not do
//! I/O.

use super::{LABEL_LAST_EXIT, LABEL_RECENT_RESTARTS, LABEL_RESTART_COUNT};
use crate::task::Task;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// A task's restart budget: restarts so far, those that count against the budget, and the exit
/// handled last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub restart_count: u32,
    pub recent_restarts: u32,
    pub last_exit_at: Option<Timestamp>,
}

impl Budget {
    pub fn of(task: &Task) -> Budget {
        Budget {
            restart_count: task.restart_count,
            recent_restarts: task.recent_restarts,
            last_exit_at: task.last_exit_at,
        }
    }
}

/// The budget a container's labels carry (as it stood at its creation). Missing or unreadable
/// labels (a container of an earlier version, or made by hand) read as a fresh budget.
pub fn from_labels(labels: &BTreeMap<String, String>) -> Budget {
    let count = |key: &str| labels.get(key).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    Budget {
        restart_count: count(LABEL_RESTART_COUNT),
        recent_restarts: count(LABEL_RECENT_RESTARTS),
        last_exit_at: labels.get(LABEL_LAST_EXIT).and_then(|v| Timestamp::parse(v)),
    }
}

/// The name a container with this base name gets before a restart in place: the budget as the
/// exit left it, after the base name. Only `[0-9.eru]` is added, which an engine's names allow.
pub fn renamed(base: &str, b: &Budget) -> String {
    let mut name = format!("{base}.r{}.u{}", b.restart_count, b.recent_restarts);
    if let Some(at) = b.last_exit_at {
        name.push_str(&format!(".e{}", at.millis()));
    }
    name
}

/// The budget that the name of a container renamed by `renamed` carries, if `name` is such a
/// name for this base name. Anything else (the base name itself, another task's name, a suffix
/// garbled or written by hand: leading zeros, signs, numbers out of range, parts missing or in
/// excess) is `None`; nothing in a name can make this panic.
pub fn in_name(base: &str, name: &str) -> Option<Budget> {
    let mut parts = name.strip_prefix(base)?.strip_prefix('.')?.split('.');
    let restart_count = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let recent_restarts = parts.next()?.strip_prefix('u')?.parse().ok()?;
    let last_exit_at = match parts.next() {
        Some(e) => Some(Timestamp(e.strip_prefix('e')?.parse().ok()?)),
        None => None,
    };
    let b = Budget { restart_count, recent_restarts, last_exit_at };
    // what `parse` lets through and `renamed` never writes ("+1", "007", a fourth part) is not ours
    (parts.next().is_none() && renamed(base, &b) == name).then_some(b)
}

/// Whether `name` is one this node's worker gives the container with this base name: the base
/// name (until its first restart in place) or a renamed one.
pub fn is_name_of(base: &str, name: &str) -> bool {
    name == base || in_name(base, name).is_some()
}

/// A container's budget: its name's when it was renamed (the budget as it stands since its last
/// restart in place), else its labels' (as it stood at its creation). `names` are as the engine
/// lists them (a leading `/` is ignored).
pub fn of_container(base: &str, names: &[String], labels: &BTreeMap<String, String>) -> Budget {
    names.iter().find_map(|n| in_name(base, n.trim_start_matches('/'))).unwrap_or_else(|| from_labels(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = "skiff-w1-web.v2-0a1b2c3d";

    fn b(restart_count: u32, recent_restarts: u32, at: Option<u64>) -> Budget {
        Budget { restart_count, recent_restarts, last_exit_at: at.map(Timestamp) }
    }

    #[test]
    fn the_suffix_written() {
        assert_eq!(renamed(BASE, &b(3, 2, Some(1_733_300_000_123))), format!("{BASE}.r3.u2.e1733300000123"));
        assert_eq!(renamed(BASE, &b(1, 1, None)), format!("{BASE}.r1.u1"));
        assert_eq!(renamed(BASE, &b(0, 0, Some(0))), format!("{BASE}.r0.u0.e0"));
    }

    #[test]
    fn names_read_from_a_table() {
        let max = u32::MAX;
        let cases: Vec<(&str, String, Option<Budget>)> = vec![
            ("renamed", format!("{BASE}.r3.u2.e1733300000123"), Some(b(3, 2, Some(1_733_300_000_123)))),
            ("no exit time", format!("{BASE}.r1.u1"), Some(b(1, 1, None))),
            ("the largest counts", format!("{BASE}.r{max}.u{max}.e{}", u64::MAX), Some(b(max, max, Some(u64::MAX)))),
            ("the base name", BASE.to_string(), None),
            ("another task", "skiff-w1-web.v2-99999999.r1.u1".into(), None),
            ("the base's prefix only", format!("{BASE}x.r1.u1"), None),
            ("no dot", format!("{BASE}r1.u1"), None),
            ("a count out of range", format!("{BASE}.r4294967296.u1"), None),
            ("a time out of range", format!("{BASE}.r1.u1.e18446744073709551616"), None),
            ("a sign", format!("{BASE}.r+1.u1"), None),
            ("a leading zero", format!("{BASE}.r01.u1"), None),
            ("a negative count", format!("{BASE}.r-1.u1"), None),
            ("parts swapped", format!("{BASE}.u1.r1"), None),
            ("the used count missing", format!("{BASE}.r1"), None),
            ("an empty count", format!("{BASE}.r.u1"), None),
            ("an empty time", format!("{BASE}.r1.u1.e"), None),
            ("a part in excess", format!("{BASE}.r1.u1.e5.e5"), None),
            ("a trailing dot", format!("{BASE}.r1.u1."), None),
            ("a letter in a number", format!("{BASE}.r1.u1.e12a"), None),
            ("non-ASCII digits", format!("{BASE}.r١.u1"), None),
            ("empty", String::new(), None),
        ];
        for (what, name, want) in cases {
            assert_eq!(in_name(BASE, &name), want, "{what}: {name}");
            assert_eq!(is_name_of(BASE, &name), want.is_some() || name == BASE, "{what}: {name}");
        }
    }

    #[test]
    fn a_containers_budget_from_a_table() {
        let labels = BTreeMap::from([
            (LABEL_RESTART_COUNT.to_string(), "1".to_string()),
            (LABEL_RECENT_RESTARTS.to_string(), "1".to_string()),
            (LABEL_LAST_EXIT.to_string(), Timestamp(5_000).to_string()),
        ]);
        let from_name = b(3, 2, Some(9_000));
        type Case = (&'static str, Vec<String>, BTreeMap<String, String>, Budget);
        let cases: Vec<Case> = vec![
            ("renamed: the name's", vec![format!("/{}", renamed(BASE, &from_name))], labels.clone(), from_name),
            ("renamed, no labels", vec![renamed(BASE, &from_name)], BTreeMap::new(), from_name),
            ("the base name: the labels'", vec![format!("/{BASE}")], labels.clone(), b(1, 1, Some(5_000))),
            ("a garbled suffix: the labels'", vec![format!("{BASE}.r9.u")], labels.clone(), b(1, 1, Some(5_000))),
            ("nothing: a fresh budget", vec![BASE.to_string()], BTreeMap::new(), Budget::default()),
            (
                "unreadable labels: a fresh budget",
                vec![],
                BTreeMap::from([(LABEL_RESTART_COUNT.to_string(), "many".to_string())]),
                Budget::default(),
            ),
            (
                "a used count back to 1 after a long run is the name's, not the larger label",
                vec![renamed(BASE, &b(7, 1, Some(9_000)))],
                BTreeMap::from([(LABEL_RECENT_RESTARTS.to_string(), "3".to_string())]),
                b(7, 1, Some(9_000)),
            ),
        ];
        for (what, names, labels, want) in cases {
            assert_eq!(of_container(BASE, &names, &labels), want, "{what}");
        }
    }

    fn budget() -> impl Strategy<Value = Budget> {
        (any::<u32>(), any::<u32>(), proptest::option::of(any::<u64>())).prop_map(|(r, u, e)| b(r, u, e))
    }

    proptest! {
        #[test]
        fn every_name_written_is_read_back_and_is_a_valid_engine_name(bud in budget(), base in "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,90}") {
            let name = renamed(&base, &bud);
            prop_assert_eq!(in_name(&base, &name), Some(bud));
            prop_assert!(is_name_of(&base, &name));
            let bytes = name.as_bytes();
            prop_assert!(bytes[0].is_ascii_alphanumeric());
            prop_assert!(bytes.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c)), "{}", name);
        }

        #[test]
        fn any_name_is_read_without_panicking_and_only_as_written(name in any::<String>()) {
            if let Some(bud) = in_name(BASE, &name) {
                prop_assert_eq!(renamed(BASE, &bud), name);
            }
        }

        #[test]
        fn any_suffix_after_the_base_is_read_without_panicking_and_only_as_written(suffix in "[.reu0-9+-]{0,40}|.{0,40}") {
            let name = format!("{BASE}{suffix}");
            if let Some(bud) = in_name(BASE, &name) {
                prop_assert_eq!(renamed(BASE, &bud), name);
            }
        }

        #[test]
        fn a_written_name_garbled_or_cut_short_is_read_only_as_written(bud in budget(), at in 0usize..60, byte in any::<u8>()) {
            // one byte of the suffix changed, or the name cut there: never a panic, and a budget
            // only if the result is itself a name `renamed` writes
            let name = renamed(BASE, &bud);
            let at = BASE.len() + at % (name.len() - BASE.len());
            let mut bytes = name.clone().into_bytes();
            bytes[at] = byte;
            for garbled in [String::from_utf8_lossy(&bytes).into_owned(), name[..at].to_string()] {
                if let Some(read) = in_name(BASE, &garbled) {
                    prop_assert_eq!(renamed(BASE, &read), garbled);
                }
            }
        }
    }
}
