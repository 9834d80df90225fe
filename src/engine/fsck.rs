//! Offline consistency check of a cipher directory with an unlocked volume,
//! the walker's first visitor: every directory key, name, long-name record,
//! symlink target, file header and content block is authenticated, and
//! problems are reported by plaintext path where the name decrypts. It must
//! never write to the cipher directory unless asked to repair, and repair
//! only quarantines corrupt entries (moves them into `dekfs.quarantine/`)
//! and deletes long-name records that have no entry; it never rewrites.

use super::cause::{diagnose, Diagnosis, Evidence};
use super::salvage::{Salvage, Unreadable};
use super::scan::{scan_file, BadKind};
use super::source::{Offline, Source};
use super::walk::{Entry, Problem, ProblemKind, Visitor, Walker};
use crate::crypto::{DirKey, VolumeKeys};
use crate::format::paged_cipher_size;
use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use crate::layout::QUARANTINE_DIR;

/// What a check does besides checking.
#[derive(Debug, Default)]
pub struct CheckOptions {
    /// Quarantine corrupt entries, delete orphan records.
    pub repair: bool,
    /// Copy everything that authenticates into this new plaintext tree.
    pub salvage: Option<PathBuf>,
}

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
    /// Paged files cut back to before an interrupted append (with `repair`): backing path
    /// and new backing size.
    pub cut: Vec<(PathBuf, u64)>,
    /// For each problem (same order): whether a power cut explains it.
    pub diagnoses: Vec<Diagnosis>,
    /// Plaintext ranges of readable files that do not read (also those of salvaged files).
    pub unreadable: Vec<Unreadable>,
    /// Files and plaintext bytes written by `--salvage`.
    pub salvaged_files: u64,
    pub salvaged_bytes: u64,
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
    let opts = CheckOptions {
        repair,
        salvage: None,
    };
    check_with(cipherdir, keys, &opts)
}

/// `check` with salvage: see `CheckOptions`.
pub fn check_with(
    cipherdir: &Path,
    keys: &VolumeKeys,
    opts: &CheckOptions,
) -> std::io::Result<Report> {
    let salvage = match &opts.salvage {
        Some(out) => Some(Salvage::new(out)?),
        None => None,
    };
    let mut v = Fsck::new(keys, Some(cipherdir), salvage);
    Walker::new(Offline::new(cipherdir, keys), &mut v).run()?;
    let mut report = v.finish();
    if opts.repair && !report.problems.is_empty() {
        super::quarantine::repair(cipherdir, &mut report)?;
    }
    Ok(report)
}

/// Checks every object a source hands out, without repairing: the online
/// check of a mounted volume (`fs::online`) goes through here.
pub fn check_source(source: impl Source, keys: &VolumeKeys) -> std::io::Result<Report> {
    let mut v = Fsck::new(keys, None, None);
    Walker::new(source, &mut v).run()?;
    Ok(v.finish())
}

struct Fsck<'a> {
    keys: &'a VolumeKeys,
    report: Report,
    /// The cipher directory, offline only (evidence for walker problems is read from it).
    cipherdir: Option<&'a Path>,
    salvage: Option<Salvage>,
    /// Same order as `report.problems`.
    evidence: Vec<Evidence>,
    /// Latest backing mtime seen: about when writing stopped.
    newest: i64,
    /// Set by `check_file` for a torn paged tail: the backing size that undoes the append.
    tail_cut: Option<u64>,
}

impl<'a> Fsck<'a> {
    fn new(keys: &'a VolumeKeys, cipherdir: Option<&'a Path>, salvage: Option<Salvage>) -> Self {
        Fsck {
            keys,
            report: Report::default(),
            cipherdir,
            salvage,
            evidence: Vec::new(),
            newest: i64::MIN,
            tail_cut: None,
        }
    }

    fn finish(mut self) -> Report {
        let newest = self.newest;
        self.report.diagnoses = self.evidence.iter().map(|e| diagnose(e, newest)).collect();
        if let Some(s) = &self.salvage {
            self.report.salvaged_files = s.files;
            self.report.salvaged_bytes = s.bytes;
        }
        self.report
    }

    fn push(&mut self, p: Problem, e: Evidence) {
        self.report.problems.push(p);
        self.evidence.push(e);
    }

    fn seen(&mut self, mtime: i64) {
        self.newest = self.newest.max(mtime);
    }

    /// What the backing tree shows about a problem the walker found.
    fn evidence_of(&self, p: &Problem) -> Evidence {
        if p.kind == ProblemKind::OrphanRecord {
            return Evidence::Orphan;
        }
        let Some(root) = self.cipherdir else {
            return Evidence::Other;
        };
        let dir = root.join(&p.backing);
        let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        if !is_dir || !p.what.contains("director") {
            return Evidence::Other;
        }
        let mtime = std::fs::symlink_metadata(&dir).map_or(0, |m| m.mtime());
        let meta = std::fs::read(dir.join(crate::format::DIR_META_NAME));
        let empty = match meta {
            Ok(b) => b.iter().all(|&x| x == 0),
            Err(_) => true,
        };
        Evidence::DirKey { mtime, empty }
    }
}

impl Visitor for Fsck<'_> {
    fn dir(
        &mut self,
        at: &Entry<'_>,
        _key: &DirKey,
        _parent: Option<&DirKey>,
    ) -> std::io::Result<()> {
        self.report.dirs += 1;
        if let Ok(st) = rustix::fs::fstat(at.dir) {
            self.seen(st.st_mtime);
        }
        if let Some(s) = &mut self.salvage {
            s.dir(at.path)?;
        }
        Ok(())
    }

    fn file(&mut self, at: &Entry<'_>, parent: &DirKey) -> std::io::Result<()> {
        match self.check_file(at, parent) {
            Ok(None) => self.report.files += 1,
            Ok(Some((what, e))) => {
                self.report.files += 1;
                let mut p = damaged(at, what);
                if let Some(cut) = self.tail_cut.take() {
                    p.kind = ProblemKind::TornTail(cut);
                }
                self.push(p, e);
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
        match parent.decrypt_symlink(target.as_bytes()) {
            Ok(t) => {
                if let Some(s) = &mut self.salvage {
                    s.symlink(at.path, &t)?;
                }
            }
            Err(_) => {
                let p = damaged(at, "symlink target failed authentication".into());
                self.push(p, Evidence::Other);
            }
        }
        Ok(())
    }

    fn problem(&mut self, p: Problem) {
        let e = self.evidence_of(&p);
        self.push(p, e);
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
    /// Authenticates a file's header and every block (copying what reads when salvaging);
    /// what is wrong, if anything, with the evidence for its cause.
    fn check_file(
        &mut self,
        at: &Entry<'_>,
        dir: &DirKey,
    ) -> std::io::Result<Option<(String, Evidence)>> {
        let f = open_ro(at)?;
        let meta = f.metadata()?;
        if at.ino != 0 && meta.ino() != at.ino {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        if meta.len() >= crate::format::HEADER_LEN as u64 {
            let mut header = vec![0u8; crate::format::HEADER_LEN];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut header, 0)?;
            if crate::fs::renew::flagged(&header) && self.keys.open_file(dir, &header).is_ok() {
                // Blocks under two DEKs until the journal is put back: not damage.
                self.note(format!(
                    "{}: an interrupted DEK renewal (the next mount or `dekfs rekey --data` finishes it)",
                    at.path
                ));
                return Ok(None);
            }
        }
        let mtime = meta.mtime();
        self.seen(mtime);
        let keys = self.keys;
        let scanned = match &mut self.salvage {
            Some(s) => {
                let out = s.file(at.path)?;
                let r = scan_file(&f, meta.len(), keys, dir, |off, b| s.write(&out, off, b))?;
                if let Ok(scan) = &r {
                    out.set_len(scan.size)?;
                }
                r
            }
            None => scan_file(&f, meta.len(), keys, dir, |_, _| Ok(()))?,
        };
        let scan = match scanned {
            Ok(s) => s,
            Err(h) => {
                let e = Evidence::Header {
                    mtime,
                    empty: h.empty,
                };
                self.report.unreadable.push(Unreadable {
                    path: at.path.to_owned(),
                    start: 0,
                    end: u64::MAX,
                    what: h.what.clone(),
                });
                return Ok(Some((h.what, e)));
            }
        };
        self.report.blocks += scan.blocks - scan.bad.len() as u64;
        if scan.bad.is_empty() {
            return Ok(None);
        }
        for b in &scan.bad {
            self.report.unreadable.push(Unreadable {
                path: at.path.to_owned(),
                start: b.start,
                end: b.end,
                what: b.describe(),
            });
        }
        let what = match scan.bad.as_slice() {
            [one] => one.describe(),
            [first, rest @ ..] => format!("{} (and {} more)", first.describe(), rest.len()),
            [] => String::new(),
        };
        let torn = scan.paged
            && scan.bad[0].kind == BadKind::TornAppend
            && scan.bad[1..].iter().all(|b| b.kind == BadKind::Unwritten);
        if torn {
            self.tail_cut = Some(paged_cipher_size(scan.bad[0].start));
        }
        let e = Evidence::Blocks {
            mtime,
            paged: scan.paged,
            bad: scan.bad,
        };
        Ok(Some((what, e)))
    }
}
