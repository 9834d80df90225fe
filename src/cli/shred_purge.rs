//! `dekfs shred ... --purge-backups`: the credentials a KEK rotation needs, the rotation itself
//! (engine::shred::purge) after the shred, and the one line that says what a pre-shred copy of
//! the volume still opens for this volume's protectors (docs/THREAT-MODEL.md, Crypto-erasure).
//! It must not shred anything itself (cli/shred.rs does, first) and never prints key bytes.

use super::exit::{CliError, CliResult, USAGE};
use super::unlock::{has_tty, try_tpm, unlock_policy, TpmOpts};
use super::{secret_input, KeySource};
use crate::engine::shred::purge;
use crate::tpm::Tcti;
use crate::volume::rotate::RotateOptions;
use crate::volume::{self, Credential, UnlockedVolume, VolumeError, VolumeInfo};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Default)]
pub struct PurgeArgs {
    /// After the shred, rotate the volume key (every object rewrapped, the old key destroyed)
    /// and erase the TPM NV key shares of the old TPM records: today's dekfs.conf then opens
    /// nothing in a copy of the cipher directory taken before, and neither does an old copy of
    /// dekfs.conf through an NV-bound TPM protector. Passphrase and recovery-key protectors
    /// need their credential (--passfile, --recovery-key-file, or a prompt)
    #[arg(long)]
    pub purge_backups: bool,
    /// Passphrase of another passphrase protector to keep (first line of FILE; repeatable)
    #[arg(long, value_name = "FILE", requires = "purge_backups")]
    pub also_passfile: Vec<PathBuf>,
    /// Recovery key of a recovery-key protector to keep (repeatable)
    #[arg(long, value_name = "FILE", requires = "purge_backups")]
    pub also_recovery_key_file: Vec<PathBuf>,
    /// Do not carry protector ID (hex prefix, 4+ digits) over to the new key (repeatable)
    #[arg(long, value_name = "ID", requires = "purge_backups")]
    pub drop_protector: Vec<String>,
    /// Also create a fresh recovery-key protector and print its key once
    #[arg(long, requires = "purge_backups")]
    pub new_recovery_key: bool,
}

/// An unlocked volume and the checked options of the rotation to come.
pub struct Prepared {
    u: UnlockedVolume,
    opts: RotateOptions,
    tcti: Option<Tcti>,
}

impl Prepared {
    pub fn keys(&self) -> &crate::crypto::VolumeKeys {
        &self.u.keys
    }
}

/// What one protector of the pre-shred config still gives a holder of a pre-shred copy
/// (cipher directory + dekfs.conf); `None`: nothing.
fn still_opens(p: &volume::ProtectorInfo, purged: bool) -> Option<&'static str> {
    match (p.kind, p.tpm2.as_ref()) {
        ("passphrase", _) => Some("the passphrase of then"),
        ("recovery-key", _) => Some("the recovery key of then"),
        ("tpm2", Some(t)) if t.template_version >= crate::format::TPM2_TEMPLATE_V3 => {
            match (purged, t.pin) {
                (true, _) => None,
                (false, true) => Some("this TPM in the same PCR state with the PIN (until --purge-backups erases its NV key share)"),
                (false, false) => Some("this TPM in the same PCR state (until --purge-backups erases its NV key share)"),
            }
        }
        ("tpm2", t) if t.is_some_and(|t| t.pin) => {
            Some("this TPM in the same PCR state with the PIN (the record has no NV key share)")
        }
        ("tpm2", _) => Some("this TPM in the same PCR state (the record has no NV key share)"),
        ("kmip", _) => {
            Some("the key manager's key of then, until it is revoked or destroyed on the manager")
        }
        _ => Some("an unknown protector"),
    }
}

/// The one line for this volume (its active KEK's protectors before the shred).
pub fn backup_line(info: &VolumeInfo, plain: &str, purged: bool) -> String {
    let active = info.keks.iter().find(|k| k.2).map(|k| k.0);
    let mut who: Vec<&str> = Vec::new();
    for p in info
        .protectors
        .iter()
        .filter(|p| Some(p.kek_version) == active)
    {
        if let Some(w) = still_opens(p, purged) {
            if !who.contains(&w) {
                who.push(w);
            }
        }
    }
    let copy = "a copy of the cipher directory and dekfs.conf taken before this shred";
    match (who.is_empty(), purged) {
        (true, true) => format!(
            "backups: {copy} opens nothing under {plain} any more, on this machine or any other: \
             its only protectors were TPM protectors whose NV key shares are now erased"
        ),
        (false, true) => format!(
            "backups: {copy} still opens {plain} with {}; today's dekfs.conf opens nothing in it \
             (volume key rotated)",
            who.join(" or ")
        ),
        (_, false) => format!(
            "backups: {copy} still opens {plain} with {}; --purge-backups rotates the volume key \
             and erases NV-bound TPM shares",
            who.join(" or ")
        ),
    }
}

/// Credentials for the rotation: the given ones, or a prompt when a passphrase or recovery
/// protector must follow the new key and a terminal exists.
fn credentials(key: &KeySource, p: &PurgeArgs, info: &VolumeInfo) -> CliResult<Vec<Credential>> {
    let mut v = Vec::new();
    if let Some(f) = &key.passfile {
        v.push(Credential::Passphrase(secret_input::from_file(f)?));
    } else if let Some(fd) = key.passphrase_fd {
        v.push(Credential::Passphrase(secret_input::from_fd(fd)?));
    }
    if let Some(r) = &key.recovery_key_file {
        v.push(Credential::RecoveryKey(secret_input::recovery_from_file(
            r,
        )?));
    }
    let active = info.keks.iter().find(|k| k.2).map(|k| k.0);
    let needs = info
        .protectors
        .iter()
        .any(|p| Some(p.kek_version) == active && p.tpm2.is_none() && p.kmip.is_none());
    if v.is_empty() && needs && has_tty() {
        v.push(Credential::Passphrase(secret_input::prompt(
            "Passphrase (it is re-wrapped under the new volume key): ",
            false,
        )?));
    }
    for f in &p.also_passfile {
        v.push(Credential::Passphrase(secret_input::from_file(f)?));
    }
    for r in &p.also_recovery_key_file {
        v.push(Credential::RecoveryKey(secret_input::recovery_from_file(
            r,
        )?));
    }
    Ok(v)
}

/// Opens the volume: the TPM when no credential was given, else the first credential that
/// opens it.
fn open(
    cipherdir: &Path,
    key: &KeySource,
    tpm: &TpmOpts,
    creds: &[Credential],
) -> CliResult<UnlockedVolume> {
    if creds.is_empty() {
        return match try_tpm(cipherdir, tpm, None)? {
            Ok(u) => Ok(u),
            Err(VolumeError::NoSuchProtector(_)) => Err(CliError::new(
                USAGE,
                "no credential to unlock the volume with",
            )
            .hint("give --passfile FILE or --recovery-key-file FILE (or run on a terminal)")),
            Err(e) => Err(e.into()),
        };
    }
    let mut last = VolumeError::WrongKey;
    for c in creds {
        match volume::unlock_with(cipherdir, c, &unlock_policy(key)) {
            Ok(u) => return Ok(u),
            Err(e @ (VolumeError::WrongKey | VolumeError::NoSuchProtector(_))) => last = e,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

/// Unlocks for a shred that will purge and checks, before anything is destroyed, that every
/// protector can follow the new key (credentials, TPM, PIN).
pub fn prepare(
    cipherdir: &Path,
    key: &KeySource,
    tpm: &TpmOpts,
    p: &PurgeArgs,
    info: &VolumeInfo,
) -> CliResult<Prepared> {
    let creds = credentials(key, p, info)?;
    let u = open(cipherdir, key, tpm, &creds)?;
    crate::audit::attach(cipherdir, Some(&u.keys));
    let has_tpm = u.info.protectors.iter().any(|p| p.tpm2.is_some());
    let tcti = if has_tpm { Some(tpm.tcti(None)?) } else { None };
    let needs_pin = u
        .info
        .protectors
        .iter()
        .any(|p| p.tpm2.as_ref().is_some_and(|t| t.pin));
    let opts = RotateOptions {
        credentials: creds,
        pin: if needs_pin { tpm.pin(false)? } else { None },
        drop: p.drop_protector.clone(),
        new_recovery_key: p.new_recovery_key,
        ..RotateOptions::default()
    };
    let opts = purge::prepare(cipherdir, &u.keys, opts, tcti.as_ref())?;
    Ok(Prepared { u, opts, tcti })
}

/// The rotation after the shred; prints what it did and the backup line.
pub fn run(cipherdir: &Path, prep: Prepared, info: &VolumeInfo, plain: &str) -> CliResult<()> {
    let Prepared { u, opts, tcti } = prep;
    let keys = u.keys.clone();
    drop(u);
    let t0 = std::time::Instant::now();
    let p = purge::purge_backups(cipherdir, keys, opts, tcti.as_ref(), &mut |_| {})?;
    if let Some(rk) = &p.recovery_key {
        println!("New recovery key, shown only once; store it safely:");
        println!("Recovery key: {}", rk.display());
    }
    let f = &p.rotation;
    println!(
        "purge: volume key rotated (KEK {} -> {}): {} objects rewrapped, KEK {} destroyed in {:.2} s",
        f.old,
        f.new,
        f.rewrap.stats.rewrapped,
        f.old,
        t0.elapsed().as_secs_f64()
    );
    crate::audit::record(
        crate::audit::Event::new("purge-backups")
            .path(plain)
            .key_version(f.new)
            .detail(format!(
                "KEK {} destroyed; NV shares erased: {}",
                f.old,
                p.erased.len()
            )),
    );
    for i in &p.erased {
        println!("purge: TPM NV key share {i:#010x} of the old key erased");
    }
    for i in &p.bound {
        println!("purge: TPM protector now bound to NV key share {i:#010x}");
    }
    println!("{}", backup_line(info, plain, true));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{ProtectorInfo, Tpm2Info};

    fn info(kinds: &[(&'static str, Option<(bool, u8)>)]) -> VolumeInfo {
        VolumeInfo {
            volume_id: [0; 16],
            format_version: 1,
            created: 0,
            rotation_period_days: None,
            keks: vec![(1, 0, true)],
            protectors: kinds
                .iter()
                .map(|(kind, tpm)| ProtectorInfo {
                    kind,
                    id: "00".repeat(16),
                    kek_version: 1,
                    created: 0,
                    kdf: None,
                    tpm2: tpm.map(|(pin, template_version)| Tpm2Info {
                        pcrs: vec![7],
                        pin,
                        template_version,
                        error: None,
                    }),
                    kmip: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_line_follows_the_protectors() {
        let nv_only = info(&[("tpm2", Some((false, 3)))]);
        assert!(backup_line(&nv_only, "/a", true).contains("opens nothing under /a any more"));
        assert!(backup_line(&nv_only, "/a", false)
            .contains("still opens /a with this TPM in the same PCR state (until --purge-backups"));
        let mixed = info(&[
            ("tpm2", Some((true, 2))),
            ("passphrase", None),
            ("recovery-key", None),
        ]);
        let l = backup_line(&mixed, "/a", true);
        assert!(
            l.contains("with the PIN (the record has no NV key share)"),
            "{l}"
        );
        assert!(
            l.contains("the passphrase of then or the recovery key of then"),
            "{l}"
        );
        assert!(l.contains("today's dekfs.conf opens nothing in it"), "{l}");
        // Only the active KEK's protectors count: the others are not what a copy opens with.
        let mut retiring = info(&[("tpm2", Some((false, 3)))]);
        retiring.keks.push((2, 0, false));
        retiring.protectors.push(ProtectorInfo {
            kek_version: 2,
            ..info(&[("passphrase", None)]).protectors.remove(0)
        });
        assert!(backup_line(&retiring, "/a", true).contains("opens nothing"));
    }
}
