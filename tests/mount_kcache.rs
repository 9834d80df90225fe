//! The daemon's kernel-cache implementation on a real FUSE mount: after
//! `inval_entry` the kernel looks the name up again, after `inval_inode` it
//! asks for attributes again, although both were cached for an hour. A tiny
//! counting filesystem stands in for the core so the counts are exact.

mod common;

use dekfs::daemon::FuseKernelCache;
use dekfs::fs::kcache::KernelCache;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, ReplyAttr, ReplyEntry,
    Request,
};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

const HOUR: Duration = Duration::from_secs(3600);
const FILE_INO: u64 = 2;

#[derive(Default)]
struct Counts {
    lookups: AtomicUsize,
    getattrs: AtomicUsize,
}

struct Counting(Arc<Counts>);

fn attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if ino == 1 {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: 0o755,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for Counting {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == "x" {
            self.0.lookups.fetch_add(1, Ordering::SeqCst);
            reply.entry(&HOUR, &attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == FILE_INO {
            self.0.getattrs.fetch_add(1, Ordering::SeqCst);
        }
        reply.attr(&HOUR, &attr(ino.0));
    }
}

#[test]
fn notifier_drops_cached_entries_and_attributes() {
    require_fuse!();
    let dir = common::scratch_dir("dekfs-kcache-");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let counts = Arc::new(Counts::default());
    let session = fuser::Session::new(Counting(counts.clone()), &mnt, &fuser::Config::default())
        .expect("mount the counting filesystem");
    let cache = FuseKernelCache::new(session.notifier());
    let bg = session.spawn().expect("serve");
    let x = mnt.join("x");
    let n = |c: &AtomicUsize| c.load(Ordering::SeqCst);

    std::fs::metadata(&x).expect("stat x");
    std::fs::metadata(&x).expect("stat x again");
    assert_eq!(n(&counts.lookups), 1, "the entry is cached for an hour");
    assert_eq!(n(&counts.getattrs), 0, "the attributes came with the entry");

    cache.inval_entry(1, b"x");
    std::fs::metadata(&x).expect("stat x after inval_entry");
    assert_eq!(n(&counts.lookups), 2, "inval_entry must force a new LOOKUP");

    cache.inval_inode(FILE_INO, 0, 0);
    std::fs::metadata(&x).expect("stat x after inval_inode");
    assert_eq!(n(&counts.lookups), 2, "the entry itself stays cached");
    assert_eq!(
        n(&counts.getattrs),
        1,
        "inval_inode must force a new GETATTR"
    );

    // An entry the kernel never cached is not an error.
    cache.inval_entry(1, b"never-looked-up");
    drop(bg);
}
