//! Encrypted content I/O for one regular file: block-granular read, write,
//! extend and truncate over the backing file. It must not resolve names or
//! touch directories; callers hold the node's `io` lock (read for reads,
//! write for everything that changes bytes).

use super::blocks;
use super::cancel::Requester;
use super::{CoreError, Errno, FsResult};
use crate::crypto::{DirKey, FileKey, VolumeKeys, BLOCK_OVERHEAD, BLOCK_SIZE, CIPHER_BLOCK_SIZE};
use crate::format::{plain_size, HEADER_LEN};
use rustix::fs::Advice;
use std::fs::File;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

const BS: u64 = BLOCK_SIZE as u64;
const CBS: u64 = CIPHER_BLOCK_SIZE as u64;
const HL: u64 = HEADER_LEN as u64;
/// Block encryptions one DEK may perform with random 96-bit nonces before it
/// must be rolled: 2^31, half of NIST SP 800-38D's 2^32 bound, as margin.
pub const NONCE_LIMIT: u64 = 1 << 31;
pub use paged::reseal_paged;
pub use size::MAX_FILE_SIZE;

mod paged;
pub mod renew;
mod reserve;
mod size;

/// The plaintext size to show for a backing size. A trailing stub of 1..=28
/// bytes (a block torn by a crash, or cut by an attacker) cannot hold data;
/// it counts as a one-byte last block that fails authentication when read,
/// so the blocks before it stay readable instead of the whole file failing.
pub fn visible_size(csize: u64) -> u64 {
    match plain_size(csize) {
        Ok(n) => n,
        Err(_) if csize > HL => (csize - HL) / CBS * BS + 1,
        Err(_) => 0,
    }
}

#[derive(Default)]
pub struct FileIo {
    loaded: bool,
    key: Option<Arc<FileKey>>,
    header: Option<[u8; HEADER_LEN]>,
    csize: u64,
    /// `nonce_reserved` as persisted in the header.
    reserved: u64,
    /// Encryptions we may still do before persisting a bigger reservation.
    budget: u64,
    /// Size of the last reservation step; doubles while a session writes.
    step: u64,
    /// The header exists in memory but not yet on disk (new, empty file).
    header_pending: bool,
    /// Destroyed by a shred: never loaded again (EIO), whatever the header
    /// on disk still says.
    shredded: bool,
    /// The content uses the paged layout (`paged.rs`); `plen` is then its
    /// plaintext size, kept as the paged size rule reads `csize`.
    paged: bool,
    plen: u64,
}

impl FileIo {
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Reads the header and size. A previous session may have used its whole
    /// reservation, so this session starts with no budget.
    pub fn load(&mut self, f: &File, keys: &VolumeKeys, dir: &DirKey) -> FsResult<()> {
        if self.shredded {
            return Err(Errno::EIO.into());
        }
        let csize = f.metadata()?.len();
        self.csize = csize;
        self.key = None;
        self.header = None;
        self.budget = 0;
        self.step = 0;
        self.paged = false;
        self.plen = 0;
        if csize > 0 {
            if csize < HL {
                return Err(CoreError::damage(format!(
                    "header cut short ({csize} bytes)"
                )));
            }
            let mut h = [0u8; HEADER_LEN];
            f.read_exact_at(&mut h, 0)?;
            let key = keys
                .open_file(dir, &h)
                .map_err(|e| CoreError::damage(format!("header: {e}")))?;
            self.reserved = key.nonce_reserved();
            self.key = Some(Arc::new(key));
            self.header = Some(h);
            self.paged = paged::header_is_paged(&h);
            if self.paged {
                self.plen = crate::format::paged_plain_of(csize);
            }
        }
        self.loaded = true;
        Ok(())
    }

    /// State of a file this daemon has just created: empty, so there is no
    /// header to read and no size to stat.
    pub fn load_new(&mut self) {
        *self = FileIo::default();
        self.loaded = true;
    }

    /// Drops the DEK (zeroized by its type) once no handle needs it.
    pub fn unload(&mut self) {
        let shredded = self.shredded;
        *self = FileIo::default();
        self.shredded = shredded;
    }

    /// A lock: drops the DEK and header even with handles open; they load
    /// it again on next use (a fresh session: no nonce budget is carried
    /// over). Returns whether a key was dropped.
    pub fn revoke(&mut self) -> bool {
        let had = self.key.is_some();
        self.unload();
        had
    }

    /// A shred: drops the DEK and header like `revoke`, and refuses every
    /// later load, so open handles fail with EIO from here on.
    pub fn shred(&mut self) -> bool {
        let had = self.revoke();
        self.shredded = true;
        had
    }

    pub fn plain_len(&self) -> FsResult<u64> {
        if self.paged {
            return Ok(self.plen);
        }
        Ok(visible_size(self.csize))
    }

    /// The loaded file uses the paged layout.
    pub fn is_paged(&self) -> bool {
        self.paged && self.key.is_some()
    }

    pub fn key(&self) -> Option<&Arc<FileKey>> {
        self.key.as_ref()
    }

    pub fn header(&self) -> Option<&[u8; HEADER_LEN]> {
        self.header.as_ref()
    }

    /// Installs a rewrapped header (after a move) without touching the DEK.
    pub fn set_header(&mut self, h: [u8; HEADER_LEN]) {
        self.header = Some(h);
    }

    /// Gives an empty file its header (and so its DEK) on first need.
    pub fn ensure_header(
        &mut self,
        f: &File,
        keys: &VolumeKeys,
        dir: &DirKey,
    ) -> FsResult<Arc<FileKey>> {
        let key = self.new_header(keys, dir)?;
        self.flush_header(f)?;
        Ok(key)
    }

    /// Creates the header and DEK in memory only; the first block write
    /// (`write_blocks`) then carries it in the same pwrite, saving a syscall
    /// per new file.
    fn new_header(&mut self, keys: &VolumeKeys, dir: &DirKey) -> FsResult<Arc<FileKey>> {
        self.new_header_in(keys, dir, keys.paged_files())
    }

    /// `new_header` with the layout chosen by the caller.
    fn new_header_in(
        &mut self,
        keys: &VolumeKeys,
        dir: &DirKey,
        paged: bool,
    ) -> FsResult<Arc<FileKey>> {
        if let Some(k) = &self.key {
            return Ok(k.clone());
        }
        let (key, header) = keys.create_file_in(dir, paged).map_err(CoreError::Crypto)?;
        self.reserved = key.nonce_reserved();
        self.budget = self.reserved;
        self.step = self.reserved;
        let key = Arc::new(key);
        self.key = Some(key.clone());
        self.header = Some(header);
        self.header_pending = true;
        self.paged = paged::header_is_paged(&header);
        self.plen = 0;
        Ok(key)
    }

    /// Writes a header that exists only in memory.
    fn flush_header(&mut self, f: &File) -> FsResult<()> {
        let (true, Some(h)) = (self.header_pending, self.header) else {
            return Ok(());
        };
        if let Err(e) = f.write_all_at(&h, 0) {
            self.abandon_header(f);
            return Err(e.into());
        }
        self.header_pending = false;
        self.csize = self.csize.max(HL);
        Ok(())
    }

    /// A failed first write leaves an empty file without a header (a torn
    /// header would make it unreadable) and forgets the unused DEK.
    fn abandon_header(&mut self, f: &File) {
        let _ = f.set_len(0);
        self.csize = 0;
        self.plen = 0;
        self.key = None;
        self.header = None;
        self.header_pending = false;
    }

    /// Makes sure `n` more block encryptions fit the persisted reservation.
    fn reserve(&mut self, f: &File, n: u64) -> FsResult<()> {
        if n <= self.budget {
            self.budget -= n;
            return Ok(());
        }
        let (Some(key), Some(h)) = (&self.key, &self.header) else {
            // Only reached with a key, which always comes with its header.
            return Err(Errno::EIO.into());
        };
        self.step = self.next_step(n);
        let new_reserved = self.reserved.saturating_add(self.step);
        if new_reserved > NONCE_LIMIT {
            return Err(reserve::limit_reached());
        }
        let nh = key
            .header_with_reservation(h, new_reserved)
            .map_err(CoreError::Crypto)?;
        // Only the fixed part and its MAC change; the key slots stay untouched.
        // A header still pending goes to disk whole with the first block.
        if !self.header_pending {
            f.write_all_at(&nh[..72], 0)?;
        }
        self.header = Some(nh);
        self.reserved = new_reserved;
        self.budget = self.step - n;
        Ok(())
    }

    /// Decrypts block `idx` (its stored length follows from the file size).
    fn read_block(&self, f: &File, key: &FileKey, idx: u64, out: &mut [u8]) -> FsResult<usize> {
        let off = HL + idx * CBS;
        let len = (self.csize.saturating_sub(off)).min(CBS) as usize;
        if len <= BLOCK_OVERHEAD {
            // Callers only read blocks inside the file: a stub this short is a
            // torn or truncated block, never an empty one.
            return Err(CoreError::damage(format!(
                "block {idx} cut short ({len} bytes)"
            )));
        }
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)?;
        key.open_block(idx, &buf, out)
            .map_err(|_| CoreError::damage(format!("block {idx} failed authentication")))
    }

    /// Decrypts `size` bytes at `off` (fewer at the end of the file) and
    /// hands them to `reply` without copying them out of the thread's buffer.
    pub fn read_with<R>(
        &self,
        f: &File,
        off: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        if !self.loaded {
            // Revoked by a lock: an empty state must not read as an empty file.
            return Err(Errno::EKEYREVOKED.into());
        }
        let plen = self.plain_len()?;
        if off >= plen || size == 0 {
            return Ok(reply(&[]));
        }
        let end = (off + size as u64).min(plen);
        let Some(key) = &self.key else {
            return Err(CoreError::damage("content without a header"));
        };
        if self.paged {
            return self.paged_read_with(f, key, off, end, reply);
        }
        let (first, last) = (off / BS, (end - 1) / BS);
        let coff = HL + first * CBS;
        let clen = ((HL + (last + 1) * CBS).min(self.csize) - coff) as usize;
        let plen = ((last - first + 1) * BS) as usize;
        blocks::with_scratch(clen, plen, |cbuf, plain| {
            f.read_exact_at(cbuf, coff)?;
            let filled = blocks::open_run(key, first, cbuf, plain)
                .map_err(|idx| CoreError::damage(format!("block {idx} failed authentication")))?;
            let start = (off - first * BS) as usize;
            let stop = ((end - first * BS) as usize).min(filled).max(start);
            Ok(reply(&plain[start..stop]))
        })
    }

    /// Seals consecutive plaintext blocks starting at block `first` and
    /// writes them with one pwrite (with the header in front, if pending).
    fn write_blocks(&mut self, f: &File, key: &FileKey, first: u64, plain: &[u8]) -> FsResult<()> {
        let n = plain.len().div_ceil(BLOCK_SIZE);
        self.reserve(f, n as u64)?;
        let off = HL + first * CBS;
        let sealed = blocks::sealed_len(plain.len());
        blocks::with_scratch(HEADER_LEN + sealed, 0, |buf, _| {
            blocks::seal_run(key, first, plain, &mut buf[HEADER_LEN..])
                .map_err(CoreError::Crypto)?;
            if self.header_pending {
                if first != 0 {
                    self.flush_header(f)?;
                } else if let Some(h) = self.header {
                    buf[..HEADER_LEN].copy_from_slice(&h);
                    if let Err(e) = f.write_all_at(buf, 0) {
                        self.abandon_header(f);
                        return Err(e.into());
                    }
                    self.header_pending = false;
                    self.csize = self.csize.max(off + sealed as u64);
                    return Ok(());
                }
            }
            let out = &buf[HEADER_LEN..];
            // Only pure overwrites: an append's partial page was just written
            // (cached), and pages past the end need no read at all.
            if off + (out.len() as u64) <= self.csize {
                prefetch_partial_pages(f, off, out.len() as u64);
            }
            // A run that rewrites the old last block and grows past it is
            // written in two parts, the new space first: a short write
            // (ENOSPC, EDQUOT) then never lands on the old block, and cutting
            // back to the old end leaves the file as it was.
            let keep = self.csize.saturating_sub(off).min(out.len() as u64) as usize;
            let (head, tail) = if keep > 0 && keep < out.len() {
                out.split_at(keep)
            } else {
                (&out[..0], out)
            };
            let tail_off = off + head.len() as u64;
            if let Err(e) = f.write_all_at(tail, tail_off) {
                // A torn block past the old end would fail authentication
                // and take the whole file down with it.
                if tail_off + tail.len() as u64 > self.csize {
                    let _ = f.set_len(self.csize);
                }
                return Err(e.into());
            }
            if !head.is_empty() {
                if let Err(e) = f.write_all_at(head, off) {
                    let _ = f.set_len(self.csize);
                    return Err(e.into());
                }
            }
            self.csize = self.csize.max(off + out.len() as u64);
            Ok(())
        })
    }

    pub fn write(
        &mut self,
        f: &File,
        keys: &VolumeKeys,
        dir: &DirKey,
        off: u64,
        data: &[u8],
        who: Requester,
    ) -> FsResult<usize> {
        if !self.loaded {
            return Err(Errno::EKEYREVOKED.into());
        }
        let r = self.write_inner(f, keys, dir, off, data, who);
        // A header is only ever pending within one write: it is wrapped
        // under the current parent's key, which a later rename could change.
        if self.header_pending {
            self.abandon_header(f);
        }
        r
    }

    fn write_inner(
        &mut self,
        f: &File,
        keys: &VolumeKeys,
        dir: &DirKey,
        off: u64,
        data: &[u8],
        who: Requester,
    ) -> FsResult<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if off >= MAX_FILE_SIZE {
            return Err(Errno::EFBIG.into());
        }
        // Like the kernel at a filesystem's maximum: a write that crosses
        // it is cut short there, and the next one gets EFBIG.
        let data = &data[..data.len().min((MAX_FILE_SIZE - off) as usize)];
        let end = off + data.len() as u64;
        let key = self.new_header(keys, dir)?;
        if self.paged {
            return self.paged_write(f, &key, off, data, end, who);
        }
        if off > self.plain_len()? {
            self.extend(f, &key, off, who)?;
        }
        let cur = self.plain_len()?;
        let new_len = end.max(cur);
        let (first, last) = (off / BS, (end - 1) / BS);
        // Whole blocks (or a tail past the old end): nothing old to merge,
        // so seal straight from the request.
        if off % BS == 0 && (end % BS == 0 || end >= cur) {
            self.write_blocks(f, &key, first, data)?;
            return Ok(data.len());
        }
        let span_end = ((last + 1) * BS).min(new_len);
        let mut buf = vec![0u8; (span_end - first * BS) as usize];
        // Only the first and last blocks can be partially overwritten.
        if off % BS != 0 && first * BS < cur {
            let lim = BLOCK_SIZE.min(buf.len());
            self.read_block(f, &key, first, &mut buf[..lim])?;
        }
        // The last block needs its old tail unless the first read covered it.
        let last_start = ((last - first) * BS) as usize;
        let covered = last == first && off % BS != 0;
        if !covered && end < span_end && last * BS < cur {
            let mut tmp = vec![0u8; BLOCK_SIZE];
            let n = self.read_block(f, &key, last, &mut tmp)?;
            let lim = (buf.len() - last_start).min(n);
            buf[last_start..last_start + lim].copy_from_slice(&tmp[..lim]);
        }
        let s = (off - first * BS) as usize;
        buf[s..s + data.len()].copy_from_slice(data);
        self.write_blocks(f, &key, first, &buf)?;
        Ok(data.len())
    }
}

/// Sealed blocks are 4,124 bytes, so an overwrite starts and ends inside
/// backing pages that the backing filesystem must read before it can modify
/// them. With a cold cache it would read them one after the other inside
/// pwrite; asking for them first puts both reads in flight at once (one
/// merged read for a single block). Pages already cached make this a no-op.
fn prefetch_partial_pages(f: &File, off: u64, len: u64) {
    const PAGE: u64 = 4096;
    let first = off / PAGE * PAGE;
    let end = off + len;
    let last = end.saturating_sub(1) / PAGE * PAGE;
    let advise = |start: u64, n: u64| {
        let _ = rustix::fs::fadvise(f, start, NonZeroU64::new(n), Advice::WillNeed);
    };
    if off % PAGE == 0 && end % PAGE == 0 {
        return;
    }
    if last <= first + PAGE {
        advise(first, last + PAGE - first);
    } else {
        if off % PAGE != 0 {
            advise(first, PAGE);
        }
        if end % PAGE != 0 {
            advise(last, PAGE);
        }
    }
}
