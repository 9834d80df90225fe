//! One mount from unlock to exit: opens the shared core, starts the control
//! socket, mounts, installs the kernel-cache notifier, writes the pidfile, holds the volume lock, reports readiness, serves
//! until unmount, then cleans up. It must not return before the session
//! ends except on a startup error, and it drops the unlocked volume as soon
//! as the core holds its keys.

use super::control_handler::DaemonHandler;
use super::process::{self, Ready};
use super::runtime::PidFile;
use super::{mountinfo, pidfile_path, session, DaemonConfig, DaemonError, FuseKernelCache};
use crate::control;
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
    // Before the mount: a socket that cannot start fails the mount without
    // leaving one behind, and once `dekfs mount` returns, status, lock and
    // unlock work.
    let control = start_control(cfg, &core)?;
    let session = session::build(cfg, core.clone())?;
    core.set_kernel_cache(Arc::new(FuseKernelCache::new(session.notifier())));
    raise_readahead(mnt);
    if let Some(idle) = cfg.options.idle {
        // The mount is live: failing it now for want of a thread would be
        // worse than a mount that stays until unmounted by hand.
        if let Err(e) = super::idle::spawn(core.clone(), mnt.clone(), idle) {
            log::error!("idle= timer not started, the mount stays: {e}");
        }
    }
    log::info!("mounted {} at {}", cfg.cipherdir.display(), mnt.display());
    if !cfg.options.read_only {
        super::rotation::resume_in_background(core.clone(), cfg.cipherdir.clone());
    }
    process::report_ready(ready);
    // This thread turns into a FUSE worker for the life of the mount: wipe
    // what setting up left in its dead frames (unlock, the root key), which
    // a `dekfs lock` could not reach on another thread's stack.
    crate::secret::scrub_inherited_stack();
    let r = session.run();
    if let Some(c) = control {
        c.shutdown();
    }
    drop(pidfile);
    if let Some(l) = lock {
        l.clear();
    }
    log::info!("unmounted {}", mnt.display());
    r.map_err(|e| DaemonError::Session(format!("FUSE session ended with an error: {e}")))
}

/// Serves the control socket for the life of the mount. A live daemon
/// already on this mountpoint's socket fails the mount; a user daemon with
/// no private runtime directory mounts without one (lock, unlock and live
/// status are then unavailable, which the log says).
fn start_control(
    cfg: &DaemonConfig,
    core: &Arc<CoreFs>,
) -> Result<Option<control::Server>, DaemonError> {
    let handler = Arc::new(DaemonHandler::new(
        core.clone(),
        cfg.cipherdir.clone(),
        cfg.mountpoint.clone(),
    ));
    let started = control::ServerConfig::for_mount(&cfg.mountpoint)
        .and_then(|sc| control::Server::start(sc, handler));
    match started {
        Ok(s) => Ok(Some(s)),
        Err(e @ control::ControlError::NoRuntimeDir) => {
            log::warn!("no control socket: {e}");
            Ok(None)
        }
        Err(e) => Err(DaemonError::Mount(format!("control socket: {e}"))),
    }
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
