//! Offline consistency check of a cipher directory with an unlocked volume:
//! every directory metadata record, name, long-name record, symlink target,
//! file header and content block is authenticated, and problems are reported
//! by plaintext path where the name decrypts. It must never write to the
//! cipher directory unless asked to repair, and repair only quarantines
//! (moves entries into `dekfs.quarantine/`), it never deletes or rewrites.

mod walk;

use crate::crypto::VolumeKeys;
use std::path::{Path, PathBuf};

/// Where `--repair` moves corrupt entries (a reserved name: readers skip it).
pub const QUARANTINE_DIR: &str = "dekfs.quarantine";

/// One corrupt object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Plaintext path ("/a/b"); an entry whose name does not decrypt is
    /// shown as "<plain dir>/<backing name>".
    pub path: String,
    /// The backing path, relative to the cipher directory.
    pub backing: PathBuf,
    /// What failed: "header: ...", "block N failed authentication", ...
    pub what: String,
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
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every object under `cipherdir`. With `repair`, each corrupt entry
/// (file, symlink, unreadable name, or directory whose key does not open) is
/// renamed into `cipherdir/dekfs.quarantine/`. Errors are I/O failures that
/// stop the walk (e.g. the cipher directory is unreadable).
pub fn check(cipherdir: &Path, keys: &VolumeKeys, repair: bool) -> std::io::Result<Report> {
    let mut report = Report::default();
    walk::Walker::new(cipherdir, keys, &mut report).run()?;
    if repair && !report.problems.is_empty() {
        quarantine(cipherdir, &mut report)?;
    }
    Ok(report)
}

fn quarantine(cipherdir: &Path, report: &mut Report) -> std::io::Result<()> {
    let qdir = cipherdir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&qdir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // deepest first, so a quarantined directory never swallows a path that
    // is still to be moved; and each backing path only once
    let mut paths: Vec<PathBuf> = report.problems.iter().map(|p| p.backing.clone()).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    paths.dedup();
    for rel in paths {
        let src = cipherdir.join(&rel);
        if std::fs::symlink_metadata(&src).is_err() {
            continue; // inside a directory already moved
        }
        let flat: String = rel.to_string_lossy().replace('/', "_");
        let dst = qdir.join(format!("{stamp}-{flat}"));
        std::fs::rename(&src, &dst)?;
        let name = src.to_string_lossy().to_string();
        if name.contains(crate::format::LONGNAME_PREFIX) {
            let rec = PathBuf::from(format!("{name}{}", crate::format::LONGNAME_SUFFIX));
            if rec.exists() {
                std::fs::rename(&rec, qdir.join(format!("{stamp}-{flat}.name")))?;
            }
        }
        report.quarantined.push((rel, dst));
    }
    Ok(())
}
