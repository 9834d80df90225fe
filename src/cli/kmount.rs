//! Kernel-side FUSE mount for root: opens /dev/fuse and calls mount(2) with
//! type `fuse.dekfs`, so mount tables, `mount -t fuse.dekfs` and systemd see
//! what this is (fuser's own mount always says plain `fuse`). It must not
//! start serving requests; the caller hands the descriptor to a session.

use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

#[derive(Default)]
pub struct KernelOpts {
    pub flags: u64,
    pub data: Vec<String>,
}

impl KernelOpts {
    /// Maps one user-visible option to a mount flag or data option.
    /// Returns false for options the kernel would not understand.
    pub fn push(&mut self, opt: &str) -> bool {
        let f = match opt {
            "ro" => MountFlags::RDONLY.bits() as u64,
            "rw" => 0,
            "nosuid" | "nodev" => 0, // the defaults, see `flags()`
            "noexec" => MountFlags::NOEXEC.bits() as u64,
            "noatime" => MountFlags::NOATIME.bits() as u64,
            "nodiratime" => MountFlags::NODIRATIME.bits() as u64,
            "sync" => MountFlags::SYNCHRONOUS.bits() as u64,
            "dirsync" => MountFlags::DIRSYNC.bits() as u64,
            "exec" | "atime" | "async" | "suid" | "dev" => 0,
            "allow_other" | "default_permissions" => {
                self.data.push(opt.to_owned());
                return true;
            }
            s if s.starts_with("max_read=") || s.starts_with("blksize=") => {
                self.data.push(s.to_owned());
                return true;
            }
            _ => return false,
        };
        self.flags |= f;
        true
    }
}

/// Mounts a fresh /dev/fuse connection at `mnt` and returns its descriptor.
pub fn mount(
    cipherdir: &Path,
    mnt: &Path,
    opts: &KernelOpts,
    suid: bool,
    dev: bool,
) -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let mut data = vec![
        format!("fd={}", fd.as_raw_fd()),
        "rootmode=40000".to_owned(),
        format!("user_id={}", rustix::process::getuid().as_raw()),
        format!("group_id={}", rustix::process::getgid().as_raw()),
    ];
    data.extend(opts.data.iter().cloned());
    let mut flags = MountFlags::from_bits_retain(opts.flags as _);
    if !suid {
        flags |= MountFlags::NOSUID;
    }
    if !dev {
        flags |= MountFlags::NODEV;
    }
    let data = std::ffi::CString::new(data.join(","))
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    rustix::mount::mount(cipherdir, mnt, "fuse.dekfs", flags, data.as_c_str())?;
    Ok(fd)
}
