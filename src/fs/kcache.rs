//! The kernel's caches as the core sees them: a trait to drop cached pages,
//! attributes and directory entries when keys or names change behind the
//! kernel's back (lock, shred). It must not know FUSE types; the daemon
//! supplies the implementation, tests without a mount use `NoKernelCache`.

use super::CoreFs;
use std::sync::Arc;

/// Invalidation requests to the kernel. Implementations must not block on
/// a FUSE request: they may be called from a request handler, and the
/// kernel can wait for that very request while handling the notification.
pub trait KernelCache: Send + Sync {
    /// Drops the attributes of `ino` and its cached data in `off..off+len`
    /// (`len` 0 means to the end; `off` negative drops attributes only).
    fn inval_inode(&self, ino: u64, off: i64, len: i64);
    /// Drops the dentry `name` in directory `parent`, so the next access
    /// looks it up again.
    fn inval_entry(&self, parent: u64, name: &[u8]);
}

/// For a core without a kernel (unit tests, offline tools): nothing is cached.
pub struct NoKernelCache;

impl KernelCache for NoKernelCache {
    fn inval_inode(&self, _ino: u64, _off: i64, _len: i64) {}
    fn inval_entry(&self, _parent: u64, _name: &[u8]) {}
}

impl CoreFs {
    /// Installs the kernel cache once the session exists; a second call is
    /// refused (returns false) because invalidations must reach one kernel.
    pub fn set_kernel_cache(&self, k: Arc<dyn KernelCache>) -> bool {
        self.kcache.set(k).is_ok()
    }

    /// The installed kernel cache, or one that does nothing before a mount.
    pub fn kernel_cache(&self) -> &dyn KernelCache {
        match self.kcache.get() {
            Some(k) => k.as_ref(),
            None => &NoKernelCache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    pub(crate) fn test_core() -> (tempfile::TempDir, CoreFs) {
        let keys = || {
            let k = crate::secret::Key32::from_array(&mut [9u8; 32]);
            crate::crypto::VolumeKeys::from_parts([7u8; 16], vec![(1, k)], 1).expect("keys")
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, meta) = keys().create_root_dir().expect("root");
        std::fs::write(dir.path().join(crate::format::DIR_META_NAME), meta).expect("meta");
        let core = CoreFs::new(dir.path(), Arc::new(keys()), false).expect("core");
        (dir, core)
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl KernelCache for Recorder {
        fn inval_inode(&self, ino: u64, off: i64, len: i64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("inode {ino} {off} {len}"));
        }
        fn inval_entry(&self, parent: u64, name: &[u8]) {
            let n = String::from_utf8_lossy(name);
            self.0.lock().unwrap().push(format!("entry {parent} {n}"));
        }
    }

    #[test]
    fn installed_once_and_reached_through_the_core() {
        let (_dir, core) = test_core();
        core.kernel_cache().inval_entry(1, b"before");
        let rec = Arc::new(Recorder::default());
        assert!(core.set_kernel_cache(rec.clone()));
        assert!(!core.set_kernel_cache(Arc::new(NoKernelCache)));
        core.kernel_cache().inval_entry(1, b"a");
        core.kernel_cache().inval_inode(7, 0, 0);
        assert_eq!(*rec.0.lock().unwrap(), ["entry 1 a", "inode 7 0 0"]);
    }
}
