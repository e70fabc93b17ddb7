//! Time as the control loops see it: a monotonic instant for deadlines and back-offs, and the
//! wall clock for records. Daemons use `SystemClock`; unit tests use `ManualClock` and move time
//! forward by hand, so that no test waits real seconds for a timeout or a back-off.
//!
//! Must not sleep or schedule anything: it only tells the time.

use crate::time::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync {
    /// Monotonic time, for deadlines, back-offs and timeouts.
    fn now(&self) -> Instant;
    /// Wall-clock time, for what records say.
    fn wall(&self) -> Timestamp;
}

/// The real clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told. Both readings advance together.
#[derive(Debug, Clone)]
pub struct ManualClock {
    origin: Instant,
    wall_origin: Timestamp,
    offset: Arc<Mutex<Duration>>,
}

impl ManualClock {
    /// A clock whose wall time starts at `wall`.
    pub fn new(wall: Timestamp) -> ManualClock {
        ManualClock { origin: Instant::now(), wall_origin: wall, offset: Arc::new(Mutex::new(Duration::ZERO)) }
    }

    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *offset += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + self.offset()
    }

    fn wall(&self) -> Timestamp {
        Timestamp(self.wall_origin.0 + self.offset().as_millis() as u64)
    }
}

/// The clock daemons run on.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(1_000));
        let (t0, w0) = (c.now(), c.wall());
        assert_eq!((c.now(), c.wall()), (t0, w0));
        c.advance(Duration::from_millis(1_500));
        assert_eq!(c.now() - t0, Duration::from_millis(1_500));
        assert_eq!(c.wall(), Timestamp(2_500));
    }

    #[test]
    fn clones_share_the_time() {
        let c = ManualClock::new(Timestamp(0));
        let d = c.clone();
        c.advance(Duration::from_secs(3));
        assert_eq!(d.wall(), Timestamp(3_000));
    }
}
