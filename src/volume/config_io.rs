//! Reading and atomically writing dekfs.conf (unique temp files; callers serialise through
//! `lock::ConfigLock`), and writing/reading the root dekfs.dir. Must NOT
//! parse or interpret the bytes (format does) nor hold keys.

use super::VolumeError;
use crate::format::{CONFIG_MAX_LEN, CONFIG_NAME, CONFIG_TMP_NAME, DIR_META_LEN, DIR_META_NAME};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Reads at most `cap + 1` bytes so an oversized (hostile) file cannot exhaust memory; the
/// caller sees `cap + 1` bytes and refuses.
fn read_capped(path: &Path, cap: usize) -> std::io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = Vec::with_capacity(cap.min(8192));
    f.take(cap as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The raw bytes of `CIPHERDIR/dekfs.conf` (≤ 64 KiB).
pub fn read_config_bytes(cipherdir: &Path) -> Result<Vec<u8>, VolumeError> {
    match read_capped(&cipherdir.join(CONFIG_NAME), CONFIG_MAX_LEN) {
        Ok(b) if b.len() > CONFIG_MAX_LEN => Err(VolumeError::Corrupt(
            "dekfs.conf is larger than 64 KiB".into(),
        )),
        Ok(b) => Ok(b),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(VolumeError::NotAVolume(cipherdir.to_path_buf()))
        }
        Err(e) => Err(VolumeError::Io(e)),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces dekfs.conf atomically: write a temp file of its own (`dekfs.conf.tmp.<random>`,
/// O_EXCL, never through a symlink), fsync, rename over, fsync the directory. A crash leaves
/// either the old or the new config, never a mix; its temp file is removed by the next holder
/// of the config lock, which every read-modify-write caller takes around this.
pub fn write_config_atomic(cipherdir: &Path, bytes: &[u8]) -> Result<(), VolumeError> {
    if bytes.len() > CONFIG_MAX_LEN {
        return Err(VolumeError::Corrupt(
            "refusing to write a config larger than 64 KiB".into(),
        ));
    }
    let suffix: [u8; 8] = crate::crypto::random_array()?;
    let tmp = cipherdir.join(format!("{CONFIG_TMP_NAME}.{}", hex(&suffix)));
    let r = write_new(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, cipherdir.join(CONFIG_NAME))?;
        sync_dir(cipherdir)
    });
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(r?)
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Read-only: the config is never edited in place, only replaced.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates the root dekfs.dir (must not exist yet) and fsyncs it and the directory.
pub(crate) fn write_root_dir_meta(cipherdir: &Path, meta: &[u8]) -> Result<(), VolumeError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(cipherdir.join(DIR_META_NAME))?;
    f.write_all(meta)?;
    f.sync_all()?;
    sync_dir(cipherdir)?;
    Ok(())
}

/// The root's dekfs.dir; anything but exactly 224 bytes is corruption.
pub(crate) fn read_root_dir_meta(cipherdir: &Path) -> Result<Vec<u8>, VolumeError> {
    match read_capped(&cipherdir.join(DIR_META_NAME), DIR_META_LEN) {
        Ok(b) if b.len() == DIR_META_LEN => Ok(b),
        Ok(_) => Err(VolumeError::Corrupt(
            "root dekfs.dir has the wrong size".into(),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(VolumeError::Corrupt("root dekfs.dir is missing".into()))
        }
        Err(e) => Err(VolumeError::Io(e)),
    }
}
