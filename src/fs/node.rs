//! Inode table: maps FUSE inode numbers to backing O_PATH descriptors and to
//! their place in the tree. It must not do crypto or touch file contents.

use super::file_io::FileIo;
use super::Errno;
use crate::crypto::DirKey;
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const ROOT_INO: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => Kind::File,
        }
    }
}

/// Where a node sits: its parent directory and its names. For a hard link
/// this is the most recently looked-up name (links never cross directories).
#[derive(Clone)]
pub struct Location {
    pub parent: u64,
    pub cipher_name: String,
    pub plain_name: Vec<u8>,
}

pub struct Node {
    pub ino: u64,
    pub kind: Kind,
    /// O_PATH|O_NOFOLLOW descriptor: survives renames and pins the backing
    /// inode, so its number cannot be reused while the kernel knows the node.
    pub fd: OwnedFd,
    pub loc: Mutex<Location>,
    lookups: AtomicU64,
    /// Directories only: the directory key (see [`DirKeySlot`]). Revocable:
    /// `CoreFs::lock_keys` empties it, the next use derives it again.
    dir_key: RwLock<DirKeySlot>,
    /// Serialises entry mutations (create/unlink/rename/rmdir) in a directory.
    pub entries_lock: Mutex<()>,
    /// Regular files only: header, DEK and size, shared by all open handles.
    pub io: RwLock<FileIo>,
    pub open_handles: AtomicUsize,
    /// The entry's encrypted name did not authenticate: contents are refused.
    pub unreadable: bool,
    /// Directories made by this daemon whose key file is not yet known to
    /// be on stable storage (see `CoreFs::mkdir`).
    pub key_unsynced: AtomicBool,
    /// The table no longer holds this node (see `NodeTable::retire`).
    retired: AtomicBool,
    /// Under a shred in progress or done: never renamed again.
    pub shredded: AtomicBool,
}

impl Node {
    pub fn new(
        ino: u64,
        kind: Kind,
        fd: OwnedFd,
        loc: Location,
        dir_key: Option<Arc<DirKey>>,
        unreadable: bool,
    ) -> Node {
        Node {
            ino,
            kind,
            fd,
            loc: Mutex::new(loc),
            lookups: AtomicU64::new(0),
            dir_key: RwLock::new(match (kind, dir_key) {
                (Kind::Dir, Some(k)) => DirKeySlot::Key(k),
                _ => DirKeySlot::Absent,
            }),
            entries_lock: Mutex::new(()),
            io: RwLock::new(FileIo::default()),
            open_handles: AtomicUsize::new(0),
            unreadable,
            key_unsynced: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            shredded: AtomicBool::new(false),
        }
    }

    pub fn location(&self) -> Location {
        lock(&self.loc).clone()
    }

    pub fn parent(&self) -> u64 {
        lock(&self.loc).parent
    }

    pub fn set_location(&self, loc: Location) {
        *lock(&self.loc) = loc;
    }

    /// Makes this directory's key file and its entry durable, once.
    pub fn sync_key(&self) -> Result<(), Errno> {
        if !self.key_unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let flush = || -> Result<(), Errno> {
            for name in [crate::format::DIR_META_NAME, "."] {
                let fd = rustix::fs::openat(
                    &self.fd,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::fsync(&fd)?;
            }
            Ok(())
        };
        flush().inspect_err(|_| self.key_unsynced.store(true, Ordering::Release))
    }

    /// The directory key as held now; `EKEYREVOKED` after a lock (the core
    /// derives it again through `CoreFs::dir_key_of`).
    pub fn dir_key(&self) -> Result<Arc<DirKey>, Errno> {
        if self.kind != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        match &*self.dir_key.read().unwrap_or_else(|e| e.into_inner()) {
            DirKeySlot::Key(k) => Ok(k.clone()),
            DirKeySlot::Absent | DirKeySlot::Shredded => Err(Errno::EIO),
            DirKeySlot::Revoked => Err(Errno::EKEYREVOKED),
        }
    }

    /// Drops the directory key; true if there was one. Requests already
    /// holding a clone finish with it, the last one wipes it.
    pub fn revoke_dir_key(&self) -> bool {
        let mut slot = self.dir_key.write().unwrap_or_else(|e| e.into_inner());
        let had = matches!(*slot, DirKeySlot::Key(_));
        if had {
            *slot = DirKeySlot::Revoked;
        }
        had
    }

    /// Installs a key derived again after an unlock, unless another request
    /// already did (both derived the same key from the same metadata); EIO
    /// once the directory was shredded.
    pub fn restore_dir_key(&self, k: Arc<DirKey>) -> Result<Arc<DirKey>, Errno> {
        let mut slot = self.dir_key.write().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            DirKeySlot::Key(cur) => Ok(cur.clone()),
            DirKeySlot::Shredded => Err(Errno::EIO),
            _ => {
                *slot = DirKeySlot::Key(k.clone());
                Ok(k)
            }
        }
    }

    /// A shred: drops the directory key for good (EIO from now on, never
    /// derived again); true if there was one.
    pub fn shred_dir_key(&self) -> bool {
        let mut slot = self.dir_key.write().unwrap_or_else(|e| e.into_inner());
        let had = matches!(*slot, DirKeySlot::Key(_));
        *slot = DirKeySlot::Shredded;
        had
    }

    pub fn has_dir_key(&self) -> bool {
        matches!(
            *self.dir_key.read().unwrap_or_else(|e| e.into_inner()),
            DirKeySlot::Key(_)
        )
    }
}

impl Drop for Node {
    /// The kernel forgot a directory whose key was never flushed: flush it
    /// now, since nobody will remember to later.
    fn drop(&mut self) {
        if self.key_unsynced.load(Ordering::Acquire) {
            // ENOENT: the directory was removed, its key with it.
            if let Err(e) = self.sync_key().or_else(|e| match e {
                Errno::ENOENT => Ok(()),
                e => Err(e),
            }) {
                log::warn!(
                    "could not flush a directory key (inode {}): errno {}",
                    self.ino,
                    e.0
                );
            }
        }
    }
}

/// What a node holds of its directory key.
pub enum DirKeySlot {
    /// Not a directory, or its metadata failed to authenticate (every
    /// operation inside then fails with EIO).
    Absent,
    Key(Arc<DirKey>),
    /// Wiped by a lock; derived again from the metadata on next use.
    Revoked,
    /// Destroyed by a shred: EIO for good.
    Shredded,
}

/// A poisoned lock only means another request panicked; the data it guards
/// is still consistent for our purposes, so keep serving.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A table slot. `Retired` is a file whose last link and last handle are
/// gone and whose descriptor was closed before the kernel's FORGET, to give
/// its space back on a full disk (`CoreFs::reclaim_unlinked`). The slot
/// keeps the kernel's lookup count so a later FORGET, or a new file that
/// reuses the backing inode number, still adds up; requests for it get
/// ESTALE (an open that raced the removal: the kernel looks the name up
/// again, once).
enum Slot {
    Live(Arc<Node>),
    Retired(u64),
}

#[derive(Default)]
pub struct NodeTable {
    nodes: RwLock<HashMap<u64, Slot>>,
}

impl NodeTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Slot>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Slot>> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, ino: u64) -> Result<Arc<Node>, Errno> {
        match self.read().get(&ino) {
            Some(Slot::Live(n)) => Ok(n.clone()),
            _ => Err(Errno::ESTALE),
        }
    }

    /// Returns the existing node for `ino` (one more lookup), or installs the
    /// one `make` builds. `make` runs without the table lock held.
    pub fn lookup_or_insert(
        &self,
        ino: u64,
        make: impl FnOnce() -> Result<Node, Errno>,
    ) -> Result<Arc<Node>, Errno> {
        if let Some(n) = self.bump_if(ino, |_| true) {
            return Ok(n);
        }
        let node = Arc::new(make()?);
        let mut map = self.write();
        let slot = map.entry(ino).or_insert(Slot::Retired(0));
        let n = match slot {
            Slot::Live(n) => n.clone(),
            // A new inode with the number of a retired one: the kernel's
            // count for the number carries on.
            Slot::Retired(k) => {
                node.lookups.store(*k, Ordering::Relaxed);
                *slot = Slot::Live(node.clone());
                node
            }
        };
        n.lookups.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    /// The node for `ino` (counted as one more lookup) if `pred` accepts it.
    pub fn bump_if(&self, ino: u64, pred: impl FnOnce(&Node) -> bool) -> Option<Arc<Node>> {
        let map = self.read();
        let Some(Slot::Live(n)) = map.get(&ino).filter(|s| match s {
            Slot::Live(n) => pred(n),
            Slot::Retired(_) => false,
        }) else {
            return None;
        };
        n.lookups.fetch_add(1, Ordering::Relaxed);
        Some(n.clone())
    }

    pub fn insert_root(&self, node: Node) {
        node.lookups.store(1, Ordering::Relaxed);
        self.write().insert(node.ino, Slot::Live(Arc::new(node)));
    }

    /// Live regular files without an open handle (candidates for `retire`).
    pub fn idle_files(&self) -> Vec<Arc<Node>> {
        self.read()
            .values()
            .filter_map(|s| match s {
                Slot::Live(n)
                    if n.kind == Kind::File && n.open_handles.load(Ordering::Acquire) == 0 =>
                {
                    Some(n.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Takes an unlinked, unopened file out of the table; its descriptor
    /// closes when the caller's reference goes. The caller holds the node's
    /// `io` lock, which `revive` also needs, so no handle can appear between
    /// its check of `open_handles` and this.
    pub fn retire(&self, node: &Arc<Node>) {
        let gone = {
            let mut map = self.write();
            let Some(slot) = map.get_mut(&node.ino) else {
                return;
            };
            if !matches!(slot, Slot::Live(n) if Arc::ptr_eq(n, node)) {
                return;
            }
            node.retired.store(true, Ordering::Release);
            match node.lookups.load(Ordering::Relaxed) {
                0 => map.remove(&node.ino),
                k => Some(std::mem::replace(slot, Slot::Retired(k))),
            }
        };
        drop(gone);
    }

    /// An open that raced a `retire` won: the node serves again under the
    /// kernel's count, as an open-but-unlinked file does.
    pub fn revive(&self, node: &Arc<Node>) {
        // Checked first: this runs on every open, the swap almost never.
        if !node.retired.load(Ordering::Acquire) || !node.retired.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut map = self.write();
        let k = match map.get(&node.ino) {
            Some(Slot::Retired(k)) => *k,
            // The descriptor this node holds pins the inode number, so the
            // slot cannot have gone to another node.
            _ => return,
        };
        node.lookups.store(k, Ordering::Relaxed);
        map.insert(node.ino, Slot::Live(node.clone()));
    }

    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let gone = {
            let mut map = self.write();
            let Some(slot) = map.get_mut(&ino) else {
                return;
            };
            let left = match slot {
                Slot::Live(node) => {
                    let prev = node.lookups.fetch_sub(
                        n.min(node.lookups.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                    prev.saturating_sub(n)
                }
                Slot::Retired(k) => {
                    *k = k.saturating_sub(n);
                    *k
                }
            };
            if left > 0 {
                return;
            }
            map.remove(&ino)
        };
        // Dropped outside the table lock: closing the last descriptor of an
        // unlinked inode makes the backing filesystem free its blocks, and
        // every other request would wait for the lock meanwhile.
        drop(gone);
    }

    /// Every live node, for lock and status (the table lock is not held
    /// while the caller works on them).
    pub fn live(&self) -> Vec<Arc<Node>> {
        self.read()
            .values()
            .filter_map(|s| match s {
                Slot::Live(n) => Some(n.clone()),
                Slot::Retired(_) => None,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ino: u64) -> Result<Node, Errno> {
        let fd = rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
        let loc = Location {
            parent: ROOT_INO,
            cipher_name: String::new(),
            plain_name: Vec::new(),
        };
        Ok(Node::new(ino, Kind::File, fd, loc, None, false))
    }

    #[test]
    fn retired_slot_keeps_the_kernel_count_across_inode_reuse() {
        let t = NodeTable::default();
        let a = t.lookup_or_insert(5, || node(5)).expect("insert");
        t.lookup_or_insert(5, || node(5)).expect("second lookup");
        t.retire(&a);
        assert_eq!(t.get(5).err(), Some(Errno::ESTALE));
        assert!(t.bump_if(5, |_| true).is_none());
        // A new inode with the same number: the kernel's count (2) goes on.
        let b = t.lookup_or_insert(5, || node(5)).expect("reuse");
        assert!(!Arc::ptr_eq(&a, &b));
        t.forget(5, 2);
        assert!(t.get(5).is_ok(), "one lookup is left");
        t.forget(5, 1);
        assert_eq!((t.get(5).err(), t.len()), (Some(Errno::ESTALE), 0));
    }

    #[test]
    fn retired_slot_goes_at_forget_and_revive_restores_the_node() {
        let t = NodeTable::default();
        let a = t.lookup_or_insert(7, || node(7)).expect("insert");
        t.retire(&a);
        t.revive(&a);
        assert!(Arc::ptr_eq(&t.get(7).expect("revived"), &a));
        t.retire(&a);
        assert_eq!(t.len(), 1);
        t.forget(7, 5);
        assert_eq!(t.len(), 0);
        // Retiring a node the table no longer holds changes nothing.
        t.retire(&a);
        t.revive(&a);
        assert_eq!(t.len(), 0);
    }
}
