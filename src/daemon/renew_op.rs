//! The control socket's `renew` request: online DEK renewal (`dekfs rekey
//! MOUNTPOINT --data [PATH]`) through the live core, with progress messages
//! and a log line and an audit event at start and end. It must not re-encrypt anything itself
//! (fs/renew_live.rs does) and never sends paths of files outside the
//! requested subtree.

use crate::control::{ErrorCode, Peer, Response};
use crate::fs::CoreFs;
use std::time::{Duration, Instant};

pub(super) fn renew(core: &CoreFs, peer: Peer, path: &str, out: &mut dyn FnMut(Response)) {
    if !path.starts_with('/') {
        return out(Response::error(
            ErrorCode::BadRequest,
            "renew needs a path inside the volume, starting with /",
        ));
    }
    if core.is_locked() {
        return out(Response::error(
            ErrorCode::Locked,
            "the volume is locked: unlock it first",
        ));
    }
    log::info!(
        "rekey --data {path:?} requested by uid {} pid {}",
        peer.uid,
        peer.pid
    );
    crate::audit::record(
        crate::audit::Event::new("data-renewal-start")
            .peer(peer.uid, peer.pid)
            .detail(path),
    );
    let start = Instant::now();
    let mut last = start;
    let r = core.renew_live(path, &mut |s| {
        if last.elapsed() >= Duration::from_millis(250) {
            last = Instant::now();
            out(Response::Progress {
                step: "renew".into(),
                done: s.files,
                total: 0,
            });
        }
    });
    let r = match r {
        Ok(r) => r,
        Err(e) if core.is_locked() => {
            log::info!("rekey --data {path:?}: stopped by a lock ({:?})", e.errno());
            return out(Response::error(
                ErrorCode::Locked,
                "the volume was locked during the renewal: unlock it and run it again",
            ));
        }
        Err(e) => {
            return out(Response::error(
                ErrorCode::Internal,
                format!("{path}: {:?}", e.errno()),
            ))
        }
    };
    log::info!(
        "rekey --data {path:?}: {} files, {} renewed, {} problems, {:.2} s",
        r.files,
        r.renewed,
        r.problems.len(),
        start.elapsed().as_secs_f64()
    );
    let counts = format!(
        "{path}: {} files, {} renewed, {} problems",
        r.files,
        r.renewed,
        r.problems.len()
    );
    let ev = crate::audit::Event::new("data-renewal-finish").peer(peer.uid, peer.pid);
    crate::audit::record(if r.problems.is_empty() {
        ev.detail(counts)
    } else {
        ev.failed(counts)
    });
    if r.problems.is_empty() {
        out(Response::done(format!(
            "{} files renewed ({} empty, no key yet)",
            r.renewed, r.empty
        )));
    } else {
        out(Response::error(
            ErrorCode::Internal,
            format!(
                "{} of {} files not renewed: {}",
                r.problems.len(),
                r.files,
                r.problems.join("; ")
            ),
        ));
    }
}
