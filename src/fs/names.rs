//! The daemon's view of layout/: backing names for the core's operations and
//! directory listings with the core's `Kind`. The naming rules themselves
//! live in `crate::layout`; this file must not add any of its own.

use super::node::Kind;
use super::{Errno, FsResult};
use crate::crypto::DirKey;
use crate::layout;
use std::os::fd::AsFd;

pub use crate::layout::{recovery_name, BackingName, RECOVERY_PREFIX};

pub struct DirEntry {
    pub plain: Vec<u8>,
    pub cipher: String,
    pub backing_ino: u64,
    pub kind: Kind,
    /// The name failed to authenticate; `plain` is its recovery name.
    pub unreadable: bool,
}

pub enum Decoded {
    Name(Vec<u8>),
    /// dekfs's own metadata: never shown.
    Internal,
    /// Fails to authenticate: shown under a recovery name, logged by caller.
    Unreadable,
}

/// Decodes one backing entry name of a directory.
pub fn decode(dir: &DirKey, dirfd: &impl AsFd, cipher: &str) -> Decoded {
    match layout::decode(dir, dirfd, cipher) {
        layout::Decoded::Name(p) => Decoded::Name(p),
        layout::Decoded::Internal => Decoded::Internal,
        layout::Decoded::Unreadable(_) => Decoded::Unreadable,
    }
}

pub fn kind_of(t: rustix::fs::FileType) -> Kind {
    use rustix::fs::FileType as T;
    match t {
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Fifo => Kind::Fifo,
        T::Socket => Kind::Socket,
        T::CharacterDevice => Kind::CharDev,
        T::BlockDevice => Kind::BlockDev,
        _ => Kind::File,
    }
}

/// Lists a backing directory, decoding every name. Unreadable names come back
/// with `plain` set to their recovery name and are reported via `on_bad`.
pub fn list(
    dir: &DirKey,
    dirfd: &impl AsFd,
    mut on_bad: impl FnMut(&str),
) -> FsResult<Vec<DirEntry>> {
    let mut out = Vec::new();
    // Names that are not UTF-8 are never dekfs's: not shown, as before.
    for ent in layout::list(dirfd)? {
        let Some(cipher) = ent.name else { continue };
        let (plain, unreadable) = match decode(dir, dirfd, &cipher) {
            Decoded::Internal => continue,
            Decoded::Name(p) => (p, false),
            Decoded::Unreadable => {
                on_bad(&cipher);
                (recovery_name(&cipher), true)
            }
        };
        out.push(DirEntry {
            plain,
            cipher,
            backing_ino: ent.ino,
            kind: kind_of(ent.file_type),
            unreadable,
        });
    }
    Ok(out)
}

/// Finds the backing entry behind a recovery name (slow path, rare).
pub fn find_recovery(dirfd: &impl AsFd, wanted: &[u8]) -> FsResult<String> {
    layout::find_recovery(dirfd, wanted).map_err(|e| Errno::from(e).into())
}
