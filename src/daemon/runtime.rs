//! The daemon's runtime directory and pidfile: where they live for root and
//! for a normal user, and that nobody else can plant or swap anything there
//! (directory 0700 owned by the daemon's uid, pidfile 0600 created O_EXCL
//! without following symlinks). It must not loosen a directory it did not
//! create, and must not follow or adopt anything another uid owns.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Runtime directory mode: only the daemon's owner may enter.
pub const DIR_MODE: u32 = 0o700;
/// Pidfile mode: `dekfs umount` runs as the mount's owner (or root), and the
/// directory is closed to everyone else anyway.
pub const PIDFILE_MODE: u32 = 0o600;

/// Where daemons of the calling uid keep pidfiles (and, later, sockets):
/// root uses /run/dekfs; a normal user `$XDG_RUNTIME_DIR/dekfs`, else
/// `/run/user/UID/dekfs` when that exists and is theirs, else
/// `$TMPDIR/dekfs-UID` (whose owner and mode are checked like the others).
pub fn runtime_dir() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/dekfs");
    }
    let owned = |p: &Path| {
        p.is_absolute()
            && std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid.as_raw())
    };
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if owned(&x) {
            return x.join("dekfs");
        }
    }
    let run_user = PathBuf::from(format!("/run/user/{}", uid.as_raw()));
    if owned(&run_user) {
        return run_user.join("dekfs");
    }
    std::env::temp_dir().join(format!("dekfs-{}", uid.as_raw()))
}

/// Creates `dir` 0700 if missing; an existing one must be a real directory
/// owned by us. A too-open mode on our own directory is fixed (through a
/// descriptor, so a swap between check and chmod cannot redirect it);
/// anything else is refused.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| refuse(dir, &format!("not a directory we can open ({e})")))?;
    let st = rustix::fs::fstat(&fd)?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(refuse(
            dir,
            &format!("owned by uid {}, not {me}", st.st_uid),
        ));
    }
    if st.st_mode & 0o7777 != DIR_MODE {
        log::warn!(
            "{}: mode {:o} tightened to {DIR_MODE:o}",
            dir.display(),
            st.st_mode & 0o7777
        );
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(DIR_MODE))?;
    }
    Ok(())
}

fn refuse(dir: &Path, why: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "refusing runtime directory {}: {why}",
        dir.display()
    ))
}

/// The pidfile of one mount; removed when dropped.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Makes the runtime directory safe, then records this process's pid.
    /// A leftover from a crashed daemon is replaced; a symlink or anything
    /// planted is removed, never followed.
    pub fn create(path: &Path) -> std::io::Result<PidFile> {
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PIDFILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        // The mode must not depend on the daemon's umask (0, see serve).
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(PIDFILE_MODE))?;
        writeln!(f, "{}", std::process::id())?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn pidfile_and_dir_modes_ignore_the_umask() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let r = PidFile::create(&dir.join("x.pid"));
        rustix::process::umask(old);
        let pf = r.unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&dir.join("x.pid")), PIDFILE_MODE);
        let pid: u32 = std::fs::read_to_string(dir.join("x.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, std::process::id());
        drop(pf);
        assert!(!dir.join("x.pid").exists());
    }

    #[test]
    fn open_dir_of_ours_is_tightened() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o777)).unwrap();
        ensure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
    }

    #[test]
    fn planted_symlinks_are_refused_or_replaced() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(ensure_dir(&link).is_err());
        // A symlinked pidfile is replaced, its target untouched.
        let dir = t.path().join("rt");
        ensure_dir(&dir).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("p.pid")).unwrap();
        let _pf = PidFile::create(&dir.join("p.pid")).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(dir.join("p.pid"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn foreign_owned_dir_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return; // only root can make a directory another uid owns
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let e = ensure_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
    }
}
