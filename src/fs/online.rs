//! The engine's online source: a whole-tree walk of a mounted volume through
//! the live core. Directories come from the core's node table (so a walk
//! sees the keys the daemon serves with, and the nodes stay the daemon's
//! one node per inode), and each file or symlink is visited under its
//! node's I/O lock, so no write, truncate or rewrap of the daemon changes
//! it meanwhile. In rekey mode (`rekey_source`) it holds each file
//! exclusively, each directory's key file under its parent's entry lock,
//! runs the visitor's deferred second step after a batch sync and puts
//! rewritten key slots into cached headers; the writes themselves are the
//! visitor's. It must not write on its own (attaching a node may re-key an
//! empty directory that lost its key, as any lookup does) and must not hold
//! a lock across more than one object: a walk never blocks creates,
//! removes or renames for longer than that.

use super::lookup::Found;
use super::node::Node;
use super::{CoreError, CoreFs, Errno, ROOT_INO};
use crate::crypto::DirKey;
use crate::engine::fsck::{self, Report};
use crate::engine::rekey_live::{Later, Left, Rewritten, SLOTS_AT};
use crate::engine::source::{DirKeyState, Held, Source};
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A walk of the live tree. Every node it attaches counts as one lookup of
/// the core's, given back when the walker is done with the object, so the
/// kernel's own FORGETs keep their meaning.
pub struct Live<'a> {
    core: &'a CoreFs,
    /// Set for a rekey walk: objects are held exclusively (no reader or
    /// writer of the file meanwhile), each directory's key file under its
    /// parent's entry lock (no move of it meanwhile), and a header the
    /// visitor rewrote (left here) replaces the open file's cached copy.
    rekey: Option<Rewritten>,
    /// Files whose second rewrap step waits for the batch's sync; each
    /// keeps its lookup (so its node, and the node's I/O lock, stay the
    /// daemon's) until then.
    staged: Vec<(Arc<Node>, Later)>,
    /// Called after each object, with nothing held (a walk that gives way
    /// to the workload sleeps here, never under a file's or entry lock).
    pace: Option<&'a mut dyn FnMut()>,
    /// The node behind each directory descriptor handed to the walker, and
    /// whether this source holds a lookup of it.
    dirs: HashMap<RawFd, (Arc<Node>, bool)>,
}

impl CoreFs {
    /// A walk source over this live core (see `engine::walk`).
    pub fn live_source(&self) -> Live<'_> {
        Live {
            core: self,
            rekey: None,
            staged: Vec::new(),
            pace: None,
            dirs: HashMap::new(),
        }
    }

    /// A walk source for rewriting key slots (see `Live::rekey`): the
    /// visitor leaves each header it wrote in `rewritten`.
    pub fn rekey_source(&self, rewritten: Rewritten) -> Live<'_> {
        Live {
            core: self,
            rekey: Some(rewritten),
            staged: Vec::new(),
            pace: None,
            dirs: HashMap::new(),
        }
    }

    /// Authenticates every key, name, header, block and symlink target of
    /// the mounted volume without stopping it (read-only; repairs stay
    /// offline).
    /// A lock during the check waits for nothing, but the volume keys the
    /// check holds are wiped only when it ends.
    pub fn check_live(&self) -> io::Result<Report> {
        let keys = self.vkeys().map_err(|e| io_err(e.into()))?;
        fsck::check_source(self.live_source(), &keys)
    }
}

fn io_err(e: CoreError) -> io::Error {
    match e {
        CoreError::Sys(Errno(n)) => io::Error::from_raw_os_error(n),
        e => io::Error::other(format!("{e:?}")),
    }
}

/// A descriptor of a node's directory that can list it (the node's own is
/// O_PATH).
fn open_listable(node: &Node) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(&node.fd, ".", flags, Mode::empty())?)
}

/// A directory's key as the core serves it (derived again if a lock wiped
/// it); a locked volume stops the walk.
fn key_state(core: &CoreFs, node: &Node) -> io::Result<DirKeyState> {
    match core.dir_key_of(node) {
        Ok(k) => Ok(DirKeyState::Open(k)),
        Err(e) if e == Errno::EKEYREVOKED => Err(io_err(e)),
        Err(_) => Ok(DirKeyState::Damaged("directory key does not open".into())),
    }
}

/// Files staged per sync by a rekey walk.
const BATCH: usize = 128;

/// A rewritten header's key slots into a file's cached header (its fixed
/// part, which the daemon keeps current, stays); an unloaded state reads
/// the disk on next use.
fn install(io: &mut super::file_io::FileIo, h: &[u8; crate::format::HEADER_LEN]) {
    if !io.is_loaded() {
        return;
    }
    if let Some(cur) = io.header() {
        let mut new = *cur;
        new[SLOTS_AT..].copy_from_slice(&h[SLOTS_AT..]);
        io.set_header(new);
    }
}

impl<'a> Live<'a> {
    /// Calls `pace` after each object, outside every lock.
    pub fn paced(mut self, pace: &'a mut dyn FnMut()) -> Live<'a> {
        self.pace = Some(pace);
        self
    }

    fn after_object(&mut self) {
        if let Some(p) = self.pace.as_mut() {
            p();
        }
    }

    /// One filesystem sync makes the staged files' new slots durable; then
    /// each is held again to clear its old slot.
    fn flush(&mut self) -> io::Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let mut res = match staged.first() {
            Some((_, first)) => rustix::fs::syncfs(&first.file).map_err(io::Error::from),
            None => return Ok(()),
        };
        for (node, l) in staged {
            if res.is_ok() {
                let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
                match (l.finish)(&l.file) {
                    Ok(Some(h)) => install(&mut io, &h),
                    Ok(None) => {}
                    Err(e) => res = Err(e),
                }
            }
            self.core.forget(node.ino, 1);
        }
        res
    }

    fn parent(&self, dir: BorrowedFd<'_>) -> io::Result<Arc<Node>> {
        match self.dirs.get(&dir.as_raw_fd()) {
            Some((n, _)) => Ok(n.clone()),
            None => Err(io::Error::other("directory not handed out by this source")),
        }
    }

    /// The node of entry `name` of `dir`, with one more lookup, or `None`
    /// when it is gone.
    fn attach(
        &self,
        dir: BorrowedFd<'_>,
        dir_key: &DirKey,
        name: &str,
        plain: &[u8],
    ) -> io::Result<Option<Arc<Node>>> {
        let pnode = self.parent(dir)?;
        match self.core.attach(&pnode, dir_key, Found::named(name, plain)) {
            Ok((node, _)) => Ok(Some(node)),
            Err(e) if e == Errno::ENOENT => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }
}

impl Source for Live<'_> {
    fn root(&mut self) -> io::Result<(OwnedFd, DirKeyState)> {
        let node = self.core.node(ROOT_INO).map_err(io_err)?;
        let fd = open_listable(&node)?;
        let state = key_state(self.core, &node)?;
        // The root is never forgotten: no lookup taken, none given back.
        self.dirs.insert(fd.as_raw_fd(), (node, false));
        Ok((fd, state))
    }

    fn child(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_key: &DirKey,
        name: &str,
        plain: &[u8],
    ) -> io::Result<(OwnedFd, DirKeyState)> {
        let Some(node) = self.attach(parent, parent_key, name, plain)? else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let fd = match open_listable(&node) {
            Ok(fd) => fd,
            Err(e) => {
                self.core.forget(node.ino, 1);
                return Err(e);
            }
        };
        let state = match key_state(self.core, &node) {
            Ok(s) => s,
            Err(e) => {
                self.core.forget(node.ino, 1);
                return Err(e);
            }
        };
        self.dirs.insert(fd.as_raw_fd(), (node, true));
        Ok((fd, state))
    }

    fn leave(&mut self, dir: BorrowedFd<'_>) {
        if let Some((node, true)) = self.dirs.remove(&dir.as_raw_fd()) {
            self.core.forget(node.ino, 1);
        }
    }

    fn hold(
        &mut self,
        dir: BorrowedFd<'_>,
        dir_key: &DirKey,
        obj: Held<'_>,
        visit: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(node) = self.attach(dir, dir_key, obj.name, obj.plain)? else {
            return Ok(());
        };
        // Held only if the name still leads to the inode the walker listed;
        // the visitor checks the inode it opens against the same number.
        let r = if node.ino != self.core.fuse_ino(obj.ino) {
            Ok(())
        } else if let Some(cell) = self.rekey.clone() {
            let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
            cell.set(None);
            let r = visit();
            match cell.take() {
                Some(Left::Header(h)) => install(&mut io, &h),
                Some(Left::Later(l)) => {
                    drop(io);
                    // The lookup goes with the staged entry.
                    self.staged.push((node, l));
                    if self.staged.len() >= BATCH {
                        self.flush()?;
                    }
                    self.after_object();
                    return r;
                }
                None => {}
            }
            r
        } else {
            let _still = node.io.read().unwrap_or_else(|e| e.into_inner());
            visit()
        };
        self.core.forget(node.ino, 1);
        self.after_object();
        r
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn hold_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        visit: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let node = self.parent(dir)?;
        if self.rekey.is_none() || node.ino == ROOT_INO {
            return visit();
        }
        // A move of the directory rewrites its key file under both parents'
        // entry locks: holding the parent's keeps the two rewrites apart.
        let Ok(parent) = self.core.node(node.parent()) else {
            return Ok(());
        };
        let r = {
            let _entries = super::node::lock(&parent.entries_lock);
            // Moved since the walker chose its parent key: the next pass
            // finds it under its new parent.
            if node.parent() == parent.ino {
                visit()
            } else {
                Ok(())
            }
        };
        self.after_object();
        r
    }
}
