//! The object side of a KEK rotation, as walker visitors: `rewrap_all`
//! moves every dekfs.dir and file header (long-name entries included) to the
//! active KEK, each in two durable steps (new slot beside the kept one and
//! synced, then the old slot cleared); `verify` is the read-only walk that
//! must find no slot of the retiring KEK before it may be destroyed. It must
//! not touch dekfs.conf (volume/rotate.rs does), change file contents, sizes
//! or timestamps, or skip an object silently: every one it cannot rewrap is a
//! reported problem.

use super::source::{Offline, Source};
use super::walk::{Entry, Problem, ProblemKind, Visitor, Walker};
use crate::crypto::{DirKey, VolumeKeys};
use crate::format::{DirMeta, FileHeader, KeySlot, HEADER_LEN};
use crate::layout;
use rustix::fs::{Mode, OFlags, Timestamps};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::rekey_io::{open_file, quarantine_blocks, times, write_meta};
pub use super::rekey_live::Rewritten;
use super::rekey_live::{later, Left};

/// Failpoints of the per-object steps (the volume layer has the config ones).
pub const FP_FILE_BOTH: &str = "rekey.file.both";
pub const FP_FILE_FIN: &str = "rekey.file.fin";
pub const FP_DIR_BOTH: &str = "rekey.dir.both";
pub const FP_DIR_FIN: &str = "rekey.dir.fin";

/// Counts of one walk.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub dirs: u64,
    pub files: u64,
    /// Objects given the active KEK by this walk.
    pub rewrapped: u64,
    /// Objects that already held only an active-KEK slot.
    pub current: u64,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Report {
    pub stats: Stats,
    /// Objects not rewrapped (unreadable names, keys or headers).
    pub problems: Vec<Problem>,
    /// Plaintext paths of objects that still hold a slot of the old KEK.
    pub old_slots: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    /// What blocks destroying the old KEK: every object that may still need
    /// it. Orphan long-name records hold no key and do not count.
    pub fn blockers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Damaged)
            .map(|p| format!("{}: {}", p.path, p.what))
            .collect();
        v.extend(
            self.old_slots
                .iter()
                .map(|p| format!("{p}: still holds the old KEK")),
        );
        v
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode2 {
    Rewrap,
    Verify,
}

struct Rekey<'a> {
    keys: &'a VolumeKeys,
    old: u32,
    mode: Mode2,
    report: Report,
    progress: &'a mut dyn FnMut(&Stats),
    staged: Vec<Staged>,
    /// Online: each header is finished while its file is held (no staging
    /// across files, whose fin writes would land outside the hold), and the
    /// written header is left here.
    online: Option<Rewritten>,
    /// A live volume: an object removed or moved between the listing and
    /// the visit is a note, not an error.
    live: bool,
}

/// Rewraps every object under `cipherdir` to the active KEK of `keys`
/// (which must also hold KEK `old`, so that not-yet-rewrapped objects open).
/// `progress` is called after each object.
pub fn rewrap_all(
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    progress: &mut dyn FnMut(&Stats),
) -> io::Result<Report> {
    let src = Offline::new(cipherdir, keys);
    walk(
        src,
        cipherdir,
        keys,
        old,
        Mode2::Rewrap,
        (None, false),
        progress,
    )
}

/// The read-only walk: every object that still holds a slot of `old`, and
/// every object that could not be read.
pub fn verify(cipherdir: &Path, keys: &VolumeKeys, old: u32) -> io::Result<Report> {
    let src = Offline::new(cipherdir, keys);
    walk(
        src,
        cipherdir,
        keys,
        old,
        Mode2::Verify,
        (None, false),
        &mut |_| {},
    )
}

/// `rewrap_all` through a live source (a mounted volume): the source holds
/// each object and takes the headers left in `rewritten`.
pub fn rewrap_live<S: Source>(
    source: S,
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    rewritten: Rewritten,
    progress: &mut dyn FnMut(&Stats),
) -> io::Result<Report> {
    let mode = Mode2::Rewrap;
    walk(
        source,
        cipherdir,
        keys,
        old,
        mode,
        (Some(rewritten), true),
        progress,
    )
}

/// `verify` through a live source.
pub fn verify_live<S: Source>(
    source: S,
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    progress: &mut dyn FnMut(&Stats),
) -> io::Result<Report> {
    walk(
        source,
        cipherdir,
        keys,
        old,
        Mode2::Verify,
        (None, true),
        progress,
    )
}

/// Counts directories and files through any source.
pub fn count_in<S: Source>(source: S) -> io::Result<u64> {
    let mut c = Count(0);
    Walker::new(source, &mut c).run()?;
    Ok(c.0)
}

struct Count(u64);

impl Visitor for Count {
    fn dir(&mut self, _: &Entry<'_>, _: &DirKey, _: Option<&DirKey>) -> io::Result<()> {
        self.0 += 1;
        Ok(())
    }
    fn file(&mut self, _: &Entry<'_>, _: &DirKey) -> io::Result<()> {
        self.0 += 1;
        Ok(())
    }
    fn symlink(&mut self, _: &Entry<'_>, _: &DirKey) -> io::Result<()> {
        Ok(())
    }
    fn problem(&mut self, _: Problem) {}
}

/// Counts directories and files (for progress totals); reads no header.
pub fn count(cipherdir: &Path, keys: &VolumeKeys) -> io::Result<u64> {
    count_in(Offline::new(cipherdir, keys))
}

fn walk<S: Source>(
    source: S,
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    mode: Mode2,
    (online, live): (Option<Rewritten>, bool),
    progress: &mut dyn FnMut(&Stats),
) -> io::Result<Report> {
    let mut v = Rekey {
        keys,
        old,
        mode,
        report: Report::default(),
        progress,
        staged: Vec::with_capacity(BATCH),
        live: online.is_some() || live,
        online,
    };
    Walker::new(source, &mut v).run()?;
    if mode == Mode2::Rewrap {
        v.flush()?;
        // The final (slot-cleared) writes were not synced one by one: the
        // verify walk and the destruction come only after this.
        let root = rustix::fs::open(cipherdir, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        rustix::fs::syncfs(&root)?;
    }
    quarantine_blocks(cipherdir, &mut v.report)?;
    Ok(v.report)
}

fn has_version(slots: &[Option<KeySlot>; 2], v: u32) -> bool {
    slots.iter().flatten().any(|s| s.kek_version == v)
}

fn damaged(at: &Entry<'_>, what: String) -> Problem {
    Problem {
        path: at.path.to_owned(),
        backing: at.backing.to_owned(),
        what,
        kind: ProblemKind::Damaged,
    }
}

impl Visitor for Rekey<'_> {
    fn dir(&mut self, at: &Entry<'_>, _key: &DirKey, parent: Option<&DirKey>) -> io::Result<()> {
        self.report.stats.dirs += 1;
        let meta = match layout::read_dir_meta(&at.dir) {
            Err(rustix::io::Errno::NOENT) if self.live => {
                // Removed since the listing (live volume).
                self.note(format!("{}: gone during the walk", at.path));
                return Ok(());
            }
            r => r?,
        };
        match self.mode {
            Mode2::Verify => match DirMeta::parse(&meta) {
                Ok(m) if has_version(&m.slots, self.old) => {
                    self.report.old_slots.push(at.path.to_owned())
                }
                Ok(_) => self.report.stats.current += 1,
                Err(e) => self.problem(damaged(at, format!("directory key: {e}"))),
            },
            Mode2::Rewrap => match self.keys.rewrap_dir_kek(parent, &meta) {
                Ok(None) => self.report.stats.current += 1,
                Ok(Some(r)) => {
                    let t = times(at.dir)?;
                    if let Some(both) = r.both {
                        write_meta(at.dir, &both)?;
                        crate::failpoint::hit(FP_DIR_BOTH);
                    }
                    write_meta(at.dir, &r.fin)?;
                    rustix::fs::futimens(at.dir, &t)?;
                    crate::failpoint::hit(FP_DIR_FIN);
                    self.report.stats.rewrapped += 1;
                }
                Err(e) => self.problem(damaged(at, format!("directory key: {e}"))),
            },
        }
        (self.progress)(&self.report.stats);
        Ok(())
    }

    fn file(&mut self, at: &Entry<'_>, parent: &DirKey) -> io::Result<()> {
        self.report.stats.files += 1;
        let f = match open_file(at, self.mode == Mode2::Rewrap) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.live => {
                // Moved away between the listing and the hold (live volume).
                self.note(format!("{}: gone during the walk", at.path));
                return Ok(());
            }
            r => r?,
        };
        let md = f.metadata()?;
        let len = md.len();
        let replaced = at.ino != 0 && std::os::unix::fs::MetadataExt::ino(&md) != at.ino;
        if replaced && self.mode == Mode2::Rewrap {
            // Renamed over since the listing (live volume): not the object
            // the walk decoded under this parent; the verify walk checks
            // whatever is there now.
            self.note(format!("{}: replaced during the walk", at.path));
        } else if len == 0 {
            // No header yet: nothing is keyed.
            self.report.stats.current += 1;
        } else if len < HEADER_LEN as u64 {
            self.problem(damaged(at, format!("impossible ciphertext size {len}")));
        } else {
            let mut h = [0u8; HEADER_LEN];
            f.read_exact_at(&mut h, 0)?;
            self.file_header(at, parent, f, &h)?;
        }
        (self.progress)(&self.report.stats);
        Ok(())
    }

    fn symlink(&mut self, _at: &Entry<'_>, _parent: &DirKey) -> io::Result<()> {
        // A symlink target is sealed under its directory's key: no KEK slot.
        Ok(())
    }

    fn problem(&mut self, p: Problem) {
        self.report.problems.push(p);
    }

    fn note(&mut self, n: String) {
        self.report.notes.push(n);
    }
}

impl Rekey<'_> {
    fn file_header(
        &mut self,
        at: &Entry<'_>,
        parent: &DirKey,
        f: File,
        h: &[u8; HEADER_LEN],
    ) -> io::Result<()> {
        if self.mode == Mode2::Verify {
            match FileHeader::parse(h) {
                Ok(x) if has_version(&x.slots, self.old) => {
                    self.report.old_slots.push(at.path.to_owned())
                }
                Ok(_) => self.report.stats.current += 1,
                Err(e) => self.problem(damaged(at, format!("header: {e}"))),
            }
            return Ok(());
        }
        let r = match self.keys.rewrap_file_kek(parent, h) {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.report.stats.current += 1;
                return Ok(());
            }
            Err(e) => {
                self.problem(damaged(at, format!("header: {e}")));
                return Ok(());
            }
        };
        let t = times(f.as_fd())?;
        self.report.stats.rewrapped += 1;
        let Some(both) = r.both else {
            // The kept slot already is of the new KEK: only a leftover goes.
            f.write_all_at(&r.fin, 0)?;
            rustix::fs::futimens(&f, &t)?;
            if let Some(cell) = &self.online {
                cell.set(Some(Left::Header(r.fin)));
            }
            crate::failpoint::hit(FP_FILE_FIN);
            return Ok(());
        };
        f.write_all_at(&both, 0)?;
        if let Some(cell) = &self.online {
            // Online the file is held only for this visit: the source holds
            // it again for the second step, after its batch's sync.
            let fps = (FP_FILE_BOTH, FP_FILE_FIN);
            cell.set(Some(Left::Later(later(f, both, r.fin, t, fps))));
            return Ok(());
        }
        self.staged.push(Staged { f, fin: r.fin, t });
        if self.staged.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes the staged headers' new slots durable with one filesystem
    /// sync (a sync per file would bound a disk to its sync rate), and only
    /// then clears their old slots.
    fn flush(&mut self) -> io::Result<()> {
        let Some(first) = self.staged.first() else {
            return Ok(());
        };
        rustix::fs::syncfs(&first.f)?;
        for s in self.staged.drain(..) {
            crate::failpoint::hit(FP_FILE_BOTH);
            s.f.write_all_at(&s.fin, 0)?;
            rustix::fs::futimens(&s.f, &s.t)?;
            crate::failpoint::hit(FP_FILE_FIN);
        }
        Ok(())
    }
}

/// Headers staged per sync: each holds its file open until the flush.
const BATCH: usize = 128;

/// A header whose both-slots form is written, waiting for the sync that
/// lets its old slot go.
struct Staged {
    f: File,
    fin: [u8; HEADER_LEN],
    t: Timestamps,
}
