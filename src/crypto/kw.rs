//! AES-256 key wrap (RFC 3394, no padding) helpers over aes-kw. Must NOT interpret the wrapped
//! payload (ids, versions): that binding is checked by keys.rs and the volume layer.

use super::CryptoError;
use crate::secret::{scrubbed, Key32, SecretBytes};
use aes_kw::KekAes256;

// Borrowing the key (instead of `From<[u8; 32]>`) avoids leaving a by-value copy on the stack.
fn kek_cipher(kek: &Key32) -> Result<KekAes256, CryptoError> {
    KekAes256::try_from(&kek.expose()[..]).map_err(|_| CryptoError::InvalidLength("KEK"))
}

/// Wraps `plain` (a multiple of 8 bytes, at least 16) under `kek`; output is 8 bytes longer.
pub fn wrap(kek: &Key32, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plain.len() < 16 || plain.len() % 8 != 0 {
        return Err(CryptoError::InvalidLength("key wrap input"));
    }
    // aes-kw builds the AES schedule on the stack; the scrub clears its moved copies.
    scrubbed(|| {
        kek_cipher(kek)?
            .wrap_vec(plain)
            .map_err(|_| CryptoError::InvalidLength("key wrap input"))
    })
}

/// Unwraps and checks the RFC 3394 integrity value; any tampering or wrong key is `UnwrapFailed`.
pub fn unwrap(kek: &Key32, wrapped: &[u8]) -> Result<SecretBytes, CryptoError> {
    if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
        return Err(CryptoError::InvalidLength("wrapped key"));
    }
    let mut out = SecretBytes::zeroed(wrapped.len() - 8);
    scrubbed(|| {
        kek_cipher(kek)?
            .unwrap(wrapped, out.expose_mut())
            .map_err(|_| CryptoError::UnwrapFailed)
    })?;
    Ok(out)
}

/// RFC 5649 (key wrap with padding): any length from 1 byte; output is the length rounded up to
/// a multiple of 8, plus 8.
pub fn wrap_padded(kek: &Key32, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plain.is_empty() || plain.len() > 4096 {
        return Err(CryptoError::InvalidLength("key wrap input"));
    }
    kek_cipher(kek)?
        .wrap_with_padding_vec(plain)
        .map_err(|_| CryptoError::InvalidLength("key wrap input"))
}

/// Inverse of `wrap_padded`; the RFC 5649 integrity value and padding are both checked.
pub fn unwrap_padded(kek: &Key32, wrapped: &[u8]) -> Result<SecretBytes, CryptoError> {
    if wrapped.len() < 16 || wrapped.len() % 8 != 0 || wrapped.len() > 4096 + 16 {
        return Err(CryptoError::InvalidLength("wrapped key"));
    }
    let kw = kek_cipher(kek)?;
    let mut out = SecretBytes::zeroed(wrapped.len() - 8);
    let n = kw
        .unwrap_with_padding(wrapped, out.expose_mut())
        .map_err(|_| CryptoError::UnwrapFailed)?
        .len();
    let mut exact = SecretBytes::zeroed(n);
    exact.expose_mut().copy_from_slice(&out.expose()[..n]);
    Ok(exact)
}

/// Wraps `key(32) || id(16) || u64 kek_version` (the 56-byte payload every dekfs slot and
/// protector uses) into 64 bytes.
pub(crate) fn wrap_bound(
    wrapping_key: &Key32,
    key: &Key32,
    id: &[u8; 16],
    kek_version: u32,
) -> Result<[u8; 64], CryptoError> {
    let mut payload = SecretBytes::zeroed(56);
    {
        let p = payload.expose_mut();
        p[..32].copy_from_slice(key.expose());
        p[32..48].copy_from_slice(id);
        p[48..56].copy_from_slice(&u64::from(kek_version).to_le_bytes());
    }
    let wrapped = wrap(wrapping_key, payload.expose())?;
    wrapped
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::InvalidLength("wrapped key"))
}

/// Inverse of `wrap_bound`: `None` if the integrity check fails or the inner id/version do not
/// match what the caller expects (a slot or record copied from elsewhere).
pub(crate) fn unwrap_bound(
    wrapping_key: &Key32,
    wrapped: &[u8; 64],
    id: &[u8; 16],
    kek_version: u32,
) -> Result<Option<Key32>, CryptoError> {
    Ok(
        match unwrap_bound_detailed(wrapping_key, wrapped, id, kek_version)? {
            BoundUnwrap::Ok(k) => Some(k),
            BoundUnwrap::IntegrityFailed | BoundUnwrap::Mismatch => None,
        },
    )
}

/// Like `unwrap_bound` but tells the caller whether the payload unwrapped yet named another
/// volume/version (protector records: that is corruption, not a wrong passphrase).
pub(crate) enum BoundUnwrap {
    Ok(Key32),
    IntegrityFailed,
    Mismatch,
}

pub(crate) fn unwrap_bound_detailed(
    wrapping_key: &Key32,
    wrapped: &[u8; 64],
    id: &[u8; 16],
    kek_version: u32,
) -> Result<BoundUnwrap, CryptoError> {
    let plain = match unwrap(wrapping_key, wrapped) {
        Ok(p) => p,
        Err(CryptoError::UnwrapFailed) => return Ok(BoundUnwrap::IntegrityFailed),
        Err(e) => return Err(e),
    };
    let p = plain.expose();
    let (Some(k), Some(inner_id), Some(inner_ver)) = (p.get(..32), p.get(32..48), p.get(48..56))
    else {
        return Err(CryptoError::InvalidLength("wrapped key payload"));
    };
    if inner_id != id || inner_ver != u64::from(kek_version).to_le_bytes() {
        return Ok(BoundUnwrap::Mismatch);
    }
    let key = Key32::try_fill(|out| {
        out.copy_from_slice(k);
        Ok::<(), CryptoError>(())
    })?;
    Ok(BoundUnwrap::Ok(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_round_trip_and_binding() {
        let wk = Key32::from_array(&mut [1; 32]);
        let k = Key32::from_array(&mut [2; 32]);
        let w = wrap_bound(&wk, &k, &[3; 16], 1).unwrap();
        let back = unwrap_bound(&wk, &w, &[3; 16], 1).unwrap().unwrap();
        assert!(back.ct_eq(&[2; 32]));
        assert!(unwrap_bound(&wk, &w, &[4; 16], 1).unwrap().is_none());
        assert!(unwrap_bound(&wk, &w, &[3; 16], 2).unwrap().is_none());
        let other = Key32::from_array(&mut [9; 32]);
        assert!(unwrap_bound(&other, &w, &[3; 16], 1).unwrap().is_none());
        for bit in 0..64 * 8 {
            let mut t = w;
            t[bit / 8] ^= 1 << (bit % 8);
            assert!(unwrap_bound(&wk, &t, &[3; 16], 1).unwrap().is_none());
        }
        assert!(matches!(
            unwrap_bound_detailed(&wk, &w, &[4; 16], 1).unwrap(),
            BoundUnwrap::Mismatch
        ));
    }

    #[test]
    fn padded_round_trip_and_tamper() {
        let wk = Key32::from_array(&mut [1; 32]);
        for len in [1usize, 7, 8, 20, 56] {
            let plain: Vec<u8> = (0..len as u8).collect();
            let w = wrap_padded(&wk, &plain).unwrap();
            assert_eq!(w.len(), len.div_ceil(8).max(1) * 8 + 8);
            assert_eq!(unwrap_padded(&wk, &w).unwrap().expose(), &plain[..]);
            let mut t = w.clone();
            t[0] ^= 1;
            assert!(unwrap_padded(&wk, &t).is_err());
        }
        assert!(wrap_padded(&wk, &[]).is_err());
    }

    #[test]
    fn length_checks() {
        let wk = Key32::from_array(&mut [1; 32]);
        assert!(wrap(&wk, &[0; 15]).is_err());
        assert!(wrap(&wk, &[0; 8]).is_err());
        assert!(unwrap(&wk, &[0; 16]).is_err());
        assert!(unwrap(&wk, &[0; 25]).is_err());
    }
}
