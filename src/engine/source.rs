//! Where a walk gets its directories and their keys. `Offline` opens the
//! cipher directory itself and reads every dekfs.dir through layout/ (the
//! volume must not be mounted; a volume lock will guard that). An online
//! source, next for rekey and shred, will implement the same trait through
//! the live core: directory descriptors and cached keys from its node table,
//! each directory held under the core's lock while it is visited. A source
//! must not decide what is a problem beyond "this directory's key does not
//! open".

use crate::crypto::{DirKey, VolumeKeys};
use crate::layout;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// A directory's key, or why there is none.
pub enum DirKeyState {
    Open(Arc<DirKey>),
    /// Not a problem: an empty directory whose key a power cut cut short or
    /// lost; the daemon gives it a fresh key on first access. The text says
    /// which case.
    EmptyWithoutKey(&'static str),
    /// The key does not open: the whole subtree is unreadable.
    Damaged(String),
}

/// The directories of one cipher tree, by descriptor.
pub trait Source {
    /// The cipher root and its key.
    fn root(&mut self) -> io::Result<(OwnedFd, DirKeyState)>;
    /// The subdirectory `name` of `parent` (whose key is `parent_key`).
    fn child(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_key: &DirKey,
        name: &str,
    ) -> io::Result<(OwnedFd, DirKeyState)>;
}

/// An unmounted cipher directory, read through the volume's keys.
pub struct Offline<'a> {
    root: &'a Path,
    keys: &'a VolumeKeys,
}

impl<'a> Offline<'a> {
    pub fn new(root: &'a Path, keys: &'a VolumeKeys) -> Self {
        Offline { root, keys }
    }
}

impl Source for Offline<'_> {
    fn root(&mut self) -> io::Result<(OwnedFd, DirKeyState)> {
        // The only path ever opened: everything below is relative to it.
        let fd = rustix::fs::open(
            self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let state = match layout::read_dir_meta(&fd) {
            Ok(m) => match self.keys.open_root_dir(&m) {
                Ok(k) => DirKeyState::Open(Arc::new(k)),
                Err(e) => DirKeyState::Damaged(format!("root directory key: {e}")),
            },
            Err(Errno::FBIG) => DirKeyState::Damaged("root directory metadata too large".into()),
            Err(e) => return Err(e.into()),
        };
        Ok((fd, state))
    }

    fn child(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_key: &DirKey,
        name: &str,
    ) -> io::Result<(OwnedFd, DirKeyState)> {
        let fd = layout::open_dir(&parent, name)?;
        let state = match layout::read_dir_meta(&fd) {
            // What a power cut can leave after mkdir (the daemon does not
            // fsync a new key until something below it is fsynced).
            Ok(m) if m.len() < layout::DIR_META_LEN && layout::only_dir_meta(&fd)? => {
                DirKeyState::EmptyWithoutKey("empty directory with cut-short metadata")
            }
            Ok(m) => match self.keys.open_dir(parent_key, &m) {
                Ok(k) => DirKeyState::Open(Arc::new(k)),
                Err(e) => DirKeyState::Damaged(format!("directory key: {e}")),
            },
            Err(Errno::FBIG) => DirKeyState::Damaged("directory metadata too large".into()),
            Err(Errno::NOENT) if layout::only_dir_meta(&fd)? => {
                DirKeyState::EmptyWithoutKey("empty directory without metadata")
            }
            Err(Errno::NOENT) => DirKeyState::Damaged("directory metadata missing".into()),
            Err(e) => return Err(e.into()),
        };
        Ok((fd, state))
    }
}
