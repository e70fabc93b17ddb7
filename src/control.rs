//! What both daemons' control threads share: asking the thread a question and waiting for its
//! answer within a deadline, starting and stopping the thread, surviving a bug in the handling
//! of one message, and printing an error with its causes.
//!
//! Owns no domain state and knows nothing of tasks: the manager and the worker each keep their
//! own command enum and error type, and map `AskError` into it.

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use std::fmt;
use std::thread::JoinHandle;
use std::time::Duration;

/// Why a question to a control thread got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskError {
    /// The thread is gone (shut down, or its channel closed).
    Gone,
    /// No answer within the deadline; what was asked may still happen.
    TimedOut,
}

/// Sends a command carrying a reply channel to a control thread and waits up to `wait` for the
/// reply. The command is built by `make` around the reply's sender.
pub fn ask<C, T>(tx: &Sender<C>, make: impl FnOnce(Sender<T>) -> C, wait: Duration) -> Result<T, AskError> {
    let (reply_tx, reply_rx) = bounded(1);
    tx.send(make(reply_tx)).map_err(|_| AskError::Gone)?;
    match reply_rx.recv_timeout(wait) {
        Ok(answer) => Ok(answer),
        Err(RecvTimeoutError::Timeout) => Err(AskError::TimedOut),
        Err(RecvTimeoutError::Disconnected) => Err(AskError::Gone),
    }
}

/// Answers a caller who may have stopped waiting (its deadline passed, or it went away): that is
/// not an error for the control thread, which carries on either way.
pub fn answer<T>(reply: &Sender<T>, value: T) {
    if reply.send(value).is_err() {
        log::debug!("a caller stopped waiting before its answer");
    }
}

/// Drops the outcome of a best-effort operation whose failure changes nothing for its caller: a
/// write to a peer that may be gone (the next read or write finds out), a shutdown of a socket
/// already closed, a clean-up of what may not exist. The one place such outcomes are dropped.
pub fn best_effort<T, E>(outcome: Result<T, E>) {
    drop(outcome);
}

/// A thread could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub thread: String,
    pub source: std::io::Error,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot start the {} thread", self.thread)
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Starts a named thread.
pub fn spawn_thread<T: Send + 'static>(
    name: impl Into<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    let name = name.into();
    std::thread::Builder::new().name(name.clone()).spawn(f).map_err(|source| SpawnError { thread: name, source })
}

/// A running control thread: told to stop by sending it `shutdown`, then joined. Dropping it
/// does the same, so a daemon's threads never outlive the value that owns them.
pub struct ControlThread<C: Send + 'static> {
    tx: Sender<C>,
    shutdown: Option<C>,
    join: Option<JoinHandle<()>>,
}

impl<C: Send + 'static> ControlThread<C> {
    pub fn new(tx: Sender<C>, shutdown: C, join: JoinHandle<()>) -> ControlThread<C> {
        ControlThread { tx, shutdown: Some(shutdown), join: Some(join) }
    }

    /// Asks the thread to stop and waits until it has.
    pub fn stop(&mut self) {
        if let Some(cmd) = self.shutdown.take() {
            // a thread that is already gone needs no telling
            if self.tx.send(cmd).is_err() {
                log::debug!("control thread already stopped");
            }
        }
        if let Some(join) = self.join.take() {
            if join.join().is_err() {
                log::error!("the control thread ended with a panic");
            }
        }
    }
}

impl<C: Send + 'static> Drop for ControlThread<C> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs one message's handling, catching a panic: the bug is logged and that message dropped,
/// and the loop carries on, rather than leaving a daemon that answers nothing.
pub fn survive(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!("internal error, carrying on while_handling={}", crate::logfmt::q(what));
    }
}

/// Text of an error with its causes, for task `error` fields and logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    enum Cmd {
        Double(u32, Sender<u32>),
        Ignore(Sender<u32>),
        Stop,
    }

    fn echo() -> (Sender<Cmd>, ControlThread<Cmd>) {
        let (tx, rx) = unbounded();
        let join = spawn_thread("echo", move || {
            let mut kept = Vec::new();
            for cmd in rx.iter() {
                match cmd {
                    Cmd::Double(n, reply) => answer(&reply, n * 2),
                    Cmd::Ignore(reply) => kept.push(reply),
                    Cmd::Stop => break,
                }
            }
        })
        .expect("spawn");
        (tx.clone(), ControlThread::new(tx, Cmd::Stop, join))
    }

    #[test]
    fn ask_gets_the_answer() {
        let (tx, _thread) = echo();
        assert_eq!(ask(&tx, |r| Cmd::Double(21, r), Duration::from_secs(5)), Ok(42));
    }

    #[test]
    fn ask_times_out_when_no_answer_comes() {
        let (tx, _thread) = echo();
        assert_eq!(ask(&tx, Cmd::Ignore, Duration::from_millis(20)), Err(AskError::TimedOut));
    }

    #[test]
    fn ask_after_stop_says_gone() {
        let (tx, mut thread) = echo();
        thread.stop();
        assert_eq!(ask(&tx, |r| Cmd::Double(1, r), Duration::from_secs(5)), Err(AskError::Gone));
    }

    #[test]
    fn survive_catches_a_panic() {
        let mut after = false;
        survive("a test", || panic!("boom"));
        survive("a test", || after = true);
        assert!(after);
    }

    #[test]
    fn error_chain_joins_causes() {
        let e = SpawnError { thread: "x".into(), source: std::io::Error::other("no memory") };
        assert_eq!(error_chain(&e), "cannot start the x thread: no memory");
    }
}
