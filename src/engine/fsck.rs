//! Offline consistency check of a cipher directory with an unlocked volume,
//! the walker's first visitor: every directory key, name, long-name record,
//! symlink target, file header and content block is authenticated, and
//! problems are reported by plaintext path where the name decrypts. It must
//! never write to the cipher directory unless asked to repair, and repair
//! only quarantines corrupt entries (moves them into `dekfs.quarantine/`)
//! and deletes long-name records that have no entry; it never rewrites.

use super::source::{Offline, Source};
use super::walk::{Entry, Problem, Visitor, Walker};
use crate::crypto::{DirKey, VolumeKeys, BLOCK_OVERHEAD, BLOCK_SIZE, CIPHER_BLOCK_SIZE};
use crate::format::{plain_size, HEADER_LEN};
use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

pub use crate::layout::QUARANTINE_DIR;

/// Blocks read per pread while checking a file.
const BATCH: usize = 64;

/// Result of a check.
#[derive(Debug, Default)]
pub struct Report {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    pub blocks: u64,
    pub problems: Vec<Problem>,
    /// Non-fatal observations (e.g. an empty directory without metadata,
    /// which the daemon re-keys on first access).
    pub notes: Vec<String>,
    /// Backing paths moved into the quarantine (with `repair`).
    pub quarantined: Vec<(PathBuf, PathBuf)>,
    /// Orphan long-name records deleted (with `repair`).
    pub removed: Vec<PathBuf>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every object under `cipherdir`. With `repair`, each corrupt entry
/// (file, symlink, unreadable name, or directory whose key does not open) is
/// renamed into `cipherdir/dekfs.quarantine/` and each orphan long-name
/// record is deleted. Errors are I/O failures that stop the walk (e.g. the
/// cipher directory is unreadable).
pub fn check(cipherdir: &Path, keys: &VolumeKeys, repair: bool) -> std::io::Result<Report> {
    let mut v = Fsck {
        keys,
        report: Report::default(),
    };
    Walker::new(Offline::new(cipherdir, keys), &mut v).run()?;
    let mut report = v.report;
    if repair && !report.problems.is_empty() {
        super::quarantine::repair(cipherdir, &mut report)?;
    }
    Ok(report)
}

/// Checks every object a source hands out, without repairing: the online
/// check of a mounted volume (`fs::online`) goes through here.
pub fn check_source(source: impl Source, keys: &VolumeKeys) -> std::io::Result<Report> {
    let mut v = Fsck {
        keys,
        report: Report::default(),
    };
    Walker::new(source, &mut v).run()?;
    Ok(v.report)
}

struct Fsck<'a> {
    keys: &'a VolumeKeys,
    report: Report,
}

impl Visitor for Fsck<'_> {
    fn dir(
        &mut self,
        _at: &Entry<'_>,
        _key: &DirKey,
        _parent: Option<&DirKey>,
    ) -> std::io::Result<()> {
        self.report.dirs += 1;
        Ok(())
    }

    fn file(&mut self, at: &Entry<'_>, parent: &DirKey) -> std::io::Result<()> {
        match self.check_file(at, parent) {
            Ok(Ok(())) => self.report.files += 1,
            Ok(Err(what)) => {
                self.report.files += 1;
                self.problem(damaged(at, what));
            }
            // A live volume: removed or renamed over since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn symlink(&mut self, at: &Entry<'_>, parent: &DirKey) -> std::io::Result<()> {
        let target = match rustix::fs::readlinkat(at.dir, at.name, Vec::new()) {
            Ok(t) => t,
            // A live volume: gone since it was listed.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.report.symlinks += 1;
        if parent.decrypt_symlink(target.as_bytes()).is_err() {
            self.problem(damaged(at, "symlink target failed authentication".into()));
        }
        Ok(())
    }

    fn problem(&mut self, p: Problem) {
        self.report.problems.push(p);
    }

    fn note(&mut self, n: String) {
        self.report.notes.push(n);
    }
}

fn damaged(at: &Entry<'_>, what: String) -> Problem {
    Problem {
        path: at.path.to_owned(),
        backing: at.backing.to_owned(),
        what,
        kind: super::ProblemKind::Damaged,
    }
}

/// Opens a backing file read-only without following a symlink, and without
/// updating its atime where the caller may ask for that.
fn open_ro(at: &Entry<'_>) -> std::io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(at.dir, at.name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(at.dir, at.name, flags, Mode::empty()),
        r => r,
    }?;
    Ok(File::from(fd))
}

impl Fsck<'_> {
    /// Authenticates a file's header and every block; what is wrong, if
    /// anything.
    fn check_file(&mut self, at: &Entry<'_>, dir: &DirKey) -> std::io::Result<Result<(), String>> {
        let f = open_ro(at)?;
        let meta = f.metadata()?;
        if at.ino != 0 && meta.ino() != at.ino {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        let csize = meta.len();
        let psize = match plain_size(csize) {
            Ok(s) => s,
            Err(_) => return Ok(Err(format!("impossible ciphertext size {csize}"))),
        };
        if csize == 0 {
            return Ok(Ok(()));
        }
        let mut header = vec![0u8; HEADER_LEN];
        f.read_exact_at(&mut header, 0)?;
        let fk = match self.keys.open_file(dir, &header) {
            Ok(k) => k,
            Err(e) => return Ok(Err(format!("header: {e}"))),
        };
        if crate::fs::renew::flagged(&header) {
            // Blocks under two DEKs until the journal is put back: not damage.
            self.note(format!(
                "{}: an interrupted DEK renewal (the next mount or `dekfs rekey --data` finishes it)",
                at.path
            ));
            return Ok(Ok(()));
        }
        let nblocks = psize.div_ceil(BLOCK_SIZE as u64);
        let mut buf = vec![0u8; BATCH * CIPHER_BLOCK_SIZE];
        let mut out = vec![0u8; BLOCK_SIZE];
        let mut idx = 0u64;
        while idx < nblocks {
            let n = (nblocks - idx).min(BATCH as u64);
            let start = HEADER_LEN as u64 + idx * CIPHER_BLOCK_SIZE as u64;
            let len = ((csize - start) as usize).min(n as usize * CIPHER_BLOCK_SIZE);
            f.read_exact_at(&mut buf[..len], start)?;
            for (j, stored) in buf[..len].chunks(CIPHER_BLOCK_SIZE).enumerate() {
                let i = idx + j as u64;
                if stored.len() <= BLOCK_OVERHEAD || fk.open_block(i, stored, &mut out).is_err() {
                    return Ok(Err(format!("block {i} failed authentication")));
                }
                self.report.blocks += 1;
            }
            idx += n;
        }
        Ok(Ok(()))
    }
}
