//! The proof a shred ends with (and `--verify` extends): no object left in
//! the cipher directory carries a destroyed dir_id or file_id, and no byte
//! sequence equal to a destroyed wrapped key is left in any file (headers,
//! dekfs.dir and its temps, the config and its temps, long-name records,
//! anything else; with `full`, file contents too). Wrapped keys are known
//! by fingerprint only (first 8 bytes and SHA-256 of all 64), so the check
//! can run from the journal in a later process. It must not write and must
//! not follow symlinks.

use super::journal::{Journal, JOURNAL_NAME};
use crate::format::{HEADER_LEN, WRAPPED_LEN};
use crate::layout::{self, Class};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// The fingerprint of one destroyed wrapped key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Needle {
    pub prefix: [u8; 8],
    pub digest: [u8; 32],
}

impl Needle {
    pub fn of(wrapped: &[u8; WRAPPED_LEN]) -> Needle {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&wrapped[..8]);
        Needle {
            prefix,
            digest: Sha256::digest(wrapped).into(),
        }
    }
}

/// A set of fingerprints, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needles(Vec<Needle>);

impl Needles {
    pub fn push(&mut self, n: Needle) {
        self.0.push(n);
    }
    pub fn iter(&self) -> impl Iterator<Item = &Needle> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Something the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Backing path relative to the cipher directory.
    pub path: String,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub findings: Vec<Finding>,
    pub files: u64,
    pub bytes: u64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A byte scanner for a set of 64-byte needles.
pub struct Scanner {
    /// Cheap first test on the low 16 bits of a window's first 8 bytes.
    filter: Vec<u64>,
    by_prefix: HashMap<u64, Vec<[u8; 32]>>,
}

impl Scanner {
    pub fn new<'a>(needles: impl IntoIterator<Item = &'a Needle>) -> Scanner {
        let mut s = Scanner {
            filter: vec![0u64; 1 << 10],
            by_prefix: HashMap::new(),
        };
        for n in needles {
            let p = u64::from_le_bytes(n.prefix);
            s.filter[(p as usize & 0xffff) >> 6] |= 1 << (p & 63);
            s.by_prefix.entry(p).or_default().push(n.digest);
        }
        s
    }

    /// Offsets in `buf` where a needle starts.
    pub fn find(&self, buf: &[u8]) -> Vec<usize> {
        let mut hits = Vec::new();
        if self.by_prefix.is_empty() || buf.len() < WRAPPED_LEN {
            return hits;
        }
        for i in 0..=buf.len() - WRAPPED_LEN {
            let mut p = [0u8; 8];
            p.copy_from_slice(&buf[i..i + 8]);
            let p = u64::from_le_bytes(p);
            if self.filter[(p as usize & 0xffff) >> 6] & (1 << (p & 63)) == 0 {
                continue;
            }
            if let Some(ds) = self.by_prefix.get(&p) {
                let d: [u8; 32] = Sha256::digest(&buf[i..i + WRAPPED_LEN]).into();
                if ds.contains(&d) {
                    hits.push(i);
                }
            }
        }
        hits
    }

    /// Scans bytes `[0, len)` of `f`; the offsets of hits.
    pub fn scan_file(&self, f: &std::fs::File, len: u64) -> io::Result<Vec<u64>> {
        const CHUNK: usize = 1 << 20;
        let mut hits = Vec::new();
        let mut buf = vec![0u8; CHUNK + WRAPPED_LEN];
        let mut off = 0u64;
        while off < len {
            let n = ((len - off) as usize).min(buf.len());
            let got = read_full(f, &mut buf[..n], off)?;
            hits.extend(self.find(&buf[..got]).into_iter().map(|i| off + i as u64));
            if got < n || off + (got as u64) >= len {
                break;
            }
            // Overlap so a needle across the chunk boundary is seen once.
            off += (got - (WRAPPED_LEN - 1)) as u64;
        }
        hits.sort_unstable();
        hits.dedup();
        Ok(hits)
    }
}

fn read_full(f: &std::fs::File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Checks the whole cipher directory against a journal.
/// `target_gone`: the target's name must be free (false when a new object
/// took it after an interrupted run).
pub fn check(
    root: &OwnedFd,
    journal: &Journal,
    full: bool,
    target_gone: bool,
) -> io::Result<VerifyReport> {
    let mut c = Check {
        scanner: Scanner::new(journal.needles.iter()),
        ids: journal.ids.iter().copied().collect(),
        full,
        report: VerifyReport::default(),
    };
    let parent = match target_gone {
        true => super::tree::open_parent(root, &journal.parent)?,
        false => None,
    };
    if let Some(parent) = parent {
        for name in std::iter::once(&journal.entry).chain(journal.record.as_ref()) {
            match rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Ok(_) => c.found(
                    &journal_path(journal, name),
                    "the shredded entry still exists",
                ),
                Err(e) => return Err(e.into()),
            }
        }
    }
    c.dir(root.as_fd(), "")?;
    Ok(c.report)
}

fn journal_path(j: &Journal, name: &str) -> String {
    let mut p = j.parent.join("/");
    if !p.is_empty() {
        p.push('/');
    }
    p + name
}

struct Check {
    scanner: Scanner,
    ids: HashSet<[u8; 16]>,
    full: bool,
    report: VerifyReport,
}

impl Check {
    fn found(&mut self, path: &str, what: &str) {
        self.report.findings.push(Finding {
            path: path.to_owned(),
            what: what.to_owned(),
        });
    }

    fn dir(&mut self, fd: BorrowedFd<'_>, rel: &str) -> io::Result<()> {
        for e in layout::list(&fd)? {
            let Ok(name) = String::from_utf8(e.raw.clone()) else {
                continue;
            };
            if name == "." || name == ".." || (rel.is_empty() && name.starts_with(JOURNAL_NAME)) {
                continue;
            }
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            // On a mounted volume entries come and go meanwhile: one that
            // is gone holds nothing.
            let ft = match e.file_type {
                FileType::Unknown => {
                    match rustix::fs::statat(fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => FileType::from_raw_mode(st.st_mode),
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                t => t,
            };
            match ft {
                FileType::Directory => {
                    let sub = match rustix::fs::openat(
                        fd,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(sub) => sub,
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    self.dir(sub.as_fd(), &path)?;
                }
                FileType::RegularFile => self.file(fd, &name, &path)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, dir: BorrowedFd<'_>, name: &str, path: &str) -> io::Result<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let f = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => std::fs::File::from(fd),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let len = f.metadata()?.len();
        let mut head = [0u8; 32];
        let got = read_full(&f, &mut head, 0)?;
        let keyed = got == 32 && (&head[..4] == b"DKFH" || &head[..4] == b"DKFD");
        if keyed {
            let id: [u8; 16] = head[16..32].try_into().unwrap_or_default();
            if self.ids.contains(&id) {
                self.found(path, "carries a destroyed id");
            }
        }
        let entry = matches!(layout::classify(name), Class::Short(_) | Class::Long { .. });
        let scan_len = if self.full || !entry {
            len
        } else {
            len.min(HEADER_LEN as u64)
        };
        let hits = self.scanner.scan_file(&f, scan_len)?;
        if let Some(off) = hits.first() {
            self.found(
                path,
                &format!("holds a destroyed wrapped key at offset {off}"),
            );
        }
        self.report.files += 1;
        self.report.bytes += scan_len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_needles_anywhere_and_only_them() {
        let key: [u8; 64] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let s = Scanner::new([Needle::of(&key)].iter());
        let mut buf = vec![0xAAu8; 3000];
        assert!(s.find(&buf).is_empty());
        buf[1001..1065].copy_from_slice(&key);
        assert_eq!(s.find(&buf), vec![1001]);
        buf[1064] ^= 1;
        assert!(s.find(&buf).is_empty(), "a near miss is not a hit");
    }

    #[test]
    fn scan_file_sees_a_needle_across_chunks() {
        let key: [u8; 64] = std::array::from_fn(|i| (i * 13 + 1) as u8);
        let s = Scanner::new([Needle::of(&key)].iter());
        let mut data = vec![0u8; (1 << 20) + 4096];
        let at = (1 << 20) - 30;
        data[at..at + 64].copy_from_slice(&key);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, &data).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert_eq!(s.scan_file(&f, data.len() as u64).unwrap(), vec![at as u64]);
    }
}
