//! DEK renewal of one file, in place and crash-safe: the file's bytes are
//! copied to a journal (`dekfs.renew/<old file_id>` in the cipher directory),
//! its header is flagged, every block is re-sealed under a fresh DEK and
//! file_id, the new header goes last, and the journal is removed. A crash
//! anywhere leaves either the old file (journal restored by `recover` when a
//! flagged header is next opened) or the new one. Shared by the daemon
//! (automatic renewal, file_io/renew.rs) and `dekfs rekey --data`
//! (engine/renew.rs). It must not decide when to renew, resolve names, or
//! keep anything of the old DEK once it returns.

use super::{blocks, CoreError, Errno, FsResult};
use crate::crypto::{DirKey, FileKey, VolumeKeys, BLOCK_SIZE, CIPHER_BLOCK_SIZE, FEATURE_RENEWING};
use crate::format::{
    frame_page, page_sealed, paged_block_offset, paged_page_count, plain_size, FileHeader,
    FEATURE_PAGED, HEADER_LEN, PAGE, PAGE_PREFIX,
};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

mod batch;
mod xattrs;

pub use batch::Batch;

/// The journal directory, in the cipher directory's root.
pub const JOURNAL_DIR: &str = "dekfs.renew";

/// The journal copy is durable; the file is untouched.
pub const FP_JOURNAL: &str = "renew.journal";
/// The header is flagged and synced; no block is re-sealed yet.
pub const FP_FLAGGED: &str = "renew.flagged";
/// Hit after each run of re-sealed blocks (use `@N` to stop in the middle).
pub const FP_RUN: &str = "renew.run";
/// Every block and attribute is re-sealed and synced; the old (flagged)
/// header remains.
pub const FP_SEALED: &str = "renew.sealed";
/// The new header is synced; the journal still exists.
pub const FP_HEADER: &str = "renew.header";

const HL: u64 = HEADER_LEN as u64;
const CBS: u64 = CIPHER_BLOCK_SIZE as u64;
/// Blocks re-sealed per read/write.
const RUN_BLOCKS: u64 = 256;
/// Bytes per read/write when copying to or from the journal.
const COPY_CHUNK: usize = 1 << 20;

/// Whether a header (raw bytes) carries the renewing flag. Bytes that do not
/// parse are not flagged: the normal open reports them.
pub fn flagged(header: &[u8]) -> bool {
    FileHeader::parse(header).is_ok_and(|h| h.optional_features & FEATURE_RENEWING != 0)
}

/// Journal entry name for a file_id.
pub fn journal_name(file_id: &[u8; 16]) -> String {
    file_id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Re-encrypts `f` (opened read-write; `old` and `header` are its key and
/// current header, which opens under `dir`) under a fresh DEK. `root` is the
/// cipher directory. Returns the new key and header, both already on disk
/// and synced. On an error after the file was touched, the old bytes are put
/// back before returning.
pub fn renew_in_place(
    root: BorrowedFd<'_>,
    f: &File,
    keys: &VolumeKeys,
    dir: &DirKey,
    old: &FileKey,
    header: &[u8; HEADER_LEN],
) -> FsResult<(FileKey, [u8; HEADER_LEN])> {
    let p = prepare(f, header)?;
    let jdir = journal_dir(root, true)?;
    let name = journal_name(old.file_id());
    write_journal(&jdir, &name, f, p.csize, true)?;
    rustix::fs::fsync(&jdir)?;
    crate::failpoint::hit(FP_JOURNAL);
    let flag = old
        .header_with_features(header, p.features | FEATURE_RENEWING)
        .map_err(CoreError::Crypto)?;
    // Only the fixed part and its MAC change; the slots stay as they are.
    f.write_all_at(&flag[..72], 0)?;
    f.sync_data()?;
    crate::failpoint::hit(FP_FLAGGED);
    let done = keys
        .renew_file(dir, p.nblocks, p.required)
        .map_err(CoreError::Crypto)
        .and_then(|(new, nh)| {
            reseal_blocks(f, old, &new, p.nblocks, p.paged)?;
            f.sync_all()?;
            crate::failpoint::hit(FP_SEALED);
            f.write_all_at(&nh, 0)?;
            f.sync_data()?;
            Ok((new, nh))
        });
    let (new, nh) = match done {
        Ok(x) => x,
        Err(e) => {
            // Best effort: a failure here leaves the flag, which the next
            // open turns into the same restore.
            let _ = restore(&jdir, &name, f, header);
            return Err(e);
        }
    };
    crate::failpoint::hit(FP_HEADER);
    // The file is renewed whatever happens now: the caller must take the
    // new key. A journal left behind is harmless (the header is no longer
    // flagged) and goes with the next `rekey --data`.
    if let Err(e) = remove_journal(&jdir, &name) {
        log::warn!("DEK renewal: could not remove {JOURNAL_DIR}/{name}: {e:?}");
    }
    Ok((new, nh))
}

/// What a renewal needs to know about a file before it starts.
pub(super) struct Prepared {
    pub(super) csize: u64,
    pub(super) nblocks: u64,
    pub(super) features: u32,
    /// The header's required_features, kept by the new header (the layout).
    pub(super) required: u32,
    pub(super) paged: bool,
}

pub(super) fn prepare(f: &File, header: &[u8; HEADER_LEN]) -> FsResult<Prepared> {
    let csize = f.metadata()?.len();
    let h = FileHeader::parse(header).map_err(|e| CoreError::damage(format!("header: {e}")))?;
    let paged = h.required_features & FEATURE_PAGED != 0;
    let nblocks = if paged {
        paged_page_count(csize)
    } else {
        if plain_size(csize).is_err() {
            return Err(CoreError::damage(format!(
                "impossible ciphertext size {csize}: cannot renew"
            )));
        }
        (csize - HL).div_ceil(CBS)
    };
    Ok(Prepared {
        csize,
        nblocks,
        features: h.optional_features,
        required: h.required_features,
        paged,
    })
}

/// Re-seals blocks `0..nblocks` and the `user.` xattrs from `old` to `new`
/// (not synced).
fn reseal_blocks(
    f: &File,
    old: &FileKey,
    new: &FileKey,
    nblocks: u64,
    paged: bool,
) -> FsResult<()> {
    if paged {
        reseal_pages(f, old, new, nblocks)?;
        return xattrs::reseal(f, old, new);
    }
    let csize = f.metadata()?.len();
    let mut cbuf = vec![0u8; (RUN_BLOCKS * CBS) as usize];
    let mut plain = vec![0u8; RUN_BLOCKS as usize * BLOCK_SIZE];
    let mut first = 0;
    while first < nblocks {
        let off = HL + first * CBS;
        let clen = (RUN_BLOCKS * CBS).min(csize - off) as usize;
        f.read_exact_at(&mut cbuf[..clen], off)?;
        let r = blocks::open_run(old, first, &cbuf[..clen], &mut plain);
        let plen = match r {
            Ok(n) => n,
            Err(i) => {
                plain.fill(0);
                return Err(CoreError::damage(format!(
                    "block {i} failed authentication"
                )));
            }
        };
        debug_assert_eq!(blocks::sealed_len(plen), clen);
        blocks::seal_run(new, first, &plain[..plen], &mut cbuf[..clen])
            .map_err(CoreError::Crypto)?;
        f.write_all_at(&cbuf[..clen], off)?;
        first += RUN_BLOCKS;
        crate::failpoint::hit(FP_RUN);
    }
    plain.fill(0);
    xattrs::reseal(f, old, new)
}

/// Paged content: each page is opened under `old` and sealed under `new`
/// with a fresh nonce, one whole page per write (FORMAT.md, "Paged content").
fn reseal_pages(f: &File, old: &FileKey, new: &FileKey, npages: u64) -> FsResult<()> {
    let pg = PAGE as usize;
    let mut page = vec![0u8; pg];
    let mut plain = vec![0u8; BLOCK_SIZE];
    let mut r = Ok(());
    for i in 0..npages {
        let at = paged_block_offset(i);
        f.read_exact_at(&mut page, at)?;
        let n = match page_sealed(&page)
            .ok()
            .and_then(|sealed| old.open_block(i, sealed, &mut plain).ok())
        {
            Some(n) => n,
            None => {
                r = Err(CoreError::damage(format!(
                    "block {i} failed authentication"
                )));
                break;
            }
        };
        let mut nonce = [0u8; 12];
        if let Err(e) = crate::crypto::fill_random(&mut nonce) {
            r = Err(CoreError::Crypto(e));
            break;
        }
        new.seal_block(i, &nonce, &plain[..n], &mut page[PAGE_PREFIX..]);
        frame_page(&mut page, n);
        if let Err(e) = f.write_all_at(&page, at) {
            r = Err(e.into());
            break;
        }
        if i % RUN_BLOCKS == RUN_BLOCKS - 1 {
            crate::failpoint::hit(FP_RUN);
        }
    }
    plain.fill(0);
    r
}

/// Finishes an interrupted renewal of `f`, whose `header` carries the flag:
/// puts the journal's pre-renewal blocks back under the header as it is now
/// (a KEK rotation or a move may have rewritten its slots since) without the
/// flag. The file is then as before the renewal.
pub fn recover(
    root: BorrowedFd<'_>,
    f: &File,
    keys: &VolumeKeys,
    dir: &DirKey,
    header: &[u8; HEADER_LEN],
) -> FsResult<()> {
    let key = keys
        .open_file(dir, header)
        .map_err(|e| CoreError::damage(format!("header: {e}")))?;
    let features = FileHeader::parse(header)
        .map_err(|e| CoreError::damage(format!("header: {e}")))?
        .optional_features;
    let clean = key
        .header_with_features(header, features & !FEATURE_RENEWING)
        .map_err(CoreError::Crypto)?;
    let name = journal_name(key.file_id());
    let missing = || CoreError::damage(format!("renewal journal {JOURNAL_DIR}/{name} is missing"));
    let jdir = journal_dir(root, false).map_err(|e| match e.errno() {
        Errno::ENOENT => missing(),
        _ => e,
    })?;
    let j = open_journal(&jdir, &name).map_err(|e| match e.errno() {
        Errno::ENOENT => missing(),
        _ => e,
    })?;
    let mut jh = [0u8; HEADER_LEN];
    j.read_exact_at(&mut jh, 0)?;
    match FileHeader::parse(&jh) {
        Ok(h) if h.file_id == *key.file_id() => {}
        _ => {
            return Err(CoreError::damage(format!(
                "renewal journal {JOURNAL_DIR}/{name} belongs to another file"
            )))
        }
    }
    drop(j);
    restore(&jdir, &name, f, &clean)?;
    log::info!("finished an interrupted DEK renewal (file restored from its journal)");
    Ok(())
}

/// Copies the journal's blocks back into `f` under `header`, syncs, and
/// removes the journal.
fn restore(jdir: &OwnedFd, name: &str, f: &File, header: &[u8; HEADER_LEN]) -> FsResult<()> {
    let j = open_journal(jdir, name)?;
    let jlen = j.metadata()?.len();
    if jlen < HL {
        return Err(CoreError::damage(format!(
            "renewal journal {JOURNAL_DIR}/{name} is cut short"
        )));
    }
    copy_range(&j, f, HL, jlen)?;
    f.set_len(jlen)?;
    xattrs::restore(&j, f)?;
    f.write_all_at(header, 0)?;
    f.sync_all()?;
    remove_journal(jdir, name)
}

/// Opens (and with `create`, first makes) the journal directory.
pub fn journal_dir(root: BorrowedFd<'_>, create: bool) -> FsResult<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(root, JOURNAL_DIR, flags, Mode::empty()) {
        Err(rustix::io::Errno::NOENT) if create => {}
        r => return Ok(r?),
    }
    match rustix::fs::mkdirat(root, JOURNAL_DIR, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let dot = rustix::fs::openat(root, ".", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&dot)?;
    Ok(rustix::fs::openat(root, JOURNAL_DIR, flags, Mode::empty())?)
}

fn open_journal(jdir: &OwnedFd, name: &str) -> FsResult<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        jdir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// Writes `f`'s first `len` bytes to `<name>.tmp`, syncs it, and renames it
/// to `name`: the journal exists whole or not at all. The caller syncs the
/// directory (or the filesystem) before it flags the file.
fn write_journal(jdir: &OwnedFd, name: &str, f: &File, len: u64, sync: bool) -> FsResult<()> {
    let tmp = format!("{name}.tmp");
    // A leftover of an earlier attempt would keep its attributes.
    let _ = rustix::fs::unlinkat(jdir, tmp.as_str(), AtFlags::empty());
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let t = File::from(rustix::fs::openat(
        jdir,
        &tmp,
        flags,
        Mode::from_raw_mode(0o600),
    )?);
    copy_range(f, &t, 0, len)?;
    xattrs::save(f, &t)?;
    if sync {
        t.sync_all()?;
    }
    rustix::fs::renameat(jdir, &tmp, jdir, name)?;
    Ok(())
}

/// Removes a journal entry, without a sync: the file it belonged to is no
/// longer flagged (its clean header is synced first), so a removal lost in a
/// crash only leaves a stale copy of the old bytes, which the next
/// whole-volume `rekey --data` deletes.
fn remove_journal(jdir: &OwnedFd, name: &str) -> FsResult<()> {
    match rustix::fs::unlinkat(jdir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Copies bytes `from..to` of `src` to the same offsets of `dst`.
fn copy_range(src: &File, dst: &File, from: u64, to: u64) -> FsResult<()> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut off = from;
    while off < to {
        let n = ((to - off) as usize).min(COPY_CHUNK);
        src.read_exact_at(&mut buf[..n], off)?;
        dst.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Removes every journal entry and the journal directory: for a caller
/// that has just made sure no file is flagged any more (a full walk).
pub fn remove_stale_journals(root: BorrowedFd<'_>) -> FsResult<usize> {
    let jdir = match journal_dir(root, false) {
        Ok(d) => d,
        Err(e) if e.is(Errno::ENOENT) => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&jdir)? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    for n in &names {
        rustix::fs::unlinkat(&jdir, n.as_str(), AtFlags::empty())?;
    }
    drop(jdir);
    rustix::fs::unlinkat(root, JOURNAL_DIR, AtFlags::REMOVEDIR)?;
    Ok(names.len())
}
