//! Making entries: create, mknod, mkdir, symlink and link, with the
//! ownership a creator expects. It must not remove or move existing entries.

use super::lookup::Found;
use super::names::BackingName;
use super::node::{lock, Kind, Node};
use super::remove::drop_record_if_unused;
use super::{Attr, Caller, CoreError, CoreFs, Errno, FsResult};
use crate::crypto::DirKey;
use crate::format::DIR_META_NAME;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

/// A new entry's name and the directory it goes into, with that
/// directory's entries lock held and the long-name record (if any) written.
struct NewEntry<'a> {
    pnode: &'a Node,
    bn: BackingName,
    _guard: MutexGuard<'a, ()>,
}

impl NewEntry<'_> {
    /// Undoes `begin_create` after a failure: a long-name record whose entry
    /// does not exist must not stay behind.
    fn abandon(&self) {
        drop_record_if_unused(&self.pnode.fd, &self.bn);
    }
}

impl CoreFs {
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
    ) -> FsResult<NewEntry<'a>> {
        self.check_writable()?;
        let bn = BackingName::encode(pkey, name)?;
        let guard = lock(&pnode.entries_lock);
        bn.write_record(&pnode.fd)?;
        Ok(NewEntry {
            pnode,
            bn,
            _guard: guard,
        })
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
        let ne = self.begin_create(&pnode, &pkey, name)?;
        let mode = mode & !who.umask & 0o7777;
        let fd = rustix::fs::openat(
            &pnode.fd,
            ne.bn.name(),
            OFlags::CREATE
                | OFlags::EXCL
                | OFlags::RDWR
                | OFlags::CLOEXEC
                | OFlags::NOFOLLOW
                | OFlags::NOATIME,
            Mode::from_raw_mode(mode),
        )
        .inspect_err(|_| ne.abandon())?;
        self.own(&pnode.fd, ne.bn.name(), who, mode, Kind::File)
            .inspect_err(|_| {
                let _ = rustix::fs::unlinkat(&pnode.fd, ne.bn.name(), AtFlags::empty());
                ne.abandon();
            })?;
        let (node, st) = self.attach(&pnode, &pkey, Found::named(ne.bn.name(), name))?;
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
        let ne = self.begin_create(&pnode, &pkey, name)?;
        let kind = Kind::from_mode(mode);
        let perm = mode & !who.umask & 0o7777;
        let ft = rustix::fs::FileType::from_raw_mode(mode);
        let made = if kind == Kind::File {
            rustix::fs::openat(
                &pnode.fd,
                ne.bn.name(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(perm),
            )
            .map(drop)
        } else {
            rustix::fs::mknodat(&pnode.fd, ne.bn.name(), ft, Mode::from_raw_mode(perm), rdev)
        };
        made.inspect_err(|_| ne.abandon())?;
        self.own(&pnode.fd, ne.bn.name(), who, perm, kind)?;
        let (node, _) = self.attach(&pnode, &pkey, Found::named(ne.bn.name(), name))?;
        self.attr_of(&node)
    }

    /// The new directory's key file is written but not fsynced: a durable
    /// key costs a disk flush per mkdir, and nothing depends on it until a
    /// child is made durable, so `sync_dir_keys` flushes it then (fsync of
    /// any file or directory below it). Its writeback is started at once,
    /// though: the backing filesystem journals the entries made in the
    /// directory within its commit interval, but would write the key file's
    /// data only when the flusher comes (~30 s), so a power cut in between
    /// kept names whose key was lost (issue 17). Started now, the key's data
    /// rides on the next commit, no later than the entries made meanwhile
    /// but for the few made while its write is in flight. A power cut
    /// before that leaves an empty directory without a key, which the next
    /// lookup re-keys, or a young one whose entries are listed under
    /// recovery names and can be removed (keyless.rs).
    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> FsResult<Attr> {
        self.with_space(|| self.mkdir_once(parent, name, mode, who))
    }

    fn mkdir_once(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> FsResult<Attr> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let ne = self.begin_create(&pnode, &pkey, name)?;
        let bn = &ne.bn;
        let perm = mode & !who.umask & 0o7777;
        rustix::fs::mkdirat(&pnode.fd, bn.name(), Mode::from_raw_mode(perm))
            .inspect_err(|_| ne.abandon())?;
        let made = (|| -> FsResult<(OwnedFd, DirKey)> {
            let (key, meta) = self.vkeys()?.create_dir(&pkey).map_err(CoreError::Crypto)?;
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
            // A set-gid parent would give the key file the parent's group:
            // it belongs to whoever runs the daemon (a normal user may only
            // give files to itself, so root ownership was EPERM for it).
            let st = rustix::fs::fstat(&mfd)?;
            let (uid, gid) = self.daemon_id;
            if (st.st_uid, st.st_gid) != (uid, gid) {
                rustix::fs::fchown(&mfd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
            }
            let mut mf = File::from(mfd);
            mf.write_all(&meta)?;
            // Ahead of the flusher: see `mkdir`. A failed start is not an
            // error, only the old window (the flusher's ~30 s) again.
            if let Err(e) = crate::sys::start_writeback(&mf) {
                log::debug!("could not start writeback of a new directory key: {e}");
            }
            self.own(&pnode.fd, bn.name(), who, perm | libc::S_IFDIR, Kind::Dir)?;
            Ok((dfd, key))
        })();
        let (dfd, key) = made.inspect_err(|_| {
            let _ = rustix::fs::unlinkat(
                &pnode.fd,
                format!("{}/{DIR_META_NAME}", bn.name()).as_str(),
                AtFlags::empty(),
            );
            let _ = rustix::fs::unlinkat(&pnode.fd, bn.name(), AtFlags::REMOVEDIR);
            ne.abandon();
        })?;
        let found = Found::named(bn.name(), name);
        let (node, st) = self.attach_fd(&pnode, &pkey, dfd, found, Some(key))?;
        node.key_unsynced.store(true, Ordering::Release);
        self.attr_from(&node, &st)
    }

    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8], who: Caller) -> FsResult<Attr> {
        let (pnode, pkey) = self.dir_node(parent)?;
        let enc = pkey.encrypt_symlink(target).map_err(CoreError::Crypto)?;
        if enc.len() >= libc::PATH_MAX as usize {
            return Err(Errno::ENAMETOOLONG)?;
        }
        let ne = self.begin_create(&pnode, &pkey, name)?;
        rustix::fs::symlinkat(enc.as_str(), &pnode.fd, ne.bn.name())
            .inspect_err(|_| ne.abandon())?;
        self.own(&pnode.fd, ne.bn.name(), who, 0o777, Kind::Symlink)?;
        let (node, _) = self.attach(&pnode, &pkey, Found::named(ne.bn.name(), name))?;
        self.attr_of(&node)
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Attr> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(Errno::EPERM)?;
        }
        // A file's DEK is wrapped under its directory's key, so a hard link
        // into another directory could not be opened there (fscrypt does the same).
        if node.parent() != newparent && matches!(node.kind, Kind::File | Kind::Symlink) {
            return Err(Errno::EXDEV)?;
        }
        let (pnode, pkey) = self.dir_node(newparent)?;
        let ne = self.begin_create(&pnode, &pkey, newname)?;
        rustix::fs::linkat(&node.fd, "", &pnode.fd, ne.bn.name(), AtFlags::EMPTY_PATH)
            .inspect_err(|_| ne.abandon())?;
        let (n, _) = self.attach(&pnode, &pkey, Found::named(ne.bn.name(), newname))?;
        self.attr_of(&n)
    }
}
