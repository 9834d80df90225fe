//! Shared by the namespace tests (rename matrix, namespace stress): a plain
//! reference directory on tmpfs, snapshots of a tree that compare what a
//! program can see (names, kinds, contents, symlink targets, device numbers),
//! renameat2, and one look at the cipher directory (long-name records must
//! belong to an entry). It must not change the cipher directory.
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a program sees of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Fifo,
    Char(u64),
    Other,
}

/// Every entry below `root` (relative path -> what it is), or the error of
/// the first entry that cannot be read.
pub fn snapshot(root: &Path) -> Result<BTreeMap<PathBuf, Seen>, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Seen>) -> Result<(), String> {
    let rd = fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    for e in rd {
        let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        let md = fs::symlink_metadata(&p).map_err(|e| format!("lstat {}: {e}", p.display()))?;
        let ft = md.file_type();
        let seen = if ft.is_dir() {
            walk(root, &p, out)?;
            Seen::Dir
        } else if ft.is_symlink() {
            let t = fs::read_link(&p).map_err(|e| format!("readlink {}: {e}", p.display()))?;
            Seen::Symlink(t.into_os_string().into_encoded_bytes())
        } else if ft.is_file() {
            Seen::File(fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?)
        } else if ft.is_fifo() {
            Seen::Fifo
        } else if ft.is_char_device() {
            Seen::Char(md.rdev())
        } else {
            Seen::Other
        };
        out.insert(rel, seen);
    }
    Ok(())
}

/// renameat2(2): Ok or the errno.
pub fn rename2(from: &Path, to: &Path, flags: u32) -> Result<(), i32> {
    let flags = rustix::fs::RenameFlags::from_bits_retain(flags);
    rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, flags)
        .map_err(|e| e.raw_os_error())
}

/// Ok or the errno of an io::Result.
pub fn rc<T>(r: std::io::Result<T>) -> Result<(), i32> {
    r.map(drop).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A tmpfs mounted for the life of the value: the reference filesystem.
pub struct RefFs {
    pub dir: tempfile::TempDir,
}

impl RefFs {
    pub fn new() -> RefFs {
        let dir = tempfile::Builder::new()
            .prefix("dekfs-ref-")
            .tempdir()
            .expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mount a reference tmpfs");
        RefFs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RefFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

pub const FLAG_NAMES: [(u32, &str); 4] = [
    (0, "none"),
    (libc::RENAME_NOREPLACE, "NOREPLACE"),
    (libc::RENAME_EXCHANGE, "EXCHANGE"),
    (libc::RENAME_WHITEOUT, "WHITEOUT"),
];

/// Where dekfs deliberately differs from a native filesystem
/// (docs/DESIGN.md): a cross-directory exchange involving a symlink, and a
/// cross-directory move of a file with other links, are refused with EXDEV.
pub fn dekfs_refuses(cross: bool, flags: u32, src: Option<&Seen>, dst: Option<&Seen>) -> bool {
    let sym = |s: Option<&Seen>| matches!(s, Some(Seen::Symlink(_)));
    cross
        && flags & libc::RENAME_EXCHANGE != 0
        && src.is_some()
        && dst.is_some()
        && (sym(src) || sym(dst))
}

/// Long-name records (`dekfs.ln.<hash>.name`) whose entry is missing, and
/// long-name entries whose record is missing, anywhere below `cipher`.
pub fn record_mismatches(cipher: &Path) -> Vec<PathBuf> {
    let mut bad = Vec::new();
    let mut dirs = vec![cipher.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).expect("read cipher dir") {
            let p = e.expect("entry").path();
            let n = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                dirs.push(p.clone());
            }
            if let Some(entry) = n.strip_suffix(".name") {
                if d.join(entry).symlink_metadata().is_err() {
                    bad.push(p);
                }
            } else if n.starts_with("dekfs.ln.")
                && !n.contains(".tmp")
                && !d.join(format!("{n}.name")).exists()
            {
                bad.push(p);
            }
        }
    }
    bad
}
