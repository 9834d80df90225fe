//! FileKey: an opened file's DEK-derived content AEAD, header MAC key and xattr cipher; seals
//! and opens content blocks. Must NOT pick nonces (the caller supplies them) or do I/O.

use super::super::aead::{split_sealed, BlockAead, RingAead, Sealed};
use super::super::mac::{hmac_sha256, verify_hmac_sha256};
use super::super::{
    kdf, CryptoError, BLOCK_AAD_LEN, BLOCK_OVERHEAD, BLOCK_SIZE, NONCE_LEN, TAG_LEN,
};
use super::xattr::XattrCipher;
use crate::format::{FileHeader, HEADER_LEN};
use crate::secret::Key32;

pub struct FileKey {
    volume_id: [u8; 16],
    file_id: [u8; 16],
    nonce_reserved: u64,
    dek: Key32,
    content: Box<dyn BlockAead>,
    header_mac: Key32,
    xattr: XattrCipher,
}

impl FileKey {
    /// nonce_reserved of a fresh header.
    pub const INITIAL_RESERVATION: u64 = 1024;

    pub(crate) fn derive(
        volume_id: &[u8; 16],
        file_id: [u8; 16],
        dek: Key32,
        nonce_reserved: u64,
    ) -> Result<FileKey, CryptoError> {
        let content = RingAead::new(&kdf::content_key(&dek, volume_id, &file_id)?)?;
        Ok(FileKey {
            volume_id: *volume_id,
            file_id,
            nonce_reserved,
            header_mac: kdf::header_mac_key(&dek, volume_id, &file_id)?,
            xattr: XattrCipher::new(&kdf::file_xattr_key(&dek, volume_id, &file_id)?)?,
            dek,
            content: Box::new(content),
        })
    }

    pub(crate) fn dek(&self) -> &Key32 {
        &self.dek
    }

    pub(crate) fn header_mac_key(&self) -> &Key32 {
        &self.header_mac
    }

    pub fn file_id(&self) -> &[u8; 16] {
        &self.file_id
    }

    /// nonce_reserved as found in the header when this key was opened/created.
    pub fn nonce_reserved(&self) -> u64 {
        self.nonce_reserved
    }

    /// AAD = volume_id || file_id || u64 index: binds a block to its file and position, so blocks
    /// cannot be moved, reordered or transplanted between files.
    fn aad(&self, index: u64) -> [u8; BLOCK_AAD_LEN] {
        let mut aad = [0u8; BLOCK_AAD_LEN];
        aad[..16].copy_from_slice(&self.volume_id);
        aad[16..32].copy_from_slice(&self.file_id);
        aad[32..].copy_from_slice(&index.to_le_bytes());
        aad
    }

    /// Seals one block: writes nonce || ciphertext || tag into `out[..plain.len() + 28]`.
    ///
    /// # Panics
    /// If `plain.len()` is not in 1..=4096 or `out` is shorter than `plain.len() + 28`. These are
    /// caller bugs (lengths come from the filesystem code, never from disk).
    pub fn seal_block(&self, index: u64, nonce: &[u8; 12], plain: &[u8], out: &mut [u8]) {
        let n = plain.len();
        assert!(
            (1..=BLOCK_SIZE).contains(&n),
            "seal_block: plaintext must be 1..=4096 bytes"
        );
        assert!(
            out.len() >= n + BLOCK_OVERHEAD,
            "seal_block: output buffer too small"
        );
        out[..NONCE_LEN].copy_from_slice(nonce);
        let body = &mut out[NONCE_LEN..NONCE_LEN + n];
        body.copy_from_slice(plain);
        let tag = self.content.seal_in_place(nonce, &self.aad(index), body);
        out[NONCE_LEN + n..NONCE_LEN + n + TAG_LEN].copy_from_slice(&tag);
    }

    /// Opens one stored block (29..=4124 bytes) into `out[..len - 28]` and returns that length.
    /// Any modification, move or wrong key is `Err`; `out` then holds zeros, never unverified
    /// plaintext.
    pub fn open_block(
        &self,
        index: u64,
        stored: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CryptoError> {
        if stored.len() <= BLOCK_OVERHEAD || stored.len() > BLOCK_SIZE + BLOCK_OVERHEAD {
            return Err(CryptoError::InvalidLength("stored block"));
        }
        let Sealed { nonce, ct, tag } = split_sealed(stored, "stored block")?;
        let n = ct.len();
        let Some(dst) = out.get_mut(..n) else {
            return Err(CryptoError::InvalidLength("block output buffer"));
        };
        dst.copy_from_slice(ct);
        self.content
            .open_in_place(&nonce, &self.aad(index), dst, &tag)?;
        Ok(n)
    }

    /// The header with nonce_reserved replaced and the MAC recomputed (slots unchanged). The
    /// input must be this file's header with a valid MAC, so this never blesses forged bytes.
    pub fn header_with_reservation(
        &self,
        header: &[u8],
        nonce_reserved: u64,
    ) -> Result<[u8; HEADER_LEN], CryptoError> {
        let mut h = FileHeader::parse(header)?;
        if h.file_id != self.file_id {
            return Err(CryptoError::WrongObject);
        }
        verify_hmac_sha256(&self.header_mac, &h.mac_input(), &h.mac)?;
        h.nonce_reserved = nonce_reserved;
        h.mac = hmac_sha256(&self.header_mac, &h.mac_input())?;
        Ok(h.to_bytes())
    }

    pub fn xattr(&self) -> &XattrCipher {
        &self.xattr
    }
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKey")
            .field("file_id", &super::hex16(&self.file_id))
            .field("nonce_reserved", &self.nonce_reserved)
            .field("keys", &"<redacted>")
            .finish()
    }
}
