//! `dekfs destroy CIPHERDIR`: erases a whole volume by destroying every KEK
//! copy (engine::destroy), after a double confirmation (or `--yes
//! --yes-really`), and reports the check that no protector can unlock it any
//! more. It must not run on a mounted volume and needs no credential: anyone
//! who may delete the cipher directory may destroy it.

use super::exit::{CliError, CliResult, CORRUPT, GENERIC, IO};
use super::shred::{confirm, offline_lock};
use crate::volume;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DestroyArgs {
    /// Cipher directory of the (unmounted) volume
    cipherdir: PathBuf,
    /// First confirmation
    #[arg(long)]
    yes: bool,
    /// Second confirmation (with --yes: no questions asked)
    #[arg(long, requires = "yes")]
    yes_really: bool,
    #[command(flatten)]
    tpm: super::unlock::TpmOpts,
}

pub fn run(a: DestroyArgs) -> CliResult<()> {
    let cipherdir = std::fs::canonicalize(&a.cipherdir)
        .map_err(|_| CliError::from(volume::VolumeError::NotAVolume(a.cipherdir.clone())))?;
    let info = volume::read_info(&cipherdir)?;
    let _lock = offline_lock(&cipherdir, "destroy")?;
    let vid = super::init::hex(&info.volume_id);
    let kinds: Vec<&str> = info.protectors.iter().map(|p| p.kind).collect();
    println!(
        "will destroy volume {vid} at {}: {} KEK(s), {} protector(s) ({}); every file in it becomes unreadable",
        cipherdir.display(),
        info.keks.len(),
        info.protectors.len(),
        kinds.join(", ")
    );
    if !(a.yes && a.yes_really) {
        let short = &vid[..8];
        if !confirm("This destroys ALL data in the volume.", "destroy")?
            || !confirm(
                "Second confirmation: the first 8 digits of the volume id.",
                short,
            )?
        {
            return Err(CliError::new(GENERIC, "not confirmed; nothing destroyed"));
        }
    }
    // Recorded before the key goes: a pending (unkeyed) line, the last one
    // of this volume's log.
    crate::audit::attach(&cipherdir, None);
    crate::audit::record(
        crate::audit::Event::new("destroy")
            .volume(&info.volume_id)
            .detail(format!(
                "{} KEK(s), protectors: {}",
                info.keks.len(),
                kinds.join(", ")
            )),
    );
    // TPM NV key shares of template-3 records: named only in the config about to go.
    let shares = volume::nv_shares(&cipherdir, None)?;
    let r = crate::engine::destroy::destroy(&cipherdir)
        .map_err(|e| CliError::new(IO, format!("destroy of {}: {e}", cipherdir.display())))?;
    for p in &r.erased {
        println!("erased: {}", p.display());
    }
    let unlockable = !matches!(
        volume::read_info(&cipherdir),
        Err(volume::VolumeError::NotAVolume(_))
    );
    println!(
        "check: {} key-material windows of the old config searched in every file: {}; config left: {}",
        r.needles,
        if r.leftovers.is_empty() { "none found" } else { "FOUND" },
        if unlockable || r.config_left { "YES" } else { "no" }
    );
    for (p, off) in &r.leftovers {
        println!("leftover: {p} at offset {off}");
    }
    let mut share_error = None;
    if !shares.is_empty() {
        let tcti = a.tpm.tcti(None)?;
        for i in shares {
            match crate::tpm::nv::erase_share(&tcti, i) {
                Ok(_) => println!("erased: TPM NV key share {i:#010x}"),
                Err(e) => {
                    println!("leftover: TPM NV key share {i:#010x}: {e}");
                    share_error.get_or_insert(e);
                }
            }
        }
    }
    if let Some(e) = share_error {
        return Err(CliError::new(
            CORRUPT,
            format!("a TPM NV key share could not be erased: {e}"),
        )
        .hint("a backup of dekfs.conf could still open the volume on this TPM; the config is gone, so erase the index listed above with `tpm2_nvundefine INDEX`"));
    }
    if !r.is_clean() || unlockable {
        return Err(CliError::new(
            CORRUPT,
            "the volume's key material is not fully destroyed",
        ));
    }
    println!(
        "destroyed: no protector can unlock {} any more",
        cipherdir.display()
    );
    Ok(())
}
