//! Where a walk gets its directories and their keys, and how it holds an
//! object still while a visitor looks at it. `Offline` opens the cipher
//! directory itself and reads every dekfs.dir through layout/ (the volume
//! lock keeps the daemon out, so nothing needs holding). The online source
//! (`fs::online::Live`) implements the same trait through the live core:
//! directories and their cached keys come from its node table, and each
//! file or symlink is visited under the core's lock for it. A source must
//! not decide what is a problem beyond "this directory's key does not open".

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
    /// The subdirectory `name` (plaintext `plain`) of `parent`, whose key
    /// is `parent_key`. An `io::ErrorKind::NotFound` means it is gone (a
    /// live volume changed under the walk): the walker skips it.
    fn child(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_key: &DirKey,
        name: &str,
        plain: &[u8],
    ) -> io::Result<(OwnedFd, DirKeyState)>;

    /// The walker is done with a directory this source handed out.
    fn leave(&mut self, _dir: BorrowedFd<'_>) {}

    /// The walk is over (also after an error): whatever the source
    /// deferred is done now.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Runs `visit` on directory `dir` itself (its key file) while nothing
    /// moves it to another parent. Offline nothing does.
    fn hold_dir(
        &mut self,
        _dir: BorrowedFd<'_>,
        visit: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        visit()
    }

    /// Runs `visit` on a file or symlink of `dir` while no writer can
    /// change it. Offline there is no writer. Online, an object gone or
    /// replaced before it could be held is skipped (`Ok`).
    fn hold(
        &mut self,
        _dir: BorrowedFd<'_>,
        _dir_key: &DirKey,
        _obj: Held<'_>,
        visit: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        visit()
    }
}

/// The object a walker asks a source to hold still.
pub struct Held<'a> {
    /// Backing name in its directory.
    pub name: &'a str,
    /// Its plaintext name.
    pub plain: &'a [u8],
    /// The backing inode the listing showed.
    pub ino: u64,
}

/// What a directory's metadata says about its key, read through layout/:
/// the decision both sources make for a directory the daemon does not know.
pub fn dir_key_state(
    keys: &VolumeKeys,
    parent_key: &DirKey,
    fd: &OwnedFd,
) -> io::Result<DirKeyState> {
    Ok(match layout::read_dir_meta(fd) {
        // What a power cut can leave after mkdir (the daemon does not
        // fsync a new key until something below it is fsynced).
        Ok(m) if m.len() < layout::DIR_META_LEN && layout::only_dir_meta(fd)? => {
            DirKeyState::EmptyWithoutKey("empty directory with cut-short metadata")
        }
        Ok(m) => match keys.open_dir(parent_key, &m) {
            Ok(k) => DirKeyState::Open(Arc::new(k)),
            Err(e) => DirKeyState::Damaged(format!("directory key: {e}")),
        },
        Err(Errno::FBIG) => DirKeyState::Damaged("directory metadata too large".into()),
        Err(Errno::NOENT) if layout::only_dir_meta(fd)? => {
            DirKeyState::EmptyWithoutKey("empty directory without metadata")
        }
        Err(Errno::NOENT) => DirKeyState::Damaged("directory metadata missing".into()),
        Err(e) => return Err(e.into()),
    })
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
        _plain: &[u8],
    ) -> io::Result<(OwnedFd, DirKeyState)> {
        let fd = layout::open_dir(&parent, name)?;
        let state = dir_key_state(self.keys, parent_key, &fd)?;
        Ok((fd, state))
    }
}
