//! Protocol-neutral filesystem core: the plaintext view of a cipher directory,
//! driven by the FUSE adapter (or by tests without a mount). It must not know
//! about FUSE types, and it never logs key material or plaintext contents.

mod activity;
mod attr;
mod blocks;
mod cancel;
mod create;
pub mod error;
pub mod file_io;
pub mod kcache;
mod keyless;
mod keystate;
mod lookup;
mod names;
pub mod node;
pub mod online;
mod open_ops;
pub mod policy;
mod readdir;
mod remove;
mod rename;
pub mod renew;
mod renew_hook;
mod renew_live;
mod rewrap;
mod shred_online;
mod xattr;

pub use activity::Activity;
pub use attr::{Attr, SetAttr, StatFs, TimeSet};
pub use cancel::Requester;
pub use error::{user_errno, CoreError, Damage, Errno, FsResult, OpenError};
pub use keystate::{CoreStats, InstallError, LockOutcome};
pub use names::RECOVERY_PREFIX;
pub use node::{Kind, ROOT_INO};
pub use renew_live::LiveRenewal;
pub use shred_online::{OnlineShred, ShredError, ShredStep};

use crate::crypto::{DirKey, VolumeKeys};
use crate::format::DIR_META_NAME;
use node::{Location, Node, NodeTable};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Who is asking: new entries are owned by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
}

pub struct OpenFile {
    pub node: Arc<Node>,
    pub file: File,
}

pub struct OpenDir {
    /// The directory streamed (a shred empties the listings under it).
    pub ino: u64,
    pub entries: Vec<names::DirEntry>,
}

pub struct CoreFs {
    /// `None` while locked (see keystate.rs); requests take a clone.
    keys: std::sync::RwLock<Option<Arc<VolumeKeys>>>,
    live: keystate::Live,
    root_backing_ino: u64,
    nodes: NodeTable,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Arc<OpenDir>>>,
    next_fh: AtomicU64,
    proc_fd: OwnedFd,
    read_only: bool,
    /// The daemon's (euid, egid): entries it creates are already owned so.
    daemon_id: (u32, u32),
    /// Bumped when space may have become reclaimable (a removal, a last
    /// close); `reclaim_unlinked` scans only when it moved since its last scan.
    space_gen: AtomicU64,
    space_scanned: AtomicU64,
    /// Set by the daemon once its FUSE session exists (see kcache.rs).
    kcache: std::sync::OnceLock<Arc<dyn kcache::KernelCache>>,
    /// Last request time, for the daemon's `idle=` timer.
    pub activity: Activity,
    /// The volume's files are paged (config `PAGED`): a file's size follows
    /// from its backing size by the paged rule.
    paged: bool,
}

impl CoreFs {
    /// Opens the cipher directory root with an already unlocked volume.
    pub fn new(
        cipherdir: &Path,
        keys: Arc<VolumeKeys>,
        read_only: bool,
    ) -> Result<CoreFs, OpenError> {
        let dir_err = |e: rustix::io::Errno| OpenError::CipherDir(cipherdir.into(), e.into());
        let root_fd = rustix::fs::open(
            cipherdir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(dir_err)?;
        let st = rustix::fs::fstat(&root_fd).map_err(dir_err)?;
        let meta = read_small(&root_fd, DIR_META_NAME, crate::format::DIR_META_LEN)
            .map_err(OpenError::RootMeta)?;
        let root_key = keys.open_root_dir(&meta).map_err(OpenError::RootKey)?;
        let proc_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OpenError::ProcFd(e.into()))?;
        let nodes = NodeTable::default();
        let loc = Location {
            parent: ROOT_INO,
            cipher_name: String::new(),
            plain_name: Vec::new(),
        };
        nodes.insert_root(Node::new(
            ROOT_INO,
            Kind::Dir,
            root_fd,
            loc,
            Some(Arc::new(root_key)),
            false,
        ));
        let paged = keys.paged_files();
        Ok(CoreFs {
            paged,
            keys: std::sync::RwLock::new(Some(keys)),
            live: keystate::Live::default(),
            root_backing_ino: st.st_ino,
            nodes,
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            proc_fd,
            read_only,
            daemon_id: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            space_gen: AtomicU64::new(1),
            space_scanned: AtomicU64::new(0),
            kcache: std::sync::OnceLock::new(),
            activity: Activity::default(),
        })
    }

    /// Backing inode numbers are stable and pinned by our O_PATH descriptors;
    /// only the root and a backing inode 1 swap places. Readdir reports the
    /// same numbers as lookup.
    pub fn fuse_ino(&self, backing: u64) -> u64 {
        if backing == self.root_backing_ino {
            ROOT_INO
        } else if backing == ROOT_INO {
            self.root_backing_ino
        } else {
            backing
        }
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.nodes.forget(ino, n);
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Open file and directory handles: `idle=` never unmounts while any
    /// is open, even if the kernel would let it go.
    pub fn open_handles(&self) -> usize {
        node::lock(&self.files).len() + node::lock(&self.dirs).len()
    }

    fn node(&self, ino: u64) -> FsResult<Arc<Node>> {
        Ok(self.nodes.get(ino)?)
    }

    /// Before a child becomes durable, so must every key it depends on:
    /// the keys of its directory and of all directories above it.
    fn sync_dir_keys(&self, mut ino: u64) -> FsResult<()> {
        while let Ok(node) = self.node(ino) {
            node.sync_key()?;
            let parent = node.parent();
            if parent == ino {
                break;
            }
            ino = parent;
        }
        Ok(())
    }

    fn dir_node(&self, ino: u64) -> FsResult<(Arc<Node>, Arc<DirKey>)> {
        let n = self.node(ino)?;
        let k = self.dir_key_of(&n)?;
        Ok((n, k))
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.read_only {
            Err(Errno(libc::EROFS).into())
        } else {
            Ok(())
        }
    }

    /// "/a/b/c" for log lines; best effort (a forgotten ancestor shows as "?").
    pub fn plain_path(&self, ino: u64) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == ROOT_INO {
                break;
            }
            match self.nodes.get(cur) {
                Ok(n) => {
                    let loc = n.location();
                    parts.push(String::from_utf8_lossy(&loc.plain_name).into_owned());
                    cur = loc.parent;
                }
                Err(_) => {
                    parts.push("?".into());
                    break;
                }
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// A damage of `ino`, located by its plaintext path. It does not log:
    /// `error::report` does, once, at the boundary (see the error module).
    fn integrity(&self, ino: u64, what: impl Into<String>) -> CoreError {
        CoreError::Damage(Damage {
            ino,
            path: self.plain_path(ino),
            what: what.into(),
        })
    }

    /// Ties a damage found below the node layer (file I/O) to its file.
    fn locate(&self, ino: u64, e: CoreError) -> CoreError {
        match e {
            CoreError::Damage(d) if d.ino == 0 => self.integrity(ino, d.what),
            e => e,
        }
    }

    /// Reports a damage the core steps over instead of failing on it.
    fn report_damage(&self, ino: u64, what: impl Into<String>) {
        if let CoreError::Damage(d) = self.integrity(ino, what) {
            error::report(&d);
        }
    }

    /// Reopens a node's O_PATH descriptor for I/O through /proc/self/fd, the
    /// only race-free way to open an inode we hold by descriptor.
    fn reopen(&self, node: &Node, flags: OFlags) -> FsResult<File> {
        use std::os::fd::AsRawFd;
        let name = node.fd.as_raw_fd().to_string();
        // Header loads and read-modify-write are our reads, not the user's:
        // they must not move atime (dekfs therefore behaves as `noatime`).
        // O_NOATIME needs ownership or CAP_FOWNER; without them, fall back.
        let open = |f: OFlags| {
            rustix::fs::openat(
                &self.proc_fd,
                name.as_str(),
                f | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open(flags | OFlags::NOATIME) {
            Err(rustix::io::Errno::PERM) => open(flags)?,
            r => r?,
        };
        Ok(File::from(fd))
    }

    fn proc_path(&self, node: &Node) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", node.fd.as_raw_fd())
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn stat_node(&self, node: &Node) -> FsResult<rustix::fs::Stat> {
        Ok(rustix::fs::statat(
            &node.fd,
            "",
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }
}

/// Reads a small metadata file (dir meta, long-name record) relative to a
/// directory descriptor, refusing anything larger than `max`.
fn read_small(dir: &impl AsFd, name: &str, max: usize) -> FsResult<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let mut buf = Vec::with_capacity(max);
    File::from(fd).take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(CoreError::damage(format!(
            "{name} is longer than {max} bytes"
        )));
    }
    Ok(buf)
}

/// Writes a small file durably and atomically: temp name, fsync, rename.
fn write_small_atomic(dir: &impl AsFd, name: &str, data: &[u8]) -> FsResult<()> {
    use std::io::Write;
    let tmp = format!("{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = File::from(fd);
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
    Ok(())
}

#[cfg(test)]
mod online_tests;
#[cfg(test)]
mod rename_tests;
#[cfg(test)]
mod shred_online_tests;
#[cfg(test)]
mod tests;
