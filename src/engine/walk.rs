//! The one walker over a cipher tree: directory by directory, by descriptor,
//! with every name decoded by layout/. It hands each entry to a `Visitor`
//! (fsck now; rekey and shred next) and itself reports, for every visitor,
//! what is wrong with the tree's naming: names that do not decode, long-form
//! entries missing their `.name` or holding a short name, orphan long-name
//! records, directories whose key does not open. It must not write, follow
//! backing symlinks, or decide what a visitor does about a problem. Where
//! directories and keys come from is the `Source`'s business (offline now,
//! online through the core next; see source.rs). It holds one directory
//! descriptor per level of the path being walked, so the descriptor limit
//! bounds the depth it can walk (an EMFILE stops the walk as an I/O error).

use super::source::{DirKeyState, Held, Source};
use crate::crypto::DirKey;
use crate::layout::{self, Class, Decoded};
use rustix::fs::{AtFlags, FileType};
use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

/// One object of the tree as a visitor sees it.
pub struct Entry<'a> {
    /// Plaintext path ("/a/b"); "/" for the root.
    pub path: &'a str,
    /// Backing path relative to the cipher directory ("" for the root).
    pub backing: &'a std::path::Path,
    /// The directory holding the entry (the root itself for the root).
    pub dir: BorrowedFd<'a>,
    /// The backing name in `dir` ("." for a directory's own entry).
    pub name: &'a str,
    /// The backing inode the listing showed (0 for a directory's own
    /// entry). A visitor that opens `name` checks it got this inode: on a
    /// live volume the name may have been renamed over since.
    pub ino: u64,
}

/// What a repair may do about a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A corrupt object: quarantine it (with its long-name record).
    Damaged,
    /// A long-name record without its entry: safe to delete.
    OrphanRecord,
    /// A paged file whose last append a power cut interrupted: cutting the backing file to
    /// this size restores exactly what it held before that append.
    TornTail(u64),
}

/// One thing wrong with the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Plaintext path; an entry whose name does not decode is shown as
    /// "<plain dir>/<backing name>".
    pub path: String,
    /// The backing path, relative to the cipher directory.
    pub backing: PathBuf,
    /// What failed: "header: ...", "block N failed authentication", ...
    pub what: String,
    pub kind: ProblemKind,
}

/// What a whole-tree job does with each object. Errors stop the walk.
pub trait Visitor {
    /// A directory whose key opened, before its entries (the root first);
    /// `parent` is the key its own key is wrapped to (`None` for the root,
    /// whose key is wrapped to the KEK alone).
    fn dir(&mut self, _at: &Entry<'_>, _key: &DirKey, _parent: Option<&DirKey>) -> io::Result<()> {
        Ok(())
    }
    fn file(&mut self, at: &Entry<'_>, parent: &DirKey) -> io::Result<()>;
    fn symlink(&mut self, at: &Entry<'_>, parent: &DirKey) -> io::Result<()>;
    /// FIFOs, sockets and device nodes (no encrypted payload).
    fn other(&mut self, _at: &Entry<'_>) -> io::Result<()> {
        Ok(())
    }
    fn problem(&mut self, p: Problem);
    /// Something harmless worth saying (e.g. an empty directory re-keyed on
    /// first access).
    fn note(&mut self, _n: String) {}
}

/// Walks one tree from a source, depth first, entries in backing-name order.
pub struct Walker<'v, S, V> {
    source: S,
    visitor: &'v mut V,
}

/// One entry of a directory as the walker found it.
struct Object<'a> {
    cipher: &'a str,
    plain: &'a [u8],
    file_type: FileType,
    ino: u64,
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

impl<'v, S: Source, V: Visitor> Walker<'v, S, V> {
    pub fn new(source: S, visitor: &'v mut V) -> Self {
        Walker { source, visitor }
    }

    pub fn run(mut self) -> io::Result<()> {
        let (fd, state) = self.source.root()?;
        let r = self.enter(fd.as_fd(), state, None, "/".into(), PathBuf::new());
        self.source.leave(fd.as_fd());
        let finished = self.source.finish();
        r.and(finished)
    }

    fn problem(&mut self, path: String, backing: PathBuf, what: String, kind: ProblemKind) {
        self.visitor.problem(Problem {
            path,
            backing,
            what,
            kind,
        });
    }

    fn enter(
        &mut self,
        fd: BorrowedFd<'_>,
        state: DirKeyState,
        parent: Option<&DirKey>,
        plain: String,
        backing: PathBuf,
    ) -> io::Result<()> {
        match state {
            DirKeyState::Open(key) => self.dir(fd, key, parent, plain, backing),
            DirKeyState::EmptyWithoutKey(what) => {
                self.visitor
                    .note(format!("{plain}: {what} (re-keyed on first access)"));
                Ok(())
            }
            DirKeyState::Damaged(what) => {
                self.problem(plain, backing, what, ProblemKind::Damaged);
                Ok(())
            }
        }
    }

    fn dir(
        &mut self,
        fd: BorrowedFd<'_>,
        key: Arc<DirKey>,
        parent: Option<&DirKey>,
        plain: String,
        backing: PathBuf,
    ) -> io::Result<()> {
        let at = Entry {
            path: &plain,
            backing: &backing,
            dir: fd.as_fd(),
            name: ".",
            ino: 0,
        };
        let visitor = &mut *self.visitor;
        self.source
            .hold_dir(fd.as_fd(), &mut || visitor.dir(&at, &key, parent))?;
        let mut entries = layout::list(&fd)?;
        entries.sort_by(|a, b| a.raw.cmp(&b.raw));
        let longs: BTreeSet<&str> = entries
            .iter()
            .filter_map(|e| match layout::classify(e.name.as_deref()?) {
                Class::Long { hash } => Some(hash),
                _ => None,
            })
            .collect();
        let mut orphans = Vec::new();
        for e in &entries {
            let Some(cipher) = e.name.as_deref() else {
                let raw = std::ffi::OsStr::from_bytes(&e.raw);
                let (p, b) = (join(&plain, &raw.to_string_lossy()), backing.join(raw));
                self.problem(
                    p,
                    b,
                    "backing name is not ASCII".into(),
                    ProblemKind::Damaged,
                );
                continue;
            };
            match layout::classify(cipher) {
                Class::Short(_) | Class::Long { .. } => {}
                Class::LongRecord { hash } if !longs.contains(hash) => {
                    orphans.push(cipher);
                    continue;
                }
                _ => continue,
            }
            let name = match layout::decode(&key, &fd, cipher) {
                Decoded::Name(n) => n,
                Decoded::Internal => continue,
                Decoded::Unreadable(d) => {
                    let (p, b) = (join(&plain, cipher), backing.join(cipher));
                    self.problem(p, b, d.to_string(), ProblemKind::Damaged);
                    continue;
                }
            };
            let path = join(&plain, &String::from_utf8_lossy(&name));
            let obj = Object {
                cipher,
                plain: &name,
                file_type: e.file_type,
                ino: e.ino,
            };
            self.entry(fd, &key, obj, path, backing.join(cipher))?;
        }
        for rec in orphans {
            let (p, b) = (join(&plain, rec), backing.join(rec));
            let what = "orphan long-name record (no entry with its hash)".into();
            self.problem(p, b, what, ProblemKind::OrphanRecord);
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dirfd: BorrowedFd<'_>,
        key: &DirKey,
        obj: Object<'_>,
        plain: String,
        backing: PathBuf,
    ) -> io::Result<()> {
        let cipher = obj.cipher;
        let ft = match obj.file_type {
            // Some filesystems leave d_type unset: ask the inode itself.
            FileType::Unknown => match rustix::fs::statat(dirfd, cipher, AtFlags::SYMLINK_NOFOLLOW)
            {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(rustix::io::Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            t => t,
        };
        let at = Entry {
            path: &plain,
            backing: &backing,
            dir: dirfd.as_fd(),
            name: cipher,
            ino: obj.ino,
        };
        match ft {
            FileType::Directory => {
                let (fd, state) = match self.source.child(dirfd.as_fd(), key, cipher, obj.plain) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.visitor.note(format!("{plain}: gone during the walk"));
                        return Ok(());
                    }
                    r => r?,
                };
                let r = self.enter(fd.as_fd(), state, Some(key), plain, backing);
                self.source.leave(fd.as_fd());
                r
            }
            FileType::Symlink | FileType::RegularFile => {
                let visitor = &mut *self.visitor;
                let mut visit = || match ft {
                    FileType::Symlink => visitor.symlink(&at, key),
                    _ => visitor.file(&at, key),
                };
                let held = Held {
                    name: cipher,
                    plain: obj.plain,
                    ino: obj.ino,
                };
                self.source.hold(dirfd.as_fd(), key, held, &mut visit)
            }
            _ => self.visitor.other(&at),
        }
    }
}
