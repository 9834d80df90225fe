//! The nonce reservation's sizing and settling: how big the next raise of
//! a header's `nonce_reserved` is, and giving back what a session reserved
//! but did not use when it ends. It must not encrypt, and never write a
//! value below the encryptions done under the DEK (docs/FORMAT.md).

use super::{FileIo, NONCE_LIMIT};
use crate::fs::Errno;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Smallest raise after the first one of a session.
const MIN_STEP: u64 = 16;
/// Largest raise: a crash loses at most this much of the budget.
const MAX_STEP: u64 = 1 << 20;

impl FileIo {
    /// Size of the next raise for `n` encryptions beyond the budget: `n`
    /// itself first (a session that writes once reserves what it uses), then
    /// doubling, and cut to what is left below `NONCE_LIMIT` when `n` still fits.
    pub(super) fn next_step(&self, n: u64) -> u64 {
        let step = if self.step == 0 {
            n
        } else {
            (self.step.saturating_mul(2))
                .clamp(MIN_STEP, MAX_STEP)
                .max(n)
        };
        let room = NONCE_LIMIT.saturating_sub(self.reserved);
        if step > room && n <= room {
            room
        } else {
            step
        }
    }

    /// Encryptions that may have been done under the DEK: the reservation
    /// minus what this session still has in hand.
    pub fn nonce_used(&self) -> u64 {
        self.reserved - self.budget.min(self.reserved)
    }

    /// The end of a write session (a handle closes): lowers `nonce_reserved`
    /// on disk to what was used, if this session raised it. A failed write
    /// changes nothing (the larger value on disk stays true), so errors are
    /// dropped, including a read-only handle's EBADF.
    pub fn settle(&mut self, f: &File) {
        let (Some(key), Some(h)) = (&self.key, &self.header) else {
            return;
        };
        if self.header_pending || self.budget == 0 || self.reserved <= key.nonce_reserved() {
            return;
        }
        let used = self.nonce_used().max(key.nonce_reserved());
        let Ok(nh) = key.header_with_reservation(h, used) else {
            return;
        };
        if f.write_all_at(&nh[..72], 0).is_ok() {
            self.header = Some(nh);
            self.reserved = used;
            self.budget = 0;
            self.step = 0;
        }
    }
}

/// A write that needs more encryptions than the DEK has left. Automatic
/// renewal (renew.rs) runs before this is reached; if it could not, the
/// file stays readable and the log says what to do.
pub(super) fn limit_reached() -> crate::fs::CoreError {
    log::error!("DEK usage limit reached: the file needs a data rekey (dekfs rekey --data)");
    Errno::EIO.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_is_what_is_needed_then_doubles() {
        let mut io = FileIo {
            reserved: 5000,
            ..FileIo::default()
        };
        assert_eq!(io.next_step(1), 1);
        assert_eq!(io.next_step(300), 300);
        io.step = 1;
        assert_eq!(io.next_step(1), MIN_STEP);
        io.step = 4096;
        assert_eq!(io.next_step(1), 8192);
        io.step = MAX_STEP;
        assert_eq!(io.next_step(1), MAX_STEP);
        assert_eq!(io.next_step(MAX_STEP + 3), MAX_STEP + 3);
    }

    #[test]
    fn steps_stop_at_the_limit_while_the_need_fits() {
        let io = FileIo {
            reserved: NONCE_LIMIT - 10,
            step: 1024,
            ..FileIo::default()
        };
        assert_eq!(io.next_step(4), 10);
        // A need that does not fit is left to fail at the limit check.
        assert!(io.next_step(11) > 10);
    }
}
