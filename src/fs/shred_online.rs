//! Online crypto-erasure in the live core (`dekfs shred` of a mounted
//! volume): resolves a plaintext path through the core, marks and wipes
//! every cached key of the subtree for good (open handles fail with EIO
//! from then on), drops the kernel's caches for it, then runs the keyless
//! passes of `engine::shred` on the core's own descriptors (survey,
//! journal and destruction under the parent's entries lock, the bulk of
//! the removal without it), and the final check. It must not call the
//! kernel while holding a lock a FUSE request may wait for, must not stall
//! the rest of the volume (only entry changes in the target's parent wait,
//! for the destruction and the final unlink), and never logs key bytes.

use super::lookup::Found;
use super::names::BackingName;
use super::node::{lock, Kind, Node};
use super::{CoreFs, Errno, OpenDir, ROOT_INO};
use crate::engine::shred::{self, resolve::components, Outcome, ResolveError, Survey, Target};
use crate::layout::{classify, Class, LONGNAME_PREFIX, LONGNAME_SUFFIX};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why an online shred did not run (nothing was revoked unless said).
#[derive(Debug)]
pub enum ShredError {
    Resolve(ResolveError),
    /// The volume is locked: the path cannot be resolved.
    Locked,
    ReadOnly,
    /// The target kept moving (renamed concurrently); its keys are revoked,
    /// nothing on disk was touched.
    Moved(String),
    Io(io::Error),
}

impl std::fmt::Display for ShredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShredError::Resolve(e) => e.fmt(f),
            ShredError::Locked => f.write_str("the volume is locked; unlock it first"),
            ShredError::ReadOnly => f.write_str("the volume is mounted read-only"),
            ShredError::Moved(p) => write!(
                f,
                "{p} was renamed or removed while the shred started; its keys are revoked \
                 (EIO until remount) but nothing was destroyed: run the shred again on its new path"
            ),
            ShredError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl From<io::Error> for ShredError {
    fn from(e: io::Error) -> Self {
        ShredError::Io(e)
    }
}

impl From<ResolveError> for ShredError {
    fn from(e: ResolveError) -> Self {
        ShredError::Resolve(e)
    }
}

fn errno_io(e: impl Into<super::CoreError>) -> ShredError {
    match e.into() {
        super::CoreError::Sys(Errno(n)) => ShredError::Io(io::Error::from_raw_os_error(n)),
        e => ShredError::Io(io::Error::other(format!("{e:?}"))),
    }
}

/// Progress of a shred, for the control answer.
#[derive(Debug, Clone, Copy)]
pub enum ShredStep {
    /// Keys wiped and kernel caches dropped.
    Revoked { keys: u64, inodes: u64 },
    /// Every key slot overwritten and synced.
    Destroyed { objects: u64 },
    /// Ciphertext removed; the final check starts.
    Removed,
}

/// What an online shred did.
#[derive(Debug)]
pub struct OnlineShred {
    /// The target's plaintext path when it was resolved.
    pub plain: String,
    pub kind: &'static str,
    pub survey: Survey,
    pub dir_keys: usize,
    pub file_keys: usize,
    /// From the request to the last kernel invalidation.
    pub revoke_time: Duration,
    /// From the request until every key slot was overwritten and synced.
    pub keys_gone: Duration,
    pub outcome: Outcome,
}

/// The destruction done in place, for the steps after the entries lock.
struct Placed {
    root: OwnedFd,
    journal: shred::Journal,
    survey: Survey,
    outcome: Outcome,
    keys_gone: Duration,
    /// The target directory, emptied by descriptor without the lock.
    target_dir: Option<OwnedFd>,
}

/// Lookups this shred took on nodes, given back when it ends.
struct Held<'a> {
    core: &'a CoreFs,
    inos: Vec<u64>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for ino in self.inos.drain(..) {
            self.core.forget(ino, 1);
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Dir => "directory",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        _ => "special file",
    }
}

/// A descriptor of a node's directory that can be listed and synced (the
/// node's own is O_PATH).
fn open_listable(node: &Node) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(&node.fd, ".", flags, Mode::empty())?)
}

/// The long-name record of a backing name, if it is long-form.
fn record_of(name: &str) -> Option<String> {
    match classify(name) {
        Class::Long { hash } => Some(format!("{LONGNAME_PREFIX}{hash}{LONGNAME_SUFFIX}")),
        _ => None,
    }
}

impl CoreFs {
    /// The node `plain` names (without following symlinks), with the
    /// normalised path; every lookup taken is recorded in `held`.
    fn shred_resolve(
        &self,
        plain: &str,
        held: &mut Held<'_>,
    ) -> Result<(Arc<Node>, String), ShredError> {
        let comps = components(plain)?;
        let mut cur = self.node(ROOT_INO).map_err(errno_io)?;
        let mut sofar = String::new();
        for (i, comp) in comps.iter().enumerate() {
            let here = if sofar.is_empty() { "/" } else { &sofar }.to_owned();
            sofar.push('/');
            sofar.push_str(comp);
            let key = match self.dir_key_of(&cur) {
                Ok(k) => k,
                Err(e) if e == Errno::EKEYREVOKED => return Err(ShredError::Locked),
                Err(_) => return Err(ResolveError::Damaged(here).into()),
            };
            let Ok(bn) = BackingName::encode(&key, comp.as_bytes()) else {
                return Err(ResolveError::NotFound(sofar).into());
            };
            let node = match self.attach(&cur, &key, Found::named(bn.name(), comp.as_bytes())) {
                Ok((node, _)) => node,
                Err(e) if e == Errno::ENOENT => return Err(ResolveError::NotFound(sofar).into()),
                Err(e) => return Err(errno_io(e)),
            };
            held.inos.push(node.ino);
            if i + 1 < comps.len() && node.kind != Kind::Dir {
                return Err(ResolveError::NotADirectory(sofar).into());
            }
            cur = node;
        }
        Ok((cur, sofar))
    }

    /// What a shred of `plain` would destroy, touching nothing.
    pub fn shred_survey(&self, plain: &str) -> Result<(String, &'static str, Survey), ShredError> {
        self.vkeys().map_err(|_| ShredError::Locked)?;
        let mut held = Held {
            core: self,
            inos: Vec::new(),
        };
        let (node, norm) = self.shred_resolve(plain, &mut held)?;
        for _ in 0..8 {
            let loc = node.location();
            let pnode = self.node(loc.parent).map_err(errno_io)?;
            let parent = open_listable(&pnode)?;
            let name = loc.cipher_name.as_str();
            // Renamed meanwhile: follow it rather than survey nothing.
            match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if self.fuse_ino(st.st_ino) == node.ino => {}
                _ => continue,
            }
            let survey = shred::survey_at(&parent, name)?;
            return Ok((norm, kind_name(node.kind), survey));
        }
        Err(ShredError::Moved(norm))
    }

    /// Marks every node at and below `top` shredded: directory keys gone
    /// for good, file keys wiped under each file's I/O lock (a write in
    /// progress completes first), listings of open streams emptied.
    pub(super) fn shred_revoke(&self, top: u64) -> (usize, usize) {
        let (mut dir_keys, mut file_keys) = (0, 0);
        for node in self.nodes.live() {
            if !self.is_below(&node, top) {
                continue;
            }
            node.shredded.store(true, Ordering::Release);
            match node.kind {
                Kind::Dir => dir_keys += usize::from(node.shred_dir_key()),
                Kind::File => {
                    let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
                    file_keys += usize::from(io.shred());
                }
                _ => {}
            }
        }
        for listing in lock(&self.dirs).values_mut() {
            let inside = self
                .nodes
                .get(listing.ino)
                .is_ok_and(|n| self.is_below(&n, top));
            if inside {
                *listing = Arc::new(OpenDir {
                    ino: listing.ino,
                    entries: Vec::new(),
                });
            }
        }
        (dir_keys, file_keys)
    }

    /// The backing path of a directory node from the cipher root, as its
    /// descriptor says now.
    fn backing_path(&self, node: &Node) -> Result<Vec<String>, ShredError> {
        let root = self.node(ROOT_INO).map_err(errno_io)?;
        let at = |n: &Node| std::fs::read_link(self.proc_path(n));
        let (r, p) = (at(&root)?, at(node)?);
        let rel = p.strip_prefix(&r).map_err(|_| {
            ShredError::Io(io::Error::other(format!(
                "{} is not below the cipher root",
                p.display()
            )))
        })?;
        Ok(rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect())
    }

    /// Destroys the subtree at `plain` while the volume stays mounted: keys
    /// revoked and kernel caches dropped first, then journal, slot
    /// destruction and sync (under the parent's entries lock), removal
    /// (the bulk without it), then the final check (`full`: every byte of
    /// every file).
    pub fn shred_path(
        &self,
        plain: &str,
        full: bool,
        progress: &mut dyn FnMut(ShredStep),
    ) -> Result<OnlineShred, ShredError> {
        let t0 = Instant::now();
        if self.read_only {
            return Err(ShredError::ReadOnly);
        }
        self.vkeys().map_err(|_| ShredError::Locked)?;
        let mut held = Held {
            core: self,
            inos: Vec::new(),
        };
        let (node, norm) = self.shred_resolve(plain, &mut held)?;
        let (dir_keys, file_keys) = self.shred_revoke(node.ino);
        // No core lock held: the kernel may wait for a request meanwhile.
        let inodes = self.invalidate_kernel(|n| self.is_below(n, node.ino));
        let revoke_time = t0.elapsed();
        progress(ShredStep::Revoked {
            keys: (dir_keys + file_keys) as u64,
            inodes: inodes as u64,
        });
        let mut p = self.shred_in_place(&node, &norm, t0)?;
        progress(ShredStep::Destroyed {
            objects: p.outcome.objects,
        });
        // The bulk of the removal holds no lock: the target cannot be
        // renamed (rename refuses shredded nodes) and its directory is
        // emptied through its own descriptor.
        let t1 = Instant::now();
        if let (Some(dir), false) = (&p.target_dir, p.outcome.replaced) {
            shred::clear_dir(dir)?;
        }
        if !p.outcome.replaced {
            self.remove_in_place(&node)?;
        }
        p.outcome.remove_time = t1.elapsed();
        progress(ShredStep::Removed);
        shred::check_and_close(&p.root, &p.journal, full, &mut p.outcome)?;
        Ok(OnlineShred {
            plain: norm,
            kind: kind_name(node.kind),
            survey: p.survey,
            dir_keys,
            file_keys,
            revoke_time,
            keys_gone: p.keys_gone,
            outcome: p.outcome,
        })
    }

    /// Finds the target's current place (it may have been renamed between
    /// its resolution and the revocation), holds that directory's entries
    /// lock, and runs survey, journal and destruction there.
    fn shred_in_place(&self, node: &Node, plain: &str, t0: Instant) -> Result<Placed, ShredError> {
        let root = open_listable(&*self.node(ROOT_INO).map_err(errno_io)?)?;
        for _ in 0..8 {
            let loc = node.location();
            let pnode = self.node(loc.parent).map_err(errno_io)?;
            let _g = lock(&pnode.entries_lock);
            let name = loc.cipher_name.as_str();
            match rustix::fs::statat(&pnode.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if self.fuse_ino(st.st_ino) == node.ino => {}
                _ => continue,
            }
            let parent = open_listable(&pnode)?;
            let survey = shred::survey_at(&parent, name)?;
            let target = Target {
                plain: plain.to_owned(),
                parent: self.backing_path(&pnode)?,
                entry: name.to_owned(),
                record: record_of(name),
                kind: match node.kind {
                    Kind::Dir => FileType::Directory,
                    Kind::File => FileType::RegularFile,
                    Kind::Symlink => FileType::Symlink,
                    _ => FileType::Unknown,
                },
            };
            let journal = shred::journal_of(&target, &survey);
            shred::begin_at(&root, &journal)?;
            let before = t0.elapsed();
            let target_dir = shred::open_target_dir(&parent, name)?;
            let out = shred::destroy_at(&root, &parent, &journal)?;
            let keys_gone = before + out.destroy_time;
            return Ok(Placed {
                root,
                journal,
                survey,
                outcome: out,
                keys_gone,
                target_dir,
            });
        }
        Err(ShredError::Moved(plain.to_owned()))
    }

    /// Removes the emptied target's entry and record where it is now,
    /// under its directory's entries lock, then drops the kernel's name
    /// for it (after the lock: the kernel may wait for a request).
    fn remove_in_place(&self, node: &Node) -> Result<(), ShredError> {
        let mut gone = None;
        for _ in 0..8 {
            let loc = node.location();
            let pnode = self.node(loc.parent).map_err(errno_io)?;
            let _g = lock(&pnode.entries_lock);
            let name = loc.cipher_name.as_str();
            match rustix::fs::statat(&pnode.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if self.fuse_ino(st.st_ino) == node.ino => {}
                // A file target unlinked by its user meanwhile.
                Err(rustix::io::Errno::NOENT) => {
                    gone = Some((loc.parent, loc.plain_name));
                    break;
                }
                _ => continue,
            }
            shred::remove_entry(&open_listable(&pnode)?, name, record_of(name).as_deref())?;
            gone = Some((loc.parent, loc.plain_name));
            break;
        }
        match gone {
            Some((parent, name)) => self.kernel_cache().inval_entry(parent, &name),
            None => log::warn!("shred: the emptied target could not be found to remove its entry"),
        }
        Ok(())
    }
}
