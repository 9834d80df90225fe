//! Cryptographic erasure of one subtree of an unmounted volume (`dekfs
//! shred CIPHERDIR PLAINPATH`): resolve the plaintext path to its backing
//! entry (resolve.rs), record what will die in a journal (journal.rs),
//! overwrite every key slot under it in place and sync (tree.rs), only then
//! remove the ciphertext, and finally prove that nothing names a destroyed
//! id or holds a destroyed wrapped key (verify.rs). Every step after the
//! journal needs no key, so a rerun after a crash finishes the job from the
//! journal alone. It must not run on a mounted volume (the caller holds the
//! volume lock), must not keep wrapped-key bytes anywhere but in memory (the
//! journal holds fingerprints only), and must not touch anything outside the
//! target subtree except the target's entry, its long-name record and the
//! journal.

pub mod journal;
pub mod purge;
pub mod resolve;
mod tree;
pub mod verify;

pub use journal::{Journal, JOURNAL_NAME};
pub use resolve::{resolve, ResolveError, Target};
pub use tree::Survey;
pub use verify::{Finding, Needles, VerifyReport};

use rustix::fs::{Mode, OFlags};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Crash points (see failpoint.rs): after the journal is durable, after
/// half of the key objects were overwritten, after every slot is destroyed
/// and synced (before any removal), after the subtree's contents are gone
/// (before the target entry itself), after the removal (before the final
/// check and the journal's deletion).
pub const FP_JOURNAL: &str = "shred.journal.written";
pub const FP_HALF: &str = "shred.slots.half";
pub const FP_SYNCED: &str = "shred.slots.synced";
pub const FP_CONTENTS: &str = "shred.removal.contents";
pub const FP_REMOVED: &str = "shred.removed";

/// What one run of `finish` did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Key objects (headers, dekfs.dir and its temp files) overwritten.
    pub objects: u64,
    /// From the first overwrite to the last sync of the key slots.
    pub destroy_time: Duration,
    /// Removal of the ciphertext.
    pub remove_time: Duration,
    /// The target's name was taken by a new object after the interrupted
    /// run (its id differs): that object was left alone.
    pub replaced: bool,
    pub report: VerifyReport,
}

pub(crate) fn open_root(cipherdir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        cipherdir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// Surveys the target: what a shred of it destroys, every id and wrapped
/// key fingerprinted.
pub fn survey_target(cipherdir: &Path, target: &Target) -> io::Result<Survey> {
    tree::survey(&open_root(cipherdir)?, target)
}

/// Step 1: makes the journal of a surveyed target durable. From here on the
/// job is `finish`'s, in this run or the next.
pub fn begin(cipherdir: &Path, target: &Target, survey: &Survey) -> io::Result<Journal> {
    let journal = journal_of(target, survey);
    begin_at(&open_root(cipherdir)?, &journal)?;
    Ok(journal)
}

/// The journal a shred of `target` writes.
pub fn journal_of(target: &Target, survey: &Survey) -> Journal {
    Journal {
        parent: target.parent.clone(),
        entry: target.entry.clone(),
        record: target.record.clone(),
        target: survey.target_id,
        ids: survey.ids.clone(),
        needles: survey.needles.clone(),
    }
}

/// `begin` on an open cipher root (the daemon's).
pub fn begin_at(root: &OwnedFd, journal: &Journal) -> io::Result<()> {
    journal.write(root)?;
    crate::failpoint::hit(FP_JOURNAL);
    Ok(())
}

/// Surveys entry `entry` of the open directory `parent` (the daemon hands
/// in its own descriptor, so a rename of an ancestor cannot misdirect it).
pub fn survey_at(parent: &OwnedFd, entry: &str) -> io::Result<Survey> {
    tree::survey_at(parent, entry)
}

/// What a shred of `plain` destroys, in one line (the confirmation prompt).
pub fn describe(plain: &str, kind: &str, s: &Survey) -> String {
    format!(
        "{plain} ({kind}): {} directories, {} files, {} symlinks, {} other, {} bytes; {} keys ({} wrapped-key slots)",
        s.dirs,
        s.files,
        s.symlinks,
        s.others,
        s.plain_bytes,
        s.key_objects,
        s.needles.len()
    )
}

/// Whether the name in the journal now holds another object than the one
/// being shredded: one with an id that is not the target's (a directory
/// with nothing in it but a fresh key does not count: nothing to lose).
fn replaced(parent: &OwnedFd, j: &Journal) -> io::Result<bool> {
    let now = match tree::target_id(parent, &j.entry) {
        Ok(id) => id,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(now.is_some() && now != j.target && !tree::empty_dir(parent, &j.entry)?)
}

/// The journal of an interrupted shred, if any.
pub fn pending(cipherdir: &Path) -> io::Result<Option<Journal>> {
    Journal::read(&open_root(cipherdir)?)
}

/// Steps 2-4 from a durable journal: destroy and sync every key slot under
/// the target, remove its ciphertext, check the whole cipher directory
/// (`full`: every byte of every file, not only keys and metadata), and
/// delete the journal only if the check is clean.
pub fn finish(cipherdir: &Path, journal: &Journal, full: bool) -> io::Result<Outcome> {
    let root = open_root(cipherdir)?;
    let parent = tree::open_parent(&root, &journal.parent)?;
    let mut out = destroy_and_remove(&root, parent.as_ref(), journal)?;
    check_and_close(&root, journal, full, &mut out)?;
    Ok(out)
}

/// Steps 2 and 3 in the open directory `parent` (None: it is gone, as after
/// a crash past the removal): every key slot destroyed, one syncfs, then
/// the ciphertext removed. A name taken by a new object is left alone.
pub fn destroy_and_remove(
    root: &OwnedFd,
    parent: Option<&OwnedFd>,
    journal: &Journal,
) -> io::Result<Outcome> {
    let Some(parent) = parent else {
        return Ok(Outcome::default());
    };
    let mut out = destroy_at(root, parent, journal)?;
    if !out.replaced {
        let t1 = Instant::now();
        tree::remove(parent, &journal.entry, journal.record.as_deref())?;
        out.remove_time = t1.elapsed();
    }
    Ok(out)
}

/// Step 2 alone: every key slot under the journal's entry of `parent`
/// overwritten, then one syncfs (unless a new object took the name).
pub fn destroy_at(root: &OwnedFd, parent: &OwnedFd, journal: &Journal) -> io::Result<Outcome> {
    let mut out = Outcome::default();
    let t0 = Instant::now();
    out.replaced = replaced(parent, journal)?;
    if !out.replaced {
        out.objects = tree::destroy_slots(parent, &journal.entry, journal.ids.len())?;
        // Every overwritten slot durable before any removal can start.
        rustix::fs::syncfs(root)?;
        out.destroy_time = t0.elapsed();
        crate::failpoint::hit(FP_SYNCED);
    }
    Ok(out)
}

/// The target directory `entry` of `parent`, for `clear_dir` (None: not a
/// directory).
pub fn open_target_dir(parent: &OwnedFd, entry: &str) -> io::Result<Option<OwnedFd>> {
    tree::open_target_dir(parent, entry)
}

/// Step 3's bulk, by descriptor: everything in the target directory
/// removed and synced. The daemon runs it without holding the parent's
/// entries lock.
pub fn clear_dir(dir: &OwnedFd) -> io::Result<()> {
    tree::clear_dir(dir)
}

/// Step 3's end: the emptied entry and its record removed, parent synced.
pub fn remove_entry(parent: &OwnedFd, entry: &str, record: Option<&str>) -> io::Result<()> {
    tree::remove_entry(parent, entry, record)
}

/// Step 4: the final check; the journal goes only if it is clean.
pub fn check_and_close(
    root: &OwnedFd,
    journal: &Journal,
    full: bool,
    out: &mut Outcome,
) -> io::Result<()> {
    crate::failpoint::hit(FP_REMOVED);
    out.report = verify::check(root, journal, full, !out.replaced)?;
    if out.report.is_clean() {
        Journal::remove(root)?;
    }
    Ok(())
}
