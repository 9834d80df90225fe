//! Thin FUSE adapter: translates fuser requests into `fs::CoreFs` calls and
//! replies. It must not contain filesystem logic or touch keys; every
//! decision lives in the core so it stays testable without a mount.

use crate::fs::{Attr, Caller, CoreFs, Errno as CoreErrno, Kind, SetAttr, TimeSet};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes and entries. All changes go
/// through this daemon, so a short TTL only guards against edits of the
/// cipher directory behind our back.
const TTL: Duration = Duration::from_secs(1);
pub const MAX_WRITE: u32 = 1 << 20;

pub struct DekFuse {
    pub core: CoreFs,
    /// Kernel writeback caching (`-o writeback_cache`). Off by default:
    /// with it, write(2) succeeds into the page cache and ENOSPC or EIO
    /// only surface at fsync/close, which most programs never check, so a
    /// full disk would lose data silently.
    pub writeback_cache: bool,
    /// `-o noxattr` clears this: every xattr request is answered ENOSYS,
    /// which the kernel remembers for the mount. That saves the
    /// `security.capability` GETXATTR it sends before every write(2) (one
    /// round trip in five for a small-file create), at the price of
    /// user.* xattrs. (The null passthrough_ll runs this way by default.)
    pub xattr: bool,
}

fn err(e: CoreErrno) -> Errno {
    Errno::from_i32(e.0)
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

fn caller(req: &Request, umask: u32) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

fn time(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(s),
    })
}

/// Set-id bits may be dropped by the daemon on a write or truncate (our
/// side of KILLPRIV_V2), behind the kernel's attribute cache: never cache
/// the attributes of such (rare) files.
fn ttl(a: &Attr) -> Duration {
    if a.perm & 0o6000 != 0 {
        Duration::ZERO
    } else {
        TTL
    }
}

fn entry(reply: ReplyEntry, r: Result<Attr, CoreErrno>) {
    match r {
        Ok(a) => reply.entry(&ttl(&a), &attr(&a), Generation(0)),
        Err(e) => reply.error(err(e)),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), CoreErrno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, CoreErrno>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(err(e)),
    }
}

impl Filesystem for DekFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        // Readdirplus for every listing, not AUTO: AUTO uses it for the
        // first chunk only and falls back to plain READDIR, so `find | stat`,
        // `rm -rf` and `du` paid a LOOKUP per entry of any larger directory.
        // An entry costs one openat+fstat here, as a LOOKUP would.
        // KILLPRIV_V2: we clear set-id bits ourselves (write flag, setattr),
        // so the kernel stops asking for security.capability before every
        // write, which halves the round trips of small writes.
        let mut caps = fuser::InitFlags::FUSE_PARALLEL_DIROPS
            | fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | fuser::InitFlags::FUSE_DO_READDIRPLUS;
        if self.writeback_cache {
            // Every change to a file passes through this daemon, so the
            // kernel may own size and mtime while pages are dirty.
            caps |= fuser::InitFlags::FUSE_WRITEBACK_CACHE;
        }
        let _ = config.add_capabilities(caps);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(reply, self.core.lookup(parent.0, name.as_bytes()));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &attr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time(atime),
            mtime: time(mtime),
            fh: fh.map(|f| f.0),
            kill_setid: size.is_some() && req.uid() != 0,
        };
        match self.core.setattr(ino.0, set) {
            Ok(a) => reply.attr(&ttl(&a), &attr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.core.mknod(
                parent.0,
                name.as_bytes(),
                mode,
                rdev as u64,
                caller(req, umask),
            ),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.core
                .mkdir(parent.0, name.as_bytes(), mode, caller(req, umask)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.core.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.core.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.core.symlink(
                parent.0,
                link_name.as_bytes(),
                target.as_os_str().as_bytes(),
                caller(req, 0),
            ),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.core.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                flags.bits(),
            ),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.core.link(ino.0, newparent.0, newname.as_bytes()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // The plaintext goes to the kernel straight from the core's buffer.
        let mut reply = Some(reply);
        let sent = self.core.read_with(fh.0, offset, size, |d| {
            if let Some(r) = reply.take() {
                r.data(d);
            }
        });
        if let (Err(e), Some(r)) = (sent, reply.take()) {
            r.error(err(e));
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            if let Err(e) = self.core.kill_setid(ino.0) {
                return reply.error(err(e));
            }
        }
        match self.core.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Every write has reached the backing file before it is answered and
        // locks are the kernel's, so close() has nothing to do here. ENOSYS
        // tells the kernel to stop sending FLUSH (one round trip less per
        // close); it still writes back its own dirty pages and reports their
        // errors at close without us.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.core.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = match self.core.readdir_entries(ino.0, fh.0, offset) {
            Ok(d) => d,
            Err(e) => return reply.error(err(e)),
        };
        // Offsets: 1 = ".", 2 = "..", 3.. = entries; each names the next one.
        let mut off = offset;
        if off == 0 {
            if reply.add(ino, 1, FileType::Directory, ".") {
                return reply.ok();
            }
            off = 1;
        }
        if off == 1 {
            if reply.add(INodeNo(1), 2, FileType::Directory, "..") {
                return reply.ok();
            }
            off = 2;
        }
        for (i, e) in dir.entries.iter().enumerate().skip((off - 2) as usize) {
            let ft = kind(e.kind);
            let ino = self.core.fuse_ino(e.backing_ino);
            if reply.add(INodeNo(ino), i as u64 + 3, ft, OsStr::from_bytes(&e.plain)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let dir = match self.core.readdir_entries(ino.0, fh.0, offset) {
            Ok(d) => d,
            Err(e) => return reply.error(err(e)),
        };
        let mut off = offset;
        if off < 2 {
            match self.core.getattr(ino.0) {
                Ok(a) => {
                    let a = attr(&a);
                    if off == 0 && reply.add(ino, 1, ".", &TTL, &a, Generation(0)) {
                        return reply.ok();
                    }
                    // ".." is not looked up by the kernel; its attributes are
                    // only a placeholder, as in readdir.
                    if reply.add(a.ino, 2, "..", &TTL, &a, Generation(0)) {
                        return reply.ok();
                    }
                }
                Err(e) => return reply.error(err(e)),
            }
            off = 2;
        }
        for (i, e) in dir.entries.iter().enumerate().skip((off - 2) as usize) {
            // Each entry sent counts as a lookup; one that no longer exists
            // is skipped, one that does not fit is forgotten again.
            let Ok(a) = self.core.lookup_entry(ino.0, e) else {
                continue;
            };
            if reply.add(
                INodeNo(a.ino),
                i as u64 + 3,
                OsStr::from_bytes(&e.plain),
                &ttl(&a),
                &attr(&a),
                Generation(0),
            ) {
                self.core.forget(a.ino, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.core.fsyncdir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.core.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.xattr {
            return reply.error(Errno::ENOSYS);
        }
        empty(
            reply,
            self.core.setxattr(ino.0, name.as_bytes(), value, flags),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.xattr {
            return reply.error(Errno::ENOSYS);
        }
        xattr_reply(reply, size, self.core.getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.xattr {
            return reply.error(Errno::ENOSYS);
        }
        xattr_reply(reply, size, self.core.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.xattr {
            return reply.error(Errno::ENOSYS);
        }
        empty(reply, self.core.removexattr(ino.0, name.as_bytes()));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions) or, for a
        // private mount, moot: only the owner reaches us.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .core
            .create(parent.0, name.as_bytes(), mode, flags, caller(req, umask))
        {
            Ok((a, fh)) => reply.created(
                &ttl(&a),
                &attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.core.fallocate(fh.0, offset, length, mode));
    }
}
