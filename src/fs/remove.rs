//! Removing entries: unlink and rmdir (an empty directory still holds its
//! key file), and the tidying of long-name records whose entry is gone. It
//! must not create or move entries.

use super::names::BackingName;
use super::node::lock;
use super::{read_small, write_small_atomic, CoreFs, Errno, FsResult};
use crate::format::{DIR_META_LEN, DIR_META_NAME};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

/// Removes `bn`'s long-name record if no entry of that name exists (any
/// more, or yet): after a failed create or rename, and after a rename that
/// may or may not have left something at the name (exchange, whiteout, a
/// rename onto another link of the same file). A record is only ever
/// removed after its entry, so a crash never leaves an entry without one.
pub(super) fn drop_record_if_unused(dirfd: &impl AsFd, bn: &BackingName) {
    if matches!(bn, BackingName::Long { .. })
        && matches!(
            rustix::fs::statat(dirfd, bn.name(), AtFlags::SYMLINK_NOFOLLOW),
            Err(rustix::io::Errno::NOENT)
        )
    {
        bn.remove_record(dirfd);
    }
}

impl CoreFs {
    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        self.check_writable()?;
        if let Some(pnode) = self.keyless_dir(parent) {
            return self.keyless_remove(&pnode, name, dir);
        }
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

    /// Removes an empty directory: its metadata first, then the directory;
    /// the metadata is restored if the directory turns out not to be empty.
    pub(super) fn remove_dir_entry(&self, pfd: &impl AsFd, bn: &BackingName) -> FsResult<()> {
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
                return Err(Errno::ENOTEMPTY)?;
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
}
