//! Which credential unlocks a volume, in which order: the TPM, then a KMIP key manager (neither
//! prompts), then the passphrase or recovery key from a file, a descriptor or the terminal. Shared by `mount` and
//! `protector`. Must NOT print key material; TPM refusals are reported by reason only.

use super::exit::{CliError, CliResult, TPM_POLICY, USAGE};
use super::{secret_input, KeySource};
use crate::secret::SecretBytes;
use crate::tpm::Tcti;
use crate::volume::{self, Credential, UnlockedVolume, VolumeError};
use clap::Args;
use std::path::{Path, PathBuf};

/// TPM selection and PIN, for every command that may talk to the TPM.
#[derive(Args, Clone, Default)]
pub struct TpmOpts {
    /// TPM to use: device:/dev/tpmrm0 (default), swtpm:host=127.0.0.1,port=N
    /// (also `-o tpm_tcti=` for mount, or $DEKFS_TPM_TCTI)
    #[arg(long, value_name = "TCTI")]
    pub tpm_tcti: Option<String>,
    /// Read the TPM PIN from the first line of FILE
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

impl TpmOpts {
    pub fn tcti(&self, from_mount_option: Option<&str>) -> CliResult<Tcti> {
        Tcti::select(self.tpm_tcti.as_deref().or(from_mount_option))
            .map_err(|e| CliError::new(USAGE, e))
    }

    /// The PIN from --pin-file, else the terminal; None if neither exists.
    pub fn pin(&self, confirm: bool) -> CliResult<Option<SecretBytes>> {
        if let Some(p) = &self.pin_file {
            return Ok(Some(secret_input::from_file(p)?));
        }
        if !has_tty() {
            return Ok(None);
        }
        secret_input::prompt("TPM PIN: ", confirm).map(Some)
    }
}

pub fn has_tty() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

pub fn explicit_credential(k: &KeySource) -> bool {
    k.passfile.is_some() || k.passphrase_fd.is_some() || k.recovery_key_file.is_some()
}

/// The KDF cost policy for this command: the machine's limits unless --allow-kdf-cost.
pub fn unlock_policy(k: &KeySource) -> volume::UnlockPolicy {
    volume::UnlockPolicy::from_env(k.allow_kdf_cost)
}

pub fn read_credential(k: &KeySource) -> CliResult<Credential> {
    Ok(match (&k.passfile, k.passphrase_fd, &k.recovery_key_file) {
        (Some(p), _, _) => Credential::Passphrase(secret_input::from_file(p)?),
        (None, Some(fd), _) => Credential::Passphrase(secret_input::from_fd(fd)?),
        (None, None, Some(r)) => Credential::RecoveryKey(secret_input::recovery_from_file(r)?),
        (None, None, None) => Credential::Passphrase(secret_input::prompt("Passphrase: ", false)?),
    })
}

/// Tries the volume's tpm2 protector(s). `Ok(None)` when the volume has none.
pub(super) fn try_tpm(
    cipherdir: &Path,
    tpm: &TpmOpts,
    tcti_option: Option<&str>,
) -> CliResult<Result<UnlockedVolume, VolumeError>> {
    let info = volume::read_info(cipherdir)?;
    let active = info.keks.iter().find(|k| k.2).map(|k| k.0);
    let tpms: Vec<_> = info
        .protectors
        .iter()
        .filter(|p| p.tpm2.is_some() && Some(p.kek_version) == active)
        .collect();
    if tpms.is_empty() {
        return Ok(Err(VolumeError::NoSuchProtector("tpm2")));
    }
    let tcti = tpm.tcti(tcti_option)?;
    let needs_pin = tpms.iter().any(|p| p.tpm2.as_ref().is_some_and(|t| t.pin));
    let pin = if needs_pin { tpm.pin(false)? } else { None };
    Ok(volume::unlock_tpm2(cipherdir, &tcti, pin.as_ref()))
}

/// Records sealed before SRK pinning (template 1) still open; say once how to gain the pin.
fn reseal_hint(u: &UnlockedVolume) {
    let old = u.info.protectors.iter().any(|p| {
        p.tpm2
            .as_ref()
            .is_some_and(|t| t.template_version == crate::format::TPM2_TEMPLATE_V1)
    });
    if old {
        let msg = "the TPM protector does not pin the TPM's storage key (sealed by an older \
                   dekfs); `dekfs protector reseal --tpm2 CIPHERDIR` adds the pin";
        log::warn!("{msg}");
        eprintln!("dekfs: note: {msg}");
    }
}

/// Unlocks `cipherdir`: the TPM first when `tpm_first` (no prompt; a PIN only if the protector
/// has one), then the given credential, else a terminal prompt. Without any other credential a
/// TPM refusal is the error (exit 11), with its reason and what to do.
pub fn unlock_volume(
    cipherdir: &Path,
    key: &KeySource,
    tpm: &TpmOpts,
    tcti_option: Option<&str>,
    tpm_first: bool,
) -> CliResult<UnlockedVolume> {
    let u = unlock_any(cipherdir, key, tpm, tcti_option, tpm_first)?;
    // What the command does next is recorded in the volume's audit log
    // (when it keeps one), under the key just unlocked.
    crate::audit::attach(cipherdir, Some(&u.keys));
    Ok(u)
}

fn unlock_any(
    cipherdir: &Path,
    key: &KeySource,
    tpm: &TpmOpts,
    tcti_option: Option<&str>,
    tpm_first: bool,
) -> CliResult<UnlockedVolume> {
    let mut refusal = None;
    if tpm_first {
        let t0 = std::time::Instant::now();
        match try_tpm(cipherdir, tpm, tcti_option)? {
            Ok(u) => {
                reseal_hint(&u);
                // No passphrase was read, so the reader's lock warning has not run yet.
                secret_input::warn_if_unlocked();
                return Ok(u);
            }
            Err(VolumeError::NoSuchProtector(_)) => {}
            Err(e @ (VolumeError::Tpm(_) | VolumeError::Corrupt(_))) => {
                let ms = t0.elapsed().as_millis();
                if explicit_credential(key) || has_tty() {
                    eprintln!("dekfs: {e} (after {ms} ms); trying the next protector");
                }
                refusal = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
        let t0 = std::time::Instant::now();
        match super::kmip::try_kmip(cipherdir)? {
            Ok(u) => {
                secret_input::warn_if_unlocked();
                return Ok(u);
            }
            Err(VolumeError::NoSuchProtector(_)) => {}
            Err(e @ (VolumeError::Kmip(_) | VolumeError::Corrupt(_))) => {
                let ms = t0.elapsed().as_millis();
                if explicit_credential(key) || has_tty() {
                    eprintln!("dekfs: {e} (after {ms} ms); trying the next protector");
                }
                // The TPM's refusal, if any, stays the one reported.
                refusal.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !explicit_credential(key) && !has_tty() {
        if let Some(e) = refusal {
            let hint = match &e {
                VolumeError::Tpm(r) => r.hint(),
                VolumeError::Kmip(_) => return Err(e.into()),
                _ => "unlock with --passfile FILE or --recovery-key-file FILE".into(),
            };
            return Err(CliError::new(TPM_POLICY, e.to_string()).hint(hint));
        }
    }
    let cred = read_credential(key)?;
    Ok(volume::unlock_with(cipherdir, &cred, &unlock_policy(key))?)
}
