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
    /// Directories only: the directory key, `None` if its metadata failed to
    /// authenticate (every operation inside then fails with EIO).
    pub dir_key: Option<Arc<DirKey>>,
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
            dir_key,
            entries_lock: Mutex::new(()),
            io: RwLock::new(FileIo::default()),
            open_handles: AtomicUsize::new(0),
            unreadable,
            key_unsynced: AtomicBool::new(false),
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

    pub fn dir_key(&self) -> Result<&Arc<DirKey>, Errno> {
        match (&self.kind, &self.dir_key) {
            (Kind::Dir, Some(k)) => Ok(k),
            (Kind::Dir, None) => Err(Errno::EIO),
            _ => Err(Errno::ENOTDIR),
        }
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

/// A poisoned lock only means another request panicked; the data it guards
/// is still consistent for our purposes, so keep serving.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub struct NodeTable {
    nodes: RwLock<HashMap<u64, Arc<Node>>>,
}

impl NodeTable {
    pub fn get(&self, ino: u64) -> Result<Arc<Node>, Errno> {
        let map = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        map.get(&ino).cloned().ok_or(Errno::ESTALE)
    }

    /// Returns the existing node for `ino` (one more lookup), or installs the
    /// one `make` builds. `make` runs without the table lock held.
    pub fn lookup_or_insert(
        &self,
        ino: u64,
        make: impl FnOnce() -> Result<Node, Errno>,
    ) -> Result<Arc<Node>, Errno> {
        if let Some(n) = self.bump(ino) {
            return Ok(n);
        }
        let node = Arc::new(make()?);
        let mut map = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ino).or_insert(node).clone();
        n.lookups.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    /// The node for `ino` (counted as one more lookup) if `pred` accepts it.
    pub fn bump_if(&self, ino: u64, pred: impl FnOnce(&Node) -> bool) -> Option<Arc<Node>> {
        let map = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let n = map.get(&ino).filter(|n| pred(n))?;
        n.lookups.fetch_add(1, Ordering::Relaxed);
        Some(n.clone())
    }

    fn bump(&self, ino: u64) -> Option<Arc<Node>> {
        let map = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let n = map.get(&ino)?;
        n.lookups.fetch_add(1, Ordering::Relaxed);
        Some(n.clone())
    }

    pub fn insert_root(&self, node: Node) {
        node.lookups.store(1, Ordering::Relaxed);
        let mut map = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        map.insert(node.ino, Arc::new(node));
    }

    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let gone = {
            let mut map = self.nodes.write().unwrap_or_else(|e| e.into_inner());
            let Some(node) = map.get(&ino) else {
                return;
            };
            let prev = node.lookups.fetch_sub(
                n.min(node.lookups.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            if prev > n {
                return;
            }
            map.remove(&ino)
        };
        // Dropped outside the table lock: closing the last descriptor of an
        // unlinked inode makes the backing filesystem free it (~0.1 ms on
        // disk), and every other request would wait for the lock meanwhile.
        drop(gone);
    }

    pub fn len(&self) -> usize {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
