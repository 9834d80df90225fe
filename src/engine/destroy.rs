//! Whole-volume erasure (`dekfs destroy CIPHERDIR`): every copy of the KEK
//! lives in dekfs.conf (passphrase, recovery and TPM protector records; a
//! TPM protector's sealed object is a blob in its record, loaded into the
//! TPM only for the moment of an unlock, so there is no persistent TPM
//! object or NV index to evict), in temp files of a crashed config writer,
//! and nowhere else. This overwrites each of them in place with zeros,
//! syncs, unlinks them, overwrites the root dekfs.dir's slots for good
//! measure, and then proves the result: no config is left to unlock, and no
//! 64-byte window of the old config that looks like key material (a wrapped
//! KEK, a salt) is found in any file of the cipher directory. It must not be
//! run on a mounted volume (the caller holds the volume lock) and leaves the
//! rest of the ciphertext in place (it is noise once the KEK is gone).

use super::shred::verify::{Needle, Scanner};
use crate::format::{
    CONFIG_NAME, CONFIG_TMP_NAME, DIR_META_LEN, DIR_META_NAME, SLOT_LEN, WRAPPED_LEN,
};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a destroy did and found.
#[derive(Debug, Default)]
pub struct DestroyReport {
    /// Config and config temp files overwritten and removed.
    pub erased: Vec<PathBuf>,
    /// Windows of the old config looked for.
    pub needles: usize,
    /// Files still holding a window of the old config's key material.
    pub leftovers: Vec<(String, u64)>,
    /// A config still unlockable or readable afterwards.
    pub config_left: bool,
}

impl DestroyReport {
    pub fn is_clean(&self) -> bool {
        self.leftovers.is_empty() && !self.config_left
    }
}

/// Windows of `bytes` with the byte variety of random data, as needles.
fn key_windows(bytes: &[u8], seen: &mut HashSet<Needle>) {
    for w in bytes.windows(WRAPPED_LEN) {
        let distinct = w.iter().collect::<HashSet<_>>().len();
        if distinct >= 40 {
            let mut a = [0u8; WRAPPED_LEN];
            a.copy_from_slice(w);
            seen.insert(Needle::of(&a));
        }
    }
}

fn overwrite(path: &Path, from: u64, to: Option<u64>) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let len = f.metadata()?.len();
    let end = to.map_or(len, |t| t.min(len));
    if end > from {
        f.write_all_at(&vec![0u8; (end - from) as usize], from)?;
        f.sync_data()?;
    }
    Ok(())
}

/// The config and every config temp file in `cipherdir`.
fn config_files(cipherdir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cipherdir)? {
        let e = e?;
        let n = e.file_name();
        let n = n.to_string_lossy();
        if (n == CONFIG_NAME || n.starts_with(CONFIG_TMP_NAME)) && e.file_type()?.is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Erases every KEK copy of the volume at `cipherdir` and checks the result.
pub fn destroy(cipherdir: &Path) -> io::Result<DestroyReport> {
    let mut report = DestroyReport::default();
    let mut needles = HashSet::new();
    let files = config_files(cipherdir)?;
    for p in &files {
        // At most one config's worth: a hostile file cannot exhaust memory.
        let mut buf = Vec::new();
        File::open(p)?
            .take(crate::format::CONFIG_MAX_LEN as u64)
            .read_to_end(&mut buf)?;
        key_windows(&buf, &mut needles);
    }
    for p in &files {
        overwrite(p, 0, None)?;
    }
    for p in &files {
        std::fs::remove_file(p)?;
        report.erased.push(p.clone());
    }
    let meta = cipherdir.join(DIR_META_NAME);
    match overwrite(
        &meta,
        (DIR_META_LEN - 2 * SLOT_LEN) as u64,
        Some(DIR_META_LEN as u64),
    ) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    File::open(cipherdir)?.sync_all()?;
    report.config_left = !config_files(cipherdir)?.is_empty();
    report.needles = needles.len();
    let scanner = Scanner::new(needles.iter());
    scan_tree(cipherdir, "", &scanner, &mut report.leftovers)?;
    Ok(report)
}

fn scan_tree(dir: &Path, rel: &str, s: &Scanner, out: &mut Vec<(String, u64)>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if ft.is_dir() {
            scan_tree(&e.path(), &rel, s, out)?;
        } else if ft.is_file() {
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(e.path())?;
            let len = f.metadata()?.len();
            if let Some(off) = s.scan_file(&f, len)?.first() {
                out.push((rel, *off));
            }
        }
    }
    Ok(())
}
