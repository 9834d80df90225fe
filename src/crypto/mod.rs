//! Crypto layer: primitives (AEAD, key wrap, KDFs, name SIV) and the key objects the filesystem
//! uses (VolumeKeys, DirKey, FileKey, XattrCipher). Must NOT do I/O or parse bytes itself: all
//! on-disk structures go through `crate::format`; raw key bytes live only in `crate::secret`.

pub mod aead;
pub mod kdf;
pub mod keys;
pub mod kw;
pub(crate) mod mac;
pub mod names;

pub use aead::{BlockAead, RingAead};
pub use keys::{DirKey, FileKey, KekRewrap, VolumeKeys, XattrCipher, FEATURE_RENEWING};

use crate::format::FormatError;

pub const BLOCK_SIZE: usize = 4096;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const BLOCK_OVERHEAD: usize = 28;
pub const CIPHER_BLOCK_SIZE: usize = 4124;
/// AAD of a content block: volume_id(16) || file_id(16) || u64 block_index.
pub const BLOCK_AAD_LEN: usize = 40;

const _: () = assert!(BLOCK_OVERHEAD == NONCE_LEN + TAG_LEN);
const _: () = assert!(CIPHER_BLOCK_SIZE == BLOCK_SIZE + BLOCK_OVERHEAD);

/// Crypto failures. Plain data only: variants never carry key material or plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The OS random number generator failed.
    Random,
    /// AEAD or SIV authentication failed: wrong key or modified ciphertext.
    AuthFailed,
    /// No key slot could be unwrapped with the keys at hand (wrong parent, wrong KEK, tampering).
    UnwrapFailed,
    /// A header/directory MAC did not verify.
    MacMismatch,
    /// The on-disk structure could not be parsed.
    Format(FormatError),
    /// A plaintext name/target violates the naming rules.
    InvalidName(&'static str),
    /// A buffer or input has an impossible length.
    InvalidLength(&'static str),
    /// Encoded text (base64url) is malformed.
    BadEncoding,
    /// Recovery key text is not 64 hex digits.
    InvalidRecoveryKey,
    /// KDF failure or parameters outside the allowed bounds.
    Kdf(&'static str),
    /// The requested KEK version is not held by this unlocked volume.
    MissingKek(u32),
    /// The header/metadata belongs to a different file or directory than the key given.
    WrongObject,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::Random => f.write_str("the system random number generator failed"),
            CryptoError::AuthFailed => {
                f.write_str("authentication failed (wrong key or modified data)")
            }
            CryptoError::UnwrapFailed => {
                f.write_str("no key slot could be unwrapped (wrong key or modified data)")
            }
            CryptoError::MacMismatch => f.write_str("MAC mismatch (modified data)"),
            CryptoError::Format(e) => write!(f, "malformed data: {e}"),
            CryptoError::InvalidName(w) => write!(f, "invalid name: {w}"),
            CryptoError::InvalidLength(w) => write!(f, "invalid length: {w}"),
            CryptoError::BadEncoding => f.write_str("malformed base64url encoding"),
            CryptoError::InvalidRecoveryKey => {
                f.write_str("a recovery key is 64 hexadecimal digits (dashes optional)")
            }
            CryptoError::Kdf(w) => write!(f, "key derivation: {w}"),
            CryptoError::MissingKek(v) => write!(f, "KEK version {v} is not available"),
            CryptoError::WrongObject => {
                f.write_str("metadata belongs to a different file or directory")
            }
        }
    }
}

impl std::error::Error for CryptoError {}

impl From<FormatError> for CryptoError {
    fn from(e: FormatError) -> Self {
        CryptoError::Format(e)
    }
}

/// Fills `buf` from the OS CSPRNG (getrandom(2)); used for ids, salts and nonces in bulk.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|_| CryptoError::Random)
}

/// Fresh random bytes (ids, salts).
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut a = [0u8; N];
    fill_random(&mut a)?;
    Ok(a)
}
