//! Plaintext name <-> backing name mapping, long-name records and directory
//! listing. It must not write file contents or hold keys beyond a borrow.

use super::node::Kind;
use super::{read_small, Errno, FsResult};
use crate::crypto::DirKey;
use crate::format::{CONFIG_NAME, DIR_META_NAME, LONGNAME_PREFIX, LONGNAME_SUFFIX};
use base64::Engine;
use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};
use std::os::fd::AsFd;

/// Longest backing name most filesystems accept.
const MAX_BACKING_NAME: usize = 255;
/// An encoded long name is at most base64 of 255 + 16 bytes.
const MAX_LONGNAME_RECORD: usize = 400;
/// Readdir shows entries whose names fail to authenticate under this prefix.
pub const RECOVERY_PREFIX: &str = ".dekfs-unreadable-";

pub enum BackingName {
    Short(String),
    /// `hashed` is the on-disk entry; `full` goes into the `.name` record.
    Long {
        hashed: String,
        full: String,
    },
}

impl BackingName {
    pub fn name(&self) -> &str {
        match self {
            BackingName::Short(s) => s,
            BackingName::Long { hashed, .. } => hashed,
        }
    }

    pub fn encode(dir: &DirKey, plain: &[u8]) -> FsResult<BackingName> {
        if plain.is_empty() || plain.len() > 255 || plain.contains(&b'/') || plain.contains(&0) {
            return Err(if plain.len() > 255 {
                Errno::ENAMETOOLONG.into()
            } else {
                Errno::EINVAL.into()
            });
        }
        let enc = dir.encrypt_name(plain).map_err(super::CoreError::Crypto)?;
        if enc.len() <= MAX_BACKING_NAME {
            return Ok(BackingName::Short(enc));
        }
        let hash =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(enc.as_bytes()));
        Ok(BackingName::Long {
            hashed: format!("{LONGNAME_PREFIX}{hash}"),
            full: enc,
        })
    }

    /// Long names need their record on disk before the entry itself, so a
    /// crash never leaves an entry without a name.
    pub fn write_record(&self, dir: &impl AsFd) -> FsResult<()> {
        if let BackingName::Long { hashed, full } = self {
            super::write_small_atomic(dir, &format!("{hashed}{LONGNAME_SUFFIX}"), full.as_bytes())?;
        }
        Ok(())
    }

    /// Removes the long-name record once its entry is gone.
    pub fn remove_record(&self, dir: &impl AsFd) {
        if let BackingName::Long { hashed, .. } = self {
            let _ = rustix::fs::unlinkat(
                dir,
                format!("{hashed}{LONGNAME_SUFFIX}").as_str(),
                rustix::fs::AtFlags::empty(),
            );
        }
    }
}

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
    if cipher == "." || cipher == ".." {
        return Decoded::Internal;
    }
    if let Some(rest) = cipher.strip_prefix(LONGNAME_PREFIX) {
        if rest.contains('.') {
            return Decoded::Internal; // the `.name` record or a temp file
        }
        let Ok(rec) = read_small(
            dirfd,
            &format!("{cipher}{LONGNAME_SUFFIX}"),
            MAX_LONGNAME_RECORD,
        ) else {
            return Decoded::Unreadable;
        };
        let Ok(full) = std::str::from_utf8(&rec) else {
            return Decoded::Unreadable;
        };
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(full.as_bytes()));
        if hash != rest {
            return Decoded::Unreadable;
        }
        return match dir.decrypt_name(full) {
            Ok(p) => Decoded::Name(p),
            Err(_) => Decoded::Unreadable,
        };
    }
    if cipher.contains('.') || cipher == DIR_META_NAME || cipher == CONFIG_NAME {
        return Decoded::Internal;
    }
    match dir.decrypt_name(cipher) {
        Ok(p) => Decoded::Name(p),
        Err(_) => Decoded::Unreadable,
    }
}

fn kind_of(t: rustix::fs::FileType) -> Kind {
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

pub fn recovery_name(cipher: &str) -> Vec<u8> {
    let h = Sha256::digest(cipher.as_bytes());
    format!("{RECOVERY_PREFIX}{}", hex8(&h[..8])).into_bytes()
}

fn hex8(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lists a backing directory, decoding every name. Unreadable names come back
/// with `plain` set to their recovery name and are reported via `on_bad`.
pub fn list(
    dir: &DirKey,
    dirfd: &impl AsFd,
    mut on_bad: impl FnMut(&str),
) -> FsResult<Vec<DirEntry>> {
    let fd = rustix::fs::openat(
        dirfd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    // Dir::new reads through this very descriptor (read_from would dup it
    // with two more syscalls); only *at() calls use it alongside.
    let mut d = rustix::fs::Dir::new(fd)?;
    while let Some(ent) = d.read() {
        let ent = ent?;
        let Ok(cipher) = ent.file_name().to_str() else {
            continue;
        };
        let cipher = cipher.to_owned();
        let (plain, unreadable) = match decode(dir, &d.fd()?, &cipher) {
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
            backing_ino: ent.ino(),
            kind: kind_of(ent.file_type()),
            unreadable,
        });
    }
    Ok(out)
}

/// Finds the backing entry behind a recovery name (slow path, rare).
pub fn find_recovery(dirfd: &impl AsFd, wanted: &[u8]) -> FsResult<String> {
    let fd = rustix::fs::openat(
        dirfd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for ent in rustix::fs::Dir::new(fd)? {
        let ent = ent?;
        if let Ok(c) = ent.file_name().to_str() {
            if recovery_name(c) == wanted {
                return Ok(c.to_owned());
            }
        }
    }
    Err(Errno::ENOENT.into())
}
