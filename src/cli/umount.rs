//! `dekfs umount`: unmounts and waits for the daemon to exit, so that its
//! keys are gone from memory when the command returns. It must not signal
//! any process other than the daemon recorded for that mount point.

use super::exit::{CliError, CliResult, GENERIC, MOUNT_FAILED, USAGE};
use crate::daemon::{mount_source, pidfile_path};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct UmountArgs {
    mountpoint: PathBuf,
}

pub fn run(a: UmountArgs) -> CliResult<()> {
    let mnt = std::fs::canonicalize(&a.mountpoint)
        .map_err(|e| CliError::new(USAGE, format!("{}: {e}", a.mountpoint.display())))?;
    let cipherdir = match mount_source(&mnt) {
        Some((fstype, src)) if fstype == "fuse.dekfs" => PathBuf::from(src),
        Some((fstype, _)) => {
            return Err(CliError::new(
                USAGE,
                format!("{} is a {fstype} mount, not dekfs", mnt.display()),
            ))
        }
        None => {
            return Err(CliError::new(
                USAGE,
                format!("{} is not mounted", mnt.display()),
            ))
        }
    };
    let pid: Option<i32> = std::fs::read_to_string(pidfile_path(&mnt))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .or_else(|| recorded_daemon(&cipherdir, &mnt));
    if rustix::process::geteuid().is_root() {
        // A process that just closed its last file (or a child forked while
        // holding our descriptors) can keep the mount busy for a moment.
        let mut tries = 0;
        let r = loop {
            match rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()) {
                Err(rustix::io::Errno::BUSY) if tries < 10 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => break r,
            }
        };
        r.map_err(|e| {
            let err = CliError::new(MOUNT_FAILED, format!("cannot unmount {}: {e}", mnt.display()));
            if e == rustix::io::Errno::BUSY {
                err.hint("a process still uses the mount; close it, or check with `fuser -vm MOUNTPOINT`")
            } else {
                err
            }
        })?;
    } else {
        let st = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .status()?;
        if !st.success() {
            return Err(CliError::new(
                MOUNT_FAILED,
                format!("fusermount3 -u {} failed", mnt.display()),
            ));
        }
    }
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && is_dekfs(pid) {
            if Instant::now() > deadline {
                return Err(CliError::new(
                    GENERIC,
                    format!("daemon {pid} did not exit after unmount"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// The daemon pid the volume lock file names for this mount: the pidfile
/// lives in the mounting user's runtime directory, which another
/// environment (sudo, a different XDG_RUNTIME_DIR) may not resolve to.
/// Unauthenticated, so it is only waited for, never signalled, and only if
/// it is a dekfs process (`is_dekfs`).
fn recorded_daemon(cipherdir: &Path, mnt: &Path) -> Option<i32> {
    let h = crate::volume::lock::recorded_holder(cipherdir)?;
    (h.role.as_deref() == Some("mount") && h.mountpoint.as_deref() == Some(mnt))
        .then_some(h.pid?)
        .and_then(|p| i32::try_from(p).ok())
}

/// Guards against a recycled PID: only wait for a process that is dekfs.
fn is_dekfs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "dekfs")
        .unwrap_or(false)
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}
