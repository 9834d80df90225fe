//! `dekfs shred PATH` inside a mounted volume, or `dekfs shred MOUNTPOINT
//! PLAINPATH`: finds the mount, asks its daemon what the shred will
//! destroy (a dry run), asks the user unless `--yes`, then has the daemon
//! shred through the control socket. It must not touch the cipher
//! directory itself (the daemon holds it) and never stats through the
//! mount beyond the path's parent.

use super::exit::{CliError, CliResult, CORRUPT, GENERIC, MOUNT_FAILED, USAGE};
use crate::control::{Client, ClientError, ErrorCode, Request, Response};
use std::path::{Component, Path, PathBuf};

/// `p` made absolute with its parent canonicalised and its last component
/// kept as given (a symlink inside the volume is shredded, not followed).
fn place(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match abs.components().next_back() {
        Some(Component::Normal(name)) => match abs.parent().map(std::fs::canonicalize) {
            Some(Ok(dir)) => dir.join(name),
            _ => abs,
        },
        _ => std::fs::canonicalize(&abs).unwrap_or(abs),
    }
}

/// The mount and the plaintext path an online shred would target, if the
/// arguments name one: `MOUNTPOINT PLAINPATH`, or one path inside a
/// mounted dekfs volume. None for a cipher directory (offline shred). A
/// single path that is neither is refused here.
pub(super) fn target(arg: &Path, plain: Option<&str>) -> CliResult<Option<(PathBuf, String)>> {
    let mounts = crate::daemon::dekfs_mounts();
    let at = place(arg);
    if let Some(plain) = plain {
        return Ok(mounts.contains(&at).then(|| (at, plain.to_owned())));
    }
    let inside = mounts
        .iter()
        .filter(|m| at.starts_with(m))
        .max_by_key(|m| m.as_os_str().len());
    if let Some(m) = inside {
        let rel = at.strip_prefix(m).unwrap_or(Path::new(""));
        return Ok(Some((m.clone(), format!("/{}", rel.display()))));
    }
    if arg.join(crate::format::CONFIG_NAME).exists() {
        return Ok(None);
    }
    Err(CliError::new(
        USAGE,
        format!(
            "refusing to shred {}: it is neither inside a mounted dekfs volume nor a cipher directory",
            arg.display()
        ),
    )
    .hint("give a path inside a mounted volume, or CIPHERDIR PLAINPATH for an unmounted one"))
}

fn daemon_error(e: ClientError, mnt: &Path) -> CliError {
    match e {
        ClientError::Daemon { code, message } => {
            let exit = match code {
                ErrorCode::Refused => USAGE,
                ErrorCode::Locked => MOUNT_FAILED,
                ErrorCode::CheckFailed => CORRUPT,
                _ => GENERIC,
            };
            let err = CliError::new(exit, message);
            match code {
                ErrorCode::Locked => err.hint(format!("unlock it first: dekfs unlock {}", mnt.display())),
                ErrorCode::CheckFailed => err.hint("the journal dekfs.shred is kept; run the shred again once the leftovers are dealt with"),
                _ => err,
            }
        }
        e => super::live::client_error(e, mnt),
    }
}

fn call(c: &mut Client, mnt: &Path, path: &str, dry_run: bool, verify: bool) -> CliResult<String> {
    let req = Request::Shred {
        path: path.to_owned(),
        dry_run,
        verify,
    };
    match c.call(&req, &mut |_| {}) {
        Ok(Response::Done { message }) => Ok(message),
        Ok(other) => Err(CliError::new(
            GENERIC,
            format!("unexpected answer from the daemon: {other:?}"),
        )),
        Err(e) => Err(daemon_error(e, mnt)),
    }
}

pub(super) fn run(mnt: &Path, path: &str, yes: bool, verify: bool) -> CliResult<()> {
    let mut c = Client::connect(mnt).map_err(|e| super::live::client_error(e, mnt))?;
    // Destroying thousands of keys and checking the cipher directory can
    // take longer than a status answer.
    c.set_timeout(std::time::Duration::from_secs(3600));
    let status = c.status().map_err(|e| super::live::client_error(e, mnt))?;
    println!("{}", call(&mut c, mnt, path, true, false)?);
    if let Ok(info) = crate::volume::read_info(Path::new(&status.cipherdir)) {
        println!("{}", super::shred_purge::backup_line(&info, path, false));
    }
    if !yes && !super::shred::confirm("This cannot be undone.", "yes")? {
        return Err(CliError::new(GENERIC, "not confirmed; nothing destroyed"));
    }
    println!("{}", call(&mut c, mnt, path, false, verify)?);
    Ok(())
}

/// Before a mount serves: a shred interrupted by a crash is finished here
/// (its remaining passes need no credential, and its subtree is already
/// unreadable), silently when it succeeds, as a mount prints nothing. A
/// read-only mount, or a finish that fails, only warns and mounts anyway.
pub(super) fn finish_pending_for_mount(cipherdir: &Path, read_only: bool) {
    let j = match crate::engine::shred::pending(cipherdir) {
        Ok(Some(j)) => j,
        Ok(None) => return,
        Err(e) => {
            eprintln!(
                "warning: {}: unreadable shred journal: {e}; the interrupted shred stays pending",
                cipherdir.display()
            );
            return;
        }
    };
    let warn = |why: String| {
        eprintln!(
            "warning: {}: an interrupted shred is pending ({why}); its subtree is unreadable; \
             run `dekfs shred {}` after unmounting to finish it",
            cipherdir.display(),
            cipherdir.display()
        );
    };
    if read_only {
        return warn("not finished on a read-only mount".into());
    }
    match crate::engine::shred::finish(cipherdir, &j, false) {
        Ok(out) if out.report.is_clean() => {
            log::info!(
                "mount: finished an interrupted shred ({} keys)",
                j.ids.len()
            );
            crate::audit::record(crate::audit::Event::new("shred").detail(format!(
                "finished an interrupted shred at mount: keys={}",
                j.ids.len()
            )));
        }
        Ok(out) => warn(format!(
            "its final check found {} leftover(s)",
            out.report.findings.len()
        )),
        Err(e) => warn(format!("finishing it failed: {e}")),
    }
}
