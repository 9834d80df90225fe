//! The `rekey` control request: checks the handed-over KEKs against the
//! config (a rotation must be pending, its active KEK among them, the MAC
//! verifying), then runs the online rotation (daemon/rotation.rs) and
//! streams its progress. It must not parse the wire, start a rotation's
//! config step, or log key material.

use super::rotation::{self, Running, Step};
use crate::control::{ErrorCode, Peer, RekeyRequest, RekeyResult, Response};
use crate::crypto::VolumeKeys;
use crate::fs::CoreFs;
use crate::volume::{self, rotate, VolumeError};
use std::path::Path;
use std::sync::Arc;

pub fn rekey(
    core: &CoreFs,
    cipherdir: &Path,
    peer: Peer,
    req: RekeyRequest,
    out: &mut dyn FnMut(Response),
) -> Response {
    let Some(running) = Running::try_start() else {
        return Response::error(ErrorCode::Busy, "a key rotation is already running");
    };
    let Some(current) = core.current_keys() else {
        return Response::error(ErrorCode::Locked, "the volume is locked: unlock it first");
    };
    let (old, new) = match rotate::pending_rotation(cipherdir) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Response::error(
                ErrorCode::BadRequest,
                "no rotation is pending: `dekfs rekey` writes its first step before asking",
            )
        }
        Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
    };
    let keys = match keys_for(cipherdir, current, req.keys, old, new) {
        Ok(k) => k,
        Err(r) => {
            log::warn!(
                "rekey refused (keys do not open the pending rotation) for uid {} pid {}",
                peer.uid,
                peer.pid
            );
            return r;
        }
    };
    log::info!(
        "rekey (KEK {old} -> {new}) requested by uid {} pid {}",
        peer.uid,
        peer.pid
    );
    crate::audit::record(
        crate::audit::Event::new("rotation-start")
            .peer(peer.uid, peer.pid)
            .key_version(new)
            .detail(if req.started {
                format!("from KEK {old}, online")
            } else {
                format!("from KEK {old}, online, resumed")
            }),
    );
    let mut progress = |s: &Step| {
        out(Response::Progress {
            step: s.name.into(),
            done: s.done,
            total: s.total,
        })
    };
    match rotation::run(
        &running,
        core,
        cipherdir,
        keys,
        old,
        req.force,
        &mut progress,
    ) {
        Ok(o) => Response::Rekeyed(RekeyResult {
            old_kek: o.old,
            new_kek: o.new,
            dirs: o.stats.dirs,
            files: o.stats.files,
            rewrapped: o.stats.rewrapped,
            already_current: o.stats.current,
            passes: o.passes,
            rewrap_ms: o.rewrap_time.as_millis() as u64,
            blockers: o.blockers,
            destroyed: o.destroyed,
        }),
        Err(e) => {
            log::error!("rekey: {e}");
            Response::error(ErrorCode::Internal, e)
        }
    }
}

/// The key set to rotate with: the handed-over KEKs verified against the
/// config, or (none handed over) the daemon's own when it holds both.
fn keys_for(
    cipherdir: &Path,
    current: Arc<VolumeKeys>,
    keks: Vec<(u32, crate::secret::Key32)>,
    old: u32,
    new: u32,
) -> Result<Arc<VolumeKeys>, Response> {
    let holds = |k: &VolumeKeys| k.active_kek_version() == new && k.kek_versions().contains(&old);
    if keks.is_empty() {
        if holds(&current) {
            return Ok(current);
        }
        return Err(Response::error(
            ErrorCode::WrongKey,
            format!("this daemon does not hold KEKs {old} and {new}: give a credential"),
        ));
    }
    let wrong = || {
        Response::error(
            ErrorCode::WrongKey,
            "the keys do not open this volume's pending rotation",
        )
    };
    let u = match volume::unlock_with_keks(cipherdir, keks) {
        Ok(u) => u,
        Err(VolumeError::WrongKey) => return Err(wrong()),
        Err(e) => return Err(Response::error(ErrorCode::Internal, e.to_string())),
    };
    if !holds(&u.keys) {
        return Err(wrong());
    }
    Ok(u.keys)
}
