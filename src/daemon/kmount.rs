//! Kernel-side FUSE mount for root: opens /dev/fuse and calls mount(2) with
//! type `fuse.dekfs`, so mount tables, `mount -t fuse.dekfs` and systemd see
//! what this is (fuser's own mount always says plain `fuse`). It must not
//! parse options (mount_opts does) or start serving requests; the caller
//! hands the descriptor to a session.

use crate::mount_opts::MountOptions;
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// mount(2) flags for `o`: set-id files and device nodes stay inert unless
/// asked for, as for any FUSE mount.
pub fn flags(o: &MountOptions) -> MountFlags {
    let mut flags = MountFlags::from_bits_retain(o.kernel_flags as _);
    if !o.suid {
        flags |= MountFlags::NOSUID;
    }
    if !o.dev {
        flags |= MountFlags::NODEV;
    }
    flags
}

/// Mounts a fresh /dev/fuse connection at `mnt` and returns its descriptor.
pub fn mount(cipherdir: &Path, mnt: &Path, o: &MountOptions) -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let mut data = vec![
        format!("fd={}", fd.as_raw_fd()),
        "rootmode=40000".to_owned(),
        format!("user_id={}", rustix::process::getuid().as_raw()),
        format!("group_id={}", rustix::process::getgid().as_raw()),
    ];
    data.extend(o.kernel_data());
    let data = std::ffi::CString::new(data.join(","))
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    rustix::mount::mount(cipherdir, mnt, "fuse.dekfs", flags(o), data.as_c_str())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nosuid_nodev_unless_asked() {
        let f = |s| flags(&MountOptions::parse_str(s).unwrap());
        assert_eq!(f(""), MountFlags::NOSUID | MountFlags::NODEV);
        assert_eq!(f("suid,dev"), MountFlags::empty());
        assert_eq!(
            f("ro,noexec,dev"),
            MountFlags::RDONLY | MountFlags::NOEXEC | MountFlags::NOSUID
        );
    }
}
