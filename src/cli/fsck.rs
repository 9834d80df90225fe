//! `dekfs fsck CIPHERDIR`: unlocks the volume (which verifies the config MAC
//! over every config record and the protector used), then authenticates
//! every directory key, name, header and block. Exit 0 when clean, the
//! "corrupt" code otherwise. It must not write unless `--repair`, and then
//! only quarantines; it must not run on a mounted volume with `--repair`.

use super::exit::{CliError, CliResult, CORRUPT, IO, USAGE};
use super::{secret_input, KeySource};
use crate::volume::{self, Credential};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct FsckArgs {
    /// Cipher directory to check
    cipherdir: PathBuf,
    #[command(flatten)]
    key: KeySource,
    /// Move corrupt entries into CIPHERDIR/dekfs.quarantine/ (unmounted only)
    #[arg(long)]
    repair: bool,
}

fn credential(k: &KeySource) -> CliResult<Credential> {
    Ok(match (&k.passfile, k.passphrase_fd, &k.recovery_key_file) {
        (Some(p), _, _) => Credential::Passphrase(secret_input::from_file(p)?),
        (None, Some(fd), _) => Credential::Passphrase(secret_input::from_fd(fd)?),
        (None, None, Some(r)) => Credential::RecoveryKey(secret_input::recovery_from_file(r)?),
        (None, None, None) => Credential::Passphrase(secret_input::prompt("Passphrase: ", false)?),
    })
}

/// True if some dekfs mount is backed by `cipherdir`.
fn mounted(cipherdir: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = cipherdir.to_string_lossy();
    info.lines().any(|l| {
        let after = l.split(" - ").nth(1).unwrap_or("");
        let mut f = after.split(' ');
        f.next() == Some("fuse.dekfs") && f.next() == Some(&*want)
    })
}

pub fn run(a: FsckArgs) -> CliResult<()> {
    let cipherdir = std::fs::canonicalize(&a.cipherdir)
        .map_err(|_| CliError::from(volume::VolumeError::NotAVolume(a.cipherdir.clone())))?;
    if a.repair && mounted(&cipherdir) {
        return Err(CliError::new(
            USAGE,
            format!(
                "{} is mounted; --repair needs it unmounted",
                cipherdir.display()
            ),
        ));
    }
    let cred = credential(&a.key)?;
    let unlocked = volume::unlock_with(&cipherdir, &cred, &super::unlock::unlock_policy(&a.key))?;
    drop(cred);
    println!(
        "config: {} KEK(s), {} protector(s), MAC verified",
        unlocked.info.keks.len(),
        unlocked.info.protectors.len()
    );
    let r = crate::engine::fsck::check(&cipherdir, &unlocked.keys, a.repair)
        .map_err(|e| CliError::new(IO, format!("fsck of {}: {e}", cipherdir.display())))?;
    for n in &r.notes {
        println!("note: {n}");
    }
    for p in &r.problems {
        println!(
            "corrupt: {}: {} (backing {})",
            p.path,
            p.what,
            p.backing.display()
        );
    }
    for rec in &r.removed {
        println!("removed orphan record: {}", rec.display());
    }
    for (from, to) in &r.quarantined {
        println!("quarantined: {} -> {}", from.display(), to.display());
    }
    println!(
        "fsck: {} directories, {} files, {} symlinks, {} blocks checked; {} problem(s)",
        r.dirs,
        r.files,
        r.symlinks,
        r.blocks,
        r.problems.len()
    );
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
