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
}

pub fn run(a: InitArgs) -> CliResult<()> {
    let passphrase = match (&a.key.passfile, a.key.passphrase_fd) {
        (Some(p), _) => secret_input::from_file(p)?,
        (None, Some(fd)) => secret_input::from_fd(fd)?,
        (None, None) => secret_input::prompt("New passphrase: ", true)?,
    };
    if passphrase.is_empty() {
        return Err(super::CliError::new(super::exit::USAGE, "empty passphrase"));
    }
    let d = KdfParams::default();
    let kdf = KdfParams {
        m_cost_kib: a.kdf_memory.unwrap_or(d.m_cost_kib),
        t_cost: a.kdf_time.unwrap_or(d.t_cost),
        p_lanes: a.kdf_lanes.unwrap_or(d.p_lanes),
    };
    let out = volume::init(
        &a.cipherdir,
        InitOptions {
            passphrase,
            kdf,
            recovery_key: !a.no_recovery_key,
        },
    )?;
    eprintln!(
        "Created dekfs volume {} in {}",
        hex(&out.volume_id),
        a.cipherdir.display()
    );
    if let Some(rk) = out.recovery_key {
        println!("Recovery key: {}", rk.display());
        eprintln!("Store the recovery key offline now; it is shown only once and unlocks the volume without the passphrase.");
    }
    Ok(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
