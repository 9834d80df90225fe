//! The read-only walk behind `fsck::check`: one directory at a time, in the
//! same naming rules as the filesystem core (docs/FORMAT.md). It must not
//! write anything; it opens backing files read-only and never follows
//! backing symlinks.

use super::{Problem, Report};
use crate::crypto::{names, DirKey, FileKey, VolumeKeys, BLOCK_OVERHEAD, CIPHER_BLOCK_SIZE};
use crate::format::{
    plain_size, CONFIG_NAME, DIR_META_LEN, DIR_META_NAME, HEADER_LEN, LONGNAME_PREFIX,
    LONGNAME_SUFFIX,
};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAX_LONGNAME_RECORD: u64 = 400;
/// Blocks read per pread while checking a file.
const BATCH: usize = 64;

pub struct Walker<'a> {
    root: &'a Path,
    keys: &'a VolumeKeys,
    report: &'a mut Report,
}

fn open_ro(p: &Path) -> std::io::Result<File> {
    let r = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(p);
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p),
        r => r,
    }
}

/// Reads at most `max` bytes; `None` if the file is larger.
fn read_capped(p: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    open_ro(p)?.take(max + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

impl<'a> Walker<'a> {
    pub fn new(root: &'a Path, keys: &'a VolumeKeys, report: &'a mut Report) -> Self {
        Walker { root, keys, report }
    }

    fn problem(&mut self, path: String, backing: &Path, what: impl Into<String>) {
        let backing = backing
            .strip_prefix(self.root)
            .unwrap_or(backing)
            .to_owned();
        self.report.problems.push(Problem {
            path,
            backing,
            what: what.into(),
        });
    }

    pub fn run(mut self) -> std::io::Result<()> {
        let meta_path = self.root.join(DIR_META_NAME);
        let root_key = match read_capped(&meta_path, DIR_META_LEN as u64)? {
            Some(m) => self.keys.open_root_dir(&m),
            None => Err(crate::crypto::CryptoError::InvalidLength("dir metadata")),
        };
        match root_key {
            Ok(k) => self.dir(self.root.to_owned(), "/".into(), &k),
            Err(e) => {
                let root = self.root.to_owned();
                self.problem("/".into(), &root, format!("root directory key: {e}"));
                Ok(())
            }
        }
    }

    fn dir(&mut self, path: PathBuf, plain: String, key: &DirKey) -> std::io::Result<()> {
        self.report.dirs += 1;
        let mut entries: Vec<String> = Vec::new();
        for e in fs::read_dir(&path)? {
            let name = e?.file_name();
            match name.to_str() {
                Some(n) => entries.push(n.to_owned()),
                None => self.problem(
                    join(&plain, &name.to_string_lossy()),
                    &path.join(&name),
                    "backing name is not ASCII",
                ),
            }
        }
        entries.sort();
        for cipher in entries {
            let bpath = path.join(&cipher);
            let encoded = if let Some(rest) = cipher.strip_prefix(LONGNAME_PREFIX) {
                if rest.contains('.') {
                    continue; // the `.name` record or a temp file
                }
                match self.long_record(&bpath, rest)? {
                    Ok(full) => full,
                    Err(what) => {
                        self.problem(join(&plain, &cipher), &bpath, what);
                        continue;
                    }
                }
            } else if cipher.contains('.') || cipher == DIR_META_NAME || cipher == CONFIG_NAME {
                continue; // reserved for dekfs
            } else {
                cipher.clone()
            };
            let name = match key.decrypt_name(&encoded) {
                Ok(n) => String::from_utf8_lossy(&n).into_owned(),
                Err(_) => {
                    self.problem(
                        join(&plain, &cipher),
                        &bpath,
                        "entry name failed authentication",
                    );
                    continue;
                }
            };
            self.entry(bpath, join(&plain, &name), key)?;
        }
        Ok(())
    }

    /// The full encoded name of a long-name entry, or what is wrong with it.
    fn long_record(&self, bpath: &Path, hash: &str) -> std::io::Result<Result<String, String>> {
        let rec = PathBuf::from(format!("{}{LONGNAME_SUFFIX}", bpath.display()));
        let bytes = match read_capped(&rec, MAX_LONGNAME_RECORD) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Err("long-name record too large".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err("long-name record missing".into()))
            }
            Err(e) => return Err(e),
        };
        let Ok(full) = String::from_utf8(bytes) else {
            return Ok(Err("long-name record is not ASCII".into()));
        };
        if names::long_name_hash(&full) != hash {
            return Ok(Err("long-name record does not match its hash".into()));
        }
        Ok(Ok(full))
    }

    fn entry(&mut self, bpath: PathBuf, plain: String, parent: &DirKey) -> std::io::Result<()> {
        let md = fs::symlink_metadata(&bpath)?;
        let ft = md.file_type();
        if ft.is_dir() {
            let meta = bpath.join(DIR_META_NAME);
            match read_capped(&meta, DIR_META_LEN as u64) {
                // What a power cut can leave after mkdir (the daemon does not
                // fsync a new key until something below it is fsynced).
                Ok(Some(m)) if m.len() < DIR_META_LEN && only_metadata(&bpath)? => {
                    self.report.notes.push(format!(
                        "{plain}: empty directory with cut-short metadata (re-keyed on first access)"
                    ));
                }
                Ok(Some(m)) => match self.keys.open_dir(parent, &m) {
                    Ok(k) => return self.dir(bpath, plain, &k),
                    Err(e) => self.problem(plain, &bpath, format!("directory key: {e}")),
                },
                Ok(None) => self.problem(plain, &bpath, "directory metadata too large"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if fs::read_dir(&bpath)?.next().is_none() {
                        self.report.notes.push(format!(
                            "{plain}: empty directory without metadata (re-keyed on first access)"
                        ));
                    } else {
                        self.problem(plain, &bpath, "directory metadata missing");
                    }
                }
                Err(e) => return Err(e),
            }
        } else if ft.is_symlink() {
            self.report.symlinks += 1;
            let target = fs::read_link(&bpath)?;
            let t = target.as_os_str().as_encoded_bytes();
            if parent.decrypt_symlink(t).is_err() {
                self.problem(plain, &bpath, "symlink target failed authentication");
            }
        } else if ft.is_file() {
            self.report.files += 1;
            if let Err(what) = self.file(&bpath, md.len(), parent)? {
                self.problem(plain, &bpath, what);
            }
        }
        // FIFOs, sockets and device nodes carry no encrypted payload.
        Ok(())
    }

    fn file(&mut self, p: &Path, csize: u64, dir: &DirKey) -> std::io::Result<Result<(), String>> {
        let psize = match plain_size(csize) {
            Ok(s) => s,
            Err(_) => return Ok(Err(format!("impossible ciphertext size {csize}"))),
        };
        if csize == 0 {
            return Ok(Ok(()));
        }
        let f = open_ro(p)?;
        let mut header = vec![0u8; HEADER_LEN];
        f.read_exact_at(&mut header, 0)?;
        let fk = match self.keys.open_file(dir, &header) {
            Ok(k) => k,
            Err(e) => return Ok(Err(format!("header: {e}"))),
        };
        let nblocks = psize.div_ceil(4096);
        let mut buf = vec![0u8; BATCH * CIPHER_BLOCK_SIZE];
        let mut out = vec![0u8; 4096];
        let mut idx = 0u64;
        while idx < nblocks {
            let n = (nblocks - idx).min(BATCH as u64);
            let start = HEADER_LEN as u64 + idx * CIPHER_BLOCK_SIZE as u64;
            let len = ((csize - start) as usize).min(n as usize * CIPHER_BLOCK_SIZE);
            f.read_exact_at(&mut buf[..len], start)?;
            for (j, stored) in buf[..len].chunks(CIPHER_BLOCK_SIZE).enumerate() {
                let i = idx + j as u64;
                if stored.len() <= BLOCK_OVERHEAD || open(&fk, i, stored, &mut out).is_err() {
                    return Ok(Err(format!("block {i} failed authentication")));
                }
                self.report.blocks += 1;
            }
            idx += n;
        }
        Ok(Ok(()))
    }
}

fn open(fk: &FileKey, i: u64, stored: &[u8], out: &mut [u8]) -> Result<usize, ()> {
    fk.open_block(i, stored, out).map_err(|_| ())
}

/// True if a backing directory holds nothing but its own key file(s).
fn only_metadata(dir: &Path) -> std::io::Result<bool> {
    for e in fs::read_dir(dir)? {
        if !e?.file_name().as_encoded_bytes().starts_with(b"dekfs.dir") {
            return Ok(false);
        }
    }
    Ok(true)
}
