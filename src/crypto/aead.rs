//! The block AEAD abstraction and its ring AES-256-GCM implementation. Must NOT choose nonces,
//! build AADs or know about files: callers (keys.rs) own those decisions.

use super::{CryptoError, NONCE_LEN, TAG_LEN};
use crate::secret::{Key32, Locked};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};

/// One AEAD key, used in place with a detached tag.
pub trait BlockAead: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// # Panics
    /// Only if `in_out` exceeds the AES-GCM message limit (~64 GiB); dekfs never passes more than
    /// one block or one xattr value.
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> [u8; 16];
    /// Decrypts `in_out` in place. On failure `in_out` is zeroed so unauthenticated plaintext
    /// never escapes.
    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), CryptoError>;
}

/// AES-256-GCM via ring (constant-time, hardware accelerated). ring never wipes its key
/// schedule (whose first round keys are the key itself), so it lives in a `Locked` slot.
pub struct RingAead {
    key: Locked<LessSafeKey>,
}

impl RingAead {
    pub fn new(key: &Key32) -> Result<RingAead, CryptoError> {
        let key = Locked::try_new(|| {
            UnboundKey::new(&AES_256_GCM, key.expose())
                .map(LessSafeKey::new)
                .map_err(|_| CryptoError::InvalidLength("AES-256-GCM key"))
        })?;
        Ok(RingAead { key })
    }
}

impl BlockAead for RingAead {
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> [u8; 16] {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                in_out,
            )
            .expect("AES-GCM input exceeds 64 GiB: caller bug");
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), CryptoError> {
        let res = self.key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            Tag::from(*tag),
            in_out,
            0..,
        );
        match res {
            Ok(_) => Ok(()),
            Err(_) => {
                in_out.fill(0);
                Err(CryptoError::AuthFailed)
            }
        }
    }
}

/// A stored sealed record, split but not yet opened.
pub struct Sealed<'a> {
    pub nonce: [u8; NONCE_LEN],
    pub ct: &'a [u8],
    pub tag: [u8; TAG_LEN],
}

/// Splits a stored `nonce || ciphertext || tag` record (content blocks and
/// xattr values share this layout). Total on any input: a record too short
/// to hold a nonce and a tag is `InvalidLength(what)`.
pub fn split_sealed<'a>(stored: &'a [u8], what: &'static str) -> Result<Sealed<'a>, CryptoError> {
    let tag_at = stored
        .len()
        .checked_sub(TAG_LEN)
        .filter(|t| *t >= NONCE_LEN)
        .ok_or(CryptoError::InvalidLength(what))?;
    let (Some(nonce), Some(ct), Some(tag)) = (
        stored.get(..NONCE_LEN),
        stored.get(NONCE_LEN..tag_at),
        stored.get(tag_at..),
    ) else {
        return Err(CryptoError::InvalidLength(what));
    };
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::InvalidLength(what))?;
    let tag: [u8; TAG_LEN] = tag
        .try_into()
        .map_err(|_| CryptoError::InvalidLength(what))?;
    Ok(Sealed { nonce, ct, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let aead = RingAead::new(&Key32::from_array(&mut [1u8; 32])).unwrap();
        let nonce = [2u8; 12];
        let mut buf = b"hello block".to_vec();
        let tag = aead.seal_in_place(&nonce, b"aad", &mut buf);
        assert_ne!(&buf[..], b"hello block");
        let mut ok = buf.clone();
        aead.open_in_place(&nonce, b"aad", &mut ok, &tag).unwrap();
        assert_eq!(&ok[..], b"hello block");
        let mut bad = buf.clone();
        assert_eq!(
            aead.open_in_place(&nonce, b"aaX", &mut bad, &tag),
            Err(CryptoError::AuthFailed)
        );
        assert!(bad.iter().all(|&b| b == 0));
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        let mut b2 = buf.clone();
        assert!(aead
            .open_in_place(&nonce, b"aad", &mut b2, &bad_tag)
            .is_err());
    }
}
