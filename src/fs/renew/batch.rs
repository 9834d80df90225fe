//! Offline renewal of many files at once: the same steps as
//! `renew_in_place`, in the same order for every file, but each step is made
//! durable for a whole batch by one `syncfs` instead of a sync per file (a
//! disk does few syncs a second). It must not be used on a live volume (no
//! node locks) and must not start a step for any file of the batch before
//! the previous step is durable for all of them.

use super::{
    journal_dir, journal_name, prepare, remove_journal, reseal_blocks, restore, write_journal,
    FP_FLAGGED, FP_HEADER, FP_JOURNAL, FP_SEALED,
};
use crate::crypto::{DirKey, FileKey, VolumeKeys, FEATURE_RENEWING};
use crate::format::HEADER_LEN;
use crate::fs::{CoreError, FsResult};
use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

struct Item<T> {
    tag: T,
    f: File,
    old: FileKey,
    header: [u8; HEADER_LEN],
    flag: [u8; HEADER_LEN],
    name: String,
    nblocks: u64,
    paged: bool,
    new: FileKey,
    nh: [u8; HEADER_LEN],
    failed: Option<CoreError>,
}

/// Files whose journals are written, waiting for the batch's steps.
pub struct Batch<T> {
    jdir: OwnedFd,
    items: Vec<Item<T>>,
}

impl<T> Batch<T> {
    pub fn new(root: BorrowedFd<'_>) -> FsResult<Batch<T>> {
        Ok(Batch {
            jdir: journal_dir(root, true)?,
            items: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Writes `f`'s journal (not synced yet) and takes it into the batch;
    /// `false` if the batch already holds this file (another hard link).
    /// On an error the file is untouched and not taken.
    pub fn add(
        &mut self,
        tag: T,
        f: File,
        keys: &VolumeKeys,
        dir: &DirKey,
        old: FileKey,
        header: &[u8; HEADER_LEN],
    ) -> FsResult<bool> {
        let name = journal_name(old.file_id());
        if self.items.iter().any(|it| it.name == name) {
            return Ok(false);
        }
        let p = prepare(&f, header)?;
        let flag = old
            .header_with_features(header, p.features | FEATURE_RENEWING)
            .map_err(CoreError::Crypto)?;
        let (new, nh) = keys
            .renew_file(dir, p.nblocks, p.required)
            .map_err(CoreError::Crypto)?;
        write_journal(&self.jdir, &name, &f, p.csize, false)?;
        self.items.push(Item {
            tag,
            f,
            old,
            header: *header,
            flag,
            name,
            nblocks: p.nblocks,
            paged: p.paged,
            new,
            nh,
            failed: None,
        });
        Ok(true)
    }

    /// Runs the steps for every file of the batch and empties it: each
    /// file's tag with its new file_id, or what failed (that file is then
    /// as it was).
    pub fn finish(&mut self) -> Vec<(T, File, FsResult<[u8; 16]>)> {
        if !self.items.is_empty() {
            self.steps();
        }
        let jdir = &self.jdir;
        self.items
            .drain(..)
            .map(|it| {
                let r = match it.failed {
                    Some(e) => Err(e),
                    None => {
                        let _ = remove_journal(jdir, &it.name);
                        Ok(*it.new.file_id())
                    }
                };
                (it.tag, it.f, r)
            })
            .collect()
    }

    fn steps(&mut self) {
        self.durable(FP_JOURNAL);
        self.each(|it| {
            it.f.write_all_at(&it.flag[..72], 0)?;
            Ok(())
        });
        self.durable(FP_FLAGGED);
        self.each(|it| reseal_blocks(&it.f, &it.old, &it.new, it.nblocks, it.paged));
        self.durable(FP_SEALED);
        self.each(|it| {
            it.f.write_all_at(&it.nh, 0)?;
            Ok(())
        });
        self.durable(FP_HEADER);
    }

    /// Runs `step` on every file still in the batch; one that fails is put
    /// back from its journal at once (synced) and leaves the batch's steps.
    fn each(&mut self, mut step: impl FnMut(&Item<T>) -> FsResult<()>) {
        for it in self.items.iter_mut().filter(|it| it.failed.is_none()) {
            if let Err(e) = step(it) {
                let _ = restore(&self.jdir, &it.name, &it.f, &it.header);
                it.failed = Some(e);
            }
        }
    }

    /// One sync of the whole filesystem makes the last step durable for
    /// every file; if it fails, every file still in the batch is restored.
    fn durable(&mut self, point: &str) {
        if let Err(e) = rustix::fs::syncfs(&self.jdir) {
            for it in self.items.iter_mut().filter(|it| it.failed.is_none()) {
                let _ = restore(&self.jdir, &it.name, &it.f, &it.header);
                it.failed = Some(CoreError::Sys(e.into()));
            }
            return;
        }
        for _ in self.items.iter().filter(|it| it.failed.is_none()) {
            crate::failpoint::hit(point);
        }
    }
}
