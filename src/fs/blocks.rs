//! Sealing and opening runs of consecutive blocks for one request: fresh
//! nonces and a reusable per-thread buffer. It must not do I/O or decide
//! which blocks a request touches.
//!
//! Runs are sealed on the calling thread: spreading one request across
//! cores lost to the FUSE workers that already seal concurrent requests in
//! parallel (docs/DESIGN.md, "The path of a write()", has the measurements).

use crate::crypto::{fill_random, CryptoError, FileKey, BLOCK_SIZE, CIPHER_BLOCK_SIZE};
use std::cell::RefCell;

const NONCE_LEN: usize = 12;

#[derive(Default)]
struct Scratch {
    sealed: Vec<u8>,
    plain: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn sized(v: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if v.len() < len {
        v.resize(len, 0);
    }
    &mut v[..len]
}

/// Runs `f` on per-thread buffers of `sealed_len` and `plain_len` bytes with
/// unspecified contents (what an earlier request on this thread left), so a
/// 1 MiB request neither allocates nor zeroes 1 MiB. Callers overwrite what
/// they use. The plain buffer keeps the last plaintext this thread served,
/// which the kernel's page cache holds anyway.
pub fn with_scratch<R>(
    sealed_len: usize,
    plain_len: usize,
    f: impl FnOnce(&mut [u8], &mut [u8]) -> R,
) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            let s = &mut *s;
            f(
                sized(&mut s.sealed, sealed_len),
                sized(&mut s.plain, plain_len),
            )
        }
        // Only reachable by nesting; fresh buffers keep that correct.
        Err(_) => f(&mut vec![0u8; sealed_len], &mut vec![0u8; plain_len]),
    })
}

/// Stored size of a run of `plain_len` plaintext bytes.
pub fn sealed_len(plain_len: usize) -> usize {
    plain_len + plain_len.div_ceil(BLOCK_SIZE) * (CIPHER_BLOCK_SIZE - BLOCK_SIZE)
}

/// Seals `plain` as blocks `first..` into `out` (exactly `sealed_len` bytes),
/// each under its own random nonce.
pub fn seal_run(
    key: &FileKey,
    first: u64,
    plain: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let n = plain.len().div_ceil(BLOCK_SIZE);
    let mut nonces = vec![0u8; n * NONCE_LEN];
    fill_random(&mut nonces)?;
    let runs = plain
        .chunks(BLOCK_SIZE)
        .zip(out.chunks_mut(CIPHER_BLOCK_SIZE));
    for (i, (chunk, dst)) in runs.enumerate() {
        let nonce: &[u8; NONCE_LEN] = nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::InvalidLength("nonce"))?;
        key.seal_block(first + i as u64, nonce, chunk, dst);
    }
    Ok(())
}

/// Opens stored blocks `first..` from `stored` into `out` (room for a full
/// block per stored block). Returns the plaintext length, or the index of the
/// first block that failed authentication; `out` then holds no plaintext of
/// that block.
pub fn open_run(key: &FileKey, first: u64, stored: &[u8], out: &mut [u8]) -> Result<usize, u64> {
    let mut total = 0;
    let runs = stored
        .chunks(CIPHER_BLOCK_SIZE)
        .zip(out.chunks_mut(BLOCK_SIZE));
    for (i, (chunk, dst)) in runs.enumerate() {
        let idx = first + i as u64;
        total = i * BLOCK_SIZE + key.open_block(idx, chunk, dst).map_err(|_| idx)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::VolumeKeys;
    use crate::secret::Key32;

    fn key() -> FileKey {
        let keys =
            VolumeKeys::from_parts([1u8; 16], vec![(1, Key32::from_array(&mut [2u8; 32]))], 1)
                .expect("keys");
        let (_, meta) = keys.create_root_dir().expect("root");
        let dir = keys.open_root_dir(&meta).expect("dir");
        keys.create_file(&dir).expect("file").0
    }

    #[test]
    fn runs_round_trip() {
        let k = key();
        for len in [1, 4096, 4097, 31 * 4096 + 5, 32 * 4096, 256 * 4096 - 3] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut sealed = vec![0u8; sealed_len(len)];
            seal_run(&k, 5, &plain, &mut sealed).expect("seal");
            let mut back = vec![0u8; len.div_ceil(BLOCK_SIZE) * BLOCK_SIZE];
            assert_eq!(open_run(&k, 5, &sealed, &mut back), Ok(len));
            assert_eq!(&back[..len], &plain[..]);
            // Block indices are bound: the same bytes at another index fail.
            assert_eq!(open_run(&k, 6, &sealed, &mut back), Err(6));
        }
    }

    #[test]
    fn a_flipped_bit_names_its_block() {
        let k = key();
        let plain = vec![9u8; 40 * 4096];
        let mut sealed = vec![0u8; sealed_len(plain.len())];
        seal_run(&k, 0, &plain, &mut sealed).expect("seal");
        sealed[37 * CIPHER_BLOCK_SIZE + 100] ^= 1;
        let mut back = vec![0u8; plain.len()];
        assert_eq!(open_run(&k, 0, &sealed, &mut back), Err(37));
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = key();
        let mut a = vec![0u8; sealed_len(4096)];
        let mut b = vec![0u8; sealed_len(4096)];
        seal_run(&k, 0, &[0u8; 4096], &mut a).expect("seal");
        seal_run(&k, 0, &[0u8; 4096], &mut b).expect("seal");
        assert_ne!(a[..12], b[..12]);
    }
}
