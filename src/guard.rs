//! What the control loops share to outlive their own bugs: an event whose handling panics is
//! logged and dropped, and the loop carries on, rather than leaving a daemon that answers nothing.

/// Runs one event's handling, catching a panic.
pub fn survive(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!("internal error while handling {what}; carrying on");
    }
}
