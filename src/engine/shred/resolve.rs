//! Plaintext path -> the backing entry a shred destroys. Names are encrypted
//! deterministically (AES-SIV), so each component is encoded under its
//! directory's key and looked up, then decoded back to be sure a long-form
//! entry's record really names it. It must refuse the volume root and any
//! path that climbs out of it, and must not follow backing symlinks.

use super::super::source::{DirKeyState, Offline, Source};
use crate::crypto::VolumeKeys;
use crate::layout::{self, BackingName, Decoded};
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;
use std::fmt;
use std::os::fd::AsFd;
use std::path::Path;

/// What a shred will destroy, by backing names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The plaintext path, normalised ("/a/b").
    pub plain: String,
    pub parent: Vec<String>,
    pub entry: String,
    pub record: Option<String>,
    pub kind: FileType,
}

impl Target {
    /// What the target is, in a word, for the confirmation prompt.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            FileType::Directory => "directory",
            FileType::RegularFile => "file",
            FileType::Symlink => "symlink",
            _ => "special file",
        }
    }
}

#[derive(Debug)]
pub enum ResolveError {
    /// The path names the volume root.
    Root,
    /// `..` climbs above the volume root.
    Outside,
    NotFound(String),
    /// A component before the last is not a directory.
    NotADirectory(String),
    /// A directory on the way has a key that does not open.
    Damaged(String),
    Io(std::io::Error),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Root => f.write_str("the path names the volume root"),
            ResolveError::Outside => f.write_str("the path leads outside the volume"),
            ResolveError::NotFound(p) => write!(f, "{p}: no such file or directory in the volume"),
            ResolveError::NotADirectory(p) => write!(f, "{p}: not a directory"),
            ResolveError::Damaged(p) => write!(f, "{p}: directory key does not open (damaged)"),
            ResolveError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl From<std::io::Error> for ResolveError {
    fn from(e: std::io::Error) -> Self {
        ResolveError::Io(e)
    }
}

impl From<Errno> for ResolveError {
    fn from(e: Errno) -> Self {
        ResolveError::Io(e.into())
    }
}

/// The components of a path inside the volume: "." dropped, ".." applied,
/// climbing above the root refused. Absolute and relative paths both count
/// from the volume root.
pub fn components(plain: &str) -> Result<Vec<&str>, ResolveError> {
    let mut out: Vec<&str> = Vec::new();
    for c in plain.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop().ok_or(ResolveError::Outside)?;
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(ResolveError::Root);
    }
    Ok(out)
}

/// Resolves `plain` in the unmounted volume at `cipherdir`.
pub fn resolve(cipherdir: &Path, keys: &VolumeKeys, plain: &str) -> Result<Target, ResolveError> {
    let comps = components(plain)?;
    let mut src = Offline::new(cipherdir, keys);
    let (mut fd, mut state) = src.root()?;
    let mut parent = Vec::new();
    let mut sofar = String::new();
    for (i, comp) in comps.iter().enumerate() {
        let here = if sofar.is_empty() {
            "/".to_owned()
        } else {
            sofar.clone()
        };
        sofar.push('/');
        sofar.push_str(comp);
        let key = match state {
            DirKeyState::Open(k) => k,
            DirKeyState::EmptyWithoutKey(_) => return Err(ResolveError::NotFound(sofar)),
            DirKeyState::Damaged(_) => return Err(ResolveError::Damaged(here)),
        };
        let bn = match BackingName::encode(&key, comp.as_bytes()) {
            Ok(bn) => bn,
            Err(_) => return Err(ResolveError::NotFound(sofar)),
        };
        let name = bn.name().to_owned();
        let st = match rustix::fs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Err(ResolveError::NotFound(sofar)),
            r => r?,
        };
        if layout::decode(&key, &fd, &name) != Decoded::Name(comp.as_bytes().to_vec()) {
            return Err(ResolveError::NotFound(sofar));
        }
        let kind = FileType::from_raw_mode(st.st_mode);
        if i + 1 == comps.len() {
            return Ok(Target {
                plain: sofar,
                parent,
                entry: name,
                record: bn.record_name(),
                kind,
            });
        }
        if kind != FileType::Directory {
            return Err(ResolveError::NotADirectory(sofar));
        }
        let (next, st) = src.child(fd.as_fd(), &key, &name, comp.as_bytes())?;
        parent.push(name);
        (fd, state) = (next, st);
    }
    Err(ResolveError::Root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_normalise_and_refuse() {
        assert_eq!(components("/a/./b/").unwrap(), vec!["a", "b"]);
        assert_eq!(components("a/../b").unwrap(), vec!["b"]);
        assert!(matches!(components("/"), Err(ResolveError::Root)));
        assert!(matches!(components("a/.."), Err(ResolveError::Root)));
        assert!(matches!(components("/../a"), Err(ResolveError::Outside)));
        assert!(matches!(
            components("a/../../b"),
            Err(ResolveError::Outside)
        ));
    }
}
