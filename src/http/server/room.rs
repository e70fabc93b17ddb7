//! The waiting room: one thread and one `poll` over every connection that waits for bytes (new
//! ones, kept-alive ones between requests, ones whose request has only partly arrived, refused
//! bodies being drained), so that no handler thread waits on a connection that sends nothing or
//! sends slowly.
//!
//! Must not read requests: a connection with bytes goes to a handler thread, which reads them.

use super::{write_response, ErrorBody, Partial, Response, Waiting};
use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Keeps waiting connections (new ones, kept-alive ones between requests, and ones whose request
/// has only partly arrived) in one `poll`, so that no thread waits on a connection that sends
/// nothing or sends slowly; a connection is handed to a handler thread only when it has bytes to
/// read (or has closed). At its deadline a waiting connection is closed (with 408 if a request
/// was under way); beyond `max_waiting` the oldest one is; when the handlers' queue is full, 503.
pub(super) fn waiting_room(
    arrivals: &crossbeam_channel::Receiver<Waiting>,
    wake: &std::os::unix::net::UnixStream,
    ready: &crossbeam_channel::Sender<(TcpStream, Partial)>,
    stopping: &AtomicBool,
    max_waiting: usize,
) {
    use std::os::unix::io::AsRawFd;
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let refuse = |mut stream: TcpStream, status: u16, message: &str| {
        crate::control::best_effort(stream.set_write_timeout(Some(Duration::from_secs(1))));
        crate::control::best_effort(write_response(
            &mut stream,
            Response::error(status, &ErrorBody::new(message)),
            true,
            false,
            Duration::from_secs(1),
        ));
        crate::control::best_effort(stream.shutdown(Shutdown::Both));
    };
    loop {
        if stopping.load(Ordering::SeqCst) {
            return; // waiting connections are simply closed
        }
        while let Ok(w) = arrivals.try_recv() {
            waiting.push(w);
        }
        if waiting.len() > max_waiting {
            let extra = waiting.len() - max_waiting;
            waiting.drain(..extra); // the oldest, closed by dropping
        }
        let now = Instant::now();
        // close the ones that waited too long; a request under way is told why
        let (expired, kept): (Vec<Waiting>, Vec<Waiting>) = waiting.drain(..).partition(|w| w.until <= now);
        waiting = kept;
        for w in expired {
            if w.partial.started.is_some() {
                refuse(w.stream, 408, "request not received in time");
            }
        }
        fds.clear();
        fds.push(libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(waiting.iter().map(|w| libc::pollfd { fd: w.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        let timeout_ms = waiting
            .iter()
            .map(|w| w.until.saturating_duration_since(now).as_millis() as i64 + 1)
            .min()
            .map_or(-1, |ms| ms.min(60_000) as libc::c_int);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            continue; // EINTR: look again
        }
        if fds[0].revents != 0 {
            let mut sink = [0u8; 64];
            while matches!((&*wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        // hand over in the order they came, keep the others in theirs
        let mut still = Vec::with_capacity(waiting.len());
        for (w, pfd) in waiting.drain(..).zip(&fds[1..]) {
            if pfd.revents == 0 {
                still.push(w);
                continue;
            }
            if let Err(crossbeam_channel::TrySendError::Full((stream, _))) = ready.try_send((w.stream, w.partial)) {
                refuse(stream, 503, "server busy, retry later");
            }
        }
        waiting = still;
    }
}
