//! When the mount last served a request, for `idle=`: a lock-free timestamp
//! the adapter bumps on every request and the daemon's idle timer reads. It
//! must not decide anything about unmounting; the daemon does, and the
//! kernel refuses an unmount while a file is open or a cwd is inside.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Activity {
    /// The clock's origin; `last` counts milliseconds from it, so an atomic
    /// integer can hold a monotonic instant.
    origin: Instant,
    last: AtomicU64,
    /// Set by the idle timer: without `idle=` nobody reads the clock, and
    /// the request path skips it.
    watched: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            watched: AtomicBool::new(false),
        }
    }
}

impl Activity {
    /// Records a request now. Relaxed: an idle check that misses a bump by
    /// a moment only tries the unmount, which the kernel refuses if busy.
    /// A store only when the millisecond moved: every worker thread bumps
    /// this one cache line.
    pub fn touch(&self) {
        if !self.watched.load(Ordering::Relaxed) {
            return;
        }
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.last.load(Ordering::Relaxed) != now {
            self.last.store(now, Ordering::Relaxed);
        }
    }

    /// Starts keeping the clock (the idle timer calls this once); the idle
    /// time counts from now.
    pub fn watch(&self) {
        self.watched.store(true, Ordering::Relaxed);
        self.touch();
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
        a.watch();
        std::thread::sleep(Duration::from_millis(30));
        assert!(a.idle_for() >= Duration::from_millis(30));
        a.touch();
        assert!(a.idle_for() < Duration::from_millis(30));
    }
}
