//! Where a mount's control socket lives: the per-user runtime directory (created and checked
//! 0700) and the socket name derived from the mountpoint. It must not open sockets, and it must
//! never stat the mountpoint itself (that would wait on the daemon serving it).

use super::ControlError;
use rustix::fs::{Mode, OFlags};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The runtime directory of root daemons.
pub const ROOT_RUNTIME_DIR: &str = "/run/dekfs";

/// sun_path holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The runtime directory for the current effective user: /run/dekfs for root, else
/// $XDG_RUNTIME_DIR/dekfs (which systemd-logind makes per user, 0700).
pub fn runtime_dir() -> Result<PathBuf, ControlError> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from(ROOT_RUNTIME_DIR));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_absolute() => Ok(Path::new(&d).join("dekfs")),
        _ => Err(ControlError::NoRuntimeDir),
    }
}

/// Creates `dir` 0700 owned by the effective user if missing. An existing one must be a real
/// directory (not a symlink) owned by us; if its mode is wider than 0700 (an older daemon ran
/// with umask 0), it is narrowed, since nothing in it may be reachable by others.
pub fn prepare_runtime_dir(dir: &Path) -> Result<(), ControlError> {
    let err = |e: std::io::Error| ControlError::RuntimeDir(dir.to_path_buf(), e.to_string());
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    // Opened without following symlinks, then checked and fixed through the same descriptor,
    // so a swapped path cannot redirect the chmod.
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(ControlError::RuntimeDir(
            dir.to_path_buf(),
            format!("owned by uid {}, not by uid {me}", st.st_uid),
        ));
    }
    if st.st_mode & 0o7777 != 0o700 {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(|e| err(e.into()))?;
    }
    Ok(())
}

/// The mountpoint as both daemon and client name it: absolute, its parent canonicalised, the
/// last component as given unless it is a symlink. The mountpoint itself is never stat'ed, so
/// a locked or busy daemon cannot make its own client hang.
pub fn mount_key(mnt: &Path) -> Result<PathBuf, ControlError> {
    let err = |e: std::io::Error| ControlError::Mountpoint(mnt.to_path_buf(), e.to_string());
    let mut p = std::path::absolute(mnt).map_err(err)?;
    for _ in 0..40 {
        let name = match p.components().next_back() {
            Some(Component::Normal(n)) => n.to_owned(),
            _ => return std::fs::canonicalize(&p).map_err(err),
        };
        let parent = p.parent().unwrap_or(Path::new("/"));
        let parent = std::fs::canonicalize(parent).map_err(err)?;
        // readlink on a mountpoint returns EINVAL from the mounted root without a request.
        match std::fs::read_link(parent.join(&name)) {
            Ok(target) => p = parent.join(target),
            Err(_) => return Ok(parent.join(name)),
        }
    }
    Err(err(std::io::Error::from_raw_os_error(libc::ELOOP)))
}

/// `<dir>/<first 24 hex digits of SHA-256(mount_key)>.sock`.
pub fn socket_path_in(dir: &Path, mnt: &Path) -> Result<PathBuf, ControlError> {
    use sha2::{Digest, Sha256};
    let key = mount_key(mnt)?;
    let h = Sha256::digest(key.as_os_str().as_bytes());
    let hex: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{hex}.sock"));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(ControlError::RuntimeDir(
            dir.to_path_buf(),
            "too long for a socket path".into(),
        ));
    }
    Ok(path)
}

/// The uid owning `path`'s directory entry, for the client's "permission denied" message.
pub(crate) fn owner_of(path: &Path) -> Option<u32> {
    std::fs::symlink_metadata(path).ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn runtime_dir_is_made_or_narrowed_to_0700() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("dekfs");
        prepare_runtime_dir(&d).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&d), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        prepare_runtime_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(prepare_runtime_dir(&link).is_err(), "a symlink is refused");
        let file = t.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(prepare_runtime_dir(&file).is_err());
    }

    #[test]
    fn socket_name_follows_mount_key() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("mnt");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("alias")).unwrap();
        let a = socket_path_in(Path::new("/run/x"), &real).unwrap();
        let b = socket_path_in(Path::new("/run/x"), &t.path().join("alias")).unwrap();
        let c = socket_path_in(Path::new("/run/x"), &t.path().join("./alias/../mnt")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.to_string_lossy().ends_with(".sock"));
        let other = socket_path_in(Path::new("/run/x"), &t.path().join("mnt2")).unwrap();
        assert_ne!(a, other);
        let long = "d".repeat(100);
        assert!(socket_path_in(Path::new(&long), &real).is_err());
    }
}
