//! Live key control of the core: the volume keys, directory keys and file
//! keys as revocable state (lock, unlock, revoke a subtree), the kernel-cache
//! invalidation that goes with them, and the live counters `dekfs status`
//! shows. It must not read credentials or talk to the control socket (the
//! daemon does), and it never logs or returns key bytes.

use super::node::{lock, Kind, Node};
use super::{read_small, CoreError, CoreFs, Errno, FsResult, OpenDir, ROOT_INO};
use crate::crypto::{DirKey, VolumeKeys};
use crate::format::{DIR_META_LEN, DIR_META_NAME};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Live figures kept by the core: plain atomics, bumped on the I/O paths.
pub(super) struct Live {
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    /// `error::integrity_errors()` when this core started.
    integrity_base: u64,
    /// One log line per lock for the refusals it causes, not one per request.
    refusal_logged: AtomicBool,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            integrity_base: super::error::integrity_errors(),
            refusal_logged: AtomicBool::new(false),
        }
    }
}

/// What `CoreFs::stats` reports (no key material, only counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub locked: bool,
    pub kek_version: Option<u32>,
    pub open_files: u64,
    pub cached_dir_keys: u64,
    pub cached_file_keys: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub integrity_errors: u64,
}

/// What a lock wiped, for the log and the control answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockOutcome {
    pub already_locked: bool,
    pub dir_keys: usize,
    pub file_keys: usize,
    pub inodes_invalidated: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InstallError {
    /// Only a locked core takes keys (replacing live keys is the rekey's job).
    NotLocked,
    /// The keys do not open the root directory's metadata.
    WrongKey,
    /// The root metadata could not be read.
    Io(String),
    /// Only an unlocked core has keys to replace.
    Locked,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::NotLocked => f.write_str("the volume is not locked"),
            InstallError::WrongKey => f.write_str("the key does not open this volume"),
            InstallError::Io(e) => write!(f, "cannot read the root directory metadata: {e}"),
            InstallError::Locked => f.write_str("the volume is locked"),
        }
    }
}

impl CoreFs {
    /// The volume keys, or `EKEYREVOKED` while locked (logged once per lock).
    pub(super) fn vkeys(&self) -> Result<Arc<VolumeKeys>, Errno> {
        if let Some(k) = &*self.keys.read().unwrap_or_else(|e| e.into_inner()) {
            return Ok(k.clone());
        }
        if !self.live.refusal_logged.swap(true, Ordering::Relaxed) {
            log::warn!("volume is locked: refusing access (EKEYREVOKED) until `dekfs unlock`");
        }
        Err(Errno::EKEYREVOKED)
    }

    pub fn is_locked(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Fails with `EKEYREVOKED` while locked: for operations that need no
    /// key but would still show the tree (attributes).
    pub(super) fn check_unlocked(&self) -> FsResult<()> {
        self.vkeys().map(drop).map_err(CoreError::from)
    }

    /// A directory's key, derived again from its metadata (and its
    /// parents', as far up as needed) if a lock wiped it.
    pub(super) fn dir_key_of(&self, node: &Node) -> FsResult<Arc<DirKey>> {
        match node.dir_key() {
            Err(Errno::EKEYREVOKED) => {}
            r => return Ok(r?),
        }
        let keys = self.vkeys()?;
        let meta = read_small(&node.fd, DIR_META_NAME, DIR_META_LEN)?;
        let key = if node.ino == ROOT_INO {
            keys.open_root_dir(&meta)
        } else {
            let parent = self.node(node.parent())?;
            let pkey = self.dir_key_of(&parent)?;
            keys.open_dir(&pkey, &meta)
        }
        .map_err(|e| self.integrity(node.ino, format!("directory key: {e}")))?;
        Ok(node.restore_dir_key(Arc::new(key))?)
    }

    /// Wipes every key the core holds: the volume keys (KEKs), every
    /// directory key and every file key (with the content, name and xattr
    /// keys derived from them), and drops the kernel's cached pages,
    /// attributes and names. The mount stays; requests then fail with
    /// `EKEYREVOKED` until `install_keys`. A write in progress finishes
    /// first (each file's key goes under its `io` lock, which writes hold).
    pub fn lock_keys(&self) -> LockOutcome {
        // First pass with the keys still there: dirty pages of a writeback
        // cache are written back, not lost.
        self.invalidate_kernel(|_| true);
        let old = self.keys.write().unwrap_or_else(|e| e.into_inner()).take();
        let already_locked = old.is_none();
        drop(old);
        self.live.refusal_logged.store(false, Ordering::Relaxed);
        let mut out = self.revoke_nodes(|_| true);
        out.already_locked = already_locked;
        // Second pass: whatever a request cached between the first pass and
        // the revocation goes too; nothing can be decrypted any more.
        out.inodes_invalidated = self.invalidate_kernel(|_| true);
        log::info!(
            "locked: wiped the volume keys, {} directory key(s) and {} file key(s); \
             invalidated {} inode(s) in the kernel",
            out.dir_keys,
            out.file_keys,
            out.inodes_invalidated
        );
        out
    }

    /// Installs unlocked volume keys into a locked core after checking they
    /// open the root directory. Directory and file keys are derived again
    /// on first use, so open handles keep working.
    pub fn install_keys(&self, keys: Arc<VolumeKeys>) -> Result<(), InstallError> {
        if !self.is_locked() {
            return Err(InstallError::NotLocked);
        }
        let root = self
            .node(ROOT_INO)
            .map_err(|e| InstallError::Io(e.to_string()))?;
        let meta = read_small(&root.fd, DIR_META_NAME, DIR_META_LEN)
            .map_err(|e| InstallError::Io(e.to_string()))?;
        let root_key = keys
            .open_root_dir(&meta)
            .map_err(|_| InstallError::WrongKey)?;
        let mut slot = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(InstallError::NotLocked);
        }
        let _ = root.restore_dir_key(Arc::new(root_key));
        *slot = Some(keys);
        drop(slot);
        log::info!("unlocked: volume keys installed");
        Ok(())
    }

    /// The volume keys the core serves with, `None` while locked (for the
    /// daemon's rotation, which must hold the same set).
    pub fn current_keys(&self) -> Option<Arc<VolumeKeys>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the volume keys of an *unlocked* core (a KEK rotation: the
    /// new set adds KEK v+1 as the active one, later drops KEK v), after
    /// checking they open the root directory. Directory and file keys stay:
    /// they do not depend on the KEK that wraps them. New objects are keyed
    /// to the new active KEK from here on; a request that took the old set
    /// before the swap finishes with it. Returns the set it replaced, so the
    /// caller can wait for those requests to end (`Arc::strong_count`).
    pub fn replace_keys(&self, keys: Arc<VolumeKeys>) -> Result<Arc<VolumeKeys>, InstallError> {
        let root = self
            .node(ROOT_INO)
            .map_err(|e| InstallError::Io(e.to_string()))?;
        let meta = read_small(&root.fd, DIR_META_NAME, DIR_META_LEN)
            .map_err(|e| InstallError::Io(e.to_string()))?;
        keys.open_root_dir(&meta)
            .map_err(|_| InstallError::WrongKey)?;
        let mut slot = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let Some(old) = slot.take() else {
            return Err(InstallError::Locked);
        };
        *slot = Some(keys);
        Ok(old)
    }

    /// Wipes the directory and file keys of `ino` and everything below it
    /// that the core knows, and drops those inodes from the kernel's cache;
    /// the volume keys stay, so the keys come back from the metadata on next
    /// use (for shred and rekey: after rewriting a subtree's keys on disk).
    pub fn revoke_subtree(&self, ino: u64) -> LockOutcome {
        let inside = |n: &Node| self.is_below(n, ino);
        let mut out = self.revoke_nodes(inside);
        out.inodes_invalidated = self.invalidate_kernel(inside);
        out
    }

    /// Whether `n` is `top` or lies below it, by the parents the core knows.
    pub(super) fn is_below(&self, n: &Node, top: u64) -> bool {
        let mut cur = n.ino;
        for _ in 0..4096 {
            if cur == top {
                return true;
            }
            if cur == ROOT_INO {
                return false;
            }
            match self.nodes.get(cur) {
                Ok(n) => cur = n.parent(),
                Err(_) => return false,
            }
        }
        false
    }

    fn revoke_nodes(&self, which: impl Fn(&Node) -> bool) -> LockOutcome {
        let mut out = LockOutcome::default();
        for node in self.nodes.live() {
            if !which(&node) {
                continue;
            }
            if node.kind == Kind::Dir && node.revoke_dir_key() {
                out.dir_keys += 1;
            }
            if node.kind == Kind::File {
                // Waits for a write in progress on this file: it completes
                // whole with the key it started with, or has not begun.
                let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
                if io.revoke() {
                    out.file_keys += 1;
                }
            }
        }
        // Listings of open directory streams are plaintext names.
        for listing in lock(&self.dirs).values_mut() {
            *listing = Arc::new(OpenDir {
                ino: listing.ino,
                entries: Vec::new(),
            });
        }
        out
    }

    /// Asks the kernel to drop the cached data and attributes of the nodes
    /// `which` accepts, and the names it knows for them. Called without any
    /// core lock held: the kernel may send requests (writeback) meanwhile.
    pub(super) fn invalidate_kernel(&self, which: impl Fn(&Node) -> bool) -> usize {
        let nodes: Vec<_> = self.nodes.live().into_iter().filter(|n| which(n)).collect();
        let kc = self.kernel_cache();
        for n in &nodes {
            if n.ino != ROOT_INO {
                let loc = n.location();
                kc.inval_entry(loc.parent, &loc.plain_name);
            }
        }
        for n in &nodes {
            kc.inval_inode(n.ino, 0, 0);
        }
        nodes.len()
    }

    /// Live figures for `dekfs status`.
    pub fn stats(&self) -> CoreStats {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (mut dir_keys, mut file_keys) = (0, 0);
        for n in self.nodes.live() {
            match n.kind {
                Kind::Dir if n.has_dir_key() => dir_keys += 1,
                Kind::File => {
                    // A node busy with a long write is counted as holding a key.
                    let held = match n.io.try_read() {
                        Ok(io) => io.key().is_some(),
                        Err(_) => true,
                    };
                    file_keys += u64::from(held);
                }
                _ => {}
            }
        }
        CoreStats {
            locked: keys.is_none(),
            kek_version: keys.as_ref().map(|k| k.active_kek_version()),
            open_files: lock(&self.files).len() as u64,
            cached_dir_keys: dir_keys,
            cached_file_keys: file_keys,
            bytes_read: self.live.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.live.bytes_written.load(Ordering::Relaxed),
            integrity_errors: super::error::integrity_errors()
                .saturating_sub(self.live.integrity_base),
        }
    }
}

#[cfg(test)]
mod tests;
