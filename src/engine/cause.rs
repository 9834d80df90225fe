//! Tells, for each problem fsck found, whether a power cut explains it (the traces an
//! interrupted write can leave: a torn or never-written block in a recently written range, an
//! empty header, the empty key file of a recent directory, a crash remnant) or not (a bad tag
//! in an old block, a modified name or header: tampering or failing media). It only weighs
//! evidence the walk gathered; it must not read or write the cipher directory.

use super::scan::{BadKind, BadRange};

/// A change this long before the newest one seen in the volume still counts as "recent": the
/// backing filesystem's commit interval plus its dirty-data expiry (ext4: 5 s + 30 s), with
/// margin.
pub const RECENT_SECS: i64 = 60;

/// What the walk saw of a problem.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// Blocks of a file whose header opened.
    Blocks {
        mtime: i64,
        paged: bool,
        bad: Vec<BadRange>,
    },
    /// A file header that does not open; `empty` when its bytes are missing or all zero.
    Header { mtime: i64, empty: bool },
    /// A directory whose key does not open; `empty` when its key file is missing, empty or all
    /// zero.
    DirKey { mtime: i64, empty: bool },
    /// A long-name record whose entry is gone.
    Orphan,
    /// Anything else (names that do not authenticate, symlink targets, odd backing names).
    Other,
}

/// The verdict on one problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub power_cut: bool,
    pub why: String,
}

fn verdict(power_cut: bool, why: impl Into<String>) -> Diagnosis {
    Diagnosis {
        power_cut,
        why: why.into(),
    }
}

/// Weighs `e` against `newest`, the latest modification time seen anywhere in the volume (the
/// best estimate of when writing stopped).
pub fn diagnose(e: &Evidence, newest: i64) -> Diagnosis {
    let age = |mtime: i64| newest.saturating_sub(mtime);
    let recent = |mtime: i64| age(mtime) <= RECENT_SECS;
    match e {
        Evidence::Orphan => verdict(true, "left by a create or remove that was cut short"),
        Evidence::Other => verdict(
            false,
            "names and symlink targets are written whole by rename: modified or damaged media",
        ),
        Evidence::Header { empty: true, .. } => {
            verdict(true, "empty header: its first write never reached the disk")
        }
        Evidence::Header { mtime, .. } => verdict(
            false,
            format!(
                "the header was modified (last written {}s before the newest change)",
                age(*mtime)
            ),
        ),
        Evidence::DirKey { mtime, empty: true } if recent(*mtime) => verdict(
            true,
            "empty key file of a directory created just before the cut",
        ),
        Evidence::DirKey { mtime, empty } => verdict(
            false,
            format!(
                "{} directory key of a directory last changed {}s before the newest change",
                if *empty { "missing" } else { "modified" },
                age(*mtime)
            ),
        ),
        Evidence::Blocks { mtime, paged, bad } => {
            let mut cut = true;
            let mut whys = Vec::new();
            for b in bad {
                let (c, why) = block_cause(b, *paged, recent(*mtime));
                cut &= c;
                whys.push(format!("block {}: {why}", b.block));
            }
            let mut why = whys.join("; ");
            if !recent(*mtime) {
                why.push_str(&format!(
                    " (file last written {}s before the newest change)",
                    age(*mtime)
                ));
            }
            verdict(cut, why)
        }
    }
}

fn block_cause(b: &BadRange, paged: bool, recent: bool) -> (bool, &'static str) {
    match (b.kind, paged, recent) {
        (BadKind::TornAppend, ..) => (true, "an append cut short by a power cut"),
        (BadKind::Stub, ..) => (true, "the last block was cut short while being written"),
        (BadKind::Unwritten, _, true) => {
            (true, "recently written data that never reached the disk")
        }
        (BadKind::Unwritten, _, false) => (false, "zeros in a block of an old file"),
        (BadKind::BadTag, false, true) => (
            true,
            "torn block in a recently written range (v1 blocks span two pages)",
        ),
        (BadKind::BadTag, true, _) => (
            false,
            "bad tag in a paged block (pages are written whole): modified or damaged media",
        ),
        (BadKind::BadTag, false, false) => {
            (false, "bad tag in an old block: modified or damaged media")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(kind: BadKind) -> Vec<BadRange> {
        vec![BadRange {
            start: 0,
            end: 10,
            block: 0,
            kind,
            last: true,
        }]
    }

    #[test]
    fn verdicts() {
        let blocks = |mtime, paged, kind| Evidence::Blocks {
            mtime,
            paged,
            bad: bad(kind),
        };
        assert!(diagnose(&blocks(95, false, BadKind::BadTag), 100).power_cut);
        assert!(!diagnose(&blocks(10, false, BadKind::BadTag), 100).power_cut);
        assert!(!diagnose(&blocks(99, true, BadKind::BadTag), 100).power_cut);
        assert!(diagnose(&blocks(0, true, BadKind::TornAppend), 1000).power_cut);
        assert!(!diagnose(&blocks(0, true, BadKind::Unwritten), 1000).power_cut);
        assert!(
            diagnose(
                &Evidence::DirKey {
                    mtime: 90,
                    empty: true
                },
                100
            )
            .power_cut
        );
        assert!(
            !diagnose(
                &Evidence::DirKey {
                    mtime: 9,
                    empty: true
                },
                100
            )
            .power_cut
        );
        assert!(
            !diagnose(
                &Evidence::DirKey {
                    mtime: 99,
                    empty: false
                },
                100
            )
            .power_cut
        );
        assert!(
            diagnose(
                &Evidence::Header {
                    mtime: 0,
                    empty: true
                },
                100
            )
            .power_cut
        );
        assert!(
            !diagnose(
                &Evidence::Header {
                    mtime: 99,
                    empty: false
                },
                100
            )
            .power_cut
        );
        assert!(!diagnose(&Evidence::Other, 0).power_cut);
        assert!(diagnose(&Evidence::Orphan, 0).power_cut);
    }
}
