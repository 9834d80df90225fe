//! The config side of a KEK rotation: `begin` adds KEK v+1 (protected by
//! every protector the user keeps) and marks v retiring; `destroy` removes KEK
//! v and every protector record of it once no object needs it. Each is one
//! atomic, fsynced config replacement under the config lock. Must NOT touch
//! headers or dekfs.dir (engine/rekey.rs does), nor write a config whose MAC
//! it has not verified, nor ever leave a volume without a protector for its
//! active KEK.

use super::config_io::{read_config_bytes, write_config_atomic};
use super::init::{now_unix, passphrase_record, recovery_record};
use super::protector::{params_of, passphrase_key, recovery_key, unwrap_kek, KekUnwrap};
use super::tpm2::{seal_record, Tpm2Seal};
use super::{config_format_error, Credential, VolumeError};
use crate::crypto::mac::{hmac_sha256, verify_hmac_sha256};
use crate::crypto::{kdf, random_array, VolumeKeys};
use crate::format::{
    KekRecord, KekState, ProtectorBody, ProtectorRecord, Tpm2Body, VolumeConfig, MAX_KEKS,
    MAX_PROTECTORS, PROTECTOR_KIND_KMIP, PROTECTOR_KIND_TPM2,
};
use crate::secret::{RecoveryKey, SecretBytes};
use crate::tpm::Tcti;
use std::path::Path;

/// Failpoint: the config with KEK v+1 active and v retiring is durable.
pub const FP_BEGUN: &str = "rekey.config.begun";
/// Failpoint: the config without KEK v is durable.
pub const FP_DESTROYED: &str = "rekey.config.destroyed";

/// What the user keeps and how each kept protector is re-created for the new KEK.
#[derive(Default)]
pub struct RotateOptions {
    /// Passphrases and recovery keys: each kept passphrase or recovery
    /// protector must be opened by one of them.
    pub credentials: Vec<Credential>,
    /// The TPM for re-sealing tpm2 protectors (none: they must be dropped).
    pub tcti: Option<Tcti>,
    /// PIN for tpm2 protectors that need one.
    pub pin: Option<SecretBytes>,
    /// Protector ids (hex prefixes, at least 4 digits) to drop.
    pub drop: Vec<String>,
    /// Create a fresh recovery-key protector.
    pub new_recovery_key: bool,
    /// Allow leaving only TPM protectors.
    pub force: bool,
    /// Re-seal every kept tpm2 protector bound to a fresh TPM NV key share (template 3), also
    /// those that had none (`shred --purge-backups`); NV-bound ones always get a fresh share.
    pub tpm_nv: bool,
}

/// The outcome of `begin`.
pub struct Begun {
    /// Old and new KEKs, the new one active.
    pub keys: VolumeKeys,
    pub old: u32,
    pub new: u32,
    /// Protector ids re-created for the new KEK, and those dropped.
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
    /// Shown once.
    pub recovery_key: Option<RecoveryKey>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The retiring KEK version of an unfinished rotation, if any (unauthenticated).
pub fn pending_rotation(cipherdir: &Path) -> Result<Option<(u32, u32)>, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let c = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    Ok(pending_of(&c))
}

/// (retiring, active) of a config in rotation.
fn pending_of(c: &VolumeConfig) -> Option<(u32, u32)> {
    let old = c.keks.iter().find(|k| k.state == KekState::Retiring)?;
    Some((old.version, c.active_kek_version()?))
}

/// Reads the config under the config lock and verifies its MAC with the
/// active KEK of `keys`, which must match the config's active version.
fn read_verified(
    cipherdir: &Path,
    keys: &VolumeKeys,
) -> Result<(super::ConfigLock, VolumeConfig), VolumeError> {
    let held = super::ConfigLock::acquire(cipherdir)?;
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    if config.volume_id != *keys.volume_id()
        || config.active_kek_version() != Some(keys.active_kek_version())
    {
        return Err(VolumeError::Corrupt(
            "dekfs.conf changed since unlock".into(),
        ));
    }
    let mac_key = kdf::config_mac_key(keys.kek_for(keys.active_kek_version())?, &config.volume_id)?;
    verify_hmac_sha256(&mac_key, &config.mac_input(), &config.mac).map_err(|_| {
        VolumeError::Corrupt("config MAC mismatch: tampered or changed since unlock".into())
    })?;
    Ok((held, config))
}

fn seal_and_write(
    cipherdir: &Path,
    keys: &VolumeKeys,
    config: &mut VolumeConfig,
) -> Result<(), VolumeError> {
    if config.protectors.is_empty() {
        return Err(VolumeError::Refused(
            "a volume can never have zero protectors".into(),
        ));
    }
    if config.record_count() > MAX_PROTECTORS {
        return Err(VolumeError::Refused(
            "too many protector records (at most 64): drop a protector first".into(),
        ));
    }
    let mac_key = kdf::config_mac_key(keys.kek_for(keys.active_kek_version())?, &config.volume_id)?;
    config.mac = hmac_sha256(&mac_key, &config.mac_input())?;
    write_config_atomic(cipherdir, &config.to_bytes())
}

/// Does `cred` open `rec`? Runs the record's KDF (bounds checked first).
fn opens(cred: &Credential, rec: &ProtectorRecord, vid: &[u8; 16]) -> Result<bool, VolumeError> {
    let (pk, wrapped) = match (cred, &rec.body) {
        (Credential::Passphrase(p), ProtectorBody::Passphrase(b)) => {
            super::protector::check_kdf_bounds(&params_of(b))?;
            (
                passphrase_key(p.expose(), &b.salt, &params_of(b))?,
                &b.wrapped_kek,
            )
        }
        (Credential::RecoveryKey(rk), ProtectorBody::Recovery(b)) => {
            (recovery_key(rk, &b.salt)?, &b.wrapped_kek)
        }
        _ => return Ok(false),
    };
    Ok(matches!(
        unwrap_kek(&pk, wrapped, vid, rec.kek_version)?,
        KekUnwrap::Kek(_)
    ))
}

fn matches_drop(id: &[u8; 16], drop: &[String]) -> bool {
    let h = hex(id);
    drop.iter()
        .any(|p| p.len() >= 4 && h.starts_with(&p.trim().to_ascii_lowercase()))
}

/// The record of one kept protector for the new KEK, or why it cannot be made.
fn recreate(
    keys: &VolumeKeys,
    new: u32,
    rec: &ProtectorRecord,
    opts: &RotateOptions,
    now: u64,
) -> Result<ProtectorRecord, VolumeError> {
    let id = rec.protector_id;
    let need = |what: &str| {
        VolumeError::Refused(format!(
            "protector {} ({what}) cannot follow the new key: give its credential, or drop it \
             with --drop-protector {}",
            hex(&id),
            &hex(&id)[..8]
        ))
    };
    match &rec.body {
        ProtectorBody::Passphrase(b) => {
            for c in &opts.credentials {
                if let Credential::Passphrase(p) = c {
                    if opens(c, rec, keys.volume_id())? {
                        return passphrase_record(keys, new, id, now, p.expose(), &params_of(b));
                    }
                }
            }
            Err(need("passphrase: none of the given passphrases opens it"))
        }
        ProtectorBody::Recovery(_) => {
            for c in &opts.credentials {
                if let Credential::RecoveryKey(rk) = c {
                    if opens(c, rec, keys.volume_id())? {
                        return recovery_record(keys, new, id, now, rk);
                    }
                }
            }
            Err(need("recovery key: no recovery key given opens it"))
        }
        ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_TPM2 => {
            let Some(tcti) = &opts.tcti else {
                return Err(need("tpm2: no TPM selected"));
            };
            let old = Tpm2Body::parse(body).map_err(|e| need(&format!("tpm2: {e}")))?;
            if old.pin_required() && opts.pin.is_none() {
                return Err(need("tpm2 with PIN: no PIN given (--pin-file)"));
            }
            let req = Tpm2Seal {
                tcti: tcti.clone(),
                pcrs: old.pcrs(),
                pin: if old.pin_required() {
                    opts.pin
                        .as_ref()
                        .map(|p| SecretBytes::new(p.expose().to_vec()))
                } else {
                    None
                },
                nv: opts.tpm_nv || old.nv_index.is_some(),
            };
            seal_record(keys, new, id, now, &req)
        }
        // The manager wraps the new KEK under the same key: no credential to ask for.
        ProtectorBody::Unknown { kind, .. } if *kind == PROTECTOR_KIND_KMIP => {
            super::kmip::rewrap_kmip_record(keys, new, rec, now)
                .map_err(|e| need(&format!("kmip: {e}")))
        }
        ProtectorBody::Unknown { kind, .. } => Err(need(&format!("unknown kind {kind}"))),
    }
}

/// What `begin` would refuse for want of a credential, checked before anything changes (a
/// caller with destructive work before the rotation asks first): every kept passphrase or
/// recovery protector of the active KEK must open with one of `opts.credentials`; a kept
/// tpm2 one needs a TPM, and its PIN if it has one. Runs each record's KDF once.
pub fn check_credentials(
    cipherdir: &Path,
    keys: &VolumeKeys,
    opts: &RotateOptions,
) -> Result<(), VolumeError> {
    let (_held, config) = read_verified(cipherdir, keys)?;
    let active = keys.active_kek_version();
    for rec in config.protectors.iter().filter(|r| r.kek_version == active) {
        if matches_drop(&rec.protector_id, &opts.drop) {
            continue;
        }
        let id = hex(&rec.protector_id);
        let refuse = |what: &str| {
            Err(VolumeError::Refused(format!(
                "protector {id} ({what}) cannot follow the new key: give its credential, or drop \
                 it with --drop-protector {}",
                &id[..8]
            )))
        };
        match &rec.body {
            ProtectorBody::Passphrase(_) | ProtectorBody::Recovery(_) => {
                let mut ok = false;
                for c in &opts.credentials {
                    if opens(c, rec, keys.volume_id())? {
                        ok = true;
                        break;
                    }
                }
                if !ok {
                    let what = if rec.body.kind() == crate::format::PROTECTOR_KIND_PASSPHRASE {
                        "passphrase: none of the given passphrases opens it"
                    } else {
                        "recovery key: no recovery key given opens it"
                    };
                    return refuse(what);
                }
            }
            ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_TPM2 => {
                if opts.tcti.is_none() {
                    return refuse("tpm2: no TPM selected");
                }
                let pin = Tpm2Body::parse(body).map(|b| b.pin_required());
                if pin.unwrap_or(false) && opts.pin.is_none() {
                    return refuse("tpm2 with PIN: no PIN given (--pin-file)");
                }
            }
            ProtectorBody::Unknown { kind, .. } => return refuse(&format!("unknown kind {kind}")),
        }
    }
    Ok(())
}

/// Step one of a rotation: KEK v+1 from the OS CSPRNG, every kept protector
/// re-created for it, every dropped one removed, v marked retiring, v+1
/// active; the config is replaced and fsynced before this returns (and before
/// any object is rewrapped). Every credential is checked before anything is
/// written: a wrong passphrase changes nothing.
pub fn begin(
    cipherdir: &Path,
    keys: &VolumeKeys,
    opts: &RotateOptions,
) -> Result<Begun, VolumeError> {
    let (_held, mut config) = read_verified(cipherdir, keys)?;
    if let Some((old, new)) = pending_of(&config) {
        return Err(VolumeError::Refused(format!(
            "a rotation from KEK {old} to {new} is unfinished: run `dekfs rekey --resume`"
        )));
    }
    if config.keks.len() >= MAX_KEKS {
        return Err(VolumeError::Refused("too many KEK versions".into()));
    }
    let old = keys.active_kek_version();
    let (new_keys, new) = keys.with_new_kek()?;
    let now = now_unix();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut added = Vec::new();
    for rec in config.protectors.iter().filter(|r| r.kek_version == old) {
        if matches_drop(&rec.protector_id, &opts.drop) {
            dropped.push(hex(&rec.protector_id));
            continue;
        }
        added.push(recreate(&new_keys, new, rec, opts, now)?);
        kept.push(hex(&rec.protector_id));
    }
    for p in &opts.drop {
        if !dropped
            .iter()
            .any(|d| d.starts_with(&p.trim().to_ascii_lowercase()))
        {
            return Err(VolumeError::Refused(format!(
                "--drop-protector {p}: no protector of the active key has that id"
            )));
        }
    }
    let mut recovery = None;
    if opts.new_recovery_key {
        let rk = RecoveryKey::generate()?;
        let id: [u8; 16] = random_array()?;
        // Both versions: the same protector must open the retiring KEK until
        // the rotation is done, as every kept one does.
        config
            .protectors
            .push(recovery_record(&new_keys, old, id, now, &rk)?);
        added.push(recovery_record(&new_keys, new, id, now, &rk)?);
        kept.push(hex(&id));
        recovery = Some(rk);
    }
    if added.is_empty() {
        return Err(VolumeError::Refused(
            "refusing to drop every protector: the volume would be lost".into(),
        ));
    }
    // Only a rotation that takes away the last passphrase or recovery key
    // needs --force; a volume that was TPM-only by choice stays so.
    let is_tpm = |r: &ProtectorRecord| r.body.kind() == PROTECTOR_KIND_TPM2;
    let was_tpm_only = config
        .protectors
        .iter()
        .filter(|r| r.kek_version == old)
        .all(is_tpm);
    if added.iter().all(is_tpm) && !was_tpm_only && !opts.force {
        return Err(VolumeError::Refused(
            "refusing to keep only TPM protectors: a TPM can die and the data would die with it \
             (keep a passphrase or recovery key, or pass --force)"
                .into(),
        ));
    }
    config
        .protectors
        .retain(|r| !matches_drop(&r.protector_id, &opts.drop));
    config.protectors.extend(added);
    for k in &mut config.keks {
        if k.version == old {
            k.state = KekState::Retiring;
        }
    }
    config.keks.push(KekRecord {
        version: new,
        state: KekState::Active,
        created: now,
    });
    seal_and_write(cipherdir, &new_keys, &mut config)?;
    super::rollback::raise_after_write(&config.volume_id, new);
    if let Some(tcti) = &opts.tcti {
        super::rollback::raise_tpm(tcti, &config.volume_id, new);
    }
    crate::failpoint::hit(FP_BEGUN);
    Ok(Begun {
        keys: new_keys,
        old,
        new,
        kept,
        dropped,
        recovery_key: recovery,
    })
}

/// Last step: KEK `old` (retiring) leaves the config with every protector
/// record of it; the caller then drops its copy (wiped on drop). Only after a
/// walk found no slot of `old`.
pub fn destroy(cipherdir: &Path, keys: &VolumeKeys, old: u32) -> Result<(), VolumeError> {
    let (_held, mut config) = read_verified(cipherdir, keys)?;
    let is_retiring = config
        .keks
        .iter()
        .any(|k| k.version == old && k.state == KekState::Retiring);
    if !is_retiring {
        return Err(VolumeError::Refused(format!(
            "KEK {old} is not retiring: nothing to destroy"
        )));
    }
    config.keks.retain(|k| k.version != old);
    config.protectors.retain(|r| r.kek_version != old);
    seal_and_write(cipherdir, keys, &mut config)?;
    crate::failpoint::hit(FP_DESTROYED);
    Ok(())
}
