//! `fsck --salvage OUT`: writes what authenticates of every file, directory and symlink into a
//! fresh plaintext tree OUT, and lists the byte ranges that do not. Unreadable ranges are left
//! as holes (they read as zeros in OUT, and the report names them). It must never write into
//! the cipher directory, never follow or replace anything already in OUT, and never write a
//! byte that did not authenticate. OUT's files and directories are private to the owner
//! (0600/0700): they hold plaintext.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One plaintext range that could not be salvaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Plaintext path inside the volume ("/a/b").
    pub path: String,
    pub start: u64,
    pub end: u64,
    pub what: String,
}

pub struct Salvage {
    out: PathBuf,
    pub files: u64,
    pub bytes: u64,
}

impl Salvage {
    /// OUT must not exist yet, or be an empty directory; it is created 0700.
    pub fn new(out: &Path) -> io::Result<Salvage> {
        match std::fs::read_dir(out) {
            Ok(mut d) => {
                if d.next().is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is not empty", out.display()),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new().mode(0o700).create(out)?;
            }
            Err(e) => return Err(e),
        }
        Ok(Salvage {
            out: out.to_owned(),
            files: 0,
            bytes: 0,
        })
    }

    fn target(&self, path: &str) -> PathBuf {
        self.out.join(path.trim_start_matches('/'))
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        if path == "/" {
            return Ok(());
        }
        DirBuilder::new().mode(0o700).create(self.target(path))
    }

    /// A new file for `path`; never opens an existing one (O_EXCL, no symlink followed).
    pub fn file(&mut self, path: &str) -> io::Result<File> {
        self.files += 1;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.target(path))
    }

    pub fn write(&mut self, f: &File, off: u64, bytes: &[u8]) -> io::Result<()> {
        self.bytes += bytes.len() as u64;
        f.write_all_at(bytes, off)
    }

    pub fn symlink(&mut self, path: &str, target: &[u8]) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), self.target(path))
    }
}
