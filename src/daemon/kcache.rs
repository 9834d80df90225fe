//! The kernel cache of a live mount: the core's `KernelCache` trait backed
//! by fuser's notifier. It must not be called while holding a lock that a
//! FUSE request handler may wait for (the kernel can block the notification
//! until such a request completes).

use crate::fs::kcache::KernelCache;
use fuser::{INodeNo, Notifier};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub struct FuseKernelCache {
    notifier: Notifier,
}

impl FuseKernelCache {
    pub fn new(notifier: Notifier) -> Self {
        FuseKernelCache { notifier }
    }
}

// Failures are logged, not returned: the kernel drops an entry it no longer
// has (fuser already maps that ENOENT to success), and anything else means
// the connection is going away, which drops every cache anyway.
impl KernelCache for FuseKernelCache {
    fn inval_inode(&self, ino: u64, off: i64, len: i64) {
        if let Err(e) = self.notifier.inval_inode(INodeNo(ino), off, len) {
            log::warn!("kernel cache: invalidating inode {ino}: {e}");
        }
    }

    fn inval_entry(&self, parent: u64, name: &[u8]) {
        if let Err(e) = self
            .notifier
            .inval_entry(INodeNo(parent), OsStr::from_bytes(name))
        {
            log::warn!("kernel cache: invalidating an entry of inode {parent}: {e}");
        }
    }
}
