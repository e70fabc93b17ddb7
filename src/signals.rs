//! Waiting for SIGINT or SIGTERM without a signal handler: the daemons block both signals before
//! any thread starts (threads inherit the mask), and the main thread takes them with `sigwait`.
//! Nothing runs in signal context, so shutdown can be ordinary code.

use std::io;

/// The termination signals, blocked for the calling thread and every thread started after.
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGINT and SIGTERM. Call before starting any thread.
    pub fn block() -> io::Result<TerminationSignals> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises; the pointers are to locals.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(TerminationSignals { set })
        }
    }

    /// Waits until SIGINT or SIGTERM arrives and returns its name.
    pub fn wait(&self) -> &'static str {
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `self.set` was initialised in `block`; `sig` is a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            if rc == 0 {
                return if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            }
        }
    }
}
