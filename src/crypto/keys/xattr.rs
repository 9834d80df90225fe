//! XattrCipher: user.* extended attribute names (AES-SIV) and values (AES-256-GCM). Must NOT
//! choose which namespaces are encrypted or touch the backing filesystem.

use super::super::aead::{split_sealed, BlockAead, RingAead, Sealed};
use super::super::names::{b64_decode, b64_encode, siv_open, siv_seal};
use super::super::{fill_random, kdf, CryptoError, NONCE_LEN, TAG_LEN};
use crate::secret::{Key32, SecretBytes};

/// Prefix of every encrypted xattr's backing name.
pub const XATTR_PREFIX: &str = "user.";
/// Linux XATTR_NAME_MAX: backing names above this cannot be stored.
pub const XATTR_NAME_MAX: usize = 255;
/// Linux XATTR_SIZE_MAX: backing values above this cannot be stored.
pub const XATTR_SIZE_MAX: usize = 65536;
/// Largest plaintext value that still fits once nonce and tag are added.
pub const MAX_XATTR_VALUE: usize = XATTR_SIZE_MAX - NONCE_LEN - TAG_LEN;

pub struct XattrCipher {
    name_key: SecretBytes,
    value: RingAead,
}

impl XattrCipher {
    pub(crate) fn new(xattr_key: &Key32) -> Result<XattrCipher, CryptoError> {
        Ok(XattrCipher {
            name_key: kdf::xattr_name_key(xattr_key)?,
            value: RingAead::new(xattr_key)?,
        })
    }

    /// Encrypts the full plaintext attribute name (e.g. `user.comment`) and returns the full
    /// backing name `user.<base64url>`. Fails if that would exceed XATTR_NAME_MAX (ERANGE).
    pub fn encrypt_name(&self, name: &[u8]) -> Result<String, CryptoError> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
            return Err(CryptoError::InvalidName("xattr name length or NUL"));
        }
        let backing = format!(
            "{XATTR_PREFIX}{}",
            b64_encode(&siv_seal(&self.name_key, &[], name)?)
        );
        if backing.len() > XATTR_NAME_MAX {
            return Err(CryptoError::InvalidName(
                "xattr name too long once encrypted",
            ));
        }
        Ok(backing)
    }

    pub fn decrypt_name(&self, backing: &str) -> Result<Vec<u8>, CryptoError> {
        let enc = backing
            .strip_prefix(XATTR_PREFIX)
            .ok_or(CryptoError::InvalidName("not a user.* backing xattr"))?;
        let sealed = b64_decode(enc.as_bytes(), XATTR_NAME_MAX)?;
        let name = siv_open(&self.name_key, &[], &sealed)?;
        if name.is_empty() || name.contains(&0) {
            return Err(CryptoError::InvalidName("xattr name length or NUL"));
        }
        Ok(name)
    }

    /// nonce(12) || AES-256-GCM(value, AAD = backing name) || tag(16); the AAD binds a value to
    /// its attribute so values cannot be swapped between attributes.
    pub fn seal_value(&self, backing_name: &str, value: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if value.len() > MAX_XATTR_VALUE {
            return Err(CryptoError::InvalidLength("xattr value too large"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(value.len() + NONCE_LEN + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value);
        let tag = match out.get_mut(NONCE_LEN..) {
            Some(body) => self
                .value
                .seal_in_place(&nonce, backing_name.as_bytes(), body),
            None => return Err(CryptoError::InvalidLength("xattr value")),
        };
        out.extend_from_slice(&tag);
        Ok(out)
    }

    pub fn open_value(&self, backing_name: &str, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if stored.len() < NONCE_LEN + TAG_LEN || stored.len() > XATTR_SIZE_MAX {
            return Err(CryptoError::InvalidLength("stored xattr value"));
        }
        let Sealed { nonce, ct, tag } = split_sealed(stored, "stored xattr value")?;
        let mut plain = ct.to_vec();
        self.value
            .open_in_place(&nonce, backing_name.as_bytes(), &mut plain, &tag)?;
        Ok(plain)
    }
}
