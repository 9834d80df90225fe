//! DEK renewal's key side: a fresh DEK and file_id for a file being
//! re-encrypted, and the header's optional-feature bits rewritten under the
//! file's own MAC key. It must not do I/O or decide when a file is renewed.

use super::super::mac::{hmac_sha256, verify_hmac_sha256};
use super::super::CryptoError;
use super::{random_key_and_id, DirKey, FileKey, VolumeKeys};
use crate::format::{FileHeader, HEADER_LEN};

/// Optional feature bit: the file is being re-encrypted under a new DEK and
/// its pre-renewal bytes are in the renewal journal (docs/FORMAT.md).
pub const FEATURE_RENEWING: u32 = 1;

impl VolumeKeys {
    /// A new DEK and file_id for `dir`'s file, with a header that reserves
    /// `nonce_reserved` encryptions (the blocks the renewal re-seals).
    /// `required_features` are the old header's: the content keeps its layout
    /// (v1 or paged) and only changes key.
    pub fn renew_file(
        &self,
        dir: &DirKey,
        nonce_reserved: u64,
        required_features: u32,
    ) -> Result<(FileKey, [u8; HEADER_LEN]), CryptoError> {
        let (dek, file_id) = random_key_and_id()?;
        self.create_file_with(dir, dek, file_id, nonce_reserved, required_features)
    }
}

impl FileKey {
    /// The header with optional_features replaced and the MAC recomputed
    /// (slots unchanged). Like `header_with_reservation`, the input must be
    /// this file's header with a valid MAC.
    pub fn header_with_features(
        &self,
        header: &[u8],
        optional_features: u32,
    ) -> Result<[u8; HEADER_LEN], CryptoError> {
        let mut h = FileHeader::parse(header)?;
        if h.file_id != *self.file_id() {
            return Err(CryptoError::WrongObject);
        }
        verify_hmac_sha256(self.header_mac_key(), &h.mac_input(), &h.mac)?;
        h.optional_features = optional_features;
        h.mac = hmac_sha256(self.header_mac_key(), &h.mac_input())?;
        Ok(h.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Key32;

    #[test]
    fn renewed_file_has_new_identity_and_flag_round_trips() {
        let keys =
            VolumeKeys::from_parts([1u8; 16], vec![(1, Key32::from_array(&mut [2u8; 32]))], 1)
                .expect("keys");
        let (_, meta) = keys.create_root_dir().expect("root");
        let dir = keys.open_root_dir(&meta).expect("dir");
        let (old, h) = keys.create_file(&dir).expect("file");
        let (new, nh) = keys.renew_file(&dir, 7, 0).expect("renew");
        assert_ne!(old.file_id(), new.file_id());
        assert_eq!(keys.open_file(&dir, &nh).expect("open").nonce_reserved(), 7);
        let flagged = old
            .header_with_features(&h, FEATURE_RENEWING)
            .expect("flag");
        let parsed = FileHeader::parse(&flagged).expect("parse");
        assert_eq!(parsed.optional_features, FEATURE_RENEWING);
        keys.open_file(&dir, &flagged)
            .expect("flagged header still opens");
        // Another file's key cannot bless this header.
        assert!(new.header_with_features(&h, 0).is_err());
    }
}
