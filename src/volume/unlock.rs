//! `unlock`: turn a credential into an unlocked volume. Order matters: protector unwrap (with
//! KDF bounds checked first), inner volume_id/version binding, config MAC, then the root
//! directory. Must NOT write anything to disk.

use super::config_io::{read_config_bytes, read_root_dir_meta};
use super::info::info_from_config;
use super::policy::UnlockPolicy;
use super::protector::{params_of, passphrase_key, recovery_key, unwrap_kek, KekUnwrap};
use super::{config_format_error, Credential, UnlockedVolume, VolumeError};
use crate::crypto::mac::verify_hmac_sha256;
use crate::crypto::{kdf, VolumeKeys};
use crate::format::{ProtectorBody, ProtectorRecord, VolumeConfig, CONFIG_MAC_LEN};
use crate::secret::Key32;
use std::path::Path;
use std::sync::Arc;

fn matches_kind(cred: &Credential, rec: &ProtectorRecord) -> bool {
    matches!(
        (cred, &rec.body),
        (Credential::Passphrase(_), ProtectorBody::Passphrase(_))
            | (Credential::RecoveryKey(_), ProtectorBody::Recovery(_))
    )
}

fn protector_key(cred: &Credential, rec: &ProtectorRecord) -> Result<Key32, VolumeError> {
    match (cred, &rec.body) {
        (Credential::Passphrase(p), ProtectorBody::Passphrase(b)) => {
            passphrase_key(p.expose(), &b.salt, &params_of(b))
        }
        (Credential::RecoveryKey(rk), ProtectorBody::Recovery(b)) => recovery_key(rk, &b.salt),
        _ => Err(VolumeError::Corrupt("protector kind mismatch".into())),
    }
}

fn wrapped_of(rec: &ProtectorRecord) -> Option<&[u8; 64]> {
    match &rec.body {
        ProtectorBody::Passphrase(b) => Some(&b.wrapped_kek),
        ProtectorBody::Recovery(b) => Some(&b.wrapped_kek),
        ProtectorBody::Unknown { .. } => None,
    }
}

fn try_record(
    cred: &Credential,
    rec: &ProtectorRecord,
    volume_id: &[u8; 16],
) -> Result<Option<Key32>, VolumeError> {
    let Some(wrapped) = wrapped_of(rec) else {
        return Ok(None);
    };
    let pk = protector_key(cred, rec)?;
    match unwrap_kek(&pk, wrapped, volume_id, rec.kek_version)? {
        KekUnwrap::Kek(k) => Ok(Some(k)),
        KekUnwrap::WrongKey => Ok(None),
    }
}

/// Unlocks the volume at `cipherdir` under this machine's unlock policy (lifted by
/// `$DEKFS_ALLOW_KDF_COST`). Argon2 working memory is wiped and freed before this returns; only
/// the KEKs (inside `VolumeKeys`) survive.
pub fn unlock(cipherdir: &Path, cred: &Credential) -> Result<UnlockedVolume, VolumeError> {
    unlock_with(cipherdir, cred, &UnlockPolicy::from_env(false))
}

/// `unlock` under an explicit cost policy: every KDF parameter is checked against it, and at
/// most `max_records` candidates and `max_retiring` retiring records are tried.
pub fn unlock_with(
    cipherdir: &Path,
    cred: &Credential,
    policy: &UnlockPolicy,
) -> Result<UnlockedVolume, VolumeError> {
    let r = unlock_inner(cipherdir, cred, policy);
    let kind = match cred {
        Credential::Passphrase(_) => "passphrase",
        Credential::RecoveryKey(_) => "recovery-key",
    };
    super::audit_hook::unlock(cipherdir, kind, &r);
    r
}

fn unlock_inner(
    cipherdir: &Path,
    cred: &Credential,
    policy: &UnlockPolicy,
) -> Result<UnlockedVolume, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    let active = config
        .active_kek_version()
        .ok_or_else(|| VolumeError::Corrupt("no active KEK".into()))?;
    let vid = config.volume_id;

    let of_kind: Vec<&ProtectorRecord> = config
        .protectors
        .iter()
        .filter(|r| matches_kind(cred, r))
        .collect();
    if of_kind.is_empty() {
        return Err(VolumeError::NoSuchProtector(cred.kind_name()));
    }
    let candidates: Vec<&ProtectorRecord> = of_kind
        .iter()
        .copied()
        .filter(|r| r.kek_version == active)
        .collect();
    if candidates.is_empty() {
        return Err(VolumeError::NoSuchProtector(cred.kind_name()));
    }
    // The config is not authenticated yet: cap how many Argon2 runs its author makes us do
    // (recovery records cost one HKDF each and are not capped).
    let costly = matches!(cred, Credential::Passphrase(_));
    let cap = if costly {
        policy.max_records
    } else {
        usize::MAX
    };
    let tried = &candidates[..candidates.len().min(cap)];
    // All bounds first: a lowered cost anywhere is a downgrade attempt and is refused outright,
    // an inflated one is refused before any memory is allocated for it.
    for rec in tried {
        if let ProtectorBody::Passphrase(b) = &rec.body {
            super::protector::check_kdf_bounds(&params_of(b))?;
            policy.check(&params_of(b))?;
        }
    }

    let mut opened: Option<(Key32, [u8; 16])> = None;
    for rec in tried {
        if let Some(kek) = try_record(cred, rec, &vid)? {
            opened = Some((kek, rec.protector_id));
            break;
        }
    }
    let Some((active_kek, protector_id)) = opened else {
        if tried.len() < candidates.len() {
            return Err(VolumeError::WrongKeyWithinLimit {
                kind: cred.kind_name(),
                tried: tried.len(),
                total: candidates.len(),
            });
        }
        return Err(VolumeError::WrongKey);
    };

    // Older (retiring) KEKs are reachable through records of the same protector. Their count
    // and cost are checked before any of them runs the KDF.
    let mut retiring = Vec::new();
    for k in config.keks.iter().filter(|k| k.version != active) {
        let rec = of_kind
            .iter()
            .find(|r| r.protector_id == protector_id && r.kek_version == k.version);
        if let Some(rec) = rec {
            retiring.push((k.version, *rec));
        }
    }
    if costly && retiring.len() > policy.max_retiring {
        return Err(VolumeError::Refused(format!(
            "{} retiring KEK records for one protector, more than the unlock limit of {} \
             (--allow-kdf-cost or {}=1 opens them all)",
            retiring.len(),
            policy.max_retiring,
            super::policy::ALLOW_KDF_COST_ENV
        )));
    }
    for (_, rec) in &retiring {
        if let ProtectorBody::Passphrase(b) = &rec.body {
            super::protector::check_kdf_bounds(&params_of(b))?;
            policy.check(&params_of(b))?;
        }
    }
    let mut keks = vec![(active, active_kek)];
    for (version, rec) in retiring {
        let kek = try_record(cred, rec, &vid)?.ok_or_else(|| {
            VolumeError::Corrupt(format!(
                "protector record for KEK version {version} does not open"
            ))
        })?;
        keks.push((version, kek));
    }
    let keys = VolumeKeys::from_parts(vid, keks, active)?;
    finish_unlock(cipherdir, &raw, &config, keys)
}

/// Unlocks with KEKs already unwrapped elsewhere (a `dekfs unlock` client handing them to its
/// mounted daemon): the same config MAC and root-directory checks as every other unlock, so keys
/// that do not belong to this volume are refused (`WrongKey`).
pub fn unlock_with_keks(
    cipherdir: &Path,
    keks: Vec<(u32, Key32)>,
) -> Result<UnlockedVolume, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    let active = config
        .active_kek_version()
        .ok_or_else(|| VolumeError::Corrupt("no active KEK".into()))?;
    let keys = VolumeKeys::from_parts(config.volume_id, keks, active)
        .map_err(|_| VolumeError::WrongKey)?;
    finish_unlock(cipherdir, &raw, &config, keys).map_err(|e| match e {
        // With keys from outside, a MAC that does not verify means the keys are wrong.
        VolumeError::Corrupt(_) => VolumeError::WrongKey,
        e => e,
    })
}

/// The steps after the KEKs are known, shared by every protector kind: config MAC over the bytes
/// as read, then the root directory.
pub(crate) fn finish_unlock(
    cipherdir: &Path,
    raw: &[u8],
    config: &VolumeConfig,
    mut keys: VolumeKeys,
) -> Result<UnlockedVolume, VolumeError> {
    keys.set_paged_files(config.required_features & crate::format::FEATURE_PAGED != 0);
    let vid = config.volume_id;
    let active = keys.active_kek_version();
    let mac_key = kdf::config_mac_key(keys.kek_for(active)?, &vid)?;
    let split = raw.len().saturating_sub(CONFIG_MAC_LEN);
    let (Some(body), Some(mac)) = (raw.get(..split), raw.get(split..)) else {
        return Err(VolumeError::Corrupt("dekfs.conf truncated".into()));
    };
    let mac: [u8; 32] = mac
        .try_into()
        .map_err(|_| VolumeError::Corrupt("dekfs.conf truncated".into()))?;
    verify_hmac_sha256(&mac_key, body, &mac).map_err(|_| {
        VolumeError::Corrupt("config MAC mismatch: tampered or from another volume".into())
    })?;
    // Only now is the version authentic: compare it with, and later raise, this machine's record.
    super::rollback::check(&vid, active)?;

    let root_meta = read_root_dir_meta(cipherdir)?;
    keys.open_root_dir(&root_meta).map_err(|_| {
        VolumeError::Corrupt("root dekfs.dir does not belong to this volume or was modified".into())
    })?;
    super::rollback::raise_after_write(&vid, active);

    Ok(UnlockedVolume {
        keys: Arc::new(keys),
        info: info_from_config(config),
    })
}
