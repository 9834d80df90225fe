//! Content I/O of paged files (FORMAT.md, "Paged content"): each block is one whole 4,096-byte
//! backing page (length, nonce, ciphertext, tag, zero padding), written with one pwrite and
//! never partly, so after a power cut every page holds its old or its new version and data an
//! earlier fsync made durable stays readable. It must not handle v1 files (file_io.rs does) and
//! must never write a page that is not complete.

use super::size::{check_space, FILL_CHUNK_BLOCKS};
use super::FileIo;
use crate::crypto::{fill_random, DirKey, FileKey, VolumeKeys};
use crate::format::{
    frame_page, page_sealed, paged_block_len, paged_block_offset, paged_cipher_size, FEATURE_PAGED,
    HEADER_LEN, PAGE, PAGED_BLOCK, PAGE_PREFIX,
};
use crate::fs::blocks::with_scratch;
use crate::fs::cancel::Requester;
use crate::fs::{CoreError, Errno, FsResult};
use std::fs::File;
use std::os::unix::fs::FileExt;

const PB: u64 = PAGED_BLOCK;
const PG: usize = PAGE as usize;

/// Whether a header (already authenticated by its caller) marks paged content.
pub(super) fn header_is_paged(h: &[u8; HEADER_LEN]) -> bool {
    u32::from_le_bytes([h[8], h[9], h[10], h[11]]) & FEATURE_PAGED != 0
}

/// Opens page `stored` as block `idx` into `out`; returns its plaintext length.
fn open_page(key: &FileKey, idx: u64, stored: &[u8], out: &mut [u8]) -> FsResult<usize> {
    let sealed =
        page_sealed(stored).map_err(|e| CoreError::damage(format!("block {idx}: page {e}")))?;
    key.open_block(idx, sealed, out)
        .map_err(|_| CoreError::damage(format!("block {idx} failed authentication")))
}

impl FileIo {
    fn paged_read_block(
        &self,
        f: &File,
        key: &FileKey,
        idx: u64,
        out: &mut [u8],
    ) -> FsResult<usize> {
        let mut page = vec![0u8; PG];
        f.read_exact_at(&mut page, paged_block_offset(idx))?;
        open_page(key, idx, &page, out)
    }

    /// Decrypts `[off, end)` (inside the file). A page holding fewer bytes than the size says
    /// its block has is what a power cut leaves when an append's new size (or new pages)
    /// reached the disk but the rewrite of that page did not: its bytes are served up to its
    /// own end (a short read, which the kernel takes as the end of the file), never past.
    pub(super) fn paged_read_with<R>(
        &self,
        f: &File,
        key: &FileKey,
        off: u64,
        end: u64,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let (first, last) = (off / PB, (end - 1) / PB);
        let n = (last - first + 1) as usize;
        with_scratch(n * PG, n * PB as usize, |cbuf, plain| {
            f.read_exact_at(cbuf, paged_block_offset(first))?;
            let mut stop = end;
            for (i, page) in cbuf.chunks(PG).enumerate() {
                let idx = first + i as u64;
                let dst = &mut plain[i * PB as usize..(i + 1) * PB as usize];
                let got = open_page(key, idx, page, dst)? as u64;
                let want = paged_block_len(self.plen, idx) as u64;
                if got < want {
                    let data_end = idx * PB + got;
                    if data_end <= off {
                        return Err(CoreError::damage(format!(
                            "block {idx} torn: holds {got} of {want} bytes (an append cut short)"
                        )));
                    }
                    stop = stop.min(data_end);
                    break;
                }
            }
            let start = (off - first * PB) as usize;
            let stop = (stop - first * PB) as usize;
            Ok(reply(&plain[start..stop]))
        })
    }

    /// Writes `data` at `off`, growing the file to at least `target` (zeros fill any gap).
    /// Each touched block is resealed whole into its page; a page is the unit a power cut
    /// keeps or loses, so the old version of a block stays readable until the new one is in.
    pub(super) fn paged_write(
        &mut self,
        f: &File,
        key: &FileKey,
        off: u64,
        data: &[u8],
        target: u64,
        who: Requester,
    ) -> FsResult<usize> {
        let cur = self.plen;
        let end = off + data.len() as u64;
        let new_len = cur.max(end).max(target);
        let start = off.min(cur);
        let stop = end.max(target).max(start);
        if stop > cur + FILL_CHUNK_BLOCKS * PB {
            check_space(f, (stop - cur) / PB * PAGE)?;
        }
        let mut b = start / PB;
        let last = stop.div_ceil(PB);
        while b < last {
            let b1 = (b + FILL_CHUNK_BLOCKS).min(last);
            if b > start / PB && who.killed() {
                return Err(Errno(libc::EINTR).into());
            }
            self.paged_write_run(f, key, b, b1, off, data, new_len)?;
            b = b1;
        }
        Ok(data.len())
    }

    /// Reseals blocks `b0..b1` of a file that will be `new_len` bytes, taking bytes from `data`
    /// (at `off`), else from the old block, else zero, and writes their pages with one pwrite.
    #[allow(clippy::too_many_arguments)]
    fn paged_write_run(
        &mut self,
        f: &File,
        key: &FileKey,
        b0: u64,
        b1: u64,
        off: u64,
        data: &[u8],
        new_len: u64,
    ) -> FsResult<()> {
        let (cur, end) = (self.plen, off + data.len() as u64);
        let n = (b1 - b0) as usize;
        let mut plain = vec![0u8; n * PB as usize];
        for j in b0..b1 {
            let old = paged_block_len(cur, j) as u64;
            let bs = j * PB;
            let covered = off <= bs && end >= bs + old;
            if old > 0 && !covered {
                let k = (j - b0) as usize * PB as usize;
                self.paged_read_block(f, key, j, &mut plain[k..k + PB as usize])?;
            }
        }
        let span = b0 * PB;
        let (lo, hi) = (off.max(span), end.min(b1 * PB));
        if lo < hi {
            let d = &data[(lo - off) as usize..(hi - off) as usize];
            plain[(lo - span) as usize..(hi - span) as usize].copy_from_slice(d);
        }
        self.reserve(f, n as u64)?;
        let mut nonces = vec![0u8; n * 12];
        fill_random(&mut nonces).map_err(CoreError::Crypto)?;
        let with_header = self.header_pending && b0 == 0;
        if self.header_pending && !with_header {
            self.flush_header(f)?;
        }
        let lead = if with_header { PG } else { 0 };
        let mut out = vec![0u8; lead + n * PG];
        if let (true, Some(h)) = (with_header, self.header) {
            out[..HEADER_LEN].copy_from_slice(&h);
        }
        for (i, page) in out[lead..].chunks_mut(PG).enumerate() {
            let j = b0 + i as u64;
            let len = paged_block_len(new_len, j);
            let src = &plain[i * PB as usize..i * PB as usize + len];
            let nonce: [u8; 12] = nonces[i * 12..i * 12 + 12]
                .try_into()
                .map_err(|_| Errno::EIO)?;
            key.seal_block(j, &nonce, src, &mut page[PAGE_PREFIX..]);
            frame_page(page, len);
        }
        let at = paged_block_offset(b0) - lead as u64;
        if let Err(e) = f.write_all_at(&out, at) {
            if with_header {
                self.abandon_header(f);
            } else if at + out.len() as u64 > self.csize {
                // Pages past the old end may be partly written: give them back, so the
                // last page is again a whole one.
                let _ = f.set_len(self.csize);
            }
            return Err(e.into());
        }
        if with_header {
            self.header_pending = false;
        }
        self.csize = self.csize.max(at + out.len() as u64);
        self.plen = self.plen.max(new_len.min(b1 * PB));
        // The size tells the last block's length (FORMAT.md, paged size rule): set it after the
        // pages, so a cut in between leaves pages that hold at least what the size promises
        // or a short page that reads as the end of the file, never other bytes.
        let size = paged_cipher_size(self.plen);
        if self.csize != size {
            f.set_len(size)?;
            self.csize = size;
        }
        Ok(())
    }

    /// Truncate of a paged file: growth is a zero write; shrinking first cuts the pages after
    /// the new last block (the file is then a shorter version of its old self), then reseals
    /// that block in place, one page.
    pub(super) fn paged_resize(
        &mut self,
        f: &File,
        key: &FileKey,
        size: u64,
        who: Requester,
    ) -> FsResult<()> {
        let cur = self.plen;
        if size >= cur {
            return self.paged_write(f, key, cur, &[], size, who).map(|_| ());
        }
        if size == 0 {
            let cut = self.csize.min(PAGE);
            f.set_len(cut)?;
            self.csize = cut;
            self.plen = 0;
            return Ok(());
        }
        let idx = (size - 1) / PB;
        let keep = size - idx * PB;
        let old = paged_block_len(cur, idx) as u64;
        let cut = paged_block_offset(idx + 1) + old % PB;
        f.set_len(cut)?;
        self.csize = cut;
        self.plen = idx * PB + old;
        if keep < old {
            let mut blk = vec![0u8; PB as usize];
            self.paged_read_block(f, key, idx, &mut blk)?;
            self.plen = idx * PB;
            self.paged_write_run(f, key, idx, idx + 1, idx * PB, &blk[..keep as usize], size)?;
            self.plen = size;
        }
        Ok(())
    }
}

/// Re-encrypts the content of `src` (a file of directory `dir`, v1 or paged) into the empty
/// file `dst` as a paged file under a fresh DEK, and returns the plaintext size copied. The
/// caller makes `dst` durable and renames it over `src`: this is the migration of a v1 file
/// to the paged layout (rekey's data renewal).
pub fn reseal_paged(
    keys: &VolumeKeys,
    dir: &DirKey,
    src: &File,
    dst: &File,
    who: Requester,
) -> FsResult<u64> {
    let mut from = FileIo::default();
    from.load(src, keys, dir)?;
    let mut to = FileIo::default();
    to.load_new();
    let size = from.plain_len()?;
    if size == 0 {
        return Ok(0);
    }
    let key = to.new_header_in(keys, dir, true)?;
    let chunk = FILL_CHUNK_BLOCKS * PB;
    let mut off = 0;
    while off < size {
        let n = (size - off).min(chunk) as u32;
        let buf = from.read_with(src, off, n, |b| b.to_vec())?;
        if buf.is_empty() {
            return Err(CoreError::damage("source shorter than its size"));
        }
        to.paged_write(dst, &key, off, &buf, 0, who)?;
        off += buf.len() as u64;
    }
    Ok(size)
}
