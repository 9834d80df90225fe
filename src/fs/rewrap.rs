//! The crash-safe two-slot rewrap of what is keyed to a directory (a file's
//! header, a subdirectory's key file): give each object a second key slot
//! for its target wrapping and make it durable, commit the change that
//! needs the new slot, sync, and only then clear the old slot, so that a
//! crash at any point leaves every object readable wherever it is. Used by
//! cross-directory rename now and by rekey next. It must not decide what
//! moves where (the caller's commit does) and never touches file contents.

use super::node::{Kind, Node};
use super::{read_small, write_small_atomic, CoreError, CoreFs, Errno, FsResult};
use crate::crypto::DirKey;
use crate::format::{DIR_META_LEN, DIR_META_NAME, HEADER_LEN};
use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::RwLockWriteGuard;

/// What an object is rewrapped to. Rekey adds a variant for a new KEK
/// (same parent, new key-encryption key).
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// The object's directory after the commit.
    Parent(&'a DirKey),
}

/// One object to rewrap, as it is before the commit.
pub(super) struct Object<'a> {
    /// The directory holding it, and the key it is wrapped to there.
    pub dir: &'a Node,
    pub key: &'a DirKey,
    /// Its backing name in `dir`.
    pub name: &'a str,
    pub kind: Kind,
    /// Its node, if the kernel knows it: an open file's header is cached.
    pub node: Option<&'a Node>,
    pub target: Target<'a>,
}

/// The whole change: the objects, the directories whose entries the commit
/// changes (synced before any old slot goes), and the crash point between.
pub(super) struct Plan<'a> {
    pub objects: &'a [Object<'a>],
    pub dirs: &'a [&'a Node],
    pub failpoint: &'static str,
}

/// An object with both slots on disk: what to write to finish or undo.
enum Staged {
    Header {
        file: File,
        old: [u8; HEADER_LEN],
        fin: [u8; HEADER_LEN],
    },
    DirKey {
        dir: OwnedFd,
        old: Vec<u8>,
        fin: [u8; DIR_META_LEN],
    },
    /// Nothing keyed to the parent (empty file, FIFO, device, socket).
    Nothing,
}

type IoGuard<'a> = RwLockWriteGuard<'a, super::file_io::FileIo>;

impl CoreFs {
    /// Runs `plan` around `commit` (a rename, or nothing for rekey). On an
    /// error before or in the commit every object gets its old bytes back;
    /// after the commit the change stands and an error only leaves the old
    /// slot in place (still readable, cleared by the next rewrap).
    pub(super) fn rewrap(
        &self,
        plan: &Plan<'_>,
        commit: impl FnOnce() -> FsResult<()>,
    ) -> FsResult<()> {
        // Writers of an open file are held off from reading its header to
        // installing the final one; taken in inode order, as two at once.
        let mut order: Vec<usize> = (0..plan.objects.len()).collect();
        order.sort_by_key(|&i| plan.objects[i].node.map(|n| n.ino));
        let mut guards: Vec<Option<IoGuard<'_>>> = plan.objects.iter().map(|_| None).collect();
        for i in order {
            if let (Some(n), Kind::File) = (plan.objects[i].node, plan.objects[i].kind) {
                guards[i] = Some(n.io.write().unwrap_or_else(|e| e.into_inner()));
            }
        }
        let mut staged = Vec::with_capacity(plan.objects.len());
        for o in plan.objects {
            match self.stage(o) {
                Ok(s) => staged.push(s),
                Err(e) => {
                    unstage(&staged);
                    return Err(e);
                }
            }
        }
        if let Err(e) = commit() {
            unstage(&staged);
            return Err(e);
        }
        // No old slot to clear (empty files, FIFOs): nothing depends on
        // the commit being durable before the next step.
        if staged.iter().all(|s| matches!(s, Staged::Nothing)) {
            return Ok(());
        }
        for d in plan.dirs {
            if let Err(e) = fsync_dir(d) {
                log::error!(
                    "could not sync {} after a rewrap (errno {}): old key slots kept",
                    self.plain_path(d.ino),
                    e.0
                );
                return Ok(());
            }
        }
        crate::failpoint::hit(plan.failpoint);
        for (s, g) in staged.iter().zip(guards.iter_mut()) {
            if let Err(e) = finish(s) {
                log::warn!("could not clear an old key slot ({e:?}): kept");
                continue;
            }
            if let (Staged::Header { fin, .. }, Some(g)) = (s, g.as_mut()) {
                if g.is_loaded() {
                    g.set_header(*fin);
                }
            }
        }
        Ok(())
    }

    /// Writes and syncs the both-slots form of one object.
    fn stage(&self, o: &Object<'_>) -> FsResult<Staged> {
        let Target::Parent(to) = o.target;
        match o.kind {
            Kind::File => {
                let fd = rustix::fs::openat(
                    &o.dir.fd,
                    o.name,
                    OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME,
                    Mode::empty(),
                )?;
                let file = File::from(fd);
                if file.metadata()?.len() == 0 {
                    return Ok(Staged::Nothing);
                }
                let mut old = [0u8; HEADER_LEN];
                file.read_exact_at(&mut old, 0)?;
                let keys = self.vkeys()?;
                let fk = keys
                    .open_file(o.key, &old)
                    .map_err(|e| self.damaged(o, &format!("header: {e}")))?;
                let (both, fin) = keys
                    .rewrap_file_move(&fk, o.key, to, &old)
                    .map_err(CoreError::Crypto)?;
                file.write_all_at(&both, 0)?;
                file.sync_data()?;
                Ok(Staged::Header { file, old, fin })
            }
            Kind::Dir => {
                let dir = rustix::fs::openat(
                    &o.dir.fd,
                    o.name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let old = read_small(&dir, DIR_META_NAME, DIR_META_LEN)?;
                let keys = self.vkeys()?;
                let dkey = keys
                    .open_dir(o.key, &old)
                    .map_err(|e| self.damaged(o, &format!("directory key: {e}")))?;
                let (both, fin) = keys
                    .rewrap_dir_move(&dkey, o.key, to, &old)
                    .map_err(CoreError::Crypto)?;
                write_small_atomic(&dir, DIR_META_NAME, &both)?;
                // The key file's rename must be durable before the commit.
                fsync_dir_fd(&dir)?;
                Ok(Staged::DirKey { dir, old, fin })
            }
            _ => Ok(Staged::Nothing),
        }
    }

    /// The error for a damaged object met while moving it; reported with
    /// its directory's path when the adapter maps it.
    fn damaged(&self, o: &Object<'_>, what: &str) -> CoreError {
        self.integrity(o.dir.ino, format!("moving {}: {what}", o.name))
    }
}

fn finish(s: &Staged) -> FsResult<()> {
    match s {
        Staged::Header { file, fin, .. } => Ok(file.write_all_at(fin, 0)?),
        Staged::DirKey { dir, fin, .. } => write_small_atomic(dir, DIR_META_NAME, fin),
        Staged::Nothing => Ok(()),
    }
}

/// Best effort: an object left with both slots stays readable, only less
/// tightly bound to its directory, so a failure here is not reported.
fn unstage(staged: &[Staged]) {
    for s in staged {
        match s {
            Staged::Header { file, old, .. } => {
                let _ = file.write_all_at(old, 0);
            }
            Staged::DirKey { dir, old, .. } => {
                let _ = write_small_atomic(dir, DIR_META_NAME, old);
            }
            Staged::Nothing => {}
        }
    }
}

fn fsync_dir(node: &Node) -> Result<(), Errno> {
    fsync_dir_fd(&node.fd)
}

/// fsync of a directory held by an O_PATH descriptor.
fn fsync_dir_fd(fd: &impl AsFd) -> Result<(), Errno> {
    let d = rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsync(&d)?;
    Ok(())
}
