//! Size and offset arithmetic between plaintext and backing files. Pure integer math: must NOT
//! panic or overflow on any input (sizes come from untrusted backing files).

use super::{FormatError, HEADER_LEN};

const BLOCK: u64 = 4096;
const OVERHEAD: u64 = 28;
const CIPHER_BLOCK: u64 = BLOCK + OVERHEAD;
const HDR: u64 = HEADER_LEN as u64;

/// Plaintext size of a backing file of `cipher_size` bytes, or an error for sizes no writer
/// produces (a partial header, or a last block too short to hold nonce + tag + 1 byte).
pub fn plain_size(cipher_size: u64) -> Result<u64, FormatError> {
    if cipher_size == 0 {
        return Ok(0);
    }
    let body = cipher_size
        .checked_sub(HDR)
        .ok_or(FormatError::Invalid("file shorter than its header"))?;
    let full = body / CIPHER_BLOCK;
    let rem = body % CIPHER_BLOCK;
    match rem {
        0 => Ok(full * BLOCK),
        1..=OVERHEAD => Err(FormatError::Invalid("truncated block")),
        r => Ok(full * BLOCK + r - OVERHEAD),
    }
}

/// Backing size for a plaintext of `plain_size` bytes (saturates at u64::MAX; no real file gets
/// near it).
pub fn cipher_size(plain_size: u64) -> u64 {
    if plain_size == 0 {
        return 0;
    }
    let full = plain_size / BLOCK;
    let rem = plain_size % BLOCK;
    let last = if rem == 0 { 0 } else { rem + OVERHEAD };
    HDR.saturating_add(full.saturating_mul(CIPHER_BLOCK))
        .saturating_add(last)
}

/// Backing offset of block `index` (saturating).
pub fn block_offset(index: u64) -> u64 {
    HDR.saturating_add(index.saturating_mul(CIPHER_BLOCK))
}

/// Number of blocks holding `plain_size` bytes.
pub fn block_count(plain_size: u64) -> u64 {
    plain_size.div_ceil(BLOCK)
}

/// Stored length (nonce + ciphertext + tag) of block `index` of a file of `plain_size` bytes;
/// 0 if the block lies past the end.
pub fn stored_block_len(plain_size: u64, index: u64) -> usize {
    let start = index.saturating_mul(BLOCK);
    if start >= plain_size {
        return 0;
    }
    let n = (plain_size - start).min(BLOCK);
    (n + OVERHEAD) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_examples() {
        assert_eq!(cipher_size(10_000), 10_300);
        assert_eq!(plain_size(10_300), Ok(10_000));
        assert_eq!(cipher_size(1), 216 + 29);
        assert_eq!(cipher_size(4096), 216 + 4124);
        assert_eq!(cipher_size(4097), 216 + 4124 + 29);
        assert_eq!(plain_size(0), Ok(0));
        assert_eq!(plain_size(216), Ok(0));
        assert!(plain_size(215).is_err());
        assert!(plain_size(1).is_err());
        assert!(plain_size(216 + 28).is_err());
        assert!(plain_size(216 + 1).is_err());
        assert_eq!(plain_size(216 + 29), Ok(1));
        assert!(plain_size(216 + 4124 + 28).is_err());
        assert_eq!(
            plain_size(u64::MAX).map(|_| ()),
            plain_size(u64::MAX).map(|_| ())
        );
        assert_eq!(block_offset(2), 216 + 2 * 4124);
        assert_eq!(block_count(4097), 2);
        assert_eq!(stored_block_len(10_000, 2), 1808 + 28);
        assert_eq!(stored_block_len(10_000, 3), 0);
        assert_eq!(cipher_size(u64::MAX), u64::MAX);
    }

    #[test]
    fn round_trip_small_sizes() {
        for p in 0..20_000u64 {
            assert_eq!(plain_size(cipher_size(p)), Ok(p), "{p}");
        }
    }
}
