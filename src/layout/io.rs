//! Reads and writes of the small metadata files (dekfs.dir, long-name
//! records) and directory listings, all relative to a directory descriptor
//! (`*at` calls), so a concurrent rename of any ancestor cannot redirect
//! them. It must not follow symlinks or read more than a record's limit.

use super::classify::record_name;
use super::names::{parse_record, Damage};
use super::{DIR_META_LEN, DIR_META_NAME, MAX_LONG_RECORD};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Reads a small file `name` of the directory open at `dir`; a file larger
/// than `max` is `EFBIG` (never read in full).
pub fn read_small(dir: &impl AsFd, name: &str, max: usize) -> rustix::io::Result<Vec<u8>> {
    // NONBLOCK: a FIFO planted under a metadata name must read as empty
    // (and be refused), not hang the reader.
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut buf = Vec::with_capacity(max.min(4096));
    File::from(fd)
        .take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    if buf.len() > max {
        return Err(Errno::FBIG);
    }
    Ok(buf)
}

/// Writes a small file durably and atomically: `<name>.tmp`, fsync, rename.
pub fn write_small_atomic(dir: &impl AsFd, name: &str, data: &[u8]) -> rustix::io::Result<()> {
    let tmp = format!("{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = File::from(fd);
    let io = |e: std::io::Error| Errno::from_io_error(&e).unwrap_or(Errno::IO);
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    rustix::fs::renameat(dir, tmp.as_str(), dir, name)
}

/// The directory's own metadata file (at most its exact length is read).
pub fn read_dir_meta(dir: &impl AsFd) -> rustix::io::Result<Vec<u8>> {
    read_small(dir, DIR_META_NAME, DIR_META_LEN)
}

/// The encoded name stored for the long-form entry `dekfs.ln.<hash>`, checked
/// against `hash` and refused if it would fit the short form.
pub fn read_record(dir: &impl AsFd, hash: &str) -> Result<String, Damage> {
    match read_small(dir, &record_name(hash), MAX_LONG_RECORD) {
        Ok(bytes) => parse_record(hash, bytes),
        Err(Errno::NOENT) => Err(Damage::RecordMissing),
        Err(Errno::FBIG) => Err(Damage::RecordTooLarge),
        Err(e) => Err(Damage::RecordUnreadable(e)),
    }
}

/// Opens the subdirectory `name` of `dir` without following a symlink.
pub fn open_dir(dir: &impl AsFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// One raw backing entry as the directory lists it.
pub struct RawEntry {
    /// The backing name; `None` if it is not UTF-8 (dekfs never writes one).
    pub name: Option<String>,
    /// The raw bytes of the name, for reports.
    pub raw: Vec<u8>,
    pub ino: u64,
    pub file_type: FileType,
}

/// Every entry of the directory open at `dir` except `.` and `..`, unsorted.
pub fn list(dir: &impl AsFd) -> rustix::io::Result<Vec<RawEntry>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for ent in rustix::fs::Dir::new(fd)? {
        let ent = ent?;
        let raw = ent.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        out.push(RawEntry {
            name: std::str::from_utf8(raw).ok().map(str::to_owned),
            raw: raw.to_vec(),
            ino: ent.ino(),
            file_type: ent.file_type(),
        });
    }
    Ok(out)
}

/// True if the directory open at `dir` holds nothing but its own metadata
/// (or what a crash in rewriting it leaves): what mkdir and a power cut can
/// leave before the key is durable.
pub fn only_dir_meta(dir: &impl AsFd) -> rustix::io::Result<bool> {
    Ok(list(dir)?
        .iter()
        .all(|e| e.raw.starts_with(DIR_META_NAME.as_bytes())))
}
