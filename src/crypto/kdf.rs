//! Key derivation: every HKDF-SHA256 derivation of format v1 with its exact info string, and
//! Argon2id for passphrases. Must NOT store keys (results go straight into `secret` types) or
//! decide policy beyond the Argon2 bounds.

use super::CryptoError;
use crate::format::{
    ARGON2_M_MAX_KIB, ARGON2_M_MIN_KIB, ARGON2_P_MAX, ARGON2_P_MIN, ARGON2_T_MAX, ARGON2_T_MIN,
};
use crate::secret::{scrubbed, Key32, SecretBytes};
use argon2::{Algorithm, Argon2, AssociatedData, Block, ParamsBuilder, Version};
use hkdf::HkdfExtract;
use sha2::Sha256;
use zeroize::Zeroize;

pub const INFO_RECOVERY: &[u8] = b"dekfs v1 recovery";
pub const INFO_CONFIG_MAC: &[u8] = b"dekfs v1 config-mac";
pub const INFO_ROOT_WRAP: &[u8] = b"dekfs v1 root-wrap";
pub const INFO_DIR_WRAP: &[u8] = b"dekfs v1 dir-wrap";
pub const INFO_DIR_MAC: &[u8] = b"dekfs v1 dir-mac";
pub const INFO_NAMES: &[u8] = b"dekfs v1 names";
pub const INFO_XATTR: &[u8] = b"dekfs v1 xattr";
pub const INFO_XATTR_NAME: &[u8] = b"dekfs v1 xattr-name";
pub const INFO_FILE_WRAP: &[u8] = b"dekfs v1 file-wrap";
pub const INFO_HEADER_MAC: &[u8] = b"dekfs v1 header-mac";
pub const INFO_TPM2_NV: &[u8] = b"dekfs v1 tpm2-nv";
pub const INFO_CONTENT: &[u8] = b"dekfs v1 content";
pub const INFO_AUDIT_MAC: &[u8] = b"dekfs v1 audit-mac";
pub const INFO_EXPORT_MAC: &[u8] = b"dekfs v1 export-mac";

/// HKDF-SHA256 (RFC 5869) with the IKM and info each given as concatenated parts, so composite
/// inputs like KEK || DirKey never need a temporary buffer. `salt = None` means the RFC default
/// (32 zero bytes).
pub fn hkdf_sha256_parts(
    ikm: &[&[u8]],
    salt: Option<&[u8]>,
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    // The IKM sits in SHA-256's block buffer and each output block in a hash state, all on the
    // stack and never wiped by hkdf/hmac/sha2: the scrub clears them.
    scrubbed(|| {
        let mut ex = HkdfExtract::<Sha256>::new(salt);
        for part in ikm {
            ex.input_ikm(part);
        }
        let (mut prk, hk) = ex.finalize();
        prk.as_mut_slice().zeroize();
        hk.expand_multi_info(info, out)
            .map_err(|_| CryptoError::Kdf("HKDF output too long"))
    })
}

/// Plain HKDF-SHA256, as in RFC 5869.
pub fn hkdf_sha256(
    ikm: &[u8],
    salt: Option<&[u8]>,
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    hkdf_sha256_parts(&[ikm], salt, &[info], out)
}

fn key32(ikm: &[&[u8]], salt: Option<&[u8]>, info: &[&[u8]]) -> Result<Key32, CryptoError> {
    Key32::try_fill(|out| hkdf_sha256_parts(ikm, salt, info, out))
}

fn key64(ikm: &[&[u8]], salt: Option<&[u8]>, info: &[&[u8]]) -> Result<SecretBytes, CryptoError> {
    let mut k = SecretBytes::zeroed(64);
    hkdf_sha256_parts(ikm, salt, info, k.expose_mut())?;
    Ok(k)
}

/// Recovery ProtectorKey = HKDF(recovery_key, salt, "dekfs v1 recovery").
pub fn recovery_protector_key(recovery: &Key32, salt: &[u8; 32]) -> Result<Key32, CryptoError> {
    key32(&[recovery.expose()], Some(salt), &[INFO_RECOVERY])
}

/// TPM NV ProtectorKey of a template-3 tpm2 record = HKDF(share, volume_id, "dekfs v1 tpm2-nv"
/// ‖ protector_id): wraps the KEK payload that the TPM seals.
pub fn tpm_nv_protector_key(
    share: &Key32,
    volume_id: &[u8; 16],
    protector_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(
        &[share.expose()],
        Some(volume_id),
        &[INFO_TPM2_NV, protector_id],
    )
}

/// ConfigMacKey = HKDF(KEK_active, volume_id, "dekfs v1 config-mac").
pub fn config_mac_key(kek: &Key32, volume_id: &[u8; 16]) -> Result<Key32, CryptoError> {
    key32(&[kek.expose()], Some(volume_id), &[INFO_CONFIG_MAC])
}

/// AuditMacKey = HKDF(KEK_v, volume_id, "dekfs v1 audit-mac"): chains the audit log and seals
/// its line count; one per KEK version.
pub fn audit_mac_key(kek: &Key32, volume_id: &[u8; 16]) -> Result<Key32, CryptoError> {
    key32(&[kek.expose()], Some(volume_id), &[INFO_AUDIT_MAC])
}

/// ExportMacKey = HKDF(transport_key, no salt, "dekfs v1 export-mac"): the checksum of an exported
/// KEK blob, so a wrong transport key is told apart from a blob that merely parses.
pub fn export_mac_key(transport: &Key32) -> Result<Key32, CryptoError> {
    key32(&[transport.expose()], None, &[INFO_EXPORT_MAC])
}

/// Root DWK = HKDF(KEK_v, volume_id, "dekfs v1 root-wrap" || dir_id).
pub fn root_wrap_key(
    kek: &Key32,
    volume_id: &[u8; 16],
    dir_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(&[kek.expose()], Some(volume_id), &[INFO_ROOT_WRAP, dir_id])
}

/// DWK = HKDF(KEK_v || ParentDirKey, volume_id, "dekfs v1 dir-wrap" || dir_id).
pub fn dir_wrap_key(
    kek: &Key32,
    parent: &Key32,
    volume_id: &[u8; 16],
    dir_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(
        &[kek.expose(), parent.expose()],
        Some(volume_id),
        &[INFO_DIR_WRAP, dir_id],
    )
}

/// DirMacKey = HKDF(DirKey, volume_id, "dekfs v1 dir-mac" || dir_id).
pub fn dir_mac_key(
    dir_key: &Key32,
    volume_id: &[u8; 16],
    dir_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(
        &[dir_key.expose()],
        Some(volume_id),
        &[INFO_DIR_MAC, dir_id],
    )
}

/// NameKey (64 bytes, AES-SIV-CMAC-256) = HKDF(DirKey, volume_id, "dekfs v1 names").
pub fn name_key(dir_key: &Key32, volume_id: &[u8; 16]) -> Result<SecretBytes, CryptoError> {
    key64(&[dir_key.expose()], Some(volume_id), &[INFO_NAMES])
}

/// Directory XattrKey = HKDF(DirKey, volume_id, "dekfs v1 xattr").
pub fn dir_xattr_key(dir_key: &Key32, volume_id: &[u8; 16]) -> Result<Key32, CryptoError> {
    key32(&[dir_key.expose()], Some(volume_id), &[INFO_XATTR])
}

/// FWK = HKDF(KEK_v || DirKey_parent, volume_id, "dekfs v1 file-wrap" || dir_id || file_id).
pub fn file_wrap_key(
    kek: &Key32,
    parent: &Key32,
    volume_id: &[u8; 16],
    parent_dir_id: &[u8; 16],
    file_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(
        &[kek.expose(), parent.expose()],
        Some(volume_id),
        &[INFO_FILE_WRAP, parent_dir_id, file_id],
    )
}

/// HeaderMacKey = HKDF(DEK, volume_id, "dekfs v1 header-mac" || file_id).
pub fn header_mac_key(
    dek: &Key32,
    volume_id: &[u8; 16],
    file_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(
        &[dek.expose()],
        Some(volume_id),
        &[INFO_HEADER_MAC, file_id],
    )
}

/// ContentKey (AES-256-GCM) = HKDF(DEK, volume_id, "dekfs v1 content" || file_id).
pub fn content_key(
    dek: &Key32,
    volume_id: &[u8; 16],
    file_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(&[dek.expose()], Some(volume_id), &[INFO_CONTENT, file_id])
}

/// File XattrKey = HKDF(DEK, volume_id, "dekfs v1 xattr" || file_id).
pub fn file_xattr_key(
    dek: &Key32,
    volume_id: &[u8; 16],
    file_id: &[u8; 16],
) -> Result<Key32, CryptoError> {
    key32(&[dek.expose()], Some(volume_id), &[INFO_XATTR, file_id])
}

/// Xattr-name SIV key (64 bytes) = HKDF(XattrKey, no salt, "dekfs v1 xattr-name").
pub fn xattr_name_key(xattr_key: &Key32) -> Result<SecretBytes, CryptoError> {
    key64(&[xattr_key.expose()], None, &[INFO_XATTR_NAME])
}

/// Refuses parameters outside the v1 bounds. Run before any KDF work: a config with a lowered
/// cost is a downgrade attempt, an inflated one a denial of service.
pub fn check_argon2_params(m_cost_kib: u32, t_cost: u32, p_lanes: u32) -> Result<(), CryptoError> {
    if m_cost_kib < ARGON2_M_MIN_KIB || t_cost < ARGON2_T_MIN || p_lanes < ARGON2_P_MIN {
        return Err(CryptoError::Kdf("KDF parameters below the minimum"));
    }
    if m_cost_kib > ARGON2_M_MAX_KIB || t_cost > ARGON2_T_MAX || p_lanes > ARGON2_P_MAX {
        return Err(CryptoError::Kdf("KDF parameters above the maximum"));
    }
    Ok(())
}

/// Passphrase ProtectorKey = Argon2id v0x13 (passphrase, salt, m, t, p) -> 32 bytes, with the
/// v1 bounds enforced first.
pub fn argon2id(
    passphrase: &[u8],
    salt: &[u8; 32],
    m_cost_kib: u32,
    t_cost: u32,
    p_lanes: u32,
) -> Result<Key32, CryptoError> {
    check_argon2_params(m_cost_kib, t_cost, p_lanes)?;
    Key32::try_fill(|out| {
        let input = Argon2Input {
            password: passphrase,
            salt,
            secret: &[],
            associated_data: &[],
        };
        argon2id_raw(&input, Argon2Cost::new(m_cost_kib, t_cost, p_lanes), out)
    })
}

/// The byte inputs of one Argon2id run (RFC 9106 §3.1).
pub struct Argon2Input<'a> {
    pub password: &'a [u8],
    pub salt: &'a [u8],
    /// Optional secret value K (empty for none).
    pub secret: &'a [u8],
    /// Optional associated data X (empty for none).
    pub associated_data: &'a [u8],
}

/// Argon2id cost parameters: memory in KiB, passes, lanes.
#[derive(Clone, Copy)]
pub struct Argon2Cost {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_lanes: u32,
}

impl Argon2Cost {
    pub fn new(m_cost_kib: u32, t_cost: u32, p_lanes: u32) -> Argon2Cost {
        Argon2Cost {
            m_cost_kib,
            t_cost,
            p_lanes,
        }
    }
}

/// Unbounded Argon2id v0x13 with optional secret and associated data (RFC 9106 §3.1), for
/// known-answer tests. Working memory is zeroized and freed before returning.
pub fn argon2id_raw(
    input: &Argon2Input<'_>,
    cost: Argon2Cost,
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let mut b = ParamsBuilder::new();
    let Argon2Input {
        password,
        salt,
        secret,
        associated_data,
    } = *input;
    b.m_cost(cost.m_cost_kib)
        .t_cost(cost.t_cost)
        .p_cost(cost.p_lanes)
        .output_len(out.len());
    if !associated_data.is_empty() {
        let ad = AssociatedData::new(associated_data)
            .map_err(|_| CryptoError::Kdf("Argon2 associated data too long"))?;
        b.data(ad);
    }
    let params = b
        .build()
        .map_err(|_| CryptoError::Kdf("invalid Argon2 parameters"))?;
    let ctx = if secret.is_empty() {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    } else {
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params.clone())
            .map_err(|_| CryptoError::Kdf("invalid Argon2 secret"))?
    };
    // Own the working memory so it can be wiped: the crate's hash_password_into frees it unwiped.
    let mut blocks = vec![Block::default(); params.block_count()];
    // H0 (a BLAKE2b over the password) is computed in stack state the crate does not wipe.
    let res = scrubbed(|| ctx.hash_password_into_with_memory(password, salt, out, &mut blocks[..]));
    blocks.zeroize();
    drop(blocks);
    res.map_err(|_| {
        out.zeroize();
        CryptoError::Kdf("Argon2id failed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frozen: the NV ProtectorKey of the template-3 vector (cross-checked with Python's
    /// hmac/hashlib HKDF).
    #[test]
    fn tpm_nv_protector_key_is_frozen() {
        let text = include_str!("../../tests/vectors/dekfs-tpm2-record-v3.txt");
        let h = |k: &str| {
            let v = text.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim();
            (0..v.len() / 2)
                .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let mut share: [u8; 32] = h("nv_share = ").try_into().unwrap();
        let share = Key32::from_array(&mut share);
        let vid: [u8; 16] = h("nv_volume_id = ").try_into().unwrap();
        let pid: [u8; 16] = h("nv_protector_id = ").try_into().unwrap();
        let k = tpm_nv_protector_key(&share, &vid, &pid).unwrap();
        assert_eq!(k.expose(), h("nv_protector_key = ").as_slice());
        let other = tpm_nv_protector_key(&share, &vid, &[0x23; 16]).unwrap();
        assert_ne!(other.expose(), k.expose());
    }

    #[test]
    fn bounds() {
        assert!(check_argon2_params(65536, 3, 4).is_ok());
        assert!(check_argon2_params(8192, 1, 1).is_ok());
        assert!(check_argon2_params(4_194_304, 64, 16).is_ok());
        assert_eq!(
            check_argon2_params(8191, 3, 4),
            Err(CryptoError::Kdf("KDF parameters below the minimum"))
        );
        assert!(check_argon2_params(65536, 0, 4).is_err());
        assert!(check_argon2_params(65536, 3, 0).is_err());
        assert!(check_argon2_params(4_194_305, 3, 4).is_err());
        assert!(check_argon2_params(65536, 65, 4).is_err());
        assert!(check_argon2_params(65536, 3, 17).is_err());
        assert!(argon2id(b"pw", &[0; 32], 1024, 1, 1).is_err());
    }

    #[test]
    fn derivations_are_domain_separated() {
        let k = Key32::from_array(&mut [5; 32]);
        let vid = [1u8; 16];
        let id = [2u8; 16];
        let a = dir_mac_key(&k, &vid, &id).unwrap();
        let b = header_mac_key(&k, &vid, &id).unwrap();
        let c = content_key(&k, &vid, &id).unwrap();
        let d = file_xattr_key(&k, &vid, &id).unwrap();
        let keys = [a.expose(), b.expose(), c.expose(), d.expose()];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
    }

    #[test]
    fn argon2_is_deterministic_at_min_cost() {
        let a = argon2id(b"pw", &[7; 32], 8192, 1, 1).unwrap();
        let b = argon2id(b"pw", &[7; 32], 8192, 1, 1).unwrap();
        assert!(a.ct_eq(b.expose()));
        let c = argon2id(b"pw2", &[7; 32], 8192, 1, 1).unwrap();
        assert!(!a.ct_eq(c.expose()));
    }
}
