//! The core's side of DEK renewal: a file whose header an interrupted
//! renewal left flagged is restored from its journal when it is loaded, and
//! a write, truncate or fallocate that would take a DEK past its renewal
//! threshold renews it first. It must not re-encrypt anything itself
//! (fs/renew.rs does) or run without the node's `io` write lock.

use super::file_io::{renew::blocks_needed, FileIo};
use super::node::Node;
use super::{renew, CoreError, CoreFs, FsResult, ROOT_INO};
use crate::crypto::{DirKey, VolumeKeys};
use rustix::fs::OFlags;
use std::fs::File;
use std::os::fd::AsFd;

impl CoreFs {
    /// `FileIo::load`, finishing an interrupted renewal first if the header
    /// says one was under way.
    pub(super) fn load_io(
        &self,
        node: &Node,
        file: &File,
        io: &mut FileIo,
        keys: &VolumeKeys,
        dkey: &DirKey,
    ) -> FsResult<()> {
        io.load(file, keys, dkey)?;
        let Some(h) = io.header().copied() else {
            return Ok(());
        };
        if !renew::flagged(&h) {
            return Ok(());
        }
        if self.read_only {
            io.unload();
            return Err(CoreError::damage(
                "an interrupted DEK renewal: mount read-write once to finish it",
            ));
        }
        // The handle may be read-only; the restore writes.
        let rw = self.reopen(node, OFlags::RDWR)?;
        let root = self.node(ROOT_INO)?;
        let r = renew::recover(root.fd.as_fd(), &rw, keys, dkey, &h);
        io.unload();
        r?;
        io.load(file, keys, dkey)
    }

    /// Renews the file's DEK if writing plaintext `off..end` could take it
    /// past the renewal threshold (`end <= off`: a shrink).
    pub(super) fn renew_if_due(
        &self,
        file: &File,
        io: &mut FileIo,
        keys: &VolumeKeys,
        dkey: &DirKey,
        off: u64,
        end: u64,
    ) -> FsResult<()> {
        let plen = io.plain_len()?;
        if !io.renewal_due(blocks_needed(plen, off, end)) {
            return Ok(());
        }
        let root = self.node(ROOT_INO)?;
        log::info!("renewing a file's DEK: its nonce budget is nearly used");
        io.renew(root.fd.as_fd(), file, keys, dkey)
    }
}
