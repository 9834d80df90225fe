//! `dekfs fsck CIPHERDIR`: unlocks the volume (which verifies the config MAC
//! over every config record and the protector used), then authenticates
//! every directory key, name, header and block. Exit 0 when clean, the
//! "corrupt" code otherwise. It must not write unless `--repair`, and then
//! only quarantines; with `--repair` it holds the volume lock, so it never runs
//! on a mounted volume or beside another repair.

use super::exit::{CliError, CliResult, CORRUPT, IO, MOUNT_FAILED};
use super::{secret_input, KeySource};
use crate::volume::{self, ConfigLock, Credential, LockError, VolumeLock};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct FsckArgs {
    /// Cipher directory to check
    cipherdir: PathBuf,
    #[command(flatten)]
    key: KeySource,
    /// Move corrupt entries into CIPHERDIR/dekfs.quarantine/ (unmounted only)
    #[arg(long)]
    repair: bool,
    /// Copy every file, directory and symlink, with every block that authenticates, into the
    /// new directory OUT (plaintext, mode 0600/0700) and list the byte ranges that do not read
    #[arg(long, value_name = "OUT")]
    salvage: Option<PathBuf>,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

fn credential(k: &KeySource) -> CliResult<Credential> {
    Ok(match (&k.passfile, k.passphrase_fd, &k.recovery_key_file) {
        (Some(p), _, _) => Credential::Passphrase(secret_input::from_file(p)?),
        (None, Some(fd), _) => Credential::Passphrase(secret_input::from_fd(fd)?),
        (None, None, Some(r)) => Credential::RecoveryKey(secret_input::recovery_from_file(r)?),
        (None, None, None) => Credential::Passphrase(secret_input::prompt("Passphrase: ", false)?),
    })
}

/// `--repair` owns the tree: it takes the volume lock (refused while a
/// daemon serves the volume, or another repair runs), then the config lock
/// for a moment to clear temp files a crashed config writer left. The
/// mountinfo check catches a daemon of an older dekfs that took no lock.
fn repair_locks(cipherdir: &Path) -> CliResult<(Option<VolumeLock>, usize)> {
    if let Some(m) = crate::daemon::mountpoint_of(cipherdir) {
        return Err(mounted_error(
            cipherdir,
            &format!("mounted at {}", m.display()),
        ));
    }
    volume::read_info(cipherdir)?;
    let lock = match VolumeLock::try_acquire(cipherdir, "fsck --repair", None) {
        Ok(l) => Some(l),
        Err(LockError::Held(h)) => return Err(mounted_error(cipherdir, &h.to_string())),
        // Repair of a volume whose filesystem cannot lock stays possible.
        Err(LockError::Unsupported(why)) => {
            eprintln!("warning: cannot take the volume lock ({why})");
            None
        }
        Err(LockError::Io(e)) => return Err(e.into()),
    };
    let stale = match ConfigLock::acquire(cipherdir) {
        Ok(c) => c.stale_removed,
        Err(e) => return Err(CliError::from(volume::VolumeError::from(e))),
    };
    Ok((lock, stale))
}

fn mounted_error(cipherdir: &Path, what: &str) -> CliError {
    CliError::new(
        MOUNT_FAILED,
        format!(
            "{} is {what}; --repair needs it unmounted",
            cipherdir.display()
        ),
    )
    .hint("unmount it first (dekfs umount MOUNTPOINT), then run fsck --repair again")
}

pub fn run(a: FsckArgs) -> CliResult<()> {
    let cipherdir = std::fs::canonicalize(&a.cipherdir)
        .map_err(|_| CliError::from(volume::VolumeError::NotAVolume(a.cipherdir.clone())))?;
    // Before the prompt; held until the repair is done.
    let (_lock, stale) = if a.repair {
        repair_locks(&cipherdir)?
    } else {
        (None, 0)
    };
    // A half-shredded subtree reads as damage; quarantining it would move it
    // away from the path the shred journal names.
    let shred_pending = crate::engine::shred::pending(&cipherdir)
        .unwrap_or(None)
        .is_some();
    if shred_pending && a.repair {
        return Err(CliError::new(
            MOUNT_FAILED,
            format!("{} has an interrupted shred", cipherdir.display()),
        )
        .hint("finish it first: dekfs shred CIPHERDIR, then run fsck --repair again"));
    }
    let cred = credential(&a.key)?;
    let unlocked = volume::unlock_with(&cipherdir, &cred, &super::unlock::unlock_policy(&a.key))?;
    drop(cred);
    if !a.json {
        println!(
            "config: {} KEK(s), {} protector(s), MAC verified",
            unlocked.info.keks.len(),
            unlocked.info.protectors.len()
        );
    }
    if let Some(out) = &a.salvage {
        if out.starts_with(&cipherdir) {
            return Err(CliError::new(
                super::exit::USAGE,
                "--salvage OUT must be outside the cipher directory",
            ));
        }
    }
    let opts = crate::engine::fsck::CheckOptions {
        repair: a.repair,
        salvage: a.salvage.clone(),
    };
    let r = crate::engine::fsck::check_with(&cipherdir, &unlocked.keys, &opts)
        .map_err(|e| CliError::new(IO, format!("fsck of {}: {e}", cipherdir.display())))?;
    if a.json {
        println!("{}", super::fsck_report::json(&r, a.salvage.as_deref()));
        return verdict(&r, &cipherdir);
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    if shred_pending {
        println!("note: an interrupted shred is pending (dekfs.shred); `dekfs shred CIPHERDIR` finishes it");
    }
    if stale > 0 {
        println!("repaired: removed {stale} config temp file(s) left by a crashed writer");
    } else if !a.repair && volume::lock::count_config_temps(&cipherdir) > 0 {
        println!("note: config temp file(s) left by a crashed writer (fsck --repair removes them)");
    }
    super::fsck_report::text(&r, a.salvage.as_deref());
    for rec in &r.removed {
        println!("removed orphan record: {}", rec.display());
    }
    for (file, size) in &r.cut {
        println!(
            "repaired: cut {} back to {size} bytes (before the append a power cut tore)",
            file.display()
        );
    }
    for (from, to) in &r.quarantined {
        println!("quarantined: {} -> {}", from.display(), to.display());
    }
    let cuts = r.diagnoses.iter().filter(|d| d.power_cut).count();
    let verdicts = if r.problems.is_empty() {
        String::new()
    } else {
        format!(
            ", {cuts} explained by a power cut, {} not",
            r.problems.len() - cuts
        )
    };
    println!(
        "fsck: {} directories, {} files, {} symlinks, {} blocks checked; {} problem(s){verdicts}",
        r.dirs,
        r.files,
        r.symlinks,
        r.blocks,
        r.problems.len(),
    );
    verdict(&r, &cipherdir)
}

fn verdict(r: &crate::engine::fsck::Report, cipherdir: &Path) -> CliResult<()> {
    if r.is_clean() {
        Ok(())
    } else {
        Err(CliError::new(
            CORRUPT,
            format!(
                "{} corrupt object(s) in {}",
                r.problems.len(),
                cipherdir.display()
            ),
        ))
    }
}
