//! The answers the kernel interface needs that are choices, not translations:
//! cache lifetimes, the kernel features to negotiate, directory offsets,
//! what close, access and xattr requests mean for this volume. It must not
//! know FUSE types; the adapter turns these answers into replies.

use super::names::DirEntry;
use super::{Attr, CoreFs, Errno, FsResult};
use std::time::Duration;

/// How long the kernel may cache attributes and entries. All changes go
/// through this daemon, so a short TTL only guards against edits of the
/// cipher directory behind our back.
pub const ENTRY_TTL: Duration = Duration::from_secs(1);

/// Largest read or write request; also the readahead window asked for.
pub const MAX_IO: u32 = 1 << 20;

/// Open files keep the kernel's page cache across opens: every change to
/// their contents passes through this daemon, so a cached page is current.
pub const KEEP_CACHE_ON_OPEN: bool = true;

/// Directory listings are not kept in the kernel's cache between opens:
/// each opendir takes a fresh snapshot, so a name added to the cipher
/// directory behind the kernel's back (a restore from backup) shows up at
/// the next listing.
pub const CACHE_DIR_LISTINGS: bool = false;

/// What to negotiate with the kernel at session start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelParams {
    pub max_write: u32,
    pub max_readahead: u32,
    /// Lookups and readdirs of one directory may run at once.
    pub parallel_dirops: bool,
    /// We clear set-id bits ourselves (write flag, setattr), so the kernel
    /// stops asking for security.capability before every write, which
    /// halves the round trips of small writes.
    pub handle_killpriv_v2: bool,
    /// Readdirplus for every listing, not AUTO: AUTO uses it for the first
    /// chunk only and falls back to plain READDIR, so `find | stat`,
    /// `rm -rf` and `du` paid a LOOKUP per entry of any larger directory.
    /// An entry costs one openat+fstat here, as a LOOKUP would.
    pub readdirplus_always: bool,
    pub writeback_cache: bool,
}

/// Per-mount choices from the mount options, fixed for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountPolicy {
    /// Kernel writeback caching (`-o writeback_cache`). Off by default:
    /// with it, write(2) succeeds into the page cache and ENOSPC or EIO
    /// only surface at fsync/close, which most programs never check, so a
    /// full disk would lose data silently.
    pub writeback_cache: bool,
    /// `-o noxattr` clears this: every xattr request is answered ENOSYS,
    /// which the kernel remembers for the mount. That saves the
    /// `security.capability` GETXATTR it sends before every write(2), at
    /// the price of user.* xattrs.
    pub xattr: bool,
}

impl Default for MountPolicy {
    fn default() -> Self {
        MountPolicy {
            writeback_cache: false,
            xattr: true,
        }
    }
}

impl MountPolicy {
    pub fn kernel(&self) -> KernelParams {
        KernelParams {
            max_write: MAX_IO,
            max_readahead: MAX_IO,
            parallel_dirops: true,
            handle_killpriv_v2: true,
            readdirplus_always: true,
            // Every change to a file passes through this daemon, so the
            // kernel may own size and mtime while pages are dirty.
            writeback_cache: self.writeback_cache,
        }
    }

    /// Whether an xattr request reaches the core at all.
    pub fn xattr_allowed(&self) -> FsResult<()> {
        if self.xattr {
            Ok(())
        } else {
            Err(Errno(libc::ENOSYS).into())
        }
    }
}

/// Set-id bits may be dropped by the daemon on a write or truncate (our
/// side of KILLPRIV_V2), behind the kernel's attribute cache: never cache
/// the attributes of such (rare) files.
pub fn ttl(a: &Attr) -> Duration {
    if a.perm & 0o6000 != 0 {
        Duration::ZERO
    } else {
        ENTRY_TTL
    }
}

/// A truncate by anyone but root drops set-id bits (root has CAP_FSETID).
pub fn truncate_kills_setid(size_given: bool, caller_uid: u32) -> bool {
    size_given && caller_uid != 0
}

/// One slot of a directory listing.
pub enum Slot<'a> {
    Dot,
    DotDot,
    Entry(&'a DirEntry),
}

/// The listing from `offset` on, each slot with the offset that resumes
/// after it: 1 = ".", 2 = "..", 3.. = the entries in order. Offsets stay
/// valid for the life of the open directory because its entries are a
/// snapshot taken at opendir.
pub fn listing(entries: &[DirEntry], offset: u64) -> impl Iterator<Item = (u64, Slot<'_>)> {
    let dots = [(1, Slot::Dot), (2, Slot::DotDot)]
        .into_iter()
        .skip(offset.min(2) as usize);
    let rest = entries
        .iter()
        .enumerate()
        .skip(offset.saturating_sub(2) as usize)
        .map(|(i, e)| (i as u64 + 3, Slot::Entry(e)));
    dots.chain(rest)
}

/// The answer to a getxattr/listxattr of `size` bytes (0 asks for the size).
pub enum XattrAnswer {
    Size(u32),
    Data(Vec<u8>),
}

pub fn xattr_answer(v: Vec<u8>, size: u32) -> FsResult<XattrAnswer> {
    if size == 0 {
        Ok(XattrAnswer::Size(v.len() as u32))
    } else if v.len() > size as usize {
        Err(Errno::ERANGE.into())
    } else {
        Ok(XattrAnswer::Data(v))
    }
}

impl CoreFs {
    /// close(2) of a descriptor. Every write has reached the backing file
    /// before it is answered and locks are the kernel's, so there is nothing
    /// to do. ENOSYS tells the kernel to stop sending FLUSH (one round trip
    /// less per close); it still writes back its own dirty pages and reports
    /// their errors at close without us.
    pub fn flush(&self) -> FsResult<()> {
        Err(Errno(libc::ENOSYS).into())
    }

    /// Permission checks are the kernel's (default_permissions) or, for a
    /// private mount, moot: only the owner reaches us.
    pub fn access(&self, _ino: u64) -> FsResult<()> {
        Ok(())
    }

    /// A write request; `kill_setid` when the kernel asks us to drop set-id
    /// bits first (the writer lacks CAP_FSETID).
    pub fn write_request(
        &self,
        who: crate::fs::Requester,
        ino: u64,
        fh: u64,
        off: u64,
        data: &[u8],
        kill_setid: bool,
    ) -> FsResult<u32> {
        if kill_setid {
            self.kill_setid(ino)?;
        }
        self.write_as(who, fh, off, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Kind;

    fn entries(n: usize) -> Vec<DirEntry> {
        (0..n)
            .map(|i| DirEntry {
                plain: format!("f{i}").into_bytes(),
                cipher: String::new(),
                backing_ino: 100 + i as u64,
                kind: Kind::File,
                unreadable: false,
            })
            .collect()
    }

    fn names(e: &[DirEntry], off: u64) -> Vec<(u64, String)> {
        listing(e, off)
            .map(|(n, s)| {
                let name = match s {
                    Slot::Dot => ".".to_owned(),
                    Slot::DotDot => "..".to_owned(),
                    Slot::Entry(e) => String::from_utf8_lossy(&e.plain).into_owned(),
                };
                (n, name)
            })
            .collect()
    }

    #[test]
    fn listing_offsets_resume_after_each_slot() {
        let e = entries(2);
        let all = names(&e, 0);
        let want = [(1, "."), (2, ".."), (3, "f0"), (4, "f1")];
        let want: Vec<_> = want.iter().map(|(n, s)| (*n, s.to_string())).collect();
        assert_eq!(all, want);
        // Resuming at each slot's offset yields exactly the slots after it.
        for (i, (off, _)) in want.iter().enumerate() {
            assert_eq!(names(&e, *off), want[i + 1..], "offset {off}");
        }
        assert!(names(&e, 99).is_empty());
    }

    #[test]
    fn setid_files_are_not_cached() {
        let t = std::time::UNIX_EPOCH;
        let mut a = Attr {
            ino: 2,
            size: 0,
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
            kind: Kind::File,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
        };
        assert_eq!(ttl(&a), ENTRY_TTL);
        a.perm = 0o4755;
        assert_eq!(ttl(&a), Duration::ZERO);
        assert!(truncate_kills_setid(true, 1000));
        assert!(!truncate_kills_setid(true, 0) && !truncate_kills_setid(false, 1000));
    }

    #[test]
    fn xattr_sizes_and_noxattr() {
        assert!(matches!(
            xattr_answer(vec![1; 4], 0),
            Ok(XattrAnswer::Size(4))
        ));
        assert!(matches!(xattr_answer(vec![1; 4], 3), Err(e) if e == Errno::ERANGE));
        assert!(matches!(xattr_answer(vec![1; 4], 4), Ok(XattrAnswer::Data(v)) if v.len() == 4));
        let off = MountPolicy {
            xattr: false,
            ..Default::default()
        };
        assert!(off.xattr_allowed().unwrap_err() == Errno(libc::ENOSYS));
        assert!(MountPolicy::default().xattr_allowed().is_ok());
        assert!(
            MountPolicy {
                writeback_cache: true,
                xattr: true
            }
            .kernel()
            .writeback_cache
        );
    }
}
