//! What an online rekey visit hands to the live source that holds the file
//! (`fs::online`): the header now on disk for the open file's cached copy,
//! or the second step of a two-step rewrap to run after the next filesystem
//! sync, again under the file's hold, so that one sync covers a batch of
//! files (a sync per file would bound a disk to its sync rate). It must not
//! sync or take locks itself (the source does both) and never writes a
//! header's fixed part: the daemon keeps that current (nonce reservations).

use crate::format::HEADER_LEN;
use rustix::fs::Timestamps;
use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

/// Where the key slots start in a header: after the MACed fixed part (40
/// bytes) and its MAC (32), docs/FORMAT.md.
pub const SLOTS_AT: usize = 72;

/// What a visit leaves for the source.
pub enum Left {
    /// The header now on disk.
    Header([u8; HEADER_LEN]),
    /// The old slot's clearing, to run after the new slot is synced.
    Later(Later),
}

/// A file whose both-slots header is written, and how to finish it. The
/// finish returns the header it left on disk, or `None` when the daemon
/// changed the slots meanwhile (the verify walk then sees what is there).
pub struct Later {
    pub file: File,
    pub finish: Finish,
}

/// The second step of one file, run under its hold.
pub type Finish = Box<dyn FnOnce(&File) -> io::Result<Option<[u8; HEADER_LEN]>>>;

/// Shared by an online visitor and its source.
pub type Rewritten = Rc<Cell<Option<Left>>>;

/// The second step for a file whose `both` header was just written: clears
/// the old slot if the slots on disk are still `both`'s, restores the times.
pub fn later(
    file: File,
    both: [u8; HEADER_LEN],
    fin: [u8; HEADER_LEN],
    times: Timestamps,
    failpoints: (&'static str, &'static str),
) -> Later {
    let finish = move |f: &File| -> io::Result<Option<[u8; HEADER_LEN]>> {
        if f.metadata()?.len() < HEADER_LEN as u64 {
            return Ok(None);
        }
        let mut cur = [0u8; HEADER_LEN];
        f.read_exact_at(&mut cur, 0)?;
        if cur[SLOTS_AT..] != both[SLOTS_AT..] {
            return Ok(None);
        }
        crate::failpoint::hit(failpoints.0);
        f.write_all_at(&fin[SLOTS_AT..], SLOTS_AT as u64)?;
        rustix::fs::futimens(f, &times)?;
        crate::failpoint::hit(failpoints.1);
        cur[SLOTS_AT..].copy_from_slice(&fin[SLOTS_AT..]);
        Ok(Some(cur))
    };
    Later {
        file,
        finish: Box::new(finish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileHeader, KeySlot};

    #[test]
    fn slots_start_after_the_mac() {
        let slot = |v| KeySlot {
            kek_version: v,
            wrapped: [0xEE; 64],
        };
        let mut h = FileHeader {
            required_features: 0,
            optional_features: 0,
            file_id: [3; 16],
            nonce_reserved: 1024,
            mac: [9; 32],
            slots: [Some(slot(1)), None],
        };
        let a = h.to_bytes();
        h.slots = [None, Some(slot(2))];
        let b = h.to_bytes();
        assert_eq!(a[..SLOTS_AT], b[..SLOTS_AT], "the fixed part and MAC");
        assert_ne!(a[SLOTS_AT..], b[SLOTS_AT..]);
        assert_eq!(&a[SLOTS_AT - 32..SLOTS_AT], &[9u8; 32][..]);
    }
}
