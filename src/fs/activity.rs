//! When the mount last served a request, for `idle=`: a lock-free timestamp
//! the adapter bumps on every request and the daemon's idle timer reads. It
//! must not decide anything about unmounting; the daemon does, and the
//! kernel refuses an unmount while a file is open or a cwd is inside.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Activity {
    /// The clock's origin; `last` counts milliseconds from it, so an atomic
    /// integer can hold a monotonic instant.
    origin: Instant,
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// Records a request now. Relaxed: an idle check that misses a bump by
    /// a moment only tries the unmount, which the kernel refuses if busy.
    pub fn touch(&self) {
        let now = self.origin.elapsed().as_millis();
        self.last
            .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long since the last request (since creation if none).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_resets_the_idle_time() {
        let a = Activity::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(a.idle_for() >= Duration::from_millis(30));
        a.touch();
        assert!(a.idle_for() < Duration::from_millis(30));
    }
}
