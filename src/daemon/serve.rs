//! One mount from unlock to exit: opens the shared core, mounts, installs
//! the kernel-cache notifier, writes the pidfile, holds the volume lock, reports readiness, serves
//! until unmount, then cleans up. It must not return before the session
//! ends except on a startup error, and it drops the unlocked volume as soon
//! as the core holds its keys.

use super::process::{self, Ready};
use super::runtime::PidFile;
use super::{mountinfo, pidfile_path, session, DaemonConfig, DaemonError, FuseKernelCache};
use crate::fs::policy::MAX_IO;
use crate::fs::CoreFs;
use crate::volume::{UnlockedVolume, VolumeLock};
use std::path::Path;
use std::sync::Arc;

pub fn serve(
    cfg: &DaemonConfig,
    unlocked: UnlockedVolume,
    lock: Option<VolumeLock>,
    ready: &mut Ready,
) -> Result<(), DaemonError> {
    crate::secret::disable_core_dumps();
    // The log file is created under the caller's umask, before it goes.
    crate::logger::init(cfg.log_file.as_deref(), cfg.foreground)?;
    // Callers' umasks are applied per request by the core; the daemon's own
    // must not mask the modes it creates on their behalf. Its own files (the
    // runtime directory, the pidfile) set their modes explicitly.
    rustix::process::umask(rustix::fs::Mode::empty());
    let mnt = &cfg.mountpoint;
    // Now in the process that serves: the record names the daemon's pid.
    if let Some(l) = &lock {
        l.record("mount", Some(mnt));
    }
    let pidfile = PidFile::create(&pidfile_path(mnt))?;
    log::info!("unlocked volume {}", super::hex(&unlocked.info.volume_id));
    // Integrity errors and control refusals are recorded from here on.
    crate::audit::attach(&cfg.cipherdir, Some(&unlocked.keys));
    let core = CoreFs::new(&cfg.cipherdir, unlocked.keys.clone(), cfg.options.read_only)
        .map_err(DaemonError::from)?;
    drop(unlocked);
    // The daemon keeps this clone for the life of the mount: the control
    // thread reaches the core through it while the session serves.
    let core = Arc::new(core);
    let session = session::build(cfg, core.clone())?;
    core.set_kernel_cache(Arc::new(FuseKernelCache::new(session.notifier())));
    raise_readahead(mnt);
    log::info!("mounted {} at {}", cfg.cipherdir.display(), mnt.display());
    process::report_ready(ready);
    let r = session.run();
    drop(pidfile);
    if let Some(l) = lock {
        l.clear();
    }
    log::info!("unmounted {}", mnt.display());
    r.map_err(|e| DaemonError::Session(format!("FUSE session ended with an error: {e}")))
}

/// The kernel caps a FUSE mount's readahead at the bdi default whatever
/// max_readahead we negotiate; sequential reads then arrive in small
/// requests. Raise it to what we accept (root only, best effort). The
/// device comes from mountinfo: stat() of the mount point would wait for
/// this very daemon, which is not serving requests yet.
fn raise_readahead(mnt: &Path) {
    let Some(dev) = mountinfo::device_of(mnt) else {
        return;
    };
    let kb = MAX_IO / 1024;
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, format!("{kb}\n")) {
        log::info!("readahead left at the kernel default ({path}: {e})");
    }
}
