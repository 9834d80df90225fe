//! Recovery names: the plaintext name under which readdir shows an entry
//! whose backing name does not decode, so it can still be listed, stat'ed
//! and removed. It must not make such an entry readable.

use sha2::{Digest, Sha256};
use std::os::fd::AsFd;

/// Readdir shows entries whose names fail to authenticate under this prefix.
pub const RECOVERY_PREFIX: &str = ".dekfs-unreadable-";
/// Hex digits after the prefix (8 bytes of SHA-256 of the backing name).
const RECOVERY_HEX: usize = 16;

/// `.dekfs-unreadable-<16 hex>` for the backing name `cipher`.
pub fn recovery_name(cipher: &str) -> Vec<u8> {
    let h = Sha256::digest(cipher.as_bytes());
    let hex: String = h[..RECOVERY_HEX / 2]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("{RECOVERY_PREFIX}{hex}").into_bytes()
}

/// True if a plaintext name has the exact shape of a recovery name.
pub fn is_recovery_name(plain: &[u8]) -> bool {
    plain
        .strip_prefix(RECOVERY_PREFIX.as_bytes())
        .is_some_and(|h| {
            h.len() == RECOVERY_HEX && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// Finds the backing entry behind a recovery name (slow path, rare).
pub fn find_recovery(dir: &impl AsFd, wanted: &[u8]) -> rustix::io::Result<String> {
    super::io::list(dir)?
        .into_iter()
        .filter_map(|e| e.name)
        .find(|c| recovery_name(c) == wanted)
        .ok_or(rustix::io::Errno::NOENT)
}
