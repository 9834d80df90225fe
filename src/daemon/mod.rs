//! The process life of a mount: daemonising, building and serving the FUSE
//! session over a shared core, the pidfile, and shutdown. It must not read
//! credentials or choose exit codes (the CLI does both), and it never holds
//! key material beyond the unlocked volume handed to it.

mod control_handler;
mod idle;
mod kcache;
mod kmount;
pub mod mountinfo;
mod process;
mod rekey_op;
mod renew_op;
pub mod rotation;
pub mod runtime;
mod serve;
mod session;
mod shred;

pub use kcache::FuseKernelCache;
pub use mountinfo::{dekfs_mounts, is_mountpoint, mount_source, mountpoint_of};

use crate::mount_opts::MountOptions;
use crate::volume::{UnlockedVolume, VolumeLock};
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything the daemon needs besides the unlocked volume.
pub struct DaemonConfig {
    /// Canonical cipher directory.
    pub cipherdir: PathBuf,
    /// Canonical mount point.
    pub mountpoint: PathBuf,
    /// Serve in this process (logs to stderr unless `log_file`).
    pub foreground: bool,
    pub log_file: Option<PathBuf>,
    /// FUSE worker threads; None for one per core, plus one.
    pub threads: Option<usize>,
    pub options: MountOptions,
}

/// Why a mount did not come up or ended badly. The CLI maps each kind to
/// its exit code; in the background case the kind crosses the readiness
/// pipe by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonError {
    /// The unlocked volume could not be opened for serving.
    Volume(String),
    /// The kernel (or fusermount3) refused the mount.
    Mount(String),
    /// The session ended with an error after the mount was live.
    Session(String),
    /// Process setup (log file, pipe, fork) failed.
    Setup(String),
}

/// A volume whose own bytes are at fault is corrupt (exit 14); a system
/// that cannot serve it is not: no /proc is a mount failure (15), any other
/// I/O error is I/O (16).
impl From<crate::fs::OpenError> for DaemonError {
    fn from(e: crate::fs::OpenError) -> Self {
        let msg = e.to_string();
        if e.is_damage() {
            DaemonError::Volume(msg)
        } else if matches!(e, crate::fs::OpenError::ProcFd(_)) {
            DaemonError::Mount(msg)
        } else {
            DaemonError::Setup(msg)
        }
    }
}

impl DaemonError {
    fn kind(&self) -> &'static str {
        match self {
            DaemonError::Volume(_) => "volume",
            DaemonError::Mount(_) => "mount",
            DaemonError::Session(_) => "session",
            DaemonError::Setup(_) => "setup",
        }
    }

    fn from_kind(kind: &str, msg: String) -> DaemonError {
        match kind {
            "volume" => DaemonError::Volume(msg),
            "mount" => DaemonError::Mount(msg),
            "session" => DaemonError::Session(msg),
            _ => DaemonError::Setup(msg),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DaemonError::Volume(m)
            | DaemonError::Mount(m)
            | DaemonError::Session(m)
            | DaemonError::Setup(m) => m,
        }
    }
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for DaemonError {}

impl From<std::io::Error> for DaemonError {
    fn from(e: std::io::Error) -> Self {
        DaemonError::Setup(e.to_string())
    }
}

/// Mounts and serves `unlocked` as configured. In the foreground this
/// returns when the mount ends; otherwise once the mount is live (or has
/// failed), with the daemon left running detached. `lock` is the volume
/// lock the caller took before unlocking (None where the filesystem cannot
/// hold one): the serving process keeps it for the life of the mount; the
/// parent of a fork only closes its copy, which leaves the lock held.
pub fn start(
    cfg: &DaemonConfig,
    unlocked: UnlockedVolume,
    lock: Option<VolumeLock>,
) -> Result<(), DaemonError> {
    if cfg.foreground {
        return serve::serve(cfg, unlocked, lock, &mut None);
    }
    process::daemonise(unlocked, |unlocked, ready| {
        serve::serve(cfg, unlocked, lock, ready)
    })
}

/// Where the daemon serving `mnt` records its pid (`dekfs umount` waits for
/// it), in the calling uid's runtime directory (see `runtime::runtime_dir`).
pub fn pidfile_path(mnt: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(mnt.as_os_str().as_encoded_bytes());
    runtime::runtime_dir().join(format!("{}.pid", hex(&h[..12])))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
