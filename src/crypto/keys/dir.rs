//! DirKey: an opened directory's key with its derived name and xattr ciphers. Must NOT parse or
//! build dir metadata (VolumeKeys does) or expose the directory key bytes outside the crate.

use super::super::{kdf, names, CryptoError};
use super::xattr::XattrCipher;
use crate::secret::{Key32, SecretBytes};

pub struct DirKey {
    dir_id: [u8; 16],
    key: Key32,
    name_key: SecretBytes,
    xattr: XattrCipher,
}

impl DirKey {
    pub(crate) fn derive(
        volume_id: &[u8; 16],
        dir_id: [u8; 16],
        key: Key32,
    ) -> Result<DirKey, CryptoError> {
        let name_key = kdf::name_key(&key, volume_id)?;
        let xattr = XattrCipher::new(&kdf::dir_xattr_key(&key, volume_id)?)?;
        Ok(DirKey {
            dir_id,
            key,
            name_key,
            xattr,
        })
    }

    pub(crate) fn key(&self) -> &Key32 {
        &self.key
    }

    pub fn dir_id(&self) -> &[u8; 16] {
        &self.dir_id
    }

    /// base64url(AES-SIV(NameKey, name)); the short form only: the caller applies the long-name
    /// rule with `crypto::names::backing_name`.
    pub fn encrypt_name(&self, plain: &[u8]) -> Result<String, CryptoError> {
        names::encrypt_name(&self.name_key, plain)
    }

    /// Any malformed base64, wrong length, wrong key or modified byte is an `Err`.
    pub fn decrypt_name(&self, encoded: &str) -> Result<Vec<u8>, CryptoError> {
        names::decrypt_name(&self.name_key, encoded)
    }

    pub fn encrypt_symlink(&self, target: &[u8]) -> Result<String, CryptoError> {
        names::encrypt_symlink(&self.name_key, target)
    }

    pub fn decrypt_symlink(&self, encoded: &[u8]) -> Result<Vec<u8>, CryptoError> {
        names::decrypt_symlink(&self.name_key, encoded)
    }

    pub fn xattr(&self) -> &XattrCipher {
        &self.xattr
    }
}

impl std::fmt::Debug for DirKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirKey")
            .field("dir_id", &super::hex16(&self.dir_id))
            .field("key", &"<redacted>")
            .finish()
    }
}
