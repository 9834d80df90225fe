//! Directory streams: opendir, the listing a readdir serves, releasedir.
//! It must not change entries; decoding names is names.rs's job.

use super::names;
use super::node::lock;
use super::{CoreFs, Errno, FsResult, OpenDir};
use std::sync::Arc;

impl CoreFs {
    /// Checks that `ino` is a readable directory and opens a stream on it.
    /// The listing is made by the first readdir (at offset 0), not here.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        if self.keyless_dir(ino).is_none() {
            self.dir_node(ino)?;
        }
        let fh = self.new_fh();
        lock(&self.dirs).insert(
            fh,
            Arc::new(OpenDir {
                ino,
                entries: Vec::new(),
            }),
        );
        Ok(fh)
    }

    /// The listing behind stream `fh` for a readdir at `offset`. Offset 0
    /// is the start of a pass (the first one, or one after rewinddir(),
    /// which POSIX requires to show the directory as it is now), so it reads
    /// the directory again; later offsets continue the pass's listing, so
    /// that offsets stay stable while the directory changes.
    pub fn readdir_entries(&self, ino: u64, fh: u64, offset: u64) -> FsResult<Arc<OpenDir>> {
        // A lock emptied the listings: continuing one would look like its end.
        self.check_unlocked()?;
        if offset != 0 {
            // A shred of this directory ends its streams too (a keyless directory has no
            // key to check, and is never a shredded one).
            if self.keyless_dir(ino).is_none() {
                self.dir_node(ino)?;
            }
            let Some(listing) = lock(&self.dirs).get(&fh).cloned() else {
                return Err(Errno::EBADF)?;
            };
            return Ok(listing);
        }
        if !lock(&self.dirs).contains_key(&fh) {
            return Err(Errno::EBADF)?;
        }
        let entries = match self.keyless_dir(ino) {
            Some(node) => self.keyless_listing(&node)?,
            None => {
                let (node, key) = self.dir_node(ino)?;
                names::list(&key, &node.fd, |cipher| {
                    self.report_damage(ino, format!("entry name {cipher} failed authentication"));
                })?
            }
        };
        let listing = Arc::new(OpenDir { ino, entries });
        if let Some(slot) = lock(&self.dirs).get_mut(&fh) {
            *slot = listing.clone();
        }
        Ok(listing)
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }
}
