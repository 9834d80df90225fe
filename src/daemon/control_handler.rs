//! The daemon's answers on its control socket: live status from the core's
//! counters, lock (wipe every key, drop the kernel's caches) and unlock
//! (verify handed-over KEKs against the config, then install them). It must
//! not parse the wire (src/control does) nor reach FUSE types, and it never
//! logs or echoes key material.

use crate::control::{ErrorCode, Handler, Peer, Request, Response, Status};
use crate::fs::{CoreFs, InstallError};
use crate::secret::Key32;
use crate::volume::{self, VolumeError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct DaemonHandler {
    core: Arc<CoreFs>,
    cipherdir: PathBuf,
    mountpoint: PathBuf,
    started: Instant,
    /// Lock and unlock run one at a time, so an unlock cannot interleave
    /// with the two invalidation passes of a lock.
    serial: Mutex<()>,
}

impl DaemonHandler {
    pub fn new(core: Arc<CoreFs>, cipherdir: PathBuf, mountpoint: PathBuf) -> DaemonHandler {
        DaemonHandler {
            core,
            cipherdir,
            mountpoint,
            started: Instant::now(),
            serial: Mutex::new(()),
        }
    }

    fn status(&self) -> Response {
        let s = self.core.stats();
        Response::Status(Status {
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            mountpoint: self.mountpoint.display().to_string(),
            cipherdir: self.cipherdir.display().to_string(),
            locked: s.locked,
            kek_version: s.kek_version,
            open_files: s.open_files,
            cached_dir_keys: s.cached_dir_keys,
            cached_file_keys: s.cached_file_keys,
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
            integrity_errors: s.integrity_errors,
        })
    }

    fn lock(&self, peer: Peer) -> Response {
        let _g = crate::fs::node::lock(&self.serial);
        if self.core.is_locked() {
            return Response::done("already locked");
        }
        sync_mount(&self.mountpoint);
        let out = self.core.lock_keys();
        log::info!("lock requested by uid {} pid {}", peer.uid, peer.pid);
        crate::audit::record(
            crate::audit::Event::new("lock")
                .peer(peer.uid, peer.pid)
                .detail(format!(
                    "{} dir keys, {} file keys wiped",
                    out.dir_keys, out.file_keys
                )),
        );
        Response::done(format!(
            "locked: wiped the volume keys, {} directory key(s) and {} file key(s)",
            out.dir_keys, out.file_keys
        ))
    }

    fn unlock(&self, peer: Peer, keks: Vec<(u32, Key32)>) -> Response {
        let _g = crate::fs::node::lock(&self.serial);
        if !self.core.is_locked() {
            return Response::error(ErrorCode::NotLocked, "the volume is not locked");
        }
        let unlocked = match volume::unlock_with_keks(&self.cipherdir, keks) {
            Ok(u) => u,
            Err(VolumeError::WrongKey) => {
                log::warn!(
                    "unlock refused (keys do not open this volume) for uid {} pid {}",
                    peer.uid,
                    peer.pid
                );
                crate::audit::record(
                    crate::audit::Event::new("unlock")
                        .peer(peer.uid, peer.pid)
                        .failed("keys do not open this volume"),
                );
                return Response::error(
                    ErrorCode::WrongKey,
                    "the credential does not open this volume; it stays locked",
                );
            }
            Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
        };
        match self.core.install_keys(unlocked.keys) {
            Ok(()) => {
                log::info!("unlock requested by uid {} pid {}", peer.uid, peer.pid);
                crate::audit::record(crate::audit::Event::new("unlock").peer(peer.uid, peer.pid));
                Response::done("unlocked")
            }
            Err(InstallError::NotLocked) => {
                Response::error(ErrorCode::NotLocked, "the volume is not locked")
            }
            Err(InstallError::WrongKey) => Response::error(
                ErrorCode::WrongKey,
                "the credential does not open this volume; it stays locked",
            ),
            Err(e) => Response::error(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// Writes back the mount's dirty pages (a writeback cache holds them in the
/// kernel) while the keys can still encrypt them. Runs on the control
/// thread, never on a FUSE worker, which must stay free to serve the writes.
fn sync_mount(mnt: &std::path::Path) {
    use rustix::fs::{Mode, OFlags};
    let synced = rustix::fs::open(
        mnt,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| rustix::fs::syncfs(&fd));
    if let Err(e) = synced {
        log::warn!("lock: could not sync {} first: {e}", mnt.display());
    }
}

impl Handler for DaemonHandler {
    fn handle(&self, peer: Peer, req: Request, out: &mut dyn FnMut(Response)) {
        if let Request::Shred {
            path,
            dry_run,
            verify,
        } = &req
        {
            // Serialised with lock and unlock: a shred resolves with keys.
            let _g = crate::fs::node::lock(&self.serial);
            let req = (path.as_str(), *dry_run, *verify);
            return super::shred::handle(&self.core, &self.cipherdir, peer, req, out);
        }
        if let Request::Renew { path } = &req {
            return super::renew_op::renew(&self.core, peer, path, out);
        }
        let answer = match req {
            Request::Status => self.status(),
            Request::Lock => self.lock(peer),
            Request::Unlock(keks) => self.unlock(peer, keks),
            Request::Rekey(r) => super::rekey_op::rekey(&self.core, &self.cipherdir, peer, r, out),
            Request::Shred { .. } | Request::Renew { .. } => Response::error(
                ErrorCode::NotImplemented,
                format!("{} is not implemented by this daemon yet", req.op()),
            ),
        };
        out(answer);
    }
}
