//! `dekfs init`: creates a volume and shows its recovery key once. It must
//! not write anything into a non-empty directory.

use super::exit::CliResult;
use super::{secret_input, KeySource};
use crate::volume::{self, InitOptions, KdfParams};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct InitArgs {
    /// Empty directory that will hold the ciphertext
    cipherdir: PathBuf,
    #[command(flatten)]
    key: KeySource,
    /// Do not create a recovery-key protector (not recommended)
    #[arg(long)]
    no_recovery_key: bool,
    /// Argon2id memory cost in KiB (default 65536, RFC 9106)
    #[arg(long, value_name = "KIB")]
    kdf_memory: Option<u32>,
    /// Argon2id passes (default 3)
    #[arg(long, value_name = "T")]
    kdf_time: Option<u32>,
    /// Argon2id lanes (default 4)
    #[arg(long, value_name = "P")]
    kdf_lanes: Option<u32>,
    #[command(flatten)]
    tpm: super::protector::Tpm2NewArgs,
    /// With --tpm2: no passphrase and no recovery key (needs --yes; the data dies with the TPM)
    #[arg(long, requires = "tpm2")]
    tpm_only: bool,
    /// Confirm --tpm-only
    #[arg(long)]
    yes: bool,
    /// Keep a tamper-evident audit log (dekfs.audit inside CIPHERDIR unless --audit-log)
    #[arg(long)]
    audit: bool,
    /// KEK rotation period in days, stored in the volume (default 365; see `dekfs rekey --if-due`)
    #[arg(long, value_name = "DAYS", value_parser = super::period::parse_days)]
    rotation_period: Option<u32>,
    /// Store content in the v1 layout (blocks rewritten in place: a power cut during a write
    /// can make the block unreadable), for dekfs versions that predate the paged layout
    #[arg(long)]
    v1_layout: bool,
}

pub fn run(a: InitArgs) -> CliResult<()> {
    if a.audit {
        crate::audit::enable_creation();
    }
    if a.v1_layout {
        volume::create_v1_layout();
    }
    if a.tpm.tpm2 {
        return run_tpm2(a);
    }
    let passphrase = match (&a.key.passfile, a.key.passphrase_fd) {
        (Some(p), _) => secret_input::from_file(p)?,
        (None, Some(fd)) => secret_input::from_fd(fd)?,
        (None, None) => secret_input::prompt("New passphrase: ", true)?,
    };
    if passphrase.is_empty() {
        return Err(super::CliError::new(super::exit::USAGE, "empty passphrase"));
    }
    let kdf = kdf_of(&a);
    let out = volume::init_with_period(
        &a.cipherdir,
        InitOptions {
            passphrase,
            kdf,
            recovery_key: !a.no_recovery_key,
        },
        a.rotation_period,
    )?;
    eprintln!(
        "Created dekfs volume {} in {}",
        hex(&out.volume_id),
        a.cipherdir.display()
    );
    warn_above_unlock_limit(&kdf);
    if let Some(rk) = out.recovery_key {
        println!("Recovery key: {}", rk.display());
        eprintln!("Store the recovery key offline now; it is shown only once and unlocks the volume without the passphrase.");
    }
    Ok(())
}

fn kdf_of(a: &InitArgs) -> KdfParams {
    let d = KdfParams::default();
    KdfParams {
        m_cost_kib: a.kdf_memory.unwrap_or(d.m_cost_kib),
        t_cost: a.kdf_time.unwrap_or(d.t_cost),
        p_lanes: a.kdf_lanes.unwrap_or(d.p_lanes),
    }
}

/// `init --tpm2`: TPM protector plus passphrase and recovery key, unless --tpm-only --yes.
fn run_tpm2(a: InitArgs) -> CliResult<()> {
    use super::exit::{CliError, USAGE};
    if a.tpm_only && !a.yes {
        return Err(CliError::new(
            USAGE,
            "--tpm-only creates a volume that only this TPM can open; if the TPM dies or is cleared the data is lost",
        )
        .hint("confirm with --tpm-only --yes, or drop --tpm-only to also get a passphrase and a recovery key"));
    }
    let passphrase = if a.tpm_only {
        None
    } else {
        Some(match (&a.key.passfile, a.key.passphrase_fd) {
            (Some(p), _) => secret_input::from_file(p)?,
            (None, Some(fd)) => secret_input::from_fd(fd)?,
            (None, None) => secret_input::prompt("New passphrase: ", true)?,
        })
    };
    let seal = a.tpm.seal_request()?;
    let what = a.tpm.describe();
    let kdf = kdf_of(&a);
    let out = volume::init_tpm2_with_period(
        &a.cipherdir,
        volume::Tpm2InitOptions {
            passphrase,
            kdf,
            recovery_key: !a.tpm_only && !a.no_recovery_key,
            tpm: seal,
        },
        a.rotation_period,
    )?;
    eprintln!(
        "Created dekfs volume {} in {} with a TPM2 protector ({what})",
        hex(&out.volume_id),
        a.cipherdir.display()
    );
    if !a.tpm_only {
        warn_above_unlock_limit(&kdf);
    }
    if let Some(rk) = out.recovery_key {
        println!("Recovery key: {}", rk.display());
        eprintln!("Store the recovery key offline now; it is shown only once and unlocks the volume without the passphrase or the TPM.");
    }
    Ok(())
}

/// A passphrase KDF above this machine's unlock limit makes a volume that opens only with
/// --allow-kdf-cost: say so while the user can still re-create it.
fn warn_above_unlock_limit(kdf: &KdfParams) {
    if let Err(e) = volume::UnlockPolicy::local().check(kdf) {
        eprintln!("dekfs: warning: unlocking will need --allow-kdf-cost: {e}");
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
