//! `dekfs rekey --data [PATH] CIPHERDIR|MOUNTPOINT`: DEK renewal, offline
//! under the volume lock (taken by rekey.rs) through the engine's renewal
//! walk, or online through the mount's control socket. It shows progress
//! (TTY line, or one JSON line per step with --json) and the files it could
//! not renew. It must not re-encrypt anything itself.

use super::exit::{CliError, CliResult, CORRUPT, GENERIC, USAGE};
use crate::control::{Client, ClientError, Request, Response};
use crate::engine::rekey::Stats;
use crate::volume::UnlockedVolume;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// What renewal gives and what it does not.
const NOTE: &str = "file contents are now sealed under new file keys (DEKs): a DEK or header \
copied before today opens none of the data written from now on; a copy of the ciphertext taken \
before still opens with the keys it was taken with";

pub fn run(cipherdir: &Path, u: UnlockedVolume, scope: &str, json: bool) -> CliResult<()> {
    if !scope.starts_with('/') {
        return Err(CliError::new(
            USAGE,
            format!("--data {scope}: give a path inside the volume, starting with /"),
        ));
    }
    crate::audit::attach(cipherdir, Some(&u.keys));
    let keys = u.keys.clone();
    drop(u);
    log::info!("rekey --data: started for {scope}");
    crate::audit::record(crate::audit::Event::new("data-renewal-start").detail(scope));
    let total = crate::engine::rekey::count(cipherdir, &keys)?;
    let start = Instant::now();
    let mut last = start;
    let tty = !json && std::io::stderr().is_terminal();
    let show = |s: &Stats, fin: bool| {
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let rate = s.files as f64 / secs;
        if json {
            emit(&serde_json::json!({
                "event": if fin { "finished" } else { "progress" },
                "files": s.files, "renewed": s.rewrapped, "already_renewed": s.current,
                "total_objects": total, "per_second": rate.round(),
            }));
        } else if tty {
            eprint!(
                "\rrekey --data: {} files, {} renewed, {rate:.0}/s   ",
                s.files, s.rewrapped
            );
            if fin {
                eprintln!();
            }
        }
    };
    let report = crate::engine::renew::renew_all(cipherdir, &keys, scope, &mut |s| {
        if last.elapsed() >= Duration::from_millis(250) {
            last = Instant::now();
            show(s, false);
        }
    })?;
    show(&report.stats, true);
    let s = &report.stats;
    log::info!(
        "rekey --data: finished: {} files, {} renewed, {} problems",
        s.files,
        s.rewrapped,
        report.problems.len()
    );
    let counts = format!(
        "{scope}: {} files, {} renewed, {} problems",
        s.files,
        s.rewrapped,
        report.problems.len()
    );
    crate::audit::record(if report.problems.is_empty() {
        crate::audit::Event::new("data-renewal-finish").detail(counts)
    } else {
        crate::audit::Event::new("data-renewal-finish").failed(counts)
    });
    for p in &report.problems {
        say(json, &format!("not renewed: {}: {}", p.path, p.what));
    }
    if !report.problems.is_empty() {
        return Err(CliError::new(
            CORRUPT,
            format!(
                "{} files could not be renewed (listed above)",
                report.problems.len()
            ),
        )
        .hint(
            "repair them (dekfs fsck --repair), then run dekfs rekey --data again: it continues",
        ));
    }
    say(
        json,
        &format!(
            "{} files renewed in {:.2} s ({} already renewed by an earlier run)",
            s.rewrapped,
            start.elapsed().as_secs_f64(),
            s.current
        ),
    );
    say(json, NOTE);
    Ok(())
}

fn say(json: bool, msg: &str) {
    if json {
        emit(&serde_json::json!({"event": "message", "text": msg}));
    } else {
        eprintln!("dekfs: {msg}");
    }
}

fn emit(v: &serde_json::Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

/// Online renewal when a daemon serves `mnt`; `None` when none does (then
/// the path is taken as a cipher directory).
pub fn online(mnt: &Path, scope: &str, json: bool) -> Option<CliResult<()>> {
    let abs = super::live::mountpoint(mnt);
    let mut c = match Client::connect(&abs) {
        Ok(c) => c,
        Err(ClientError::NoDaemon(_)) => return None,
        Err(e) => return Some(Err(super::live::client_error(e, &abs))),
    };
    // A whole volume takes as long as rewriting it twice.
    c.set_timeout(Duration::from_secs(24 * 3600));
    let req = Request::Renew {
        path: scope.to_owned(),
    };
    let tty = !json && std::io::stderr().is_terminal();
    let r = c.call(&req, &mut |m| {
        if let Response::Progress { done, .. } = m {
            if json {
                emit(&serde_json::json!({"event": "progress", "files": done}));
            } else if tty {
                eprint!("\rrekey --data: {done} files   ");
            }
        }
    });
    if tty {
        eprintln!();
    }
    Some(match r {
        Ok(Response::Done { message }) => {
            say(json, &format!("{}: {message}", abs.display()));
            say(json, NOTE);
            Ok(())
        }
        Ok(other) => Err(CliError::new(
            GENERIC,
            format!("unexpected answer from the daemon: {other:?}"),
        )),
        Err(ClientError::Daemon { message, .. }) => Err(CliError::new(CORRUPT, message)
            .hint("repair them (dekfs fsck), then run dekfs rekey --data again")),
        Err(e) => Err(super::live::client_error(e, &abs)),
    })
}
