//! Size changes of one file: truncate down, and extension with encrypted
//! zeros, bounded: EFBIG past the maximum file size, ENOSPC before a fill
//! the backing disk cannot hold, EINTR once the caller is killed. It must
//! not change bytes below the new end other than the last partial block,
//! and a failed fill leaves the old size.

use super::{FileIo, BS, CBS, HL};
use crate::crypto::{DirKey, FileKey, VolumeKeys, BLOCK_SIZE};
use crate::format::cipher_size;
use crate::fs::cancel::Requester;
use crate::fs::{Errno, FsResult};
use std::fs::File;

/// Largest zero-fill written in one go when a file is extended.
pub(super) const FILL_CHUNK_BLOCKS: u64 = 256;
/// Largest plaintext file: 4 TiB (2^30 blocks). Without holes every byte
/// below the end is stored, and a file this size can be written in full
/// twice before its DEK reaches `NONCE_LIMIT`; ext4 (16 TiB files with
/// 4 KiB blocks) holds its ciphertext. Beyond it: EFBIG, as the kernel
/// answers past a filesystem's maximum.
pub const MAX_FILE_SIZE: u64 = 1 << 42;
/// Fills up to this many backing bytes are ordinary writes; larger ones
/// are checked against the free space first.
const FILL_CHECK_MIN: u64 = FILL_CHUNK_BLOCKS * CBS;
/// A long fill re-checks the free space after this many backing bytes, so
/// concurrent writers cannot push it into the metadata reserve.
const FILL_RECHECK: u64 = 64 * FILL_CHECK_MIN;
/// A long fill looks whether its caller was killed after this many bytes.
const FILL_WATCH: u64 = 16 * FILL_CHECK_MIN;

impl FileIo {
    pub fn truncate(
        &mut self,
        f: &File,
        keys: &VolumeKeys,
        dir: &DirKey,
        size: u64,
        who: Requester,
    ) -> FsResult<()> {
        let cur = self.plain_len()?;
        if size == cur {
            return Ok(());
        }
        if size > cur {
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG.into());
            }
            let key = self.ensure_header(f, keys, dir)?;
            if self.paged {
                return self.paged_resize(f, &key, size, who);
            }
            return self.extend(f, &key, size, who);
        }
        let Some(key) = self.key.clone() else {
            return Ok(());
        };
        if self.paged {
            return self.paged_resize(f, &key, size, who);
        }
        self.shrink(f, &key, size)
    }

    /// Grows the plaintext to `target` with encrypted zeros (no holes on
    /// disk: an all-zero block must read as tampering, not as a hole). A
    /// fill that fails gives back what it wrote: the request failed, so
    /// the file keeps its old size.
    pub(super) fn extend(
        &mut self,
        f: &File,
        key: &FileKey,
        target: u64,
        who: Requester,
    ) -> FsResult<()> {
        let cur = self.plain_len()?;
        if target <= cur {
            return Ok(());
        }
        if target > MAX_FILE_SIZE {
            return Err(Errno::EFBIG.into());
        }
        let r = self.fill(f, key, cur, target, who);
        if r.is_err() && self.plain_len()? > cur {
            // Best effort: if even this fails, size and blocks still agree.
            let _ = self.shrink(f, key, cur);
        }
        r
    }

    /// Writes encrypted zeros from `cur` to `target` in bounded chunks. The
    /// free space bounds it (checked before the first chunk and again while
    /// it runs), and it stops with EINTR once its caller has been killed:
    /// nobody waits for the answer any more.
    fn fill(
        &mut self,
        f: &File,
        key: &FileKey,
        cur: u64,
        target: u64,
        who: Requester,
    ) -> FsResult<()> {
        let need = |csize: u64| cipher_size(target).saturating_sub(csize);
        if need(self.csize) > FILL_CHECK_MIN {
            check_space(f, need(self.csize))?;
        }
        let mut pos = cur;
        if cur % BS != 0 {
            let idx = cur / BS;
            let mut blk = vec![0u8; BLOCK_SIZE];
            self.read_block(f, key, idx, &mut blk)?;
            let new_len = (target - idx * BS).min(BS) as usize;
            self.write_blocks(f, key, idx, &blk[..new_len])?;
            pos = idx * BS + new_len as u64;
        }
        let zeros = vec![0u8; (FILL_CHUNK_BLOCKS * BS) as usize];
        let (mut checked_at, mut watched_at) = (self.csize, self.csize);
        while pos < target {
            if self.csize - checked_at >= FILL_RECHECK {
                check_space(f, need(self.csize))?;
                checked_at = self.csize;
            }
            if self.csize - watched_at >= FILL_WATCH {
                if who.killed() {
                    return Err(Errno(libc::EINTR).into());
                }
                watched_at = self.csize;
            }
            let n = (target - pos).min(FILL_CHUNK_BLOCKS * BS) as usize;
            self.write_blocks(f, key, pos / BS, &zeros[..n])?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Cuts the plaintext to `size`, below the current size.
    fn shrink(&mut self, f: &File, key: &FileKey, size: u64) -> FsResult<()> {
        let idx = size / BS;
        let keep = (size % BS) as usize;
        let mut blk = vec![0u8; BLOCK_SIZE];
        if keep > 0 {
            self.read_block(f, key, idx, &mut blk)?;
        }
        // Cut at the block start first: a crash then loses at most the tail
        // of one block instead of leaving a torn block behind.
        let cut = HL + idx * CBS;
        f.set_len(cut)?;
        self.csize = cut;
        if keep > 0 {
            self.write_blocks(f, key, idx, &blk[..keep])?;
        }
        Ok(())
    }
}

/// Refuses (ENOSPC) a fill of `need` backing bytes that would leave the
/// backing filesystem less than its metadata reserve: directory keys,
/// long-name records and the cut-back of torn tails must still fit, or a
/// full disk could turn into damaged metadata. The reserve is 1% of the
/// filesystem, at least 1 MiB and at most 64 MiB.
pub(super) fn check_space(f: &File, need: u64) -> FsResult<()> {
    let s = rustix::fs::fstatvfs(f)?;
    let unit = s.f_frsize.max(1);
    let avail = s.f_bavail.saturating_mul(unit);
    let reserve = (s.f_blocks.saturating_mul(unit) / 100).clamp(1 << 20, 64 << 20);
    if need.saturating_add(reserve) > avail {
        return Err(Errno::ENOSPC.into());
    }
    Ok(())
}
