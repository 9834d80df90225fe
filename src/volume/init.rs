//! `init`: create a new volume (KEK v1, root directory, protectors) in an empty directory, and
//! build passphrase/recovery-key protector records. Must NOT overwrite anything: a non-empty target is refused.

use super::config_io::{write_config_atomic, write_root_dir_meta};
use super::protector::{check_kdf_bounds, passphrase_key, recovery_key, wrap_kek};
use super::{InitOptions, InitOutcome, KdfParams, VolumeError};
use crate::crypto::mac::hmac_sha256;
use crate::crypto::{kdf, random_array, CryptoError, VolumeKeys};
use crate::format::{
    KekRecord, KekState, PassphraseBody, ProtectorBody, ProtectorRecord, RecoveryBody,
    RotationPeriod, VolumeConfig, KDF_ARGON2ID_V13,
};
use crate::secret::{Key32, RecoveryKey};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ensure_empty_dir(cipherdir: &Path) -> Result<(), VolumeError> {
    match fs::read_dir(cipherdir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(VolumeError::NotEmpty(cipherdir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(fs::create_dir(cipherdir)?),
        Err(e) => Err(e.into()),
    }
}

/// A passphrase protector record for KEK `kek_version`.
pub(crate) fn passphrase_record(
    keys: &VolumeKeys,
    kek_version: u32,
    protector_id: [u8; 16],
    created: u64,
    passphrase: &[u8],
    kdf: &KdfParams,
) -> Result<ProtectorRecord, VolumeError> {
    let salt: [u8; 32] = random_array()?;
    let pk = passphrase_key(passphrase, &salt, kdf)?;
    let kek = keys.kek_for(kek_version)?;
    Ok(ProtectorRecord {
        flags: 0,
        kek_version,
        created,
        protector_id,
        body: ProtectorBody::Passphrase(PassphraseBody {
            kdf_alg: KDF_ARGON2ID_V13,
            m_cost_kib: kdf.m_cost_kib,
            t_cost: kdf.t_cost,
            p_lanes: kdf.p_lanes,
            salt,
            wrapped_kek: wrap_kek(&pk, kek, keys.volume_id(), kek_version)?,
        }),
    })
}

/// A recovery-key protector record for KEK `kek_version`.
pub(crate) fn recovery_record(
    keys: &VolumeKeys,
    kek_version: u32,
    protector_id: [u8; 16],
    created: u64,
    rk: &RecoveryKey,
) -> Result<ProtectorRecord, VolumeError> {
    let salt: [u8; 32] = random_array()?;
    let pk = recovery_key(rk, &salt)?;
    let kek = keys.kek_for(kek_version)?;
    Ok(ProtectorRecord {
        flags: 0,
        kek_version,
        created,
        protector_id,
        body: ProtectorBody::Recovery(RecoveryBody {
            salt,
            wrapped_kek: wrap_kek(&pk, kek, keys.volume_id(), kek_version)?,
        }),
    })
}

/// Validates KDF parameters before anything touches the directory.
pub(crate) fn check_new_kdf(kdf: &KdfParams) -> Result<(), VolumeError> {
    check_kdf_bounds(kdf).map_err(|_| {
        VolumeError::Refused(format!(
            "KDF parameters outside the allowed bounds: {}",
            super::protector::bounds_text(kdf)
        ))
    })
}

/// Creates a volume in `cipherdir` (created if missing; must be empty). Writes the root
/// dekfs.dir first and dekfs.conf last, so a crash never leaves a config without its root.
pub fn init(cipherdir: &Path, opts: InitOptions) -> Result<InitOutcome, VolumeError> {
    init_with_period(cipherdir, opts, None)
}

/// `init`, with a rotation period record when `rotation_period_days` is given (without one the
/// volume uses the default period and its config is byte-for-byte what older dekfs wrote).
pub fn init_with_period(
    cipherdir: &Path,
    opts: InitOptions,
    rotation_period_days: Option<u32>,
) -> Result<InitOutcome, VolumeError> {
    if opts.passphrase.is_empty() {
        return Err(VolumeError::Crypto(CryptoError::Kdf("empty passphrase")));
    }
    // Refuse bad parameters before touching the directory.
    check_new_kdf(&opts.kdf)?;
    let mut recovery = None;
    let volume_id = create_volume(cipherdir, rotation_period_days, |keys, now| {
        let v = keys.active_kek_version();
        let mut protectors = vec![passphrase_record(
            keys,
            v,
            random_array()?,
            now,
            opts.passphrase.expose(),
            &opts.kdf,
        )?];
        if opts.recovery_key {
            let rk = RecoveryKey::generate()?;
            protectors.push(recovery_record(keys, v, random_array()?, now, &rk)?);
            recovery = Some(rk);
        }
        Ok(protectors)
    })?;
    Ok(InitOutcome {
        volume_id,
        recovery_key: recovery,
    })
}

/// Set by `dekfs init --v1-layout`: the volume's files use the v1 content layout (blocks
/// updated in place), which dekfs versions before the paged layout can read.
static V1_LAYOUT: AtomicBool = AtomicBool::new(false);

/// Makes the inits of this process create v1-layout volumes.
pub fn create_v1_layout() {
    V1_LAYOUT.store(true, Ordering::Relaxed);
}

/// The common part of every init: empty directory, fresh volume id and KEK v1, the protector
/// records `make` returns (at least one), MAC, root dekfs.dir, then dekfs.conf.
pub(crate) fn create_volume(
    cipherdir: &Path,
    rotation_period_days: Option<u32>,
    make: impl FnOnce(&VolumeKeys, u64) -> Result<Vec<ProtectorRecord>, VolumeError>,
) -> Result<[u8; 16], VolumeError> {
    let period = rotation_period_days
        .map(|d| RotationPeriod::new(d, 1, 0))
        .transpose()
        .map_err(|e| VolumeError::Refused(e.to_string()))?;
    ensure_empty_dir(cipherdir)?;
    let now = now_unix();
    let volume_id: [u8; 16] = random_array()?;
    let kek_version = 1u32;
    let keys = VolumeKeys::from_parts(volume_id, vec![(kek_version, Key32::random()?)], 1)?;
    let protectors = make(&keys, now)?;
    if protectors.is_empty() {
        return Err(VolumeError::Refused(
            "a volume needs at least one protector".into(),
        ));
    }
    let mut config = VolumeConfig {
        // New volumes store content in pages (FORMAT.md, "Paged content").
        required_features: if V1_LAYOUT.load(Ordering::Relaxed) {
            0
        } else {
            crate::format::FEATURE_PAGED
        },
        optional_features: 0,
        volume_id,
        created: now,
        keks: vec![KekRecord {
            version: kek_version,
            state: KekState::Active,
            created: now,
        }],
        protectors,
        rotation_period: period.map(|p| RotationPeriod { created: now, ..p }),
        mac: [0; 32],
    };
    let mac_key = kdf::config_mac_key(keys.kek_for(kek_version)?, &volume_id)?;
    config.mac = hmac_sha256(&mac_key, &config.mac_input())?;

    let (_, root_meta) = keys.create_root_dir()?;
    write_root_dir_meta(cipherdir, &root_meta)?;
    write_config_atomic(cipherdir, &config.to_bytes())?;
    super::audit_hook::created(cipherdir, &keys, &config);
    super::rollback::raise_after_write(&volume_id, kek_version);
    Ok(volume_id)
}
