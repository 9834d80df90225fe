//! HMAC-SHA256 compute/verify for headers, directory metadata and the config. Must NOT decide
//! what bytes are covered: callers pass exactly the format's MAC input.

use super::CryptoError;
use crate::secret::{scrubbed, Key32};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn keyed(key: &Key32) -> Result<HmacSha256, CryptoError> {
    <HmacSha256 as Mac>::new_from_slice(key.expose())
        .map_err(|_| CryptoError::InvalidLength("HMAC key"))
}

pub(crate) fn hmac_sha256(key: &Key32, data: &[u8]) -> Result<[u8; 32], CryptoError> {
    // hmac pads the key into stack buffers it does not wipe.
    scrubbed(|| {
        let mut m = keyed(key)?;
        m.update(data);
        Ok(m.finalize().into_bytes().into())
    })
}

/// Constant-time verification; a mismatch is `MacMismatch`.
pub(crate) fn verify_hmac_sha256(
    key: &Key32,
    data: &[u8],
    tag: &[u8; 32],
) -> Result<(), CryptoError> {
    scrubbed(|| {
        let mut m = keyed(key)?;
        m.update(data);
        m.verify_slice(tag).map_err(|_| CryptoError::MacMismatch)
    })
}
