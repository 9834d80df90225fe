//! The file-system side of the rekey walks: opening a backing file without
//! following links or touching its atime, keeping its times across a
//! rewrap, replacing a dekfs.dir durably, and listing quarantined entries
//! as blockers. It must not decide what is rewrapped (engine/rekey.rs does)
//! and never reads or writes key material.

use super::rekey::Report;
use super::walk::{Entry, Problem, ProblemKind};
use crate::format::{DIR_META_LEN, DIR_META_NAME};
use crate::layout::{self, write_small_atomic};
use rustix::fs::{Mode, OFlags, Timespec, Timestamps};
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// Quarantined entries are keyed to the old KEK too and become unreadable
/// forever once it is destroyed: each one is a blocker.
pub(super) fn quarantine_blocks(cipherdir: &Path, report: &mut Report) -> io::Result<()> {
    let q = cipherdir.join(layout::QUARANTINE_DIR);
    let entries = match std::fs::read_dir(&q) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let rel = Path::new(layout::QUARANTINE_DIR).join(e.file_name());
        report.problems.push(Problem {
            path: rel.display().to_string(),
            backing: rel,
            what: "quarantined entry (unreadable after the old KEK is destroyed)".into(),
            kind: ProblemKind::Damaged,
        });
    }
    Ok(())
}

/// The access and modification times of `fd`, to put back after a rewrap
/// (a key change is not a change of the file's contents).
pub(super) fn times(fd: BorrowedFd<'_>) -> io::Result<Timestamps> {
    let st = rustix::fs::fstat(fd)?;
    let ts = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    Ok(Timestamps {
        last_access: ts(st.st_atime as i64, st.st_atime_nsec as i64),
        last_modification: ts(st.st_mtime as i64, st.st_mtime_nsec as i64),
    })
}

/// Opens a backing file without following a symlink and without touching
/// its atime where allowed.
pub(super) fn open_file(at: &Entry<'_>, write: bool) -> io::Result<File> {
    let base = if write { OFlags::RDWR } else { OFlags::RDONLY };
    let flags = base | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(at.dir, at.name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(at.dir, at.name, flags, Mode::empty()),
        r => r,
    }?;
    Ok(File::from(fd))
}

/// Replaces the directory's dekfs.dir (temp file, fsync, rename) and syncs
/// the directory so the rename is durable before the next step.
pub(super) fn write_meta(dir: BorrowedFd<'_>, meta: &[u8; DIR_META_LEN]) -> io::Result<()> {
    write_small_atomic(&dir, DIR_META_NAME, meta)?;
    rustix::fs::fsync(dir)?;
    Ok(())
}
