//! `dekfs shred CIPHERDIR PLAINPATH` (offline) and the finishing of an
//! interrupted shred: holds the volume lock, unlocks with the usual
//! credentials only to resolve the path, shows what will be destroyed and
//! asks, then hands the keyless work to engine::shred. It must not run on a
//! mounted volume (the online request goes through the daemon) and must
//! never print key bytes (the audit line carries ids and counts).

use super::exit::{CliError, CliResult, CORRUPT, GENERIC, IO, MOUNT_FAILED, USAGE};
use super::unlock::{explicit_credential, unlock_volume, TpmOpts};
use super::KeySource;
use crate::engine::shred::{self, Journal, Outcome, ResolveError, Survey, Target};
use crate::volume::{self, LockError, VolumeLock};
use clap::Args;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ShredArgs {
    /// Cipher directory of an unmounted volume, mount point of a mounted
    /// one, or alone: a path inside a mounted volume
    cipherdir: PathBuf,
    /// Path inside the volume to destroy (e.g. /customers/acme); optional
    /// when only finishing an interrupted shred
    plainpath: Option<String>,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    /// Also scan every byte of every file (not only keys and metadata) for
    /// the destroyed keys
    #[arg(long)]
    verify: bool,
    /// Append the audit line, with every destroyed id, to FILE
    #[arg(long, value_name = "FILE")]
    audit_file: Option<PathBuf>,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
    #[command(flatten)]
    purge: super::shred_purge::PurgeArgs,
}

/// The volume lock, or why the volume is busy.
pub(super) fn offline_lock(cipherdir: &Path, role: &str) -> CliResult<VolumeLock> {
    let busy = |what: String| {
        CliError::new(MOUNT_FAILED, format!("{} is {what}", cipherdir.display())).hint(
            if role == "shred" {
                "shred through the mount instead (dekfs shred MOUNTPOINT/PATH), or unmount it first"
                    .to_owned()
            } else {
                format!("unmount it first (dekfs umount MOUNTPOINT), then run dekfs {role} again")
            },
        )
    };
    if let Some(m) = crate::daemon::mountpoint_of(cipherdir) {
        return Err(busy(format!("mounted at {}", m.display())));
    }
    match VolumeLock::try_acquire(cipherdir, role, None) {
        Ok(l) => Ok(l),
        Err(LockError::Held(h)) => Err(busy(h.to_string())),
        Err(e) => Err(CliError::new(IO, e.to_string())),
    }
}

pub(super) fn confirm(question: &str, answer: &str) -> CliResult<bool> {
    print!("{question} Type '{answer}' to continue: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']) == answer)
}

fn resolve_error(e: ResolveError, plain: &str, cipherdir: &Path) -> CliError {
    match e {
        ResolveError::Root => CliError::new(
            USAGE,
            format!("refusing to shred {plain}: it is the volume root"),
        )
        .hint(format!(
            "to erase the whole volume run `dekfs destroy {}`",
            cipherdir.display()
        )),
        ResolveError::Outside => CliError::new(
            USAGE,
            format!("refusing to shred {plain}: the path leads outside the volume"),
        )
        .hint("give a path inside the volume, e.g. /dir/file"),
        ResolveError::Io(e) => CliError::new(IO, e.to_string()),
        e => CliError::new(GENERIC, format!("cannot shred {plain}: {e}")),
    }
}

fn describe(t: &Target, s: &Survey) -> String {
    let what = t.kind_name();
    format!(
        "{} ({what}): {} directories, {} files, {} symlinks, {} other, {} bytes; {} keys ({} wrapped-key slots)",
        t.plain,
        s.dirs,
        s.files,
        s.symlinks,
        s.others,
        s.plain_bytes,
        s.key_objects,
        s.needles.len()
    )
}

fn run_finish(cipherdir: &Path, j: &Journal, full: bool) -> CliResult<Outcome> {
    let out = shred::finish(cipherdir, j, full)
        .map_err(|e| CliError::new(IO, format!("shred of {}: {e}", cipherdir.display())))?;
    println!(
        "destroyed {} key objects in {:.3} s (overwritten and synced); ciphertext removed in {:.3} s",
        out.objects,
        out.destroy_time.as_secs_f64(),
        out.remove_time.as_secs_f64()
    );
    if out.replaced {
        println!("note: the shredded name was taken by a new object after the interrupted run; the new object was left alone");
    }
    let r = &out.report;
    println!(
        "check: {} files, {} bytes scanned for {} destroyed ids and {} wrapped keys{}: {}",
        r.files,
        r.bytes,
        j.ids.len(),
        j.needles.len(),
        if full { " (--verify: every byte)" } else { "" },
        if r.is_clean() {
            "clean"
        } else {
            "FOUND LEFTOVERS"
        }
    );
    for f in &r.findings {
        println!("leftover: {}: {}", f.path, f.what);
    }
    if !r.is_clean() {
        return Err(CliError::new(
            CORRUPT,
            format!("{} leftover(s) of the shredded keys", r.findings.len()),
        )
        .hint("the journal dekfs.shred is kept; remove or repair what is listed, then run `dekfs shred CIPHERDIR` again"));
    }
    Ok(out)
}

/// The audit record: time, uid, path, counts and the destroyed ids (never
/// key bytes). stderr gets the ids' SHA-256 and the first few; the audit
/// file, if any, every id.
fn audit(plain: &str, s: &Survey, ids: &[[u8; 16]], file: Option<&Path>) -> CliResult<()> {
    use sha2::{Digest, Sha256};
    let uid = rustix::process::getuid().as_raw();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let hexes: Vec<String> = ids.iter().map(|i| super::init::hex(i)).collect();
    let digest = super::init::hex(&Sha256::digest(hexes.join(",").as_bytes()));
    let head = format!(
        "audit: shred time={} uid={uid} path={plain:?} dirs={} files={} keys={} ids_sha256={digest}",
        super::status::utc_time(now),
        s.dirs,
        s.files,
        s.key_objects,
    );
    const SHOWN: usize = 4;
    let more = hexes.len().saturating_sub(SHOWN);
    let shown = hexes[..hexes.len().min(SHOWN)].join(",");
    if more > 0 {
        eprintln!("{head} ids={shown},... (+{more} more)");
    } else {
        eprintln!("{head} ids={shown}");
    }
    log::info!("{head}");
    crate::audit::record(
        crate::audit::Event::new("shred")
            .path(plain)
            .detail(format!(
                "dirs={} files={} keys={} ids_sha256={digest}",
                s.dirs, s.files, s.key_objects
            )),
    );
    if let Some(f) = file {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)?;
        writeln!(out, "{head} ids={}", hexes.join(","))?;
        out.sync_all()?;
    }
    Ok(())
}

pub fn run(a: ShredArgs) -> CliResult<()> {
    if let Some((mnt, path)) = super::shred_online::target(&a.cipherdir, a.plainpath.as_deref())? {
        if a.audit_file.is_some() {
            return Err(CliError::new(
                USAGE,
                "--audit-file is for offline shreds; the daemon records online shreds in the volume's audit log",
            ));
        }
        if a.purge.purge_backups {
            return Err(CliError::new(
                USAGE,
                "--purge-backups runs offline: unmount the volume, then `dekfs shred CIPHERDIR PATH --purge-backups`",
            ));
        }
        return super::shred_online::run(&mnt, &path, a.yes, a.verify);
    }
    let cipherdir = std::fs::canonicalize(&a.cipherdir)
        .map_err(|_| CliError::from(volume::VolumeError::NotAVolume(a.cipherdir.clone())))?;
    let info = volume::read_info(&cipherdir)?;
    let _lock = offline_lock(&cipherdir, "shred")?;
    if let Some(j) = shred::pending(&cipherdir)? {
        println!(
            "finishing an interrupted shred ({} keys recorded in {})",
            j.ids.len(),
            shred::JOURNAL_NAME
        );
        run_finish(&cipherdir, &j, a.verify)?;
    }
    let Some(plain) = a.plainpath.as_deref() else {
        return match shred::pending(&cipherdir)? {
            None if a.purge.purge_backups => {
                // Only the purge (or the rest of an interrupted one).
                let prep =
                    super::shred_purge::prepare(&cipherdir, &a.key, &a.tpm, &a.purge, &info)?;
                super::shred_purge::run(&cipherdir, prep, &info, "the shredded paths")
            }
            None => Ok(()),
            Some(_) => Err(CliError::new(CORRUPT, "the shred journal is still there")),
        };
    };
    // Refusals that need no key come before the prompt.
    if let Err(e) = shred::resolve::components(plain) {
        return Err(resolve_error(e, plain, &cipherdir));
    }
    let tpm_first = !explicit_credential(&a.key);
    // A purge checks every credential it will need before anything is destroyed, and keeps
    // the keys for the rotation that follows the shred.
    let (target, purge) = if a.purge.purge_backups {
        let prep = super::shred_purge::prepare(&cipherdir, &a.key, &a.tpm, &a.purge, &info)?;
        let t = shred::resolve(&cipherdir, prep.keys(), plain);
        (t, Some(prep))
    } else {
        let u = unlock_volume(&cipherdir, &a.key, &a.tpm, None, tpm_first)?;
        (shred::resolve(&cipherdir, &u.keys, plain), None)
    };
    let target = target.map_err(|e| resolve_error(e, plain, &cipherdir))?;
    let survey = shred::survey_target(&cipherdir, &target)?;
    println!("will destroy {}", describe(&target, &survey));
    if !a.purge.purge_backups {
        println!("{}", super::shred_purge::backup_line(&info, plain, false));
    }
    if !a.yes && !confirm("This cannot be undone.", "yes")? {
        return Err(CliError::new(GENERIC, "not confirmed; nothing destroyed"));
    }
    let journal = shred::begin(&cipherdir, &target, &survey)?;
    audit(
        &target.plain,
        &survey,
        &journal.ids,
        a.audit_file.as_deref(),
    )?;
    run_finish(&cipherdir, &journal, a.verify)?;
    println!("shredded {}", target.plain);
    if let Some(prep) = purge {
        super::shred_purge::run(&cipherdir, prep, &info, &target.plain)?;
    }
    Ok(())
}
