//! Entry operations of the core: lookup, create, mkdir, mknod, symlink,
//! unlink, rmdir, rename, link and readdir. It must not read or write file
//! contents beyond a header rewrap on a cross-directory move.

use super::names::{self, BackingName};
use super::node::{lock, Kind, Location, Node};
use super::{
    read_small, write_small_atomic, Attr, Caller, CoreError, CoreFs, Errno, FsResult, OpenDir,
};
use crate::crypto::DirKey;
use crate::format::{DIR_META_LEN, DIR_META_NAME};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, RenameFlags, Uid};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

impl CoreFs {
    /// Builds (or finds) the node for backing entry `cipher` in `parent`.
    fn attach(
        &self,
        parent: &Node,
        pkey: &DirKey,
        cipher: &str,
        plain: &[u8],
        unreadable: bool,
    ) -> FsResult<(Arc<Node>, rustix::fs::Stat)> {
        let fd = rustix::fs::openat(
            &parent.fd,
            cipher,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.attach_fd(parent, pkey, fd, cipher, plain, unreadable, None)
    }

    /// `attach` for an O_PATH descriptor already open; `fresh_key` is the
    /// key of a directory this daemon just made (no need to read it back).
    #[allow(clippy::too_many_arguments)]
    fn attach_fd(
        &self,
        parent: &Node,
        pkey: &DirKey,
        fd: OwnedFd,
        cipher: &str,
        plain: &[u8],
        unreadable: bool,
        fresh_key: Option<DirKey>,
    ) -> FsResult<(Arc<Node>, rustix::fs::Stat)> {
        let st = rustix::fs::fstat(&fd)?;
        let ino = self.fuse_ino(st.st_ino);
        let kind = Kind::from_mode(st.st_mode);
        let loc = Location {
            parent: parent.ino,
            cipher_name: cipher.to_owned(),
            plain_name: plain.to_vec(),
        };
        let node = self.nodes.lookup_or_insert(ino, || {
            let dir_key = match (kind, fresh_key) {
                (Kind::Dir, Some(k)) => Some(Arc::new(k)),
                (Kind::Dir, None) if !unreadable => self.load_dir_key(&fd, pkey, ino, &loc),
                _ => None,
            };
            Ok(Node::new(ino, kind, fd, loc.clone(), dir_key, unreadable))
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
    ) -> Option<Arc<DirKey>> {
        let what = match read_small(fd, DIR_META_NAME, DIR_META_LEN) {
            // mkdir does not fsync the metadata (see `mkdir`): after a power
            // cut it may be missing or short, which is harmless while the
            // directory is still empty.
            Ok(meta) if meta.len() < DIR_META_LEN => match self.rekey_empty_dir(fd, pkey) {
                Some(k) => return Some(k),
                None => format!("directory key metadata cut short ({} bytes)", meta.len()),
            },
            Ok(meta) => match self.keys.open_dir(pkey, &meta) {
                Ok(k) => return Some(Arc::new(k)),
                Err(e) => format!("directory key: {e}"),
            },
            Err(e) if e == Errno::ENOENT => match self.rekey_empty_dir(fd, pkey) {
                Some(k) => return Some(k),
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
        None
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
        let (key, meta) = self.keys.create_dir(pkey).ok()?;
        write_small_atomic(fd, DIR_META_NAME, &meta).ok()?;
        log::warn!(
            "re-keyed an empty directory whose key metadata was missing (interrupted mkdir)"
        );
        Some(Arc::new(key))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let bn = BackingName::encode(&pkey, name)?;
        let (node, st) = match self.attach(&pnode, &pkey, bn.name(), name, false) {
            Err(e) if e == Errno::ENOENT && name.starts_with(names::RECOVERY_PREFIX.as_bytes()) => {
                let cipher = names::find_recovery(&pnode.fd, name)?;
                self.attach(&pnode, &pkey, &cipher, name, true)?
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
        let (pnode, pkey) = self.dir_node(parent)?;
        let (node, st) = self.attach(&pnode, &pkey, &e.cipher, &e.plain, e.unreadable)?;
        self.attr_from(&node, &st)
    }

    /// Gives a new entry to its creator, keeping a setgid parent's group.
    fn own(
        &self,
        dirfd: &impl AsFd,
        name: &str,
        who: Caller,
        mode: u32,
        kind: Kind,
    ) -> FsResult<()> {
        // Created by the daemon's own identity already: the backing
        // filesystem applied the same owner, group and set-gid rules.
        if (who.uid, who.gid) == self.daemon_id {
            return Ok(());
        }
        let pst = rustix::fs::fstat(dirfd)?;
        let gid = if pst.st_mode & libc::S_ISGID != 0 {
            None
        } else {
            Some(Gid::from_raw(who.gid))
        };
        rustix::fs::chownat(
            dirfd,
            name,
            Some(Uid::from_raw(who.uid)),
            gid,
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        // chown clears set-id bits; restore what the creator asked for.
        if mode & (libc::S_ISUID | libc::S_ISGID) != 0 && kind != Kind::Symlink {
            rustix::fs::chmodat(
                dirfd,
                name,
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )?;
        }
        Ok(())
    }

    fn begin_create<'a>(
        &self,
        pnode: &'a Node,
        pkey: &DirKey,
        name: &[u8],
    ) -> FsResult<(BackingName, MutexGuard<'a, ()>)> {
        self.check_writable()?;
        let bn = BackingName::encode(pkey, name)?;
        let guard = lock(&pnode.entries_lock);
        bn.write_record(&pnode.fd)?;
        Ok((bn, guard))
    }

    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> FsResult<(Attr, u64)> {
        self.with_space(|| self.create_once(parent, name, mode, flags, who))
    }

    fn create_once(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        _flags: i32,
        who: Caller,
    ) -> FsResult<(Attr, u64)> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let (bn, _g) = self.begin_create(&pnode, &pkey, name)?;
        let mode = mode & !who.umask & 0o7777;
        let fd = rustix::fs::openat(
            &pnode.fd,
            bn.name(),
            OFlags::CREATE
                | OFlags::EXCL
                | OFlags::RDWR
                | OFlags::CLOEXEC
                | OFlags::NOFOLLOW
                | OFlags::NOATIME,
            Mode::from_raw_mode(mode),
        )?;
        if let Err(e) = self.own(&pnode.fd, bn.name(), who, mode, Kind::File) {
            let _ = rustix::fs::unlinkat(&pnode.fd, bn.name(), AtFlags::empty());
            return Err(e);
        }
        let (node, st) = self.attach(&pnode, &pkey, bn.name(), name, false)?;
        let fh = self.install_handle(node.clone(), std::fs::File::from(fd), true)?;
        Ok((self.attr_from(&node, &st)?, fh))
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
        who: Caller,
    ) -> FsResult<Attr> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let (bn, _g) = self.begin_create(&pnode, &pkey, name)?;
        let kind = Kind::from_mode(mode);
        let perm = mode & !who.umask & 0o7777;
        let ft = rustix::fs::FileType::from_raw_mode(mode);
        if kind == Kind::File {
            let fd = rustix::fs::openat(
                &pnode.fd,
                bn.name(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(perm),
            )?;
            drop(fd);
        } else {
            rustix::fs::mknodat(&pnode.fd, bn.name(), ft, Mode::from_raw_mode(perm), rdev)?;
        }
        self.own(&pnode.fd, bn.name(), who, perm, kind)?;
        let (node, _) = self.attach(&pnode, &pkey, bn.name(), name, false)?;
        self.attr_of(&node)
    }

    /// The new directory's key file is written but not fsynced: a durable
    /// key costs a disk flush per mkdir, and nothing depends on it until a
    /// child is made durable, so `sync_dir_keys` flushes it then (fsync of
    /// any file or directory below it). A power cut before that leaves an
    /// empty directory without a key, which the next lookup re-keys.
    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> FsResult<Attr> {
        self.with_space(|| self.mkdir_once(parent, name, mode, who))
    }

    fn mkdir_once(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> FsResult<Attr> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let (bn, _g) = self.begin_create(&pnode, &pkey, name)?;
        let perm = mode & !who.umask & 0o7777;
        rustix::fs::mkdirat(&pnode.fd, bn.name(), Mode::from_raw_mode(perm))?;
        let made = (|| -> FsResult<(OwnedFd, DirKey)> {
            let (key, meta) = self.keys.create_dir(&pkey).map_err(CoreError::Crypto)?;
            let dfd = rustix::fs::openat(
                &pnode.fd,
                bn.name(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mfd = rustix::fs::openat(
                &dfd,
                DIR_META_NAME,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
            )?;
            // A set-gid parent would give the key file the parent's group.
            rustix::fs::fchown(&mfd, Some(Uid::ROOT), Some(Gid::ROOT))?;
            File::from(mfd).write_all(&meta)?;
            self.own(&pnode.fd, bn.name(), who, perm | libc::S_IFDIR, Kind::Dir)?;
            Ok((dfd, key))
        })();
        let (dfd, key) = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = rustix::fs::unlinkat(
                    &pnode.fd,
                    format!("{}/{DIR_META_NAME}", bn.name()).as_str(),
                    AtFlags::empty(),
                );
                let _ = rustix::fs::unlinkat(&pnode.fd, bn.name(), AtFlags::REMOVEDIR);
                return Err(e);
            }
        };
        let (node, st) = self.attach_fd(&pnode, &pkey, dfd, bn.name(), name, false, Some(key))?;
        node.key_unsynced.store(true, Ordering::Release);
        self.attr_from(&node, &st)
    }

    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8], who: Caller) -> FsResult<Attr> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let enc = pkey.encrypt_symlink(target).map_err(CoreError::Crypto)?;
        if enc.len() >= libc::PATH_MAX as usize {
            return Err(Errno::ENAMETOOLONG.into());
        }
        let (bn, _g) = self.begin_create(&pnode, &pkey, name)?;
        rustix::fs::symlinkat(enc.as_str(), &pnode.fd, bn.name())?;
        self.own(&pnode.fd, bn.name(), who, 0o777, Kind::Symlink)?;
        let (node, _) = self.attach(&pnode, &pkey, bn.name(), name, false)?;
        self.attr_of(&node)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        if node.kind != Kind::Symlink {
            return Err(Errno::EINVAL.into());
        }
        let (_, pkey) = self.dir_node(node.parent())?;
        let raw = rustix::fs::readlinkat(&node.fd, "", Vec::new())?;
        pkey.decrypt_symlink(raw.as_bytes())
            .map_err(|_| self.integrity(ino, "symlink target failed authentication"))
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        self.check_writable()?;
        let (pnode, pkey) = self.dir_node(parent)?;
        let bn = self.resolve(&pnode, &pkey, name)?;
        let _g = lock(&pnode.entries_lock);
        if dir {
            self.remove_dir_entry(&pnode.fd, &bn)?;
        } else {
            // Linux's unlink() refuses a directory with EISDIR itself.
            rustix::fs::unlinkat(&pnode.fd, bn.name(), AtFlags::empty())?;
        }
        self.space_gen.fetch_add(1, Ordering::Relaxed);
        bn.remove_record(&pnode.fd);
        Ok(())
    }

    /// Backing name for `name`, recovery names included (so damaged entries
    /// can still be deleted).
    fn resolve(&self, pnode: &Node, pkey: &DirKey, name: &[u8]) -> FsResult<BackingName> {
        let bn = BackingName::encode(pkey, name)?;
        if name.starts_with(names::RECOVERY_PREFIX.as_bytes())
            && rustix::fs::statat(&pnode.fd, bn.name(), AtFlags::SYMLINK_NOFOLLOW).is_err()
        {
            return Ok(BackingName::Short(names::find_recovery(&pnode.fd, name)?));
        }
        Ok(bn)
    }

    /// Removes an empty directory: its metadata first, then the directory;
    /// the metadata is restored if the directory turns out not to be empty.
    fn remove_dir_entry(&self, pfd: &impl AsFd, bn: &BackingName) -> FsResult<()> {
        let dfd = rustix::fs::openat(
            pfd,
            bn.name(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut d = rustix::fs::Dir::new(dfd)?;
        while let Some(e) = d.read() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." && n != DIR_META_NAME.as_bytes() {
                return Err(Errno::ENOTEMPTY.into());
            }
        }
        let dfd = d.fd()?;
        let meta = read_small(&dfd, DIR_META_NAME, DIR_META_LEN).ok();
        let _ = rustix::fs::unlinkat(dfd, DIR_META_NAME, AtFlags::empty());
        if let Err(e) = rustix::fs::unlinkat(pfd, bn.name(), AtFlags::REMOVEDIR) {
            if let Some(m) = meta {
                let _ = write_small_atomic(&dfd, DIR_META_NAME, &m);
            }
            return Err(e.into());
        }
        Ok(())
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Attr> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(Errno::EPERM.into());
        }
        // A file's DEK is wrapped under its directory's key, so a hard link
        // into another directory could not be opened there (fscrypt does the same).
        if node.parent() != newparent && matches!(node.kind, Kind::File | Kind::Symlink) {
            return Err(Errno::EXDEV.into());
        }
        let (pnode, pkey) = self.dir_node(newparent)?;
        let (bn, _g) = self.begin_create(&pnode, &pkey, newname)?;
        rustix::fs::linkat(&node.fd, "", &pnode.fd, bn.name(), AtFlags::EMPTY_PATH)?;
        let (n, _) = self.attach(&pnode, &pkey, bn.name(), newname, false)?;
        self.attr_of(&n)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let (pnode, pkey) = self.dir_node(parent)?;
        let (npnode, npkey) = self.dir_node(newparent)?;
        let src = self.resolve(&pnode, &pkey, name)?;
        let dst = BackingName::encode(&npkey, newname)?;
        let (_g1, _g2) = if parent == newparent {
            (lock(&pnode.entries_lock), None)
        } else if parent < newparent {
            let a = lock(&pnode.entries_lock);
            (a, Some(lock(&npnode.entries_lock)))
        } else {
            let b = lock(&npnode.entries_lock);
            (lock(&pnode.entries_lock), Some(b))
        };
        let rflags = RenameFlags::from_bits_truncate(flags);
        let st = rustix::fs::statat(&pnode.fd, src.name(), AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = Kind::from_mode(st.st_mode);
        if parent != newparent && rflags.contains(RenameFlags::EXCHANGE) {
            return Err(Errno::EXDEV.into());
        }
        // An empty target directory still holds its metadata file.
        if !rflags.intersects(RenameFlags::EXCHANGE | RenameFlags::NOREPLACE) {
            if let Ok(tst) = rustix::fs::statat(&npnode.fd, dst.name(), AtFlags::SYMLINK_NOFOLLOW) {
                let tkind = Kind::from_mode(tst.st_mode);
                if tkind == Kind::Dir && kind == Kind::Dir {
                    if tst.st_ino == st.st_ino {
                        return Ok(());
                    }
                    self.remove_dir_entry(&npnode.fd, &dst)?;
                }
            }
        }
        dst.write_record(&npnode.fd)?;
        // The moved entry's node, if the kernel knows it, follows it.
        let moved = self.nodes.get(self.fuse_ino(st.st_ino)).ok();
        if parent != newparent {
            // The entry is about to be rewrapped under the new directory's
            // key; an entry that was durable must not come to depend on a
            // key that is not (see `mkdir`).
            self.sync_dir_keys(newparent)?;
            self.move_across(
                &pnode,
                &pkey,
                &npnode,
                &npkey,
                &src,
                &dst,
                kind,
                &st,
                moved.as_deref(),
            )?;
        } else {
            rustix::fs::renameat_with(&pnode.fd, src.name(), &npnode.fd, dst.name(), rflags)?;
        }
        self.space_gen.fetch_add(1, Ordering::Relaxed);
        if src.name() != dst.name() || parent != newparent {
            src.remove_record(&pnode.fd);
        }
        if let Some(n) = moved {
            n.set_location(Location {
                parent: newparent,
                cipher_name: dst.name().to_owned(),
                plain_name: newname.to_vec(),
            });
        }
        Ok(())
    }

    /// A cross-directory move rewraps whatever is keyed to the parent: the
    /// file header or the directory key (two-slot, so a crash anywhere keeps
    /// it readable), or a symlink target (recreated under the new key).
    #[allow(clippy::too_many_arguments)]
    fn move_across(
        &self,
        pnode: &Node,
        pkey: &DirKey,
        npnode: &Node,
        npkey: &DirKey,
        src: &BackingName,
        dst: &BackingName,
        kind: Kind,
        st: &rustix::fs::Stat,
        moved: Option<&Node>,
    ) -> FsResult<()> {
        match kind {
            Kind::File if st.st_nlink > 1 => Err(Errno::EXDEV.into()),
            Kind::File => {
                let fd = rustix::fs::openat(
                    &pnode.fd,
                    src.name(),
                    OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME,
                    Mode::empty(),
                )?;
                let f = std::fs::File::from(fd);
                let mut io_guard = moved.map(|n| n.io.write().unwrap_or_else(|e| e.into_inner()));
                if f.metadata()?.len() == 0 {
                    rustix::fs::renameat(&pnode.fd, src.name(), &npnode.fd, dst.name())?;
                    return Ok(());
                }
                let mut h = [0u8; crate::format::HEADER_LEN];
                f.read_exact_at(&mut h, 0)?;
                let fk = self.keys.open_file(pkey, &h).map_err(|e| {
                    let name = src.name();
                    CoreError::damage(format!("moving file {name}: header: {e}"))
                })?;
                let (both, fin) = self
                    .keys
                    .rewrap_file_move(&fk, pkey, npkey, &h)
                    .map_err(CoreError::Crypto)?;
                f.write_all_at(&both, 0)?;
                f.sync_data()?;
                rustix::fs::renameat(&pnode.fd, src.name(), &npnode.fd, dst.name())?;
                f.write_all_at(&fin, 0)?;
                if let Some(g) = io_guard.as_mut() {
                    if g.is_loaded() {
                        g.set_header(fin);
                    }
                }
                Ok(())
            }
            Kind::Dir => {
                let dfd = rustix::fs::openat(
                    &pnode.fd,
                    src.name(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let meta = read_small(&dfd, DIR_META_NAME, DIR_META_LEN)?;
                let dkey = self
                    .keys
                    .open_dir(pkey, &meta)
                    .map_err(|e| CoreError::damage(format!("moving directory: key: {e}")))?;
                let (both, fin) = self
                    .keys
                    .rewrap_dir_move(&dkey, pkey, npkey, &meta)
                    .map_err(CoreError::Crypto)?;
                write_small_atomic(&dfd, DIR_META_NAME, &both)?;
                rustix::fs::renameat(&pnode.fd, src.name(), &npnode.fd, dst.name())?;
                write_small_atomic(&dfd, DIR_META_NAME, &fin)?;
                Ok(())
            }
            Kind::Symlink => {
                let raw = rustix::fs::readlinkat(&pnode.fd, src.name(), Vec::new())?;
                let target = pkey
                    .decrypt_symlink(raw.as_bytes())
                    .map_err(|e| CoreError::damage(format!("moving symlink: target: {e}")))?;
                let enc = npkey.encrypt_symlink(&target).map_err(CoreError::Crypto)?;
                let tmp = format!("dekfs.tmp.{}", std::process::id());
                let _ = rustix::fs::unlinkat(&npnode.fd, tmp.as_str(), AtFlags::empty());
                rustix::fs::symlinkat(enc.as_str(), &npnode.fd, tmp.as_str())?;
                rustix::fs::chownat(
                    &npnode.fd,
                    tmp.as_str(),
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                rustix::fs::renameat(&npnode.fd, tmp.as_str(), &npnode.fd, dst.name())?;
                rustix::fs::unlinkat(&pnode.fd, src.name(), AtFlags::empty())?;
                Ok(())
            }
            _ => Ok(rustix::fs::renameat(
                &pnode.fd,
                src.name(),
                &npnode.fd,
                dst.name(),
            )?),
        }
    }

    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let (node, key) = self.dir_node(ino)?;
        let entries = names::list(&key, &node.fd, |cipher| {
            self.report_damage(ino, format!("entry name {cipher} failed authentication"));
        })?;
        let fh = self.new_fh();
        lock(&self.dirs).insert(fh, Arc::new(OpenDir { entries }));
        Ok(fh)
    }

    pub fn readdir_entries(&self, fh: u64) -> FsResult<Arc<OpenDir>> {
        lock(&self.dirs)
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF.into())
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }
}
