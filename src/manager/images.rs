//! An image copied from one worker to another through the manager: the export of one
//! (`WorkerLink::export_image`) streamed into the import of the other
//! (`WorkerLink::import_image`) without being held: a pump thread reads the source into a
//! bounded channel (`RELAY_CHUNKS` chunks of `CHUNK` bytes at most in flight) and the upload
//! reads from it, so a slow side slows the other and memory stays bounded.
//!
//! Every wait has a deadline: the stream as a whole (`copy_image`'s `deadline`, after which the
//! source is closed and the upload cut, so the target loads nothing), and the link's own for the
//! target's answer. A source that fails or ends early cuts the upload too: a tar is loaded only
//! when it came whole.
//!
//! Blocks its caller for the whole copy: never to be called on the control thread.

use super::{ImageSource, LinkError, WorkerLink};
use crate::api::ImagesLoaded;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most bytes one read of the source gives the channel.
pub const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the source and the upload at most.
pub const RELAY_CHUNKS: usize = 16;

/// A copy done: what was loaded, the bytes moved, how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub loaded: ImagesLoaded,
    pub bytes: u64,
    pub took: Duration,
}

/// Why a copy failed, and on which side.
#[derive(Debug)]
pub enum CopyError {
    /// The source would not export (no such image, not Skiff's, out of reach).
    Export(LinkError),
    /// The source's stream broke off after it began.
    Source(String),
    /// The target refused the tar or could not be reached.
    Import(LinkError),
    /// The stream did not end within the copy's deadline.
    Deadline { after: Duration, bytes: u64 },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Export(e) => write!(f, "the source worker did not export the image: {e}"),
            CopyError::Source(why) => write!(f, "the source worker's export broke off: {why}"),
            CopyError::Import(e) => write!(f, "the target worker did not load the image: {e}"),
            CopyError::Deadline { after, bytes } => {
                write!(f, "the copy did not end within {} s ({bytes} bytes sent)", after.as_secs())
            }
        }
    }
}

impl std::error::Error for CopyError {}

/// What the pump sends: bytes, the source's end, or its failure.
enum Piece {
    Bytes(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Copies `reference` from `from` to `to`, the stream ending by `deadline`.
pub fn copy_image(
    from: &dyn WorkerLink,
    to: &dyn WorkerLink,
    reference: &str,
    deadline: Duration,
) -> Result<Copied, CopyError> {
    let started = Instant::now();
    let ImageSource { reader, close } = from.export_image(reference).map_err(CopyError::Export)?;
    let (tx, rx) = bounded(RELAY_CHUNKS);
    let pump = std::thread::Builder::new().name("image-pump".into()).spawn(move || pump(reader, &tx));
    let pump = match pump {
        Ok(pump) => pump,
        Err(e) => {
            close();
            return Err(CopyError::Source(format!("cannot start the pump thread: {e}")));
        }
    };
    let bytes = Arc::new(AtomicU64::new(0));
    let mut upload =
        Upload { rx, pending: Vec::new(), at: 0, end: started + deadline, bytes: bytes.clone(), cut: None };
    let imported = to.import_image(&mut upload);
    let cut = upload.cut.take();
    // the pump is blocked either on the channel (gone with `upload`) or on its read (closed)
    drop(upload);
    close();
    crate::control::best_effort(pump.join().map_err(|_| "the image pump panicked"));
    let bytes = bytes.load(Ordering::SeqCst);
    match (cut, imported) {
        (Some(Cut::Deadline), _) => Err(CopyError::Deadline { after: deadline, bytes }),
        (Some(Cut::Source(why)), _) => Err(CopyError::Source(why)),
        (None, Err(e)) => Err(CopyError::Import(e)),
        (None, Ok(loaded)) => Ok(Copied { loaded, bytes, took: started.elapsed() }),
    }
}

/// The pump thread: reads the source into the channel until its end, its failure, or the
/// upload's going (the channel closed).
fn pump(mut reader: Box<dyn Read + Send>, tx: &Sender<Piece>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let piece = match reader.read(&mut buf) {
            Ok(0) => Piece::End,
            Ok(n) => Piece::Bytes(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Piece::Failed(e),
        };
        let last = !matches!(piece, Piece::Bytes(_));
        if tx.send(piece).is_err() || last {
            return;
        }
    }
}

/// Why the upload's reader stopped before the source's end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cut {
    Deadline,
    Source(String),
}

/// The upload's side of the channel, as a reader: each read waits at most until the deadline.
struct Upload {
    rx: Receiver<Piece>,
    pending: Vec<u8>,
    at: usize,
    end: Instant,
    bytes: Arc<AtomicU64>,
    cut: Option<Cut>,
}

impl Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(cut) = &self.cut {
            return Err(io::Error::other(format!("the copy was cut: {cut:?}")));
        }
        while self.at == self.pending.len() {
            let fail = |this: &mut Upload, cut: Cut| {
                let e = io::Error::other(format!("the copy was cut: {cut:?}"));
                this.cut = Some(cut);
                Err(e)
            };
            match self.rx.recv_deadline(self.end) {
                Ok(Piece::Bytes(bytes)) => {
                    self.pending = bytes;
                    self.at = 0;
                }
                Ok(Piece::End) => return Ok(0),
                Ok(Piece::Failed(e)) => return fail(self, Cut::Source(e.to_string())),
                Err(RecvTimeoutError::Timeout) => return fail(self, Cut::Deadline),
                // the pump went without saying how the source ended: not a whole tar
                Err(RecvTimeoutError::Disconnected) => {
                    return fail(self, Cut::Source("the pump ended before the source".into()))
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        self.bytes.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChangesCursor, LoadedImage, StartTask, TaskChanges, WorkerHealth};
    use crate::stats::NodeStats;
    use crate::task::{Task, TaskId};
    use std::sync::{Condvar, Mutex};

    /// A source of `len` bytes (byte i is `i % 251`), which fails after `fail_at` bytes if set,
    /// or blocks after them until closed if `hang` is; it counts the bytes it has given.
    struct Source {
        len: u64,
        given: Arc<AtomicU64>,
        fail_at: Option<u64>,
        hang: Option<Arc<(Mutex<bool>, Condvar)>>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let given = self.given.load(Ordering::SeqCst);
            if self.fail_at.is_some_and(|at| given >= at) {
                return Err(io::Error::other("the export broke"));
            }
            if let Some(hang) = self.hang.as_ref().filter(|_| given >= self.len / 2) {
                let mut closed = hang.0.lock().expect("lock");
                while !*closed {
                    closed = hang.1.wait(closed).expect("wait");
                }
                return Err(io::Error::other("closed"));
            }
            let n = (buf.len() as u64).min(self.len - given).min(10_000) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((given + i as u64) % 251) as u8;
            }
            self.given.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
    }

    /// A link that exports a `Source` and imports by reading everything (slowly, if told), or
    /// refuses after a first read.
    struct Link {
        source: Mutex<Option<Source>>,
        hang: Option<Arc<(Mutex<bool>, Condvar)>>,
        received: Mutex<Vec<u8>>,
        refuse: bool,
        slow: bool,
        /// The most bytes the source was ahead of the import at any read.
        ahead: AtomicU64,
        given: Arc<AtomicU64>,
    }

    fn link(len: u64) -> Link {
        let given = Arc::new(AtomicU64::new(0));
        let source = Source { len, given: given.clone(), fail_at: None, hang: None };
        Link {
            source: Mutex::new(Some(source)),
            hang: None,
            received: Mutex::new(Vec::new()),
            refuse: false,
            slow: false,
            ahead: AtomicU64::new(0),
            given,
        }
    }

    fn none<T>() -> Result<T, LinkError> {
        Err(LinkError::Unreachable("a fake".into()))
    }

    impl WorkerLink for Link {
        fn address(&self) -> &str {
            "fake:1"
        }
        fn start(&self, _: &StartTask) -> Result<Task, LinkError> {
            none()
        }
        fn stop(&self, _: TaskId) -> Result<Task, LinkError> {
            none()
        }
        fn changes(&self, _: Option<&ChangesCursor>) -> Result<TaskChanges, LinkError> {
            none()
        }
        fn health(&self) -> Result<WorkerHealth, LinkError> {
            none()
        }
        fn stats(&self) -> Result<NodeStats, LinkError> {
            none()
        }
        fn export_image(&self, reference: &str) -> Result<ImageSource, LinkError> {
            let source = self
                .source
                .lock()
                .expect("lock")
                .take()
                .ok_or_else(|| LinkError::Refused { status: 404, message: format!("no image {reference}") })?;
            let hang = self.hang.clone();
            let close = Box::new(move || {
                if let Some(hang) = hang {
                    *hang.0.lock().expect("lock") = true;
                    hang.1.notify_all();
                }
            });
            Ok(ImageSource { reader: Box::new(source), close })
        }
        fn import_image(&self, tar: &mut dyn Read) -> Result<ImagesLoaded, LinkError> {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = tar.read(&mut buf).map_err(|e| LinkError::Lost(e.to_string()))?;
                if n == 0 {
                    break;
                }
                let mut received = self.received.lock().expect("lock");
                received.extend_from_slice(&buf[..n]);
                let ahead = self.given.load(Ordering::SeqCst).saturating_sub(received.len() as u64);
                self.ahead.fetch_max(ahead, Ordering::SeqCst);
                if self.refuse {
                    return Err(LinkError::Refused { status: 403, message: "not Skiff's".into() });
                }
                if self.slow {
                    std::thread::yield_now();
                }
            }
            let image = LoadedImage { tag: "skiff-app/web:v1".into(), id: "sha256:ab".into(), app: "web".into() };
            Ok(ImagesLoaded { images: vec![image], bytes: self.received.lock().expect("lock").len() as u64 })
        }
    }

    #[test]
    fn the_export_arrives_whole_and_in_order_at_the_import() {
        let len = 3 * 1024 * 1024 + 17;
        let (from, to) = (link(len), link(0));
        let copied = copy_image(&from, &to, "skiff-app/web:v1", Duration::from_secs(30)).expect("copies");
        assert_eq!(copied.bytes, len);
        assert_eq!(copied.loaded.bytes, len);
        assert_eq!(copied.loaded.images[0].tag, "skiff-app/web:v1");
        let received = to.received.lock().expect("lock");
        assert!(received.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "bytes out of order");
    }

    #[test]
    fn the_source_is_never_far_ahead_of_a_slow_import() {
        let len = 16 * 1024 * 1024;
        let from = link(len);
        let to = Link { slow: true, given: from.given.clone(), ..link(0) };
        copy_image(&from, &to, "skiff-app/web:v1", Duration::from_secs(60)).expect("copies");
        // the channel's chunks, the one the pump holds, the one the upload is reading
        let bound = ((RELAY_CHUNKS + 2) * CHUNK) as u64;
        let ahead = to.ahead.load(Ordering::SeqCst);
        assert!(ahead <= bound, "the source got {ahead} bytes ahead; the bound is {bound}");
    }

    #[test]
    fn a_source_that_breaks_off_cuts_the_upload() {
        let from = link(1024 * 1024);
        from.source.lock().expect("lock").as_mut().expect("source").fail_at = Some(300_000);
        let to = link(0);
        let e = copy_image(&from, &to, "skiff-app/web:v1", Duration::from_secs(30)).expect_err("fails");
        assert!(matches!(&e, CopyError::Source(why) if why.contains("the export broke")), "{e}");
        assert!(to.received.lock().expect("lock").len() as u64 <= 300_000, "no more than the source gave");
    }

    #[test]
    fn a_stalled_source_is_closed_at_the_deadline_and_nothing_is_left_running() {
        let hang = Arc::new((Mutex::new(false), Condvar::new()));
        let from = Link { hang: Some(hang.clone()), ..link(200_000) };
        from.source.lock().expect("lock").as_mut().expect("source").hang = Some(hang.clone());
        let to = link(0);
        let started = Instant::now();
        let e = copy_image(&from, &to, "skiff-app/web:v1", Duration::from_millis(300)).expect_err("times out");
        assert!(matches!(e, CopyError::Deadline { bytes: 100_000.., .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        // `copy_image` joined its pump, which only a close could free
        assert!(*hang.0.lock().expect("lock"), "the source was closed");
    }

    #[test]
    fn a_refusal_of_either_side_is_that_sides_error() {
        let (from, to) = (link(500_000), Link { refuse: true, ..link(0) });
        let e = copy_image(&from, &to, "skiff-app/web:v1", Duration::from_secs(30)).expect_err("refused");
        assert!(matches!(&e, CopyError::Import(LinkError::Refused { status: 403, .. })), "{e}");
        let (from, to) = (link(10), link(0));
        from.source.lock().expect("lock").take();
        let e = copy_image(&from, &to, "skiff-app/web:v1", Duration::from_secs(30)).expect_err("refused");
        assert!(matches!(&e, CopyError::Export(LinkError::Refused { status: 404, .. })), "{e}");
        assert!(to.received.lock().expect("lock").is_empty());
    }
}
