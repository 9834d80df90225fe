//! Protector management on an unlocked volume: add, remove, reseal. Each change rewrites only
//! dekfs.conf (re-MACed with the active KEK, replaced atomically): O(1), never a file header.
//! Must NOT leave a volume with zero protectors, nor remove the last protector that is neither
//! TPM nor KMIP unless forced, nor write a config whose MAC it has not first verified against the unlocked KEK.

use super::config_io::{read_config_bytes, write_config_atomic};
use super::init::{check_new_kdf, now_unix, passphrase_record, recovery_record};
use super::kmip::{key_name, KmipWrap, Sealer};
use super::tpm2::{seal_record, Tpm2Seal};
use super::{config_format_error, KdfParams, UnlockedVolume, VolumeError};
use crate::crypto::mac::{hmac_sha256, verify_hmac_sha256};
use crate::crypto::{kdf, random_array};
use crate::format::{
    ProtectorBody, ProtectorRecord, Tpm2Body, VolumeConfig, PROTECTOR_KIND_KMIP,
    PROTECTOR_KIND_TPM2,
};
use crate::secret::{RecoveryKey, SecretBytes};
use std::path::Path;

pub enum NewProtector {
    Passphrase {
        passphrase: SecretBytes,
        kdf: KdfParams,
    },
    RecoveryKey,
    Tpm2(Tpm2Seal),
    Kmip(KmipWrap),
}

pub struct Added {
    /// protector_id as 32 hex digits.
    pub id: String,
    /// Shown once, for a new recovery-key protector.
    pub recovery_key: Option<RecoveryKey>,
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is_tpm2(r: &ProtectorRecord) -> bool {
    r.body.kind() == PROTECTOR_KIND_TPM2
}

/// Protectors that hold no secret a person knows: a TPM or a key manager can go away.
fn is_device(r: &ProtectorRecord) -> bool {
    is_tpm2(r) || r.body.kind() == PROTECTOR_KIND_KMIP
}

/// The guards of every removal, on the config as it would be written.
pub(super) fn check_removal(config: &VolumeConfig, force: bool) -> Result<(), VolumeError> {
    if config.protectors.is_empty() {
        return Err(VolumeError::Refused(
            "refusing to remove the only protector: the volume would be lost".into(),
        ));
    }
    if !force && config.protectors.iter().all(is_device) {
        return Err(VolumeError::Refused(
            "refusing to remove the last passphrase/recovery-key protector: a TPM can die, a key \
             manager can go away, and the data would die with them (add another first, or pass \
             --force)"
                .into(),
        ));
    }
    Ok(())
}

/// Reads and parses dekfs.conf, checks its MAC with the unlocked KEK, lets `f` change it, then
/// re-MACs and replaces it atomically, all under the config lock so that concurrent writers
/// serialise instead of losing each other's change.
pub(super) fn rewrite<T>(
    cipherdir: &Path,
    u: &UnlockedVolume,
    f: impl FnOnce(&mut VolumeConfig) -> Result<T, VolumeError>,
) -> Result<T, VolumeError> {
    let _held = super::ConfigLock::acquire(cipherdir)?;
    let raw = read_config_bytes(cipherdir)?;
    let mut config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    let keys = &u.keys;
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
    let out = f(&mut config)?;
    let ids: std::collections::BTreeSet<[u8; 16]> =
        config.protectors.iter().map(|p| p.protector_id).collect();
    if ids.is_empty() {
        return Err(VolumeError::Refused(
            "a volume can never have zero protectors".into(),
        ));
    }
    config.mac = hmac_sha256(&mac_key, &config.mac_input())?;
    write_config_atomic(cipherdir, &config.to_bytes())?;
    Ok(out)
}

/// Adds a protector: one record per KEK version the volume has.
pub fn add_protector(
    cipherdir: &Path,
    u: &UnlockedVolume,
    new: NewProtector,
) -> Result<Added, VolumeError> {
    if let NewProtector::Passphrase { passphrase, kdf } = &new {
        if passphrase.is_empty() {
            return Err(VolumeError::Refused("empty passphrase".into()));
        }
        check_new_kdf(kdf)?;
    }
    let id: [u8; 16] = random_array()?;
    let now = now_unix();
    let rk = match new {
        NewProtector::RecoveryKey => Some(RecoveryKey::generate()?),
        _ => None,
    };
    // The manager key is resolved (or created) once, before the config lock is taken.
    let mut sealer = match &new {
        NewProtector::Kmip(w) => Some(Sealer::open(w, &key_name(u.keys.volume_id(), &id))?),
        _ => None,
    };
    rewrite(cipherdir, u, |config| {
        let versions: Vec<u32> = config.keks.iter().map(|k| k.version).collect();
        for v in versions {
            let rec = match (&new, &rk) {
                (NewProtector::Passphrase { passphrase, kdf }, _) => {
                    passphrase_record(&u.keys, v, id, now, passphrase.expose(), kdf)?
                }
                (NewProtector::RecoveryKey, Some(rk)) => recovery_record(&u.keys, v, id, now, rk)?,
                (NewProtector::Tpm2(req), _) => seal_record(&u.keys, v, id, now, req)?,
                (NewProtector::Kmip(_), _) => match sealer.as_mut() {
                    Some(s) => s.record(&u.keys, v, id, now)?,
                    None => return Err(VolumeError::NoSuchProtector("kmip")),
                },
                (NewProtector::RecoveryKey, None) => {
                    return Err(VolumeError::Refused("no recovery key".into()))
                }
            };
            config.protectors.push(rec);
        }
        if config.record_count() > crate::format::MAX_PROTECTORS {
            return Err(VolumeError::Refused(
                "too many protectors (at most 64 records)".into(),
            ));
        }
        Ok(())
    })?;
    Ok(Added {
        id: hex(&id),
        recovery_key: rk,
    })
}

/// The protector_id matching `prefix` (hex, at least 4 digits, unique).
pub(super) fn find_id(config: &VolumeConfig, prefix: &str) -> Result<[u8; 16], VolumeError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        return Err(VolumeError::Refused(
            "give at least 4 hex digits of the protector id".into(),
        ));
    }
    let mut ids: Vec<[u8; 16]> = config
        .protectors
        .iter()
        .map(|p| p.protector_id)
        .filter(|id| hex(id).starts_with(&prefix))
        .collect();
    ids.dedup();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(VolumeError::Refused(format!(
            "no protector with id {prefix}"
        ))),
        _ => Err(VolumeError::Refused(format!(
            "protector id {prefix} is ambiguous"
        ))),
    }
}

/// Removes every record of one protector. Refuses to leave zero protectors (always) or no
/// non-TPM protector (unless `force`): a TPM can die, and the data must not die with it.
pub fn remove_protector(
    cipherdir: &Path,
    u: &UnlockedVolume,
    id_prefix: &str,
    force: bool,
) -> Result<String, VolumeError> {
    rewrite(cipherdir, u, |config| {
        let id = find_id(config, id_prefix)?;
        config.protectors.retain(|p| p.protector_id != id);
        check_removal(config, force)?;
        Ok(hex(&id))
    })
}

/// Re-seals tpm2 protectors (all, or the one `id_prefix` names) to the current PCR values,
/// keeping their id, PCR selection (unless `pcrs` is given) and PIN requirement.
pub fn reseal_tpm2(
    cipherdir: &Path,
    u: &UnlockedVolume,
    id_prefix: Option<&str>,
    tcti: &crate::tpm::Tcti,
    pcrs: Option<Vec<u8>>,
    pin: Option<SecretBytes>,
) -> Result<Vec<String>, VolumeError> {
    let now = now_unix();
    let mut retired_nv = Vec::new();
    let done = rewrite(cipherdir, u, |config| {
        let only = id_prefix.map(|p| find_id(config, p)).transpose()?;
        let mut done = Vec::new();
        let mut pin = pin;
        for rec in config.protectors.iter_mut().filter(|r| is_tpm2(r)) {
            if only.is_some_and(|id| id != rec.protector_id) {
                continue;
            }
            let ProtectorBody::Unknown { body, .. } = &rec.body else {
                continue;
            };
            // A damaged body is resealed with the defaults (PCR 7, PIN if one was given).
            let old = Tpm2Body::parse(body).ok();
            let old_nv = old.as_ref().and_then(|b| b.nv_index);
            let needs_pin = old.as_ref().map_or(pin.is_some(), |b| b.pin_required());
            if needs_pin && pin.is_none() {
                return Err(VolumeError::Tpm(crate::tpm::TpmRefusal::PinNeeded));
            }
            let req = Tpm2Seal {
                tcti: tcti.clone(),
                pcrs: pcrs
                    .clone()
                    .or_else(|| old.map(|b| b.pcrs()))
                    .unwrap_or_else(|| vec![7]),
                pin: if needs_pin { pin.take() } else { None },
                // A reseal keeps an NV-bound record NV-bound (with a fresh share).
                nv: old_nv.is_some(),
            };
            *rec = seal_record(&u.keys, rec.kek_version, rec.protector_id, now, &req)?;
            if let Some(i) = old_nv {
                retired_nv.push(i);
            }
            pin = req.pin;
            done.push(hex(&rec.protector_id));
        }
        if done.is_empty() {
            return Err(VolumeError::NoSuchProtector("tpm2"));
        }
        done.dedup();
        Ok(done)
    })?;
    // Only once the config without them is durable: the old shares die with the old records.
    erase_nv_shares(tcti, &retired_nv);
    Ok(done)
}

/// The NV key-share indexes of the tpm2 records of the protector `id_prefix` names (before a
/// remove: the caller erases them once the config without it is written).
pub fn nv_shares_of(cipherdir: &Path, id_prefix: &str) -> Result<Vec<u32>, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let mut config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    let id = find_id(&config, id_prefix)?;
    config.protectors.retain(|p| p.protector_id == id);
    Ok(super::tpm2::nv_indexes(&config, None))
}

/// Erases NV key shares no record names any more; a failure is a warning (the share is then
/// left in the TPM, where the old records could still use it).
pub fn erase_nv_shares(tcti: &crate::tpm::Tcti, indexes: &[u32]) {
    for &i in indexes {
        match crate::tpm::nv::erase_share(tcti, i) {
            Ok(true) => log::info!("TPM NV key share {i:#010x} erased"),
            Ok(false) => log::info!("TPM NV key share {i:#010x} was already gone"),
            Err(e) => eprintln!(
                "dekfs: warning: could not erase TPM NV key share {i:#010x}: {e}; old copies of \
                 dekfs.conf can still use it on this TPM"
            ),
        }
    }
}
