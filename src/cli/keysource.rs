//! `-o keysource=`: which credential `dekfs mount` (and so fstab and mount
//! units) unlocks with, and where a person is asked when nobody sits at a
//! terminal. It must not read key material itself beyond choosing the
//! reader, and `nofail` or `headless` mounts never wait for a person.

use super::exit::{CliError, CliResult, KEY_MANAGER, TPM_POLICY, USAGE};
use super::unlock::{explicit_credential, has_tty, try_tpm, unlock_volume, TpmOpts};
use super::{ask_password, secret_input, KeySource};
use crate::mount_opts::{KeySourceOpt, MountOptions};
use crate::secret::RecoveryKey;
use crate::volume::{self, Credential, UnlockedVolume, VolumeError};
use std::path::Path;

/// Unlocks `cipherdir` for a mount at `mnt` as `options.keysource` says.
/// `key` already holds `passfile=` (as `--passfile`).
pub fn unlock_for_mount(
    cipherdir: &Path,
    mnt: &Path,
    key: &KeySource,
    tpm: &TpmOpts,
    options: &MountOptions,
) -> CliResult<UnlockedVolume> {
    let tcti = options.tcti.as_deref();
    match options.keysource {
        KeySourceOpt::Auto => unlock_volume(cipherdir, key, tpm, tcti, true),
        KeySourceOpt::Passphrase => {
            if !explicit_credential(key) && !has_tty() {
                return Err(CliError::new(
                    USAGE,
                    "keysource=passphrase needs passfile= or a terminal",
                )
                .hint("keysource=ask asks through systemd-ask-password"));
            }
            unlock_volume(cipherdir, key, tpm, tcti, false)
        }
        KeySourceOpt::Ask => ask_or_read(cipherdir, mnt, key, tpm, tcti),
        KeySourceOpt::Recovery => {
            let cred = match (&key.passfile, &key.recovery_key_file) {
                (Some(f), _) | (None, Some(f)) => {
                    Credential::RecoveryKey(secret_input::recovery_from_file(f)?)
                }
                (None, None) => Credential::RecoveryKey(ask_recovery(mnt)?),
            };
            Ok(volume::unlock(cipherdir, &cred)?)
        }
        KeySourceOpt::Kmip => match super::kmip::try_kmip(cipherdir)? {
            Ok(u) => Ok(u),
            Err(
                e @ (VolumeError::Kmip(_)
                | VolumeError::Corrupt(_)
                | VolumeError::NoSuchProtector(_)),
            ) => {
                let hint = match &e {
                    VolumeError::Kmip(k) => k.hint(),
                    _ => "add a kmip protector: dekfs protector add --kmip SERVERS ...".into(),
                };
                refused_then_ask(e, KEY_MANAGER, hint, options)?;
                ask_or_read(cipherdir, mnt, key, tpm, tcti)
            }
            Err(e) => Err(e.into()),
        },
        KeySourceOpt::Tpm => match try_tpm(cipherdir, tpm, tcti)? {
            Ok(u) => Ok(u),
            Err(
                e @ (VolumeError::Tpm(_)
                | VolumeError::Corrupt(_)
                | VolumeError::NoSuchProtector(_)),
            ) => {
                let hint = match &e {
                    VolumeError::Tpm(r) => r.hint(),
                    _ => "add a tpm2 protector: dekfs protector add --tpm2".into(),
                };
                refused_then_ask(e, TPM_POLICY, hint, options)?;
                ask_or_read(cipherdir, mnt, key, tpm, tcti)
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// A no-prompt key source (TPM, KMIP) refused: `nofail` and `headless` mounts stop here with
/// `code`, the others say so and go on to ask for the passphrase.
fn refused_then_ask(
    e: VolumeError,
    code: i32,
    hint: String,
    options: &MountOptions,
) -> CliResult<()> {
    if options.nofail || options.headless {
        let why = if options.headless {
            "headless"
        } else {
            "nofail"
        };
        return Err(
            CliError::new(code, format!("{e} ({why}: not asking for a passphrase)")).hint(hint),
        );
    }
    eprintln!("dekfs: {e}; asking for the passphrase");
    Ok(())
}

/// The given credential, else the terminal, else the ask-password agents.
fn ask_or_read(
    cipherdir: &Path,
    mnt: &Path,
    key: &KeySource,
    tpm: &TpmOpts,
    tcti: Option<&str>,
) -> CliResult<UnlockedVolume> {
    if explicit_credential(key) || has_tty() {
        return unlock_volume(cipherdir, key, tpm, tcti, false);
    }
    let msg = format!("Passphrase for dekfs volume at {}:", mnt.display());
    let pass = ask_password::ask(&msg, &format!("dekfs:{}", mnt.display()))?;
    Ok(volume::unlock(cipherdir, &Credential::Passphrase(pass))?)
}

fn ask_recovery(mnt: &Path) -> CliResult<RecoveryKey> {
    let text = if has_tty() {
        secret_input::prompt("Recovery key: ", false)?
    } else {
        let msg = format!("Recovery key for dekfs volume at {}:", mnt.display());
        ask_password::ask(&msg, &format!("dekfs:{}", mnt.display()))?
    };
    let s = std::str::from_utf8(text.expose())
        .map_err(|_| CliError::new(USAGE, "recovery key is not text"))?;
    RecoveryKey::parse(s).map_err(|_| {
        CliError::new(USAGE, "malformed recovery key")
            .hint("expected 64 hex digits, dashes and spaces allowed")
    })
}
