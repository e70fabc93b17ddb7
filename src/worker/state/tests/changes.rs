//! The changes feed the manager polls, on the fake engine: a full answer first, then only what
//! changed, removals, pages, and a full answer again for a cursor of another run.

use super::*;
use crate::api::{ChangesCursor, TaskChanges};

fn changes(rig: &mut Rig, since: Option<&ChangesCursor>, limit: usize) -> TaskChanges {
    let since = since.cloned();
    rig.ask(|reply| Command::Changes { since, limit, reply }).expect("changes")
}

fn ids(c: &TaskChanges) -> Vec<TaskId> {
    c.tasks.iter().map(|t| t.id).collect()
}

#[test]
fn a_reader_gets_everything_first_then_only_what_changed() {
    let mut rig = Rig::new();
    let a = rig.start();
    let b = rig.start();
    let first = changes(&mut rig, None, 100);
    assert!(first.full && !first.more);
    assert_eq!(ids(&first).len(), 2);
    // nothing new: an empty answer at the same version
    let quiet = changes(&mut rig, Some(&first.cursor()), 100);
    assert!(!quiet.full && quiet.tasks.is_empty() && quiet.removed.is_empty());
    assert_eq!(quiet.version, first.version);
    // ticks rewrite nothing, so they version nothing
    rig.tick();
    assert!(changes(&mut rig, Some(&first.cursor()), 100).tasks.is_empty());
    // one exit: that record alone, as it is now
    rig.exits(b.id, 3);
    let after = changes(&mut rig, Some(&first.cursor()), 100);
    assert_eq!(ids(&after), vec![b.id]);
    assert_eq!(after.tasks[0].state, TaskState::Failed);
    assert!(after.version > first.version);
    assert!(rig.state.entries.contains_key(&a.id));
}

#[test]
fn a_forgotten_task_is_in_the_removals_and_a_new_one_in_the_records() {
    let mut rig = Rig::new();
    rig.state.config.keep_finished_count = 0;
    rig.state.config.retention.count = 0;
    let done = rig.start();
    let seen = changes(&mut rig, None, 100);
    rig.exits(done.id, 0);
    rig.tick();
    rig.tick();
    assert!(!rig.state.entries.contains_key(&done.id));
    let fresh = rig.start();
    let after = changes(&mut rig, Some(&seen.cursor()), 100);
    assert_eq!(after.removed, vec![done.id]);
    assert_eq!(ids(&after), vec![fresh.id]);
}

#[test]
fn pages_follow_each_other_oldest_change_first_until_nothing_is_left() {
    let mut rig = Rig::new();
    let started: Vec<TaskId> = (0..5).map(|_| rig.start().id).collect();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = changes(&mut rig, cursor.as_ref(), 2);
        assert_eq!(page.full, pages == 0);
        seen.extend(ids(&page));
        cursor = Some(page.cursor());
        pages += 1;
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, started, "each record once, oldest change first");
}

#[test]
fn a_cursor_of_another_run_gets_a_full_answer() {
    let mut rig = Rig::new();
    let task = rig.start();
    let before = changes(&mut rig, None, 100);
    let mut rig = rig.restarted();
    let after = changes(&mut rig, Some(&before.cursor()), 100);
    assert!(after.full);
    assert_ne!(after.instance, before.instance);
    assert_eq!(ids(&after), vec![task.id]);
}

#[test]
fn a_full_answer_in_pages_is_read_to_its_end_after_more_removals_than_are_remembered() {
    let mut rig = Rig::new();
    let started: Vec<TaskId> = (0..3).map(|_| rig.start().id).collect();
    // more tasks forgotten since those records were written than the feed remembers
    for _ in 0..5_000 {
        rig.state.versions.forgotten(TaskId::new_v4());
    }
    let first = changes(&mut rig, None, 2);
    assert!(first.full && first.more);
    let rest = changes(&mut rig, Some(&first.cursor()), 2);
    assert!(!rest.full, "the second page goes on from the first, it does not start over");
    assert!(!rest.more && rest.removed.is_empty());
    let seen: Vec<TaskId> = ids(&first).into_iter().chain(ids(&rest)).collect();
    assert_eq!(seen, started);
    // and the reader is then up to date: a task forgotten now reaches it
    rig.state.forget(&started[0]);
    let after = changes(&mut rig, Some(&rest.cursor()), 2);
    assert_eq!(after.removed, vec![started[0]]);
}
