//! rename and renameat2 (NOREPLACE, EXCHANGE, WHITEOUT): within a directory
//! the backing filesystem does the work with the same flags; across
//! directories whatever is keyed to the parent is rewrapped (rewrap.rs) or,
//! for a symlink, re-encrypted. It must not touch file contents, and every
//! long-name record must end up belonging to an entry.

use super::names::BackingName;
use super::node::{lock, Kind, Location, Node};
use super::remove::drop_record_if_unused;
use super::rewrap::{Object, Plan, Target};
use super::{CoreError, CoreFs, Errno, FsResult};
use crate::crypto::DirKey;
use rustix::fs::{AtFlags, Gid, RenameFlags, Uid};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

/// One end of a rename: a directory, its key, the entry's names in it, and
/// what is there now (if anything).
struct End<'a> {
    dir: &'a Node,
    key: &'a DirKey,
    bn: BackingName,
    plain: &'a [u8],
    st: Option<rustix::fs::Stat>,
    /// The node of the entry there, if the kernel knows it.
    node: Option<Arc<Node>>,
}

impl End<'_> {
    fn kind(&self) -> Option<Kind> {
        self.st.map(|st| Kind::from_mode(st.st_mode))
    }

    fn location(&self) -> Location {
        Location {
            parent: self.dir.ino,
            cipher_name: self.bn.name().to_owned(),
            plain_name: self.plain.to_vec(),
        }
    }

    /// A cross-directory move is refused for a file with other links: its
    /// header can be wrapped to one directory only (hard links never cross).
    fn pinned_to_dir(&self) -> bool {
        self.kind() == Some(Kind::File) && self.st.is_some_and(|st| st.st_nlink > 1)
    }
}

/// The entries locks of one or two directories, by inode number.
fn lock_dirs<'a>(a: &'a Node, b: &'a Node) -> (MutexGuard<'a, ()>, Option<MutexGuard<'a, ()>>) {
    if a.ino == b.ino {
        (lock(&a.entries_lock), None)
    } else if a.ino < b.ino {
        let g = lock(&a.entries_lock);
        (g, Some(lock(&b.entries_lock)))
    } else {
        let g = lock(&b.entries_lock);
        (lock(&a.entries_lock), Some(g))
    }
}

impl CoreFs {
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let Some(flags) = RenameFlags::from_bits(flags) else {
            return Err(Errno::EINVAL)?;
        };
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        let (pnode, pkey) = self.dir_node(parent)?;
        let (npnode, npkey) = self.dir_node(newparent)?;
        let src_bn = self.resolve(&pnode, &pkey, name)?;
        let dst_bn = if exchange {
            self.resolve(&npnode, &npkey, newname)?
        } else {
            BackingName::encode(&npkey, newname)?
        };
        let _guards = lock_dirs(&pnode, &npnode);
        let end = |dir, key, bn: BackingName, plain| {
            let st = rustix::fs::statat(dir_fd(dir), bn.name(), AtFlags::SYMLINK_NOFOLLOW).ok();
            let node = st.and_then(|st| self.nodes.get(self.fuse_ino(st.st_ino)).ok());
            End {
                dir,
                key,
                bn,
                plain,
                st,
                node,
            }
        };
        let src = end(&pnode, &pkey, src_bn, name);
        let dst = end(&npnode, &npkey, dst_bn, newname);
        // A shred removes its target by name (src/fs/shred_online.rs).
        if [&src.node, &dst.node]
            .into_iter()
            .flatten()
            .any(|n| n.shredded.load(Ordering::Acquire))
        {
            return Err(Errno::EIO)?;
        }
        let Some(src_st) = src.st else {
            return Err(Errno::ENOENT)?;
        };
        if exchange && dst.st.is_none() {
            return Err(Errno::ENOENT)?;
        }
        // An empty target directory still holds its key file.
        if !flags.intersects(RenameFlags::EXCHANGE | RenameFlags::NOREPLACE)
            && src.kind() == Some(Kind::Dir)
            && dst.kind() == Some(Kind::Dir)
        {
            if dst.st.is_some_and(|st| st.st_ino == src_st.st_ino) {
                return Ok(());
            }
            self.remove_dir_entry(&npnode.fd, &dst.bn)?;
        }
        dst.bn.write_record(&npnode.fd)?;
        let done = if parent == newparent {
            self.rename_within(&src, &dst, flags)
        } else {
            self.move_across(&src, &dst, flags)
        };
        // Whatever happened, each name keeps its record exactly while an
        // entry (moved, exchanged, whiteout or untouched) holds it.
        drop_record_if_unused(&npnode.fd, &dst.bn);
        drop_record_if_unused(&pnode.fd, &src.bn);
        done?;
        self.space_gen.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = &src.node {
            n.set_location(dst.location());
        }
        if let (true, Some(n)) = (exchange, &dst.node) {
            n.set_location(src.location());
        }
        Ok(())
    }

    fn rename_within(&self, src: &End<'_>, dst: &End<'_>, flags: RenameFlags) -> FsResult<()> {
        let (from, to) = (src.bn.name(), dst.bn.name());
        Ok(rustix::fs::renameat_with(
            &src.dir.fd,
            from,
            &dst.dir.fd,
            to,
            flags,
        )?)
    }

    /// A cross-directory rename. Files and directories are rewrapped in two
    /// slots around the backing rename (an exchange rewraps both objects);
    /// a symlink is re-encrypted into a new backing symlink. Refused with
    /// EXDEV: a file with other links, and an exchange involving a symlink
    /// (a symlink's target holds one encryption, so no crash-safe order
    /// exists for swapping it).
    fn move_across(&self, src: &End<'_>, dst: &End<'_>, flags: RenameFlags) -> FsResult<()> {
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        if src.pinned_to_dir() || (exchange && dst.pinned_to_dir()) {
            return Err(Errno::EXDEV)?;
        }
        if exchange && (src.kind() == Some(Kind::Symlink) || dst.kind() == Some(Kind::Symlink)) {
            return Err(Errno::EXDEV)?;
        }
        // The entry is about to be rewrapped under the new directory's key;
        // an entry that was durable must not come to depend on a key that
        // is not (see `mkdir`). An exchange moves one each way.
        self.sync_dir_keys(dst.dir.ino)?;
        if exchange {
            self.sync_dir_keys(src.dir.ino)?;
        }
        if src.kind() == Some(Kind::Symlink) {
            return self.move_symlink(src, dst, flags);
        }
        let mut objects = vec![object(src, dst)];
        if exchange {
            objects.push(object(dst, src));
        }
        let plan = Plan {
            objects: &objects,
            dirs: &[src.dir, dst.dir],
            failpoint: crate::failpoint::CROSS_DIR_RENAMED,
        };
        self.rewrap(&plan, || {
            Ok(rustix::fs::renameat_with(
                &src.dir.fd,
                src.bn.name(),
                &dst.dir.fd,
                dst.bn.name(),
                flags,
            )?)
        })
    }

    /// A symlink's target is encrypted under its directory's name key, so
    /// the moved symlink is a new one: made under a temporary name, renamed
    /// into place, then the old one goes (a crash leaves two valid copies at
    /// worst). The kernel keeps the old inode until its next lookup;
    /// `readlink` follows the node's place meanwhile.
    fn move_symlink(&self, src: &End<'_>, dst: &End<'_>, flags: RenameFlags) -> FsResult<()> {
        let raw = rustix::fs::readlinkat(&src.dir.fd, src.bn.name(), Vec::new())?;
        let target = src.key.decrypt_symlink(raw.as_bytes()).map_err(|e| {
            let name = src.bn.name();
            self.integrity(src.dir.ino, format!("moving symlink {name}: target: {e}"))
        })?;
        let enc = dst
            .key
            .encrypt_symlink(&target)
            .map_err(CoreError::Crypto)?;
        let tmp = format!("dekfs.tmp.{}", std::process::id());
        let _ = rustix::fs::unlinkat(&dst.dir.fd, tmp.as_str(), AtFlags::empty());
        rustix::fs::symlinkat(enc.as_str(), &dst.dir.fd, tmp.as_str())?;
        let placed = (|| -> FsResult<()> {
            let st = src.st.ok_or(Errno::ENOENT)?;
            rustix::fs::chownat(
                &dst.dir.fd,
                tmp.as_str(),
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
            let noreplace = flags & RenameFlags::NOREPLACE;
            rustix::fs::renameat_with(
                &dst.dir.fd,
                tmp.as_str(),
                &dst.dir.fd,
                dst.bn.name(),
                noreplace,
            )?;
            Ok(())
        })();
        if let Err(e) = placed {
            let _ = rustix::fs::unlinkat(&dst.dir.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        if flags.contains(RenameFlags::WHITEOUT) {
            // The backing filesystem makes the whiteout atomically in place
            // of the old symlink, which then goes from its temporary name.
            rustix::fs::renameat_with(
                &src.dir.fd,
                src.bn.name(),
                &src.dir.fd,
                tmp.as_str(),
                RenameFlags::WHITEOUT,
            )?;
            rustix::fs::unlinkat(&src.dir.fd, tmp.as_str(), AtFlags::empty())?;
        } else {
            rustix::fs::unlinkat(&src.dir.fd, src.bn.name(), AtFlags::empty())?;
        }
        Ok(())
    }
}

/// `from`'s entry, rewrapped to `to`'s directory.
fn object<'a>(from: &'a End<'a>, to: &'a End<'a>) -> Object<'a> {
    Object {
        dir: from.dir,
        key: from.key,
        name: from.bn.name(),
        kind: from.kind().unwrap_or(Kind::File),
        node: from.node.as_deref(),
        target: Target::Parent(to.key),
    }
}

fn dir_fd(n: &Node) -> &std::os::fd::OwnedFd {
    &n.fd
}
