//! `fsck --repair`: moves corrupt entries (with their long-name records)
//! into `dekfs.quarantine/`, deletes orphan long-name records, and cuts a
//! paged file whose last append a power cut tore back to its size before
//! that append. It runs only on an unmounted volume, after the walk; it must
//! never delete an entry, and never write into a file other than that cut.

use super::fsck::Report;
use super::ProblemKind;
use crate::layout::{LONGNAME_SUFFIX, QUARANTINE_DIR};
use std::path::{Path, PathBuf};

pub(super) fn repair(cipherdir: &Path, report: &mut Report) -> std::io::Result<()> {
    let qdir = cipherdir.join(QUARANTINE_DIR);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let of_kind = |k: ProblemKind| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = report
            .problems
            .iter()
            .filter(|p| p.kind == k)
            .map(|p| p.backing.clone())
            .collect();
        // deepest first, so a quarantined directory never swallows a path
        // that is still to be moved; and each backing path only once
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v.dedup();
        v
    };
    let (damaged, orphans) = (
        of_kind(ProblemKind::Damaged),
        of_kind(ProblemKind::OrphanRecord),
    );
    for rel in orphans {
        // A record is a regular file dekfs wrote; anything else is left.
        let p = cipherdir.join(&rel);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&p)?;
            report.removed.push(rel);
        }
    }
    let torn: Vec<(PathBuf, u64)> = report
        .problems
        .iter()
        .filter_map(|p| match p.kind {
            ProblemKind::TornTail(size) => Some((p.backing.clone(), size)),
            _ => None,
        })
        .collect();
    for (rel, size) in torn {
        // Only ever shorter: the pages past `size` are the interrupted append.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(cipherdir.join(&rel))?;
        if f.metadata()?.len() > size {
            f.set_len(size)?;
            f.sync_all()?;
            report.cut.push((rel, size));
        }
    }
    if !damaged.is_empty() {
        std::fs::create_dir_all(&qdir)?;
    }
    for rel in damaged {
        let src = cipherdir.join(&rel);
        if std::fs::symlink_metadata(&src).is_err() {
            continue; // inside a directory already moved
        }
        let flat: String = rel.to_string_lossy().replace('/', "_");
        let dst = qdir.join(format!("{stamp}-{flat}"));
        std::fs::rename(&src, &dst)?;
        if let Some(Some(name)) = rel.file_name().map(|n| n.to_str()) {
            if let crate::layout::Class::Long { .. } = crate::layout::classify(name) {
                let rec = src.with_file_name(format!("{name}{LONGNAME_SUFFIX}"));
                if rec.exists() {
                    std::fs::rename(&rec, qdir.join(format!("{stamp}-{flat}.name")))?;
                }
            }
        }
        report.quarantined.push((rel, dst));
    }
    Ok(())
}
