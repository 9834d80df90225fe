//! Tamper battery, content blocks: every bit of a short file's block, 1,000
//! random bit flips in a large file (one per block, each read on its own),
//! blocks swapped within a file, a block copied from another file at the
//! same offset, a block moved to another index, a zeroed block, junk
//! appended. Each must fail closed: EIO, a log line naming the file and
//! "block"/"size", the rest of the volume working. Must not cover headers,
//! names or truncation (other tamper_*.rs files do).

mod common;
mod tamper_kit;

use common::*;
use rand::{Rng, SeedableRng};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use tamper_kit::*;

#[test]
fn block_every_bit_of_short_file_flipped() {
    require_fuse!();
    let b = bench("blk-bits");
    fs::create_dir(b.v.p("s")).unwrap();
    let data = random_bytes(11, 64); // one 92-byte stored block
    let nbits = (data.len() as u64 + BLOCK_OVERHEAD) * 8; // 736
    let victims: Vec<String> = (0..nbits).map(|k| format!("/s/f{k:04}")).collect();
    for rel in &victims {
        b.put(rel, &data);
    }
    let inos: Vec<u64> = victims.iter().map(|r| lstat(&b.v.p(r)).ino()).collect();
    b.v.umount();
    let map = inode_map(&b.v.cipher);
    for (k, ino) in inos.iter().enumerate() {
        flip_bit(&map[ino], HEADER_LEN + k as u64 / 8, (k % 8) as u8);
    }
    b.v.mount();
    let missed = read_all_expect_eio(&b, &victims, "block 0 failed authentication");
    assert!(
        missed.is_empty(),
        "{} of {nbits} block bit flips not detected (file k = bit k of block 0):\n{}",
        missed.len(),
        missed.join("\n")
    );
    b.check_rest_works();
}

/// Reads one plaintext block with readahead off, so a neighbour's failure
/// cannot leak into this read.
fn read_block(f: &fs::File, i: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; BLOCK_PLAIN as usize];
    f.read_exact_at(&mut buf, i * BLOCK_PLAIN)?;
    Ok(buf)
}

#[test]
fn block_thousand_random_bit_flips_in_large_file() {
    require_fuse!();
    let b = bench("blk-random");
    let nblocks = 2000u64;
    let data = random_bytes(12, (nblocks * BLOCK_PLAIN) as usize);
    b.put("/a/large", &data);
    let bk = b.backing("/a/large");
    b.v.umount();
    // 1,000 distinct blocks, one random bit anywhere in each (nonce,
    // ciphertext or tag)
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000);
    let mut flipped = std::collections::BTreeSet::new();
    while flipped.len() < 1000 {
        flipped.insert(rng.gen_range(0..nblocks));
    }
    for &i in &flipped {
        let bit = rng.gen_range(0..BLOCK_CIPHER * 8);
        flip_bit(&bk, block_off(i) + bit / 8, (bit % 8) as u8);
    }
    b.v.mount();
    let f = fs::File::open(b.v.p("/a/large")).unwrap();
    // SAFETY: valid fd; posix_fadvise has no memory effects.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    assert_eq!(rc, 0);
    let mut problems = Vec::new();
    for i in 0..nblocks {
        let want = &data[(i * BLOCK_PLAIN) as usize..((i + 1) * BLOCK_PLAIN) as usize];
        match (flipped.contains(&i), read_block(&f, i)) {
            (true, Ok(_)) => problems.push(format!("block {i}: flipped but read fine")),
            (true, Err(e)) if errno(&e) != libc::EIO => problems.push(format!("block {i}: {e}")),
            (false, Ok(got)) if got != want => problems.push(format!("block {i}: wrong bytes")),
            (false, Err(e)) => problems.push(format!("block {i}: intact but {e}")),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    b.expect_log("/a/large", "failed authentication");
    b.check_rest_works();
}

#[test]
fn blocks_swapped_within_file() {
    require_fuse!();
    let b = bench("blk-swap");
    b.put("/a/x", &random_bytes(13, 3 * 4096));
    let bk = b.backing("/a/x");
    b.v.umount();
    let (b0, b2) = (
        slice(&bk, block_off(0), BLOCK_CIPHER as usize),
        slice(&bk, block_off(2), BLOCK_CIPHER as usize),
    );
    patch(&bk, block_off(0), &b2);
    patch(&bk, block_off(2), &b0);
    b.v.mount();
    b.expect_detected("/a/x", "block 0 failed authentication");
    b.check_rest_works();
}

#[test]
fn block_copied_from_another_file_at_same_offset() {
    require_fuse!();
    let b = bench("blk-copy");
    b.put("/a/x", &random_bytes(14, 3 * 4096));
    b.put("/a/y", &random_bytes(15, 3 * 4096));
    let (bx, by) = (b.backing("/a/x"), b.backing("/a/y"));
    b.v.umount();
    patch(
        &bx,
        block_off(1),
        &slice(&by, block_off(1), BLOCK_CIPHER as usize),
    );
    b.v.mount();
    b.expect_detected("/a/x", "block 1 failed authentication");
    assert_eq!(
        read_file(&b.v.p("/a/y")).unwrap(),
        random_bytes(15, 3 * 4096)
    );
    b.check_rest_works();
}

#[test]
fn block_moved_to_another_index() {
    require_fuse!();
    let b = bench("blk-move");
    b.put("/a/x", &random_bytes(16, 3 * 4096));
    let bk = b.backing("/a/x");
    b.v.umount();
    patch(
        &bk,
        block_off(2),
        &slice(&bk, block_off(0), BLOCK_CIPHER as usize),
    );
    b.v.mount();
    b.expect_detected("/a/x", "block 2 failed authentication");
    b.check_rest_works();
}

#[test]
fn block_zeroed() {
    require_fuse!();
    let b = bench("blk-zero");
    b.put("/a/x", &random_bytes(17, 3 * 4096 + 10));
    let bk = b.backing("/a/x");
    b.v.umount();
    patch(&bk, block_off(1), &vec![0u8; BLOCK_CIPHER as usize]);
    b.v.mount();
    b.expect_detected("/a/x", "block 1 failed authentication");
    b.check_rest_works();
}

#[test]
fn junk_appended() {
    require_fuse!();
    let b = bench("blk-junk");
    fs::create_dir(b.v.p("j")).unwrap();
    // (plaintext length, junk length): partial and full last blocks;
    // 1..28 junk bytes make an impossible size, more make a bogus block.
    let cases: Vec<(usize, usize)> = [100usize, 8192]
        .iter()
        .flat_map(|&n| [1usize, 27, 28, 29, 100, 4124, 5000].map(|j| (n, j)))
        .collect();
    let mut victims = Vec::new();
    for (i, (n, _)) in cases.iter().enumerate() {
        let rel = format!("/j/f{i}");
        b.put(&rel, &random_bytes(100 + i as u64, *n));
        victims.push(rel);
    }
    let inos: Vec<u64> = victims.iter().map(|r| lstat(&b.v.p(r)).ino()).collect();
    b.v.umount();
    let map = inode_map(&b.v.cipher);
    for (i, (_, junk)) in cases.iter().enumerate() {
        let p = &map[&inos[i]];
        let end = fs::metadata(p).unwrap().len();
        patch(p, end, &random_bytes(200 + i as u64, *junk));
    }
    b.v.mount();
    let missed = read_all_expect_eio(&b, &victims, "");
    assert!(
        missed.is_empty(),
        "junk not detected:\n{}",
        missed.join("\n")
    );
    for rel in &victims {
        b.expect_log(rel, "");
        let l = &b.v.wait_log_lines(&["integrity error", &format!("{rel}:")])[0];
        assert!(
            l.contains("block") || l.contains("size"),
            "log line must name a block or the size: {l}"
        );
    }
    b.check_rest_works();
}
