//! Protectors: derive a ProtectorKey from a passphrase (Argon2id) or recovery key (HKDF) and
//! wrap/unwrap the KEK bound to volume_id and kek_version. Must NOT choose which records to try
//! (unlock does) or read files.

use super::{KdfParams, VolumeError};
use crate::crypto::kdf;
use crate::crypto::kw::{unwrap_bound_detailed, wrap_bound, BoundUnwrap};
use crate::crypto::CryptoError;
use crate::format::{
    PassphraseBody, ARGON2_M_MAX_KIB, ARGON2_M_MIN_KIB, ARGON2_P_MAX, ARGON2_P_MIN, ARGON2_T_MAX,
    ARGON2_T_MIN,
};
use crate::secret::{Key32, RecoveryKey};

/// The parameters and the format's bounds, for every KDF refusal message.
pub(crate) fn bounds_text(p: &KdfParams) -> String {
    format!(
        "m_cost={} KiB, t_cost={}, p_lanes={} (allowed m {}..={} KiB, t {}..={}, p {}..={})",
        p.m_cost_kib,
        p.t_cost,
        p.p_lanes,
        ARGON2_M_MIN_KIB,
        ARGON2_M_MAX_KIB,
        ARGON2_T_MIN,
        ARGON2_T_MAX,
        ARGON2_P_MIN,
        ARGON2_P_MAX
    )
}

/// Bounds check with a message naming the parameters; done before any Argon2 work.
pub(crate) fn check_kdf_bounds(p: &KdfParams) -> Result<(), VolumeError> {
    match kdf::check_argon2_params(p.m_cost_kib, p.t_cost, p.p_lanes) {
        Ok(()) => Ok(()),
        Err(CryptoError::Kdf(what)) => {
            Err(VolumeError::Corrupt(format!("{what}: {}", bounds_text(p))))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn params_of(body: &PassphraseBody) -> KdfParams {
    KdfParams {
        m_cost_kib: body.m_cost_kib,
        t_cost: body.t_cost,
        p_lanes: body.p_lanes,
    }
}

pub(crate) fn passphrase_key(
    passphrase: &[u8],
    salt: &[u8; 32],
    params: &KdfParams,
) -> Result<Key32, VolumeError> {
    check_kdf_bounds(params)?;
    Ok(kdf::argon2id(
        passphrase,
        salt,
        params.m_cost_kib,
        params.t_cost,
        params.p_lanes,
    )?)
}

pub(crate) fn recovery_key(rk: &RecoveryKey, salt: &[u8; 32]) -> Result<Key32, VolumeError> {
    Ok(kdf::recovery_protector_key(rk.key(), salt)?)
}

/// wrapped_kek = KW(ProtectorKey, KEK || volume_id || u64 kek_version).
pub(crate) fn wrap_kek(
    protector_key: &Key32,
    kek: &Key32,
    volume_id: &[u8; 16],
    kek_version: u32,
) -> Result<[u8; 64], VolumeError> {
    Ok(wrap_bound(protector_key, kek, volume_id, kek_version)?)
}

/// Outcome of one record: the KEK, "not this key" (try the next record), or a record that
/// opened but names another volume/version (tampering: stop).
pub(crate) enum KekUnwrap {
    Kek(Key32),
    WrongKey,
}

pub(crate) fn unwrap_kek(
    protector_key: &Key32,
    wrapped: &[u8; 64],
    volume_id: &[u8; 16],
    kek_version: u32,
) -> Result<KekUnwrap, VolumeError> {
    match unwrap_bound_detailed(protector_key, wrapped, volume_id, kek_version)? {
        BoundUnwrap::Ok(k) => Ok(KekUnwrap::Kek(k)),
        BoundUnwrap::IntegrityFailed => Ok(KekUnwrap::WrongKey),
        BoundUnwrap::Mismatch => Err(VolumeError::Corrupt(
            "protector record belongs to another volume".into(),
        )),
    }
}
