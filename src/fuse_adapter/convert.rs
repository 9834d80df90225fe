//! Conversions between the core's types and fuser's, and the common reply
//! shapes. It must not decide anything: every choice comes from fs::policy.

use super::err;
use crate::fs::policy::{self, KernelParams, XattrAnswer};
use crate::fs::{Attr, Caller, CoreError as CoreErrno, Kind, TimeSet};
use fuser::{
    FileAttr, FileType, FopenFlags, Generation, INodeNo, ReplyEmpty, ReplyEntry, ReplyXattr,
    Request, TimeOrNow,
};

pub(super) fn kind(k: Kind) -> FileType {
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

pub(super) fn attr(a: &Attr) -> FileAttr {
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

pub(super) fn caller(req: &Request, umask: u32) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

pub(super) fn time(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(s),
    })
}

pub(super) fn entry(reply: ReplyEntry, r: Result<Attr, CoreErrno>) {
    match r {
        Ok(a) => reply.entry(&policy::ttl(&a), &attr(&a), Generation(0)),
        Err(e) => reply.error(err(e)),
    }
}

pub(super) fn empty(reply: ReplyEmpty, r: Result<(), CoreErrno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

pub(super) fn xattr_reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, CoreErrno>) {
    match r.and_then(|v| policy::xattr_answer(v, size)) {
        Ok(XattrAnswer::Size(n)) => reply.size(n),
        Ok(XattrAnswer::Data(v)) => reply.data(&v),
        Err(e) => reply.error(err(e)),
    }
}

pub(super) fn open_flags() -> FopenFlags {
    if policy::KEEP_CACHE_ON_OPEN {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

pub(super) fn dir_open_flags() -> FopenFlags {
    if policy::CACHE_DIR_LISTINGS {
        FopenFlags::FOPEN_CACHE_DIR
    } else {
        FopenFlags::empty()
    }
}

pub(super) fn init_flags(k: &KernelParams) -> fuser::InitFlags {
    use fuser::InitFlags as F;
    [
        (k.parallel_dirops, F::FUSE_PARALLEL_DIROPS),
        (k.handle_killpriv_v2, F::FUSE_HANDLE_KILLPRIV_V2),
        (k.readdirplus_always, F::FUSE_DO_READDIRPLUS),
        (k.writeback_cache, F::FUSE_WRITEBACK_CACHE),
    ]
    .into_iter()
    .filter(|(want, _)| *want)
    .fold(F::empty(), |acc, (_, f)| acc | f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::policy::MountPolicy;
    use fuser::InitFlags as F;

    #[test]
    fn kernel_params_become_init_flags() {
        let base = F::FUSE_PARALLEL_DIROPS | F::FUSE_HANDLE_KILLPRIV_V2 | F::FUSE_DO_READDIRPLUS;
        assert_eq!(init_flags(&MountPolicy::default().kernel()), base);
        let wb = MountPolicy {
            writeback_cache: true,
            xattr: true,
        };
        assert_eq!(init_flags(&wb.kernel()), base | F::FUSE_WRITEBACK_CACHE);
    }
}
