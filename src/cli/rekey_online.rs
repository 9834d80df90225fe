//! `dekfs rekey MOUNTPOINT`: the online KEK rotation of a mounted volume.
//! The credentials are read and unwrapped here (Argon2id and the TPM at the
//! caller's rights, as `unlock` does), the config step is written here under
//! the config lock (as `protector add` on a mounted volume), and the daemon
//! is handed both KEKs over the control socket to switch its writes to the
//! new one, rewrap every object and destroy the old one. It must not rewrap
//! anything itself, and never prints key material except a new recovery
//! key, once.

use super::exit::{CliError, CliResult, GENERIC};
use super::live::{client_error, mountpoint};
use super::rekey::{self, Output, RekeyArgs};
use crate::control::{Client, ClientError, ErrorCode, RekeyResult, Response};
use crate::volume::rotate;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The mount point when `p` names a mounted volume (its mount point, or its
/// cipher directory while mounted). Read from mountinfo: a mount is never
/// stat'ed.
pub(super) fn mounted(p: &Path) -> Option<PathBuf> {
    let mnt = mountpoint(p);
    if crate::daemon::mount_source(&mnt).is_some_and(|(t, _)| t == "fuse.dekfs") {
        return Some(mnt);
    }
    let cipherdir = std::fs::canonicalize(p).ok()?;
    crate::daemon::mountpoint_of(&cipherdir)
}

pub(super) fn run(a: RekeyArgs, mnt: &Path) -> CliResult<()> {
    crate::logger::init(a.log_file.as_deref(), false)?;
    let mut c = Client::connect(mnt).map_err(|e| client_error(e, mnt))?;
    let status = c.status().map_err(|e| client_error(e, mnt))?;
    if status.locked {
        return Err(
            CliError::new(GENERIC, format!("{}: the volume is locked", mnt.display()))
                .hint(format!("unlock it first: dekfs unlock {}", mnt.display())),
        );
    }
    let cipherdir = PathBuf::from(&status.cipherdir);
    let pending = rotate::pending_rotation(&cipherdir)?;
    let mut out = Output::new(a.json);
    if a.if_due && pending.is_none() && rekey::not_due(&a, &cipherdir, &mut out)? {
        return Ok(());
    }
    let mut started = false;
    let mut old_kek = pending.map(|(old, _)| old);
    let keys = match pending {
        None if a.resume => {
            out.say("no rotation to resume");
            return Ok(());
        }
        Some((old, new)) => {
            if !a.resume {
                out.say(&format!(
                    "an interrupted rotation (KEK {old} -> {new}) is pending: finishing it"
                ));
            }
            // A daemon mounted since the config step holds both KEKs.
            let given = rekey::explicit_credentials(&a)?;
            if status.kek_version == Some(new) && given.is_empty() {
                None
            } else {
                let creds = rekey::credentials(&a, &cipherdir, true)?;
                Some(rekey::unlock(&a, &cipherdir, &creds)?.keys)
            }
        }
        None => {
            let creds = rekey::credentials(&a, &cipherdir, false)?;
            let u = rekey::unlock(&a, &cipherdir, &creds)?;
            let opts = rekey::rotate_options(&a, creds, &u)?;
            let b = rotate::begin(&cipherdir, &u.keys, &opts)?;
            log::info!("rekey: started, KEK {} -> {} (online)", b.old, b.new);
            rekey::announce(&mut out, &b);
            started = true;
            old_kek = Some(b.old);
            Some(std::sync::Arc::new(b.keys))
        }
    };
    // NV key shares of the old KEK's TPM records (template 3): erased once the KEK is gone, as
    // the offline rekey does.
    let retired = match old_kek {
        Some(old) => crate::volume::nv_shares(&cipherdir, Some(old))?,
        None => Vec::new(),
    };
    let handoff = keys
        .as_ref()
        .map(|k| k.keks_for_handoff())
        .unwrap_or_default();
    // Progress resets this; only a silent daemon runs into it.
    c.set_timeout(Duration::from_secs(600));
    let mut shown = Shown::new(a.json);
    let answer = c.rekey(&handoff, a.force, started, &mut |r| shown.progress(r));
    shown.end();
    drop(handoff);
    drop(keys);
    match answer {
        Ok(Response::Rekeyed(r)) => {
            if r.destroyed && !retired.is_empty() {
                crate::volume::erase_nv_shares(&a.tpm.tcti(None)?, &retired);
            }
            report(&mut out, &r)
        }
        Ok(other) => Err(CliError::new(
            GENERIC,
            format!("unexpected answer from the daemon: {other:?}"),
        )),
        Err(ClientError::Daemon {
            code: ErrorCode::Busy,
            message,
        }) => Err(CliError::new(GENERIC, message).hint(
            "the daemon is finishing the rotation already (a mount resumes one); its log says \
             when it is done",
        )),
        Err(e) => Err(client_error(e, mnt)),
    }
}

fn report(out: &mut Output, r: &RekeyResult) -> CliResult<()> {
    out.event(&serde_json::json!({
        "event": "finished", "online": true, "old_kek": r.old_kek, "new_kek": r.new_kek,
        "dirs": r.dirs, "files": r.files, "rewrapped": r.rewrapped,
        "already_current": r.already_current, "passes": r.passes, "blockers": r.blockers,
        "destroyed": r.destroyed, "rewrap_seconds": r.rewrap_ms as f64 / 1000.0,
    }));
    rekey::conclude(
        out,
        (r.old_kek, r.new_kek),
        &r.rewrapped,
        &r.blockers,
        r.destroyed,
        " online",
        "repair them (unmount, dekfs fsck --repair), then dekfs rekey --resume; or --force to destroy the old key anyway",
    )
}

/// The daemon's progress frames: a TTY line (objects done of total, rate,
/// time left) or one JSON line each.
struct Shown {
    json: bool,
    tty: bool,
    step: String,
    start: Instant,
    any: bool,
}

impl Shown {
    fn new(json: bool) -> Shown {
        Shown {
            json,
            tty: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            step: String::new(),
            start: Instant::now(),
            any: false,
        }
    }

    fn progress(&mut self, r: &Response) {
        let Response::Progress { step, done, total } = r else {
            return;
        };
        if *step != self.step {
            self.step = step.clone();
            self.start = Instant::now();
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = *done as f64 / secs;
        let left = if rate > 0.0 {
            total.saturating_sub(*done) as f64 / rate
        } else {
            0.0
        };
        if self.json {
            let v = serde_json::json!({
                "event": "progress", "step": step, "done": done, "total": total,
                "per_second": rate.round(), "seconds_left": left.round(),
            });
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{v}");
            let _ = o.flush();
        } else if self.tty {
            self.any = true;
            eprint!("\rrekey: {step} {done}/{total} objects, {rate:.0}/s, {left:.0} s left   ");
        }
    }

    fn end(&mut self) {
        if self.any {
            eprintln!();
        }
    }
}
