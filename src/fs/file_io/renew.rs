//! When an open file's DEK is renewed, and swapping the renewed key into the
//! file's state. The re-encryption itself is fs/renew.rs. It must not run
//! without the node's `io` write lock (the caller holds it), so no read or
//! write sees the file half renewed.

use super::{FileIo, BS, NONCE_LIMIT};
use crate::crypto::{DirKey, VolumeKeys};
use crate::fs::FsResult;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// Encryptions kept in hand below `NONCE_LIMIT`: a file is renewed once its
/// use plus the next request's would pass `NONCE_LIMIT - RENEW_MARGIN`.
pub const RENEW_MARGIN: u64 = 1 << 24;

/// Block encryptions a request may do that writes plaintext bytes
/// `off..end` of a file whose plaintext is `plen` bytes long (a gap before
/// `off` is filled with encrypted zeros; a shrink re-seals one block).
pub fn blocks_needed(plen: u64, off: u64, end: u64) -> u64 {
    if end <= off {
        return 1;
    }
    let first = off.min(plen) / BS;
    (end - 1) / BS - first + 1
}

impl FileIo {
    /// Whether `need` more encryptions call for a new DEK first.
    pub fn renewal_due(&self, need: u64) -> bool {
        self.key.is_some()
            && !self.header_pending
            && self.nonce_used().saturating_add(need) > NONCE_LIMIT - RENEW_MARGIN
    }

    /// Re-encrypts the file under a fresh DEK (see fs/renew.rs) and carries
    /// on with it: the new header reserves exactly the blocks re-sealed.
    pub fn renew(
        &mut self,
        root: BorrowedFd<'_>,
        f: &File,
        keys: &VolumeKeys,
        dir: &DirKey,
    ) -> FsResult<()> {
        let (Some(old), Some(h)) = (self.key.clone(), self.header) else {
            return Ok(());
        };
        let (key, header) = crate::fs::renew::renew_in_place(root, f, keys, dir, &old, &h)?;
        self.reserved = key.nonce_reserved();
        self.budget = 0;
        self.step = 0;
        self.key = Some(Arc::new(key));
        self.header = Some(header);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_needed_counts_fill_and_partial_blocks() {
        assert_eq!(blocks_needed(0, 0, 1), 1);
        assert_eq!(blocks_needed(10 * BS, 10 * BS, 10 * BS + 5), 1);
        // Appending inside the last partial block re-seals that block.
        assert_eq!(blocks_needed(BS + 5, BS + 5, BS + 9), 1);
        // A write past the end fills the gap.
        assert_eq!(blocks_needed(BS, 4 * BS, 4 * BS + 1), 4);
        assert_eq!(blocks_needed(0, 0, 3 * BS), 3);
        // A shrink.
        assert_eq!(blocks_needed(5 * BS, 2 * BS, 2 * BS), 1);
    }
}
