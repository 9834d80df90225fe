//! `rekey --data` offline: a walker visitor that renews the DEK of every
//! regular file (of one subtree, or all), each by fs/renew.rs's crash-safe
//! in-place re-encryption. Resumable: each renewed file's new file_id is
//! appended to `dekfs.renew/run`, and a later run skips those; a file an
//! interrupted run left mid-renewal is restored first, then renewed. It
//! must not touch directory keys or KEK slots, change contents, sizes or
//! timestamps, or skip a file silently (each one it cannot renew is a problem).

use super::rekey::Report;
use super::source::Offline;
use super::walk::{Entry, Problem, ProblemKind, Visitor, Walker};
use crate::crypto::{DirKey, VolumeKeys};
use crate::format::HEADER_LEN;
use crate::fs::renew::{self, journal_dir, Batch, JOURNAL_DIR};
use crate::fs::CoreError;
use rustix::fs::{Mode, OFlags, Timespec, Timestamps};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The run record: hex file_ids of files renewed by the current run.
const RUN_NAME: &str = "run";

/// Hit after each file is renewed and recorded (use `@N`).
pub const FP_FILE_DONE: &str = "renew.file.done";

struct Renew<'a> {
    keys: &'a VolumeKeys,
    root: OwnedFd,
    scope: &'a str,
    done: HashSet<String>,
    run: File,
    batch: Batch<(String, PathBuf, Timestamps)>,
    report: Report,
    progress: &'a mut dyn FnMut(&super::rekey::Stats),
}

/// Renews the DEK of every file under plaintext path `scope` ("/" for the
/// whole volume). `progress` is called after each file. A run that ends
/// without problems forgets its record (and, for the whole volume, any
/// journal left behind); one that ends with problems keeps it so a rerun
/// continues.
pub fn renew_all(
    cipherdir: &Path,
    keys: &VolumeKeys,
    scope: &str,
    progress: &mut dyn FnMut(&super::rekey::Stats),
) -> io::Result<Report> {
    let root = rustix::fs::open(
        cipherdir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let jdir = journal_dir(root.as_fd(), true).map_err(core_io)?;
    let (done, run) = open_run(&jdir)?;
    let scope = scope.trim_end_matches('/');
    let batch = Batch::new(root.as_fd()).map_err(core_io)?;
    let mut v = Renew {
        keys,
        root,
        scope,
        done,
        run,
        batch,
        report: Report::default(),
        progress,
    };
    Walker::new(Offline::new(cipherdir, keys), &mut v).run()?;
    v.flush()?;
    v.run.sync_all()?;
    if v.report.problems.is_empty() {
        if scope.is_empty() {
            // Every flagged file was restored and renewed: anything left in
            // the journal directory is stale.
            renew::remove_stale_journals(v.root.as_fd()).map_err(core_io)?;
        } else {
            rustix::fs::unlinkat(&jdir, RUN_NAME, rustix::fs::AtFlags::empty())?;
            // Gone if nothing else (a journal of a file elsewhere) is in it.
            let _ = rustix::fs::unlinkat(&v.root, JOURNAL_DIR, rustix::fs::AtFlags::REMOVEDIR);
        }
    }
    Ok(v.report)
}

/// The record of an interrupted run (ids already renewed), opened for
/// appending. A torn last line is just not a known id.
fn open_run(jdir: &OwnedFd) -> io::Result<(HashSet<String>, File)> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let f = File::from(rustix::fs::openat(
        jdir,
        RUN_NAME,
        flags,
        Mode::from_raw_mode(0o600),
    )?);
    let mut text = String::new();
    io::Read::read_to_string(&mut &f, &mut text)?;
    let done = text
        .lines()
        .filter(|l| l.len() == 32 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect();
    Ok((done, f))
}

fn core_io(e: CoreError) -> io::Error {
    io::Error::from_raw_os_error(e.errno().0)
}

impl Visitor for Renew<'_> {
    fn file(&mut self, at: &Entry<'_>, parent: &DirKey) -> io::Result<()> {
        let inside = self.scope.is_empty()
            || at.path == self.scope
            || at
                .path
                .strip_prefix(self.scope)
                .is_some_and(|r| r.starts_with('/'));
        if !inside {
            return Ok(());
        }
        self.report.stats.files += 1;
        match self.renew(at, parent) {
            Ok(()) => {}
            Err(CoreError::Damage(d)) => self.problem(damaged(at, d.what)),
            Err(CoreError::Crypto(e)) => self.problem(damaged(at, format!("header: {e}"))),
            Err(e) => return Err(core_io(e)),
        }
        (self.progress)(&self.report.stats);
        Ok(())
    }

    fn symlink(&mut self, _at: &Entry<'_>, _parent: &DirKey) -> io::Result<()> {
        Ok(())
    }

    fn problem(&mut self, p: Problem) {
        // An orphan long-name record holds no key: nothing to renew.
        if p.kind == ProblemKind::Damaged {
            self.report.problems.push(p);
        }
    }

    fn note(&mut self, n: String) {
        self.report.notes.push(n);
    }
}

impl Renew<'_> {
    fn renew(&mut self, at: &Entry<'_>, parent: &DirKey) -> Result<(), CoreError> {
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let f = File::from(rustix::fs::openat(at.dir, at.name, flags, Mode::empty())?);
        let st = rustix::fs::fstat(&f)?;
        if at.ino != 0 && st.st_ino != at.ino {
            self.note(format!("{}: replaced during the walk", at.path));
            return Ok(());
        }
        if st.st_size == 0 {
            // No header yet, so no DEK.
            self.report.stats.current += 1;
            return Ok(());
        }
        let t = times(&st);
        let mut h = read_header(&f)?;
        if renew::flagged(&h) {
            renew::recover(self.root.as_fd(), &f, self.keys, parent, &h)?;
            h = read_header(&f)?;
        }
        let old = self
            .keys
            .open_file(parent, &h)
            .map_err(|e| CoreError::damage(format!("header: {e}")))?;
        if self.done.contains(&renew::journal_name(old.file_id())) {
            self.report.stats.current += 1;
            return Ok(());
        }
        let tag = (at.path.to_owned(), at.backing.to_owned(), t);
        if !self.batch.add(tag, f, self.keys, parent, old, &h)? {
            // Another name of a file already in this batch.
            self.report.stats.current += 1;
        }
        if self.batch.len() >= BATCH {
            self.flush().map_err(|e| CoreError::Sys(e.into()))?;
        }
        Ok(())
    }

    /// Runs the batch's steps; records each renewed file, reports each
    /// that failed. A failure that is not damage stops the walk.
    fn flush(&mut self) -> io::Result<()> {
        let mut stop = None;
        for ((path, backing, t), f, r) in self.batch.finish() {
            match r {
                Ok(id) => {
                    rustix::fs::futimens(&f, &t)?;
                    // Not synced per file: a lost line only means renewing it again.
                    let hex = renew::journal_name(&id);
                    writeln!(self.run, "{hex}")?;
                    // Another hard link of it, later in the walk, is done too.
                    self.done.insert(hex);
                    self.report.stats.rewrapped += 1;
                    crate::failpoint::hit(FP_FILE_DONE);
                }
                Err(CoreError::Damage(d)) => self.problem(problem(path, backing, d.what)),
                Err(CoreError::Crypto(e)) => {
                    self.problem(problem(path, backing, format!("header: {e}")))
                }
                Err(e) => stop = Some(core_io(e)),
            }
        }
        (self.progress)(&self.report.stats);
        stop.map_or(Ok(()), Err)
    }
}

/// Files renewed per batch (each step one filesystem sync for all).
const BATCH: usize = 64;

fn read_header(f: &File) -> Result<[u8; HEADER_LEN], CoreError> {
    let mut h = [0u8; HEADER_LEN];
    f.read_exact_at(&mut h, 0)
        .map_err(|_| CoreError::damage("header cut short"))?;
    Ok(h)
}

fn damaged(at: &Entry<'_>, what: String) -> Problem {
    problem(at.path.to_owned(), at.backing.to_owned(), what)
}

fn problem(path: String, backing: PathBuf, what: String) -> Problem {
    Problem {
        path,
        backing,
        what,
        kind: ProblemKind::Damaged,
    }
}

/// The access and modification times to put back: a new DEK is not a
/// change of the file's contents.
fn times(st: &rustix::fs::Stat) -> Timestamps {
    let ts = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    Timestamps {
        last_access: ts(st.st_atime, st.st_atime_nsec as i64),
        last_modification: ts(st.st_mtime, st.st_mtime_nsec as i64),
    }
}
