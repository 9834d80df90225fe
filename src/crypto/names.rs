//! Deterministic name encryption (AES-SIV-CMAC-256, RFC 5297) for file names, symlink targets
//! and xattr names, plus base64url and long-name hashing. Must NOT touch the filesystem or
//! decide short vs long form for the caller beyond the provided helpers.

use super::CryptoError;
use crate::format::{LONGNAME_PREFIX, MAX_SHORT_NAME};
use crate::secret::{scrubbed, SecretBytes};
use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Longest plaintext file name (NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// Longest plaintext symlink target (PATH_MAX minus the NUL).
pub const MAX_SYMLINK_LEN: usize = 4095;
/// Associated data that separates symlink targets from names under the same NameKey.
pub const SYMLINK_AD: &[u8] = b"symlink";
const SIV_TAG: usize = 16;
// Encoded-length caps applied before decoding anything (base64 of tag + maximum plaintext).
const MAX_ENCODED_NAME: usize = 4 * (SIV_TAG + MAX_NAME_LEN).div_ceil(3);
const MAX_ENCODED_SYMLINK: usize = 4 * (SIV_TAG + MAX_SYMLINK_LEN).div_ceil(3);

/// base64url without padding (RFC 4648 §5).
pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decode: no padding, canonical trailing bits only (so each ciphertext has
/// exactly one backing spelling), refuses input longer than `max_len` before decoding.
pub fn b64_decode(text: &[u8], max_len: usize) -> Result<Vec<u8>, CryptoError> {
    if text.len() > max_len {
        return Err(CryptoError::InvalidLength("encoded text too long"));
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::BadEncoding)
}

/// H in `dekfs.ln.<H>`: base64url(SHA-256(encoded name)), always 43 characters.
pub fn long_name_hash(encoded: &str) -> String {
    b64_encode(&Sha256::digest(encoded.as_bytes()))
}

/// The backing name for an encoded name: itself if it fits in 255 bytes, else `dekfs.ln.<H>`
/// (the caller then stores `encoded` in `dekfs.ln.<H>.name`).
pub fn backing_name(encoded: &str) -> String {
    if encoded.len() <= MAX_SHORT_NAME {
        encoded.to_owned()
    } else {
        format!("{LONGNAME_PREFIX}{}", long_name_hash(encoded))
    }
}

/// Plaintext name rules: 1..=255 bytes, not "." or "..", no '/' or NUL.
pub fn check_plain_name(name: &[u8]) -> Result<(), CryptoError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(CryptoError::InvalidName("length must be 1..=255 bytes"));
    }
    if name == b"." || name == b".." {
        return Err(CryptoError::InvalidName("\".\" and \"..\" are not names"));
    }
    if name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(CryptoError::InvalidName("contains '/' or NUL"));
    }
    Ok(())
}

fn siv(key: &SecretBytes) -> Result<Aes256Siv, CryptoError> {
    Aes256Siv::new_from_slice(key.expose()).map_err(|_| CryptoError::InvalidLength("SIV key"))
}

/// Raw SIV seal with the given associated-data vector; output is tag(16) || ciphertext.
pub fn siv_seal(key: &SecretBytes, ad: &[&[u8]], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    // The cipher and its subkeys are built on the stack for each call and moved around by
    // aes-siv; the scrub clears what its drop cannot reach.
    scrubbed(|| {
        siv(key)?
            .encrypt(ad, plain)
            .map_err(|_| CryptoError::InvalidLength("SIV input"))
    })
}

/// Raw SIV open; any modification or wrong key is `AuthFailed`.
pub fn siv_open(key: &SecretBytes, ad: &[&[u8]], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SIV_TAG {
        return Err(CryptoError::InvalidLength(
            "SIV ciphertext shorter than its tag",
        ));
    }
    scrubbed(|| {
        siv(key)?
            .decrypt(ad, sealed)
            .map_err(|_| CryptoError::AuthFailed)
    })
}

/// Encrypted file name (short form only: see `backing_name`).
pub fn encrypt_name(key: &SecretBytes, plain: &[u8]) -> Result<String, CryptoError> {
    check_plain_name(plain)?;
    Ok(b64_encode(&siv_seal(key, &[], plain)?))
}

pub fn decrypt_name(key: &SecretBytes, encoded: &str) -> Result<Vec<u8>, CryptoError> {
    let sealed = b64_decode(encoded.as_bytes(), MAX_ENCODED_NAME)?;
    let plain = siv_open(key, &[], &sealed)?;
    check_plain_name(&plain)?;
    Ok(plain)
}

pub fn encrypt_symlink(key: &SecretBytes, target: &[u8]) -> Result<String, CryptoError> {
    check_symlink(target)?;
    Ok(b64_encode(&siv_seal(key, &[SYMLINK_AD], target)?))
}

pub fn decrypt_symlink(key: &SecretBytes, encoded: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let sealed = b64_decode(encoded, MAX_ENCODED_SYMLINK)?;
    let plain = siv_open(key, &[SYMLINK_AD], &sealed)?;
    check_symlink(&plain)?;
    Ok(plain)
}

fn check_symlink(target: &[u8]) -> Result<(), CryptoError> {
    if target.is_empty() || target.len() > MAX_SYMLINK_LEN {
        return Err(CryptoError::InvalidName(
            "symlink target length must be 1..=4095",
        ));
    }
    if target.contains(&0) {
        return Err(CryptoError::InvalidName("symlink target contains NUL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretBytes {
        SecretBytes::new((0u8..64).collect())
    }

    #[test]
    fn name_round_trip_and_determinism() {
        let k = key();
        let e = encrypt_name(&k, b"hello.txt").unwrap();
        assert_eq!(e, encrypt_name(&k, b"hello.txt").unwrap());
        assert!(!e.contains('.') && !e.contains('/') && !e.contains('='));
        assert_eq!(decrypt_name(&k, &e).unwrap(), b"hello.txt");
        assert_ne!(e, encrypt_name(&k, b"hello.txu").unwrap());
    }

    #[test]
    fn name_rules() {
        let k = key();
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256][..]] {
            assert!(encrypt_name(&k, bad).is_err());
        }
        let max = encrypt_name(&k, &[b'x'; 255]).unwrap();
        assert!(max.len() > 255);
        assert_eq!(decrypt_name(&k, &max).unwrap(), vec![b'x'; 255]);
        assert!(backing_name(&max).starts_with("dekfs.ln."));
        assert_eq!(backing_name(&max).len(), 9 + 43);
        assert_eq!(backing_name("abc"), "abc");
        // Documented boundary (docs/FORMAT.md): <= 175 bytes short form, 176.. long form.
        assert_eq!(encrypt_name(&k, &[b'x'; 175]).unwrap().len(), 255);
        assert_eq!(encrypt_name(&k, &[b'x'; 176]).unwrap().len(), 256);
    }

    #[test]
    fn decrypt_rejects_garbage_and_tamper() {
        let k = key();
        let e = encrypt_name(&k, b"n").unwrap();
        for bad in ["", "A", "AAAA", "!!!!", "abc=", &"A".repeat(10_000)] {
            assert!(decrypt_name(&k, bad).is_err(), "{bad}");
        }
        // Non-canonical trailing bits: same bytes, different spelling, must be refused.
        let mut chars: Vec<u8> = e.clone().into_bytes();
        if let Some(last) = chars.last_mut() {
            *last = if *last == b'A' { b'B' } else { b'A' };
        }
        assert!(decrypt_name(&k, std::str::from_utf8(&chars).unwrap()).is_err());
        let other = SecretBytes::new(vec![9u8; 64]);
        assert_eq!(decrypt_name(&other, &e), Err(CryptoError::AuthFailed));
    }

    #[test]
    fn symlink_separated_from_names() {
        let k = key();
        let s = encrypt_symlink(&k, b"../target").unwrap();
        assert_eq!(decrypt_symlink(&k, s.as_bytes()).unwrap(), b"../target");
        assert!(decrypt_name(&k, &s).is_err());
        let n = encrypt_name(&k, b"target").unwrap();
        assert!(decrypt_symlink(&k, n.as_bytes()).is_err());
        assert!(encrypt_symlink(&k, b"").is_err());
        assert!(encrypt_symlink(&k, &[b'a'; 4096]).is_err());
        assert!(encrypt_symlink(&k, &[b'a'; 4095]).is_ok());
    }
}
