//! The daemon's `shred` request (docs/CONTROL.md): finishes an interrupted
//! shred's journal first, then surveys (dry run) or shreds a path of the
//! mounted volume through the core, streams progress, records the audit
//! line and answers with counts. It must not parse the wire, and its
//! answers and log lines carry ids and counts, never key bytes.

use crate::control::{ErrorCode, Peer, Response};
use crate::engine::shred::{self, ResolveError};
use crate::fs::{CoreFs, OnlineShred, ShredError, ShredStep};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::Path;

/// One `shred` request: `path` relative to the mountpoint ("" only finishes
/// an interrupted shred).
pub fn handle(
    core: &CoreFs,
    cipherdir: &Path,
    peer: Peer,
    req: (&str, bool, bool),
    out: &mut dyn FnMut(Response),
) {
    let (path, dry_run, verify) = req;
    let mut notes = String::new();
    if !dry_run {
        match finish_pending(cipherdir, verify) {
            Ok(Some(n)) => notes = n,
            Ok(None) => {}
            Err(r) => return out(r),
        }
    }
    if path.is_empty() {
        let msg = if notes.is_empty() {
            "no interrupted shred is pending".to_owned()
        } else {
            notes
        };
        return out(Response::done(msg));
    }
    if dry_run {
        return out(match core.shred_survey(path) {
            Ok((plain, kind, s)) => Response::done(format!(
                "will destroy {}",
                shred::describe(&plain, kind, &s)
            )),
            Err(e) => error(e, path, cipherdir),
        });
    }
    let mut progress = |s: ShredStep| {
        let (step, n) = match s {
            ShredStep::Revoked { keys, .. } => ("revoked", keys),
            ShredStep::Destroyed { objects } => ("destroyed", objects),
            ShredStep::Removed => ("removed", 1),
        };
        out(Response::Progress {
            step: step.into(),
            done: n,
            total: n,
        });
    };
    let done = core.shred_path(path, verify, &mut progress);
    out(match done {
        Ok(s) => {
            audit(&s, peer);
            answer(&s, &notes)
        }
        Err(e) => {
            log::warn!(
                "shred of {path:?} requested by uid {} pid {} failed: {e}",
                peer.uid,
                peer.pid
            );
            crate::audit::record(
                crate::audit::Event::new("shred")
                    .peer(peer.uid, peer.pid)
                    .path(path)
                    .failed(e.to_string()),
            );
            error(e, path, cipherdir)
        }
    });
}

/// Finishes a journal left by an interrupted shred (a mount normally has
/// already); the note for the answer.
fn finish_pending(cipherdir: &Path, full: bool) -> Result<Option<String>, Response> {
    let internal = |e: std::io::Error| Response::error(ErrorCode::Internal, e.to_string());
    let Some(j) = shred::pending(cipherdir).map_err(internal)? else {
        return Ok(None);
    };
    let out = shred::finish(cipherdir, &j, full).map_err(internal)?;
    if !out.report.is_clean() {
        return Err(Response::error(
            ErrorCode::CheckFailed,
            format!(
                "an interrupted shred could not be finished: {} leftover(s), first: {}",
                out.report.findings.len(),
                out.report
                    .findings
                    .first()
                    .map(|f| format!("{}: {}", f.path, f.what))
                    .unwrap_or_default()
            ),
        ));
    }
    log::info!("finished an interrupted shred ({} keys)", j.ids.len());
    Ok(Some(format!(
        "finished an interrupted shred ({} keys recorded in {}); ",
        j.ids.len(),
        shred::JOURNAL_NAME
    )))
}

fn error(e: ShredError, path: &str, cipherdir: &Path) -> Response {
    let code = match &e {
        ShredError::Resolve(ResolveError::Root) => {
            return Response::error(
                ErrorCode::Refused,
                format!(
                    "refusing to shred {path}: it is the volume root; to erase the whole volume \
                     unmount it and run `dekfs destroy {}`",
                    cipherdir.display()
                ),
            )
        }
        ShredError::Resolve(ResolveError::Outside) | ShredError::ReadOnly => ErrorCode::Refused,
        ShredError::Resolve(ResolveError::NotFound(_) | ResolveError::NotADirectory(_))
        | ShredError::Moved(_) => ErrorCode::NotFound,
        ShredError::Locked => ErrorCode::Locked,
        _ => ErrorCode::Internal,
    };
    Response::error(code, format!("cannot shred {path}: {e}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The audit record: path, counts, the destroyed ids (their SHA-256 and
/// the first few), the requesting uid; never key bytes.
fn audit(s: &OnlineShred, peer: Peer) {
    let ids: Vec<String> = s.survey.ids.iter().map(|i| hex(i)).collect();
    let digest = hex(&Sha256::digest(ids.join(",").as_bytes()));
    const SHOWN: usize = 4;
    let more = ids.len().saturating_sub(SHOWN);
    let mut shown = ids[..ids.len().min(SHOWN)].join(",");
    if more > 0 {
        let _ = write!(shown, ",... (+{more} more)");
    }
    let detail = format!(
        "dirs={} files={} keys={} ids_sha256={digest} ids={shown}",
        s.survey.dirs, s.survey.files, s.survey.key_objects
    );
    log::info!(
        "audit: shred uid={} pid={} path={:?} {detail}",
        peer.uid,
        peer.pid,
        s.plain
    );
    crate::audit::record(
        crate::audit::Event::new("shred")
            .peer(peer.uid, peer.pid)
            .path(&s.plain)
            .detail(detail),
    );
}

fn answer(s: &OnlineShred, notes: &str) -> Response {
    let o = &s.outcome;
    let r = &o.report;
    let check = format!(
        "check: {} files, {} bytes scanned for {} destroyed ids and {} wrapped keys",
        r.files,
        r.bytes,
        s.survey.ids.len(),
        s.survey.needles.len()
    );
    if !r.is_clean() {
        let mut m = format!("{notes}{check}: FOUND LEFTOVERS (the journal is kept)");
        for f in r.findings.iter().take(20) {
            let _ = write!(m, "\nleftover: {}: {}", f.path, f.what);
        }
        return Response::error(ErrorCode::CheckFailed, m);
    }
    Response::done(format!(
        "{notes}shredded {}\nrevoked {} directory key(s) and {} file key(s) in memory and the kernel's caches in {:.3} s; \
         destroyed {} key objects in {:.3} s (overwritten and synced {:.3} s after the request); \
         ciphertext removed in {:.3} s\n{check}: clean",
        shred::describe(&s.plain, s.kind, &s.survey),
        s.dir_keys,
        s.file_keys,
        s.revoke_time.as_secs_f64(),
        o.objects,
        o.destroy_time.as_secs_f64(),
        s.keys_gone.as_secs_f64(),
        o.remove_time.as_secs_f64(),
    ))
}
