//! The two advisory locks of a volume, both flock(2) on reserved files in
//! the cipher directory: the volume lock (`dekfs.lock`: one owner of the
//! tree, i.e. the mount daemon, `fsck --repair`, later offline rekey/shred)
//! and the config lock (`dekfs.conf.lock`: one read-modify-write of
//! dekfs.conf at a time). It must not trust the lock file's content (it is
//! unauthenticated and only feeds messages) and must not unlock explicitly:
//! a flock belongs to the open file description, which a forked daemon
//! shares with the parent that took it, so closing is the only release.
//!
//! Lock order: volume lock before config lock.

use crate::format::CONFIG_TMP_NAME;
use rustix::fs::FlockOperation;
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Held by the daemon for the life of a mount and by offline tree writers.
pub const VOLUME_LOCK_NAME: &str = "dekfs.lock";
/// Held across every read-modify-write of dekfs.conf.
pub const CONFIG_LOCK_NAME: &str = "dekfs.conf.lock";
/// What a lock file may hold; anything longer is cut (it is only a message).
const MAX_RECORD: u64 = 4096;

/// Who holds a volume lock, as its lock file claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    /// "mount", "fsck --repair", ...
    pub role: Option<String>,
    pub mountpoint: Option<PathBuf>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.role, &self.mountpoint) {
            (Some(r), Some(m)) if r == "mount" => write!(f, "mounted at {}", m.display())?,
            (Some(r), _) => write!(f, "in use by `dekfs {r}`")?,
            (None, _) => f.write_str("in use by another dekfs process")?,
        }
        match (self.pid, &self.role) {
            (Some(p), Some(r)) if r == "mount" => write!(f, " (dekfs daemon pid {p})"),
            (Some(p), _) => write!(f, " (pid {p})"),
            (None, _) => Ok(()),
        }
    }
}

#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock.
    Held(Holder),
    /// The filesystem under the cipher directory cannot take the lock or
    /// hold its file (read-only, no flock support).
    Unsupported(std::io::Error),
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(h) => write!(f, "the volume is {h}"),
            LockError::Unsupported(e) => write!(f, "cannot lock the volume: {e}"),
            LockError::Io(e) => write!(f, "cannot lock the volume: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

impl From<LockError> for super::VolumeError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held(_) => super::VolumeError::Refused(e.to_string()),
            LockError::Unsupported(io) | LockError::Io(io) => super::VolumeError::Io(io),
        }
    }
}

/// The volume lock. Dropping it (in every process that shares it) releases it.
pub struct VolumeLock {
    file: File,
}

impl VolumeLock {
    /// Takes the volume lock without waiting, recording this process as
    /// `role` (and the mount point, for a mount). A held lock is refused
    /// with what its file says about the holder.
    pub fn try_acquire(
        cipherdir: &Path,
        role: &str,
        mountpoint: Option<&Path>,
    ) -> Result<VolumeLock, LockError> {
        let mut file = open_lock_file(&cipherdir.join(VOLUME_LOCK_NAME))?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Err(LockError::Held(read_holder(&mut file))),
            Err(e) => return Err(flock_error(e)),
        }
        let lock = VolumeLock { file };
        lock.record(role, mountpoint);
        Ok(lock)
    }

    /// Rewrites the holder record with the calling process's pid; the
    /// daemon calls it after the fork. Best effort: the record only
    /// improves a message, the flock is what excludes.
    pub fn record(&self, role: &str, mountpoint: Option<&Path>) {
        let mut rec = format!("pid {}\nrole {role}\n", std::process::id()).into_bytes();
        if let Some(m) = mountpoint {
            // Last, so a mount point with a newline in it survives.
            rec.extend_from_slice(b"mountpoint ");
            rec.extend_from_slice(m.as_os_str().as_encoded_bytes());
            rec.push(b'\n');
        }
        let mut f = &self.file;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = f.write_all(&rec);
    }

    /// Empties the record before release, so a reader racing the exit does
    /// not name a process that is gone.
    pub fn clear(&self) {
        let _ = self.file.set_len(0);
    }
}

/// The config lock, held across one read-modify-write of dekfs.conf.
pub struct ConfigLock {
    _file: File,
    /// Temp files of crashed writers removed when the lock was taken.
    pub stale_removed: usize,
}

impl ConfigLock {
    /// Waits for the config lock, then removes temp files a crashed writer
    /// left: every writer holds this lock, so none of them is live.
    pub fn acquire(cipherdir: &Path) -> Result<ConfigLock, LockError> {
        let file = open_lock_file(&cipherdir.join(CONFIG_LOCK_NAME))?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                log::info!("waiting for the config lock of {}", cipherdir.display());
                rustix::fs::flock(&file, FlockOperation::LockExclusive).map_err(flock_error)?;
            }
            Err(e) => return Err(flock_error(e)),
        }
        let stale_removed = remove_stale_temps(cipherdir).map_err(LockError::Io)?;
        Ok(ConfigLock {
            _file: file,
            stale_removed,
        })
    }
}

/// True for the atomic config rewrite's temp names (the old fixed name and
/// the unique `dekfs.conf.tmp.<hex>`).
pub fn is_config_temp(name: &[u8]) -> bool {
    name.starts_with(CONFIG_TMP_NAME.as_bytes())
}

/// How many temp files of a crashed config writer lie in `cipherdir`
/// (only a repair, under the config lock, removes them).
pub fn count_config_temps(cipherdir: &Path) -> usize {
    std::fs::read_dir(cipherdir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| is_config_temp(e.file_name().as_encoded_bytes()))
                .count()
        })
        .unwrap_or(0)
}

fn remove_stale_temps(cipherdir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(cipherdir)? {
        let e = e?;
        if is_config_temp(e.file_name().as_encoded_bytes()) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => n += 1,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    if n > 0 {
        log::warn!(
            "removed {n} config temp file(s) a crashed writer left in {}",
            cipherdir.display()
        );
    }
    Ok(n)
}

/// Opens (creating 0600 if needed) a lock file, never through a symlink.
/// A read-only open is enough for flock, so a volume on a read-only medium
/// whose lock file exists still locks.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(flags)
        .open(path);
    let file = match created {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)) => {
            OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
                .map_err(|_| LockError::Unsupported(e))?
        }
        Err(e) => return Err(LockError::Io(e)),
    };
    let md = file.metadata().map_err(LockError::Io)?;
    if !md.is_file() {
        return Err(LockError::Io(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        ))));
    }
    give_to_dir_owner(&file, path);
    Ok(file)
}

/// Root mounting a user's cipher directory must not leave a lock file its
/// owner can no longer open.
fn give_to_dir_owner(file: &File, path: &Path) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) else {
        return;
    };
    if let Ok(md) = file.metadata() {
        if md.uid() != dir.uid() || md.gid() != dir.gid() {
            let _ = rustix::fs::fchown(
                file,
                Some(rustix::fs::Uid::from_raw(dir.uid())),
                Some(rustix::fs::Gid::from_raw(dir.gid())),
            );
        }
    }
}

fn flock_error(e: Errno) -> LockError {
    let io = std::io::Error::from(e);
    match e {
        Errno::NOLCK | Errno::OPNOTSUPP | Errno::NOSYS => LockError::Unsupported(io),
        _ => LockError::Io(io),
    }
}

/// What the volume lock file of `cipherdir` says, without taking the lock
/// (for `dekfs umount` when the pidfile is out of reach).
pub fn recorded_holder(cipherdir: &Path) -> Option<Holder> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(cipherdir.join(VOLUME_LOCK_NAME))
        .ok()?;
    Some(read_holder(&mut f))
}

/// Parses the holder record; anything malformed is simply left out.
fn read_holder(file: &mut File) -> Holder {
    let mut buf = Vec::new();
    if file.rewind().is_err() || file.take(MAX_RECORD).read_to_end(&mut buf).is_err() {
        return Holder::default();
    }
    parse_holder(&buf)
}

pub(crate) fn parse_holder(buf: &[u8]) -> Holder {
    let mut h = Holder::default();
    let mut rest = buf;
    while !rest.is_empty() {
        if let Some(m) = rest.strip_prefix(b"mountpoint ") {
            let m = m.strip_suffix(b"\n").unwrap_or(m);
            if !m.is_empty() {
                h.mountpoint = Some(PathBuf::from(std::ffi::OsStr::from_bytes(m)));
            }
            break;
        }
        let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = String::from_utf8_lossy(line);
        if let Some(p) = line.strip_prefix("pid ") {
            h.pid = p.trim().parse().ok();
        } else if let Some(r) = line.strip_prefix("role ") {
            h.role = Some(r.trim().to_owned()).filter(|r| !r.is_empty());
        }
        rest = tail;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_record_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let mnt = Path::new("/mnt/with\nnewline");
        let l = VolumeLock::try_acquire(d.path(), "mount", Some(mnt)).unwrap();
        let raw = std::fs::read(d.path().join(VOLUME_LOCK_NAME)).unwrap();
        let h = parse_holder(&raw);
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!(h.role.as_deref(), Some("mount"));
        assert_eq!(h.mountpoint.as_deref(), Some(mnt));
        drop(l);
        assert_eq!(parse_holder(b"garbage\n\xff"), Holder::default());
    }

    #[test]
    fn second_volume_lock_is_refused_until_released() {
        let d = tempfile::tempdir().unwrap();
        let l = VolumeLock::try_acquire(d.path(), "mount", Some(Path::new("/m"))).unwrap();
        match VolumeLock::try_acquire(d.path(), "fsck --repair", None) {
            Err(LockError::Held(h)) => {
                assert_eq!(h.mountpoint.as_deref(), Some(Path::new("/m")));
                let msg = LockError::Held(h).to_string();
                assert!(
                    msg.contains("mounted at /m") && msg.contains("pid"),
                    "{msg}"
                );
            }
            other => panic!("expected Held, got {:?}", other.err()),
        }
        drop(l);
        VolumeLock::try_acquire(d.path(), "fsck --repair", None).unwrap();
    }

    #[test]
    fn lock_file_is_not_followed_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, d.path().join(VOLUME_LOCK_NAME)).unwrap();
        assert!(VolumeLock::try_acquire(d.path(), "mount", None).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn config_lock_removes_stale_temps() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("dekfs.conf.tmp"), b"x").unwrap();
        std::fs::write(d.path().join("dekfs.conf.tmp.0123abcd"), b"x").unwrap();
        std::fs::write(d.path().join("dekfs.conf"), b"keep").unwrap();
        let l = ConfigLock::acquire(d.path()).unwrap();
        assert_eq!(l.stale_removed, 2);
        assert!(d.path().join("dekfs.conf").exists());
        assert!(d.path().join(CONFIG_LOCK_NAME).exists());
    }
}
