//! Open files of the core: open, read, write, fsync, fallocate, release. It
//! must not resolve names; it maps handles to nodes and delegates the bytes
//! to `FileIo` under the node's lock.

use super::node::{lock, Kind, Node};
use super::{CoreFs, Errno, FsResult, OpenFile, Requester};
use crate::crypto::VolumeKeys;
use rustix::fs::OFlags;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl CoreFs {
    pub(super) fn open_file(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF.into())
    }

    /// Registers an open backing file; the first handle loads header and DEK
    /// (`created`: the file is new and empty, so there is nothing to load).
    pub(super) fn install_handle(
        &self,
        node: Arc<Node>,
        file: File,
        created: bool,
    ) -> FsResult<u64> {
        {
            let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
            if created && !io.is_loaded() {
                // The entry exists already: refusing the handle now would
                // leave it behind; its first write meets a lock instead.
                io.load_new();
            }
            self.reload(&node, &file, &mut io, None)?;
            node.open_handles.fetch_add(1, Ordering::AcqRel);
            self.nodes.revive(&node);
        }
        let fh = self.new_fh();
        lock(&self.files).insert(fh, Arc::new(OpenFile { node, file }));
        Ok(fh)
    }

    pub fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        let node = self.node(ino)?;
        match node.kind {
            Kind::File => {}
            Kind::Dir => return Err(Errno::EISDIR.into()),
            _ => return Err(Errno::EINVAL.into()),
        }
        if node.unreadable {
            return Err(self.integrity(ino, "entry name failed authentication"));
        }
        let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writing {
            self.check_writable()?;
        }
        // Read-modify-write of partial blocks needs read access even for
        // write-only opens; the kernel already checked the caller's rights.
        let mode = if writing {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        let file = self.reopen(&node, mode)?;
        self.install_handle(node, file, false)
    }

    /// Reads through `reply`, which sees the plaintext in place.
    pub fn read_with<R>(
        &self,
        fh: u64,
        off: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let of = self.open_file(fh)?;
        let io = self.loaded_io(&of)?;
        let mut n = 0;
        let r = io
            .read_with(&of.file, off, size, |b| {
                n = b.len();
                reply(b)
            })
            .map_err(|e| self.locate(of.node.ino, e))?;
        self.live.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(r)
    }

    /// The handle's file state for reading; a lock wiped it if it is not
    /// loaded, so it is loaded again from the header (keys permitting).
    fn loaded_io<'a>(
        &self,
        of: &'a OpenFile,
    ) -> FsResult<std::sync::RwLockReadGuard<'a, super::file_io::FileIo>> {
        let io = of.node.io.read().unwrap_or_else(|e| e.into_inner());
        if io.is_loaded() {
            return Ok(io);
        }
        drop(io);
        {
            let mut io = of.node.io.write().unwrap_or_else(|e| e.into_inner());
            self.reload(&of.node, &of.file, &mut io, None)?;
        }
        // A lock between the two guards leaves it unloaded: read_with refuses.
        Ok(of.node.io.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Loads a file's header and DEK unless loaded: on the first open, and
    /// again after a lock wiped them. `keys`: the caller's, if it holds them.
    fn reload(
        &self,
        node: &Node,
        file: &File,
        io: &mut super::file_io::FileIo,
        keys: Option<&VolumeKeys>,
    ) -> FsResult<()> {
        if io.is_loaded() {
            return Ok(());
        }
        let held;
        let keys = match keys {
            Some(k) => k,
            None => {
                held = self.vkeys()?;
                &held
            }
        };
        let (_, dkey) = self.dir_node(node.parent())?;
        self.load_io(node, file, io, keys, &dkey)
            .map_err(|e| self.locate(node.ino, e))
    }

    pub fn read(&self, fh: u64, off: u64, size: u32) -> FsResult<Vec<u8>> {
        self.read_with(fh, off, size, <[u8]>::to_vec)
    }

    pub fn write(&self, fh: u64, off: u64, data: &[u8]) -> FsResult<u32> {
        self.write_as(Requester::NONE, fh, off, data)
    }

    /// A write for `who`: a long zero fill before it stops if `who` is killed.
    pub fn write_as(&self, who: Requester, fh: u64, off: u64, data: &[u8]) -> FsResult<u32> {
        // A write cut short by ENOSPC leaves the file as it was, so it can run again.
        self.with_space(|| self.write_once(fh, off, data, who))
    }

    fn write_once(&self, fh: u64, off: u64, data: &[u8], who: Requester) -> FsResult<u32> {
        let of = self.open_file(fh)?;
        let mut io = of.node.io.write().unwrap_or_else(|e| e.into_inner());
        // Keys are taken under the file's lock: a lock either waits for
        // this write to finish or has already wiped them, never half.
        let keys = self.vkeys()?;
        self.reload(&of.node, &of.file, &mut io, Some(&keys))?;
        let (_, dkey) = self.dir_node(of.node.parent())?;
        let end = off.saturating_add(data.len() as u64);
        self.renew_if_due(&of.file, &mut io, &keys, &dkey, off, end)
            .map_err(|e| self.locate(of.node.ino, e))?;
        let n = io
            .write(&of.file, &keys, &dkey, off, data, who)
            .map_err(|e| self.locate(of.node.ino, e))?;
        self.live
            .bytes_written
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n as u32)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let of = self.open_file(fh)?;
        self.sync_dir_keys(of.node.parent())?;
        if datasync {
            of.file.sync_data()?;
        } else {
            of.file.sync_all()?;
        }
        Ok(())
    }

    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        self.sync_dir_keys(ino)?;
        let node = self.node(ino)?;
        let f = self.reopen(&node, OFlags::RDONLY | OFlags::DIRECTORY)?;
        f.sync_all()?;
        Ok(())
    }

    /// Only plain allocation (mode 0) is supported: it extends with
    /// encrypted zeros. Punching holes would create unauthenticated zeros.
    pub fn fallocate(&self, fh: u64, off: u64, len: u64, mode: i32) -> FsResult<()> {
        self.fallocate_as(Requester::NONE, fh, off, len, mode)
    }

    pub fn fallocate_as(
        &self,
        who: Requester,
        fh: u64,
        off: u64,
        len: u64,
        mode: i32,
    ) -> FsResult<()> {
        self.with_space(|| self.fallocate_once(fh, off, len, mode, who))
    }

    fn fallocate_once(
        &self,
        fh: u64,
        off: u64,
        len: u64,
        mode: i32,
        who: Requester,
    ) -> FsResult<()> {
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP.into());
        }
        let of = self.open_file(fh)?;
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        let mut io = of.node.io.write().unwrap_or_else(|e| e.into_inner());
        let keys = self.vkeys()?;
        self.reload(&of.node, &of.file, &mut io, Some(&keys))?;
        let (_, dkey) = self.dir_node(of.node.parent())?;
        let cur = io.plain_len().map_err(|e| self.locate(of.node.ino, e))?;
        if end > cur {
            self.renew_if_due(&of.file, &mut io, &keys, &dkey, cur, end)
                .map_err(|e| self.locate(of.node.ino, e))?;
            io.truncate(&of.file, &keys, &dkey, end, who)
                .map_err(|e| self.locate(of.node.ino, e))?;
        }
        Ok(())
    }

    /// The last handle of a file drops its DEK from memory.
    pub fn release(&self, fh: u64) {
        let Some(of) = lock(&self.files).remove(&fh) else {
            return;
        };
        let mut io = of.node.io.write().unwrap_or_else(|e| e.into_inner());
        // Gives back the unused part of a raised nonce reservation.
        io.settle(&of.file);
        if of.node.open_handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            io.unload();
            // An unlinked file's space becomes reclaimable now.
            self.space_gen.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `op`; on ENOSPC, first gives back the space of removed files
    /// (`reclaim_unlinked`) and, if that found any, runs it once more.
    pub(super) fn with_space<T>(&self, op: impl Fn() -> FsResult<T>) -> FsResult<T> {
        match op() {
            Err(e) if e == Errno::ENOSPC && self.reclaim_unlinked() > 0 => op(),
            r => r,
        }
    }

    /// Closes the descriptors of files that have no link left and no open
    /// handle, and returns how many. Such a node normally lives until the
    /// kernel's FORGET, which comes on its own time after `rm` returned (or
    /// never, while some process pins the inode, e.g. by an O_PATH
    /// descriptor), and until then the backing filesystem cannot free the
    /// space: `rm big; write` on a full disk would get ENOSPC. Done only on
    /// ENOSPC, because a retired node answers ESTALE to an open that raced
    /// the removal, which the kernel retries only once (see
    /// `NodeTable::retire`). Scans only when a removal or a last close
    /// happened since the previous scan.
    pub(super) fn reclaim_unlinked(&self) -> usize {
        let gen = self.space_gen.load(Ordering::Relaxed);
        if self.space_scanned.swap(gen, Ordering::Relaxed) == gen {
            return 0;
        }
        let mut freed = 0;
        for node in self.nodes.idle_files() {
            let _io = node.io.write().unwrap_or_else(|e| e.into_inner());
            if node.open_handles.load(Ordering::Acquire) == 0
                && matches!(self.stat_node(&node), Ok(st) if st.st_nlink == 0)
            {
                self.nodes.retire(&node);
                freed += 1;
            }
        }
        if freed > 0 {
            log::info!(
                "disk full: closed {freed} removed file(s) the kernel had not forgotten yet"
            );
        }
        freed
    }
}
