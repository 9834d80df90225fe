//! Finding entries: lookup (plain and readdirplus), the node an entry gets,
//! the directory key it carries, and readlink. It must not create, remove or
//! move entries (an empty directory's lost key is the one thing it rewrites).

use super::names::{self, BackingName};
use super::node::{lock, Kind, Location, Node};
use super::{read_small, write_small_atomic, Attr, CoreFs, Errno, FsResult};
use crate::crypto::DirKey;
use crate::format::{DIR_META_LEN, DIR_META_NAME};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// One backing entry as found in its directory.
#[derive(Clone, Copy)]
pub(super) struct Found<'a> {
    pub cipher: &'a str,
    pub plain: &'a [u8],
    /// The name failed to authenticate; `plain` is its recovery name.
    pub unreadable: bool,
}

impl<'a> Found<'a> {
    pub fn named(cipher: &'a str, plain: &'a [u8]) -> Found<'a> {
        Found {
            cipher,
            plain,
            unreadable: false,
        }
    }
}

impl CoreFs {
    /// Builds (or finds) the node for backing entry `e` in `parent`.
    pub(super) fn attach(
        &self,
        parent: &Node,
        pkey: &DirKey,
        e: Found<'_>,
    ) -> FsResult<(Arc<Node>, rustix::fs::Stat)> {
        let fd = rustix::fs::openat(
            &parent.fd,
            e.cipher,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.attach_fd(parent, pkey, fd, e, None)
    }

    /// `attach` for an O_PATH descriptor already open; `fresh_key` is the
    /// key of a directory this daemon just made (no need to read it back).
    pub(super) fn attach_fd(
        &self,
        parent: &Node,
        pkey: &DirKey,
        fd: OwnedFd,
        e: Found<'_>,
        fresh_key: Option<DirKey>,
    ) -> FsResult<(Arc<Node>, rustix::fs::Stat)> {
        let st = rustix::fs::fstat(&fd)?;
        let ino = self.fuse_ino(st.st_ino);
        let kind = Kind::from_mode(st.st_mode);
        let loc = Location {
            parent: parent.ino,
            cipher_name: e.cipher.to_owned(),
            plain_name: e.plain.to_vec(),
        };
        let node = self.nodes.lookup_or_insert(ino, || {
            let dir_key = match (kind, fresh_key) {
                (Kind::Dir, Some(k)) => Some(Arc::new(k)),
                (Kind::Dir, None) if !e.unreadable => self.load_dir_key(&fd, pkey, ino, &loc)?,
                _ => None,
            };
            Ok(Node::new(ino, kind, fd, loc.clone(), dir_key, e.unreadable))
        })?;
        if node.parent() == parent.ino {
            node.set_location(loc);
        }
        Ok((node, st))
    }

    fn load_dir_key(
        &self,
        fd: &impl AsFd,
        pkey: &DirKey,
        ino: u64,
        loc: &Location,
    ) -> Result<Option<Arc<DirKey>>, Errno> {
        // Locked since the caller took its parent's key: no key, not a damage.
        let keys = self.vkeys()?;
        let what = match read_small(fd, DIR_META_NAME, DIR_META_LEN) {
            // mkdir does not fsync the metadata (see `mkdir`): after a power
            // cut it may be missing or short, which is harmless while the
            // directory is still empty.
            Ok(meta) if meta.len() < DIR_META_LEN => match self.rekey_empty_dir(fd, pkey) {
                Some(k) => return Ok(Some(k)),
                None => format!("directory key metadata cut short ({} bytes)", meta.len()),
            },
            Ok(meta) => match keys.open_dir(pkey, &meta) {
                Ok(k) => return Ok(Some(Arc::new(k))),
                Err(e) => format!("directory key: {e}"),
            },
            Err(e) if e == Errno::ENOENT => match self.rekey_empty_dir(fd, pkey) {
                Some(k) => return Ok(Some(k)),
                None => "directory key metadata missing".into(),
            },
            Err(e) => format!("directory key unreadable: {e}"),
        };
        let parent_path = self.plain_path(loc.parent);
        super::error::report(&super::Damage {
            ino,
            path: format!(
                "{}/{}",
                parent_path.trim_end_matches('/'),
                String::from_utf8_lossy(&loc.plain_name)
            ),
            what,
        });
        Ok(None)
    }

    /// A crash between mkdir and writing its metadata leaves an empty
    /// directory without a key; nothing depends on that key yet, so a fresh
    /// one is safe. A non-empty directory without metadata stays an error.
    fn rekey_empty_dir(&self, fd: &impl AsFd, pkey: &DirKey) -> Option<Arc<DirKey>> {
        let dirfd = rustix::fs::openat(
            fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut d = rustix::fs::Dir::new(dirfd).ok()?;
        let mut count = 0;
        while let Some(Ok(e)) = d.next() {
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." && !n.starts_with(b"dekfs.dir") {
                count += 1;
            }
        }
        if count > 0 || self.read_only {
            return None;
        }
        let (key, meta) = self.vkeys().ok()?.create_dir(pkey).ok()?;
        write_small_atomic(fd, DIR_META_NAME, &meta).ok()?;
        log::warn!(
            "re-keyed an empty directory whose key metadata was missing (interrupted mkdir)"
        );
        Some(Arc::new(key))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        if let Some(dir) = self.keyless_dir(parent) {
            return self.keyless_lookup(&dir, name);
        }
        let (pnode, pkey) = self.dir_node(parent)?;
        let bn = BackingName::encode(&pkey, name)?;
        let (node, st) = match self.attach(&pnode, &pkey, Found::named(bn.name(), name)) {
            Err(e) if e == Errno::ENOENT && name.starts_with(names::RECOVERY_PREFIX.as_bytes()) => {
                let cipher = names::find_recovery(&pnode.fd, name)?;
                let e = Found {
                    cipher: &cipher,
                    plain: name,
                    unreadable: true,
                };
                self.attach(&pnode, &pkey, e)?
            }
            r => r?,
        };
        self.attr_from(&node, &st)
    }

    /// Attributes for a readdirplus entry; counts as a lookup of it.
    pub fn lookup_entry(&self, parent: u64, e: &names::DirEntry) -> FsResult<Attr> {
        // A listing repeated while the kernel still knows the entry (rm -rf
        // lists each directory twice): the node's descriptor pins that very
        // backing inode, so fresh attributes are all that is needed.
        let same_place = |n: &Node| {
            let l = lock(&n.loc);
            l.parent == parent && l.cipher_name == e.cipher
        };
        if let Some(node) = self.nodes.bump_if(self.fuse_ino(e.backing_ino), same_place) {
            return match self.stat_node(&node) {
                Ok(st) => self.attr_from(&node, &st),
                Err(err) => {
                    self.nodes.forget(node.ino, 1);
                    Err(err)
                }
            };
        }
        if let Some(dir) = self.keyless_dir(parent) {
            let (node, st) = self.attach_unreadable(&dir, &e.cipher, &e.plain)?;
            return self.attr_from(&node, &st);
        }
        let (pnode, pkey) = self.dir_node(parent)?;
        let found = Found {
            cipher: &e.cipher,
            plain: &e.plain,
            unreadable: e.unreadable,
        };
        let (node, st) = self.attach(&pnode, &pkey, found)?;
        self.attr_from(&node, &st)
    }

    /// Backing name for `name`, recovery names included (so damaged entries
    /// can still be deleted or renamed).
    pub(super) fn resolve(
        &self,
        pnode: &Node,
        pkey: &DirKey,
        name: &[u8],
    ) -> FsResult<BackingName> {
        let bn = BackingName::encode(pkey, name)?;
        if name.starts_with(names::RECOVERY_PREFIX.as_bytes())
            && rustix::fs::statat(&pnode.fd, bn.name(), AtFlags::SYMLINK_NOFOLLOW).is_err()
        {
            return Ok(BackingName::Short(names::find_recovery(&pnode.fd, name)?));
        }
        Ok(bn)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        if node.kind != Kind::Symlink {
            return Err(Errno::EINVAL)?;
        }
        let loc = node.location();
        let (pnode, pkey) = self.dir_node(loc.parent)?;
        let raw = rustix::fs::readlinkat(&node.fd, "", Vec::new())?;
        if let Ok(t) = pkey.decrypt_symlink(raw.as_bytes()) {
            return Ok(t);
        }
        // A symlink moved to another directory is a new backing symlink (its
        // target is encrypted under the new directory's key), but the kernel
        // keeps the old inode until it looks the name up again: this node's
        // descriptor then pins the old, unlinked symlink. Read the one now
        // at the node's place instead. No entries lock: callers may hold it
        // (attributes of a new entry); a rename racing this read changes
        // the location, which is checked again after.
        if self.stat_node(&node).is_ok_and(|st| st.st_nlink == 0) {
            if let Ok(raw) = rustix::fs::readlinkat(&pnode.fd, loc.cipher_name.as_str(), Vec::new())
            {
                let still = node.location();
                if let (Ok(t), true) = (
                    pkey.decrypt_symlink(raw.as_bytes()),
                    still.parent == loc.parent && still.cipher_name == loc.cipher_name,
                ) {
                    return Ok(t);
                }
            }
        }
        Err(self.integrity(ino, "symlink target failed authentication"))
    }
}
