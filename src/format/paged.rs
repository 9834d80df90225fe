//! Paged content layout (required feature `PAGED`): every content block is one self-contained
//! 4,096-byte backing page, so a block is replaced by one page write and a power cut leaves
//! either its old or its new version. Pure layout arithmetic and page parsing: must NOT do
//! crypto or I/O, and must not panic on any input (sizes and pages come from untrusted files).

use super::FormatError;

/// Required-feature bit of the config (new files of this volume are paged) and of a file header
/// (this file's content is paged).
pub const FEATURE_PAGED: u32 = 1;
/// Backing page: the unit that is written whole and that a power cut leaves old or new.
pub const PAGE: u64 = 4096;
/// Plaintext bytes one page holds: 4096 − 2 (length) − 2 (reserved) − 12 (nonce) − 16 (tag).
pub const PAGED_BLOCK: u64 = 4064;
/// Bytes of a page before the sealed part (length and reserved fields).
pub const PAGE_PREFIX: usize = 4;
/// Page overhead besides the plaintext: prefix, nonce and tag.
pub const PAGE_OVERHEAD: usize = 32;

/// Backing offset of block `index`: page 0 holds the header, block i is page i + 1 (saturating).
pub fn paged_block_offset(index: u64) -> u64 {
    index.saturating_add(1).saturating_mul(PAGE)
}

/// Number of whole data pages in a backing file of `csize` bytes. Bytes past the last whole
/// page are the size tail (see `paged_plain_of`), never a page.
pub fn paged_page_count(csize: u64) -> u64 {
    (csize / PAGE).saturating_sub(1)
}

/// Plaintext size of a paged file of `csize` backing bytes: `pages` whole data pages, the last
/// holding `csize mod 4096` bytes (the size tail), or a full block when the size is a whole
/// number of pages. A tail of 4064 bytes or more is no writer's: it counts as a full block.
pub fn paged_plain_of(csize: u64) -> u64 {
    let pages = paged_page_count(csize);
    if pages == 0 {
        return 0;
    }
    let tail = csize % PAGE;
    let last = if tail == 0 {
        PAGED_BLOCK
    } else {
        tail.min(PAGED_BLOCK)
    };
    (pages - 1).saturating_mul(PAGED_BLOCK).saturating_add(last)
}

/// Backing size of a paged file holding `plain` bytes (0 stays 0: no header yet): the header
/// page, one page per block, then as many bytes as the last block holds when it is not full
/// (a hole: never written, only the size).
pub fn paged_cipher_size(plain: u64) -> u64 {
    if plain == 0 {
        return 0;
    }
    paged_block_offset(plain.div_ceil(PAGED_BLOCK)).saturating_add(plain % PAGED_BLOCK)
}

/// Plaintext length of block `index` in a file of `plain` bytes (0 past the end).
pub fn paged_block_len(plain: u64, index: u64) -> usize {
    let start = index.saturating_mul(PAGED_BLOCK);
    if start >= plain {
        return 0;
    }
    (plain - start).min(PAGED_BLOCK) as usize
}

/// The length field of a page: its plaintext bytes, 1..=4064, or an error for any other value.
pub fn page_len(page: &[u8]) -> Result<usize, FormatError> {
    let (Some(&a), Some(&b)) = (page.first(), page.get(1)) else {
        return Err(FormatError::Truncated);
    };
    let n = u16::from_le_bytes([a, b]) as u64;
    if n == 0 || n > PAGED_BLOCK {
        return Err(FormatError::Invalid("page length"));
    }
    Ok(n as usize)
}

/// Checks a whole 4,096-byte page and returns the sealed part (nonce ‖ ciphertext ‖ tag) that
/// AES-GCM must open. Refuses a wrong length field, non-zero reserved bytes and non-zero
/// padding, so every accepted page has one meaning.
pub fn page_sealed(page: &[u8]) -> Result<&[u8], FormatError> {
    if page.len() != PAGE as usize {
        return Err(FormatError::Invalid("page size"));
    }
    let n = page_len(page)?;
    if page[2] != 0 || page[3] != 0 {
        return Err(FormatError::Invalid("page reserved bytes"));
    }
    let end = PAGE_OVERHEAD + n;
    if page[end..].iter().any(|&b| b != 0) {
        return Err(FormatError::Invalid("page padding"));
    }
    Ok(&page[PAGE_PREFIX..end])
}

/// Writes the prefix and padding of a page whose sealed part (nonce ‖ ciphertext ‖ tag of `n`
/// plaintext bytes) is already at `page[4..n + 32]`.
pub fn frame_page(page: &mut [u8], n: usize) {
    page[..2].copy_from_slice(&(n as u16).to_le_bytes());
    page[2..PAGE_PREFIX].fill(0);
    page[PAGE_OVERHEAD + n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_examples() {
        assert_eq!(paged_cipher_size(0), 0);
        assert_eq!(paged_cipher_size(1), 8193);
        assert_eq!(paged_cipher_size(14), 8206);
        assert_eq!(paged_cipher_size(4064), 8192);
        assert_eq!(paged_cipher_size(4065), 12_289);
        assert_eq!(paged_cipher_size(10_000), 16_384 + 1872);
        assert_eq!(paged_cipher_size(1 << 20), 4096 + 259 * 4096 + 64);
        assert_eq!(paged_page_count(0), 0);
        assert_eq!(paged_page_count(4096), 0);
        assert_eq!(paged_page_count(8192), 1);
        assert_eq!(paged_page_count(8191), 0);
        assert_eq!(paged_plain_of(0), 0);
        assert_eq!(paged_plain_of(216), 0);
        assert_eq!(paged_plain_of(4096), 0);
        assert_eq!(paged_plain_of(4096 + 100), 0);
        assert_eq!(paged_plain_of(8192), 4064);
        assert_eq!(paged_plain_of(8192 + 4095), 4064);
        assert_eq!(paged_block_len(10_000, 2), 1872);
        assert_eq!(paged_block_len(10_000, 3), 0);
        assert_eq!(paged_block_offset(u64::MAX), u64::MAX);
        assert_eq!(paged_plain_of(u64::MAX), paged_plain_of(u64::MAX));
        for p in 0..20_000u64 {
            assert_eq!(paged_plain_of(paged_cipher_size(p)), p, "{p}");
        }
    }

    #[test]
    fn page_rules() {
        let mut p = vec![0u8; 4096];
        assert!(page_sealed(&p).is_err());
        p[..2].copy_from_slice(&5u16.to_le_bytes());
        assert_eq!(page_sealed(&p).map(<[u8]>::len), Ok(33));
        p[37] = 1;
        assert!(page_sealed(&p).is_err());
        p[37] = 0;
        p[2] = 1;
        assert!(page_sealed(&p).is_err());
        p[2] = 0;
        p[..2].copy_from_slice(&4065u16.to_le_bytes());
        assert!(page_sealed(&p).is_err());
        p[..2].copy_from_slice(&4064u16.to_le_bytes());
        assert_eq!(page_sealed(&p).map(<[u8]>::len), Ok(4092));
        assert!(page_sealed(&p[..4095]).is_err());
        assert!(page_len(&[]).is_err());
    }
}
