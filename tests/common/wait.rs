//! Polling with a deadline, the one wait loop of the harness (tests wait
//! through it instead of sleeping a fixed time).

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
