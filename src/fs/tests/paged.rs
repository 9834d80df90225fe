//! Core tests of the paged layout: it behaves like a file (random I/O against a model, sizes
//! after reopen), and the states a power cut can leave in the backing file (each page old, new
//! or never written, at any page-multiple size between the old and the new one) never lose a
//! byte that was durable before the write and never serve a byte that was not written. The v1
//! layout is shown losing in the same situation. No root, no mount.

use super::*;
use crate::format::{FEATURE_PAGED, PAGE};
use std::os::unix::fs::MetadataExt;

fn paged_keys() -> VolumeKeys {
    let mut k = test_keys();
    k.set_paged_files(true);
    k
}

fn paged_volume() -> (tempfile::TempDir, CoreFs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = paged_keys();
    let (_, meta) = keys.create_root_dir().expect("root");
    std::fs::write(dir.path().join(DIR_META_NAME), meta).expect("meta");
    let core = CoreFs::new(dir.path(), Arc::new(paged_keys()), false).expect("core");
    (dir, core)
}

fn reopen_paged(dir: &Path) -> CoreFs {
    CoreFs::new(dir, Arc::new(paged_keys()), false).expect("core")
}

fn backing_of(dir: &Path, ino: u64) -> std::path::PathBuf {
    backing_files(dir)
        .into_iter()
        .find(|p| std::fs::metadata(p).expect("stat").ino() == ino)
        .expect("backing file")
}

#[test]
fn paged_random_io_matches_model() {
    let (d, core) = paged_volume();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (a, fh) = core
        .create(ROOT_INO, b"m", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let mut model: Vec<u8> = Vec::new();
    for step in 0..500 {
        match rng.gen_range(0..10) {
            0..=4 => {
                let off = rng.gen_range(0..40_000u64);
                let len = rng.gen_range(1..9000usize);
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                assert_eq!(core.write(fh, off, &data).expect("write") as usize, len);
                let end = off as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            5 | 6 => {
                let off = rng.gen_range(0..45_000u64);
                let len = rng.gen_range(0..10_000u32);
                let got = core.read(fh, off, len).expect("read");
                let s = (off as usize).min(model.len());
                let e = (s + len as usize).min(model.len());
                assert_eq!(got, &model[s..e], "step {step}");
            }
            7 => {
                let size = rng.gen_range(0..30_000u64);
                let set = SetAttr {
                    size: Some(size),
                    fh: Some(fh),
                    ..SetAttr::default()
                };
                core.setattr(a.ino, set).expect("truncate");
                model.resize(size as usize, 0);
            }
            _ => {
                assert_eq!(core.getattr(a.ino).expect("stat").size, model.len() as u64);
            }
        }
    }
    core.release(fh);
    let csize = std::fs::metadata(backing_of(d.path(), a.ino))
        .expect("stat")
        .len();
    let want = crate::format::paged_cipher_size(model.len() as u64);
    assert!(
        csize == want || (model.is_empty() && csize <= PAGE),
        "{csize} for {}",
        model.len()
    );
    drop(core);
    let core = reopen_paged(d.path());
    let ino = core.lookup(ROOT_INO, b"m").expect("lookup").ino;
    assert_eq!(core.getattr(ino).expect("stat").size, model.len() as u64);
    let fh = core.open(ino, libc::O_RDONLY).expect("open");
    assert_eq!(core.read(fh, 0, 100_000).expect("read"), model);
    core.release(fh);
}

#[test]
fn new_files_carry_the_paged_bit_and_v1_volumes_stay_v1() {
    for paged in [true, false] {
        let (d, core) = if paged { paged_volume() } else { volume() };
        let (a, fh) = core
            .create(ROOT_INO, b"f", 0o644, libc::O_RDWR, ME)
            .expect("create");
        core.write(fh, 0, b"hello").expect("write");
        core.release(fh);
        let b = std::fs::read(backing_of(d.path(), a.ino)).expect("read");
        let bits = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        assert_eq!(bits & FEATURE_PAGED != 0, paged);
        assert_eq!(b.len(), if paged { 8192 + 5 } else { 216 + 5 + 28 });
    }
}

/// What one read through a fresh daemon gives: the size and, for every byte, its value or
/// None where the read failed.
fn read_state(dir: &Path, name: &[u8]) -> (u64, Vec<Option<u8>>) {
    let core = reopen_paged(dir);
    let ino = core.lookup(ROOT_INO, name).expect("lookup").ino;
    let size = core.getattr(ino).expect("stat").size;
    let fh = core.open(ino, libc::O_RDONLY).expect("open");
    let mut out = vec![None; size as usize];
    // Byte-range reads of 100 bytes: finer than any block, so every readable byte is found.
    for off in (0..size).step_by(100) {
        if let Ok(got) = core.read(fh, off, 100) {
            for (i, b) in got.iter().enumerate() {
                out[off as usize + i] = Some(*b);
            }
        }
    }
    core.release(fh);
    (size, out)
}

/// Every backing state a power cut can leave after `new` was written over `old`: any
/// page-multiple size from the old to the new one, each page below it old, new, or (past the
/// old end) never written.
fn torn_states(old: &[u8], new: &[u8]) -> Vec<Vec<u8>> {
    let pages = |v: &[u8]| v.len().div_ceil(PAGE as usize);
    let (po, pn) = (pages(old), pages(new));
    let page = |v: &[u8], i: usize| -> Vec<u8> {
        let s = i * PAGE as usize;
        if s >= v.len() {
            return vec![0u8; PAGE as usize];
        }
        let mut p = v[s..(s + PAGE as usize).min(v.len())].to_vec();
        p.resize(PAGE as usize, 0);
        p
    };
    let differing: Vec<usize> = (0..pn.max(po))
        .filter(|&i| page(old, i) != page(new, i))
        .collect();
    assert!(differing.len() <= 10, "test writes must stay small");
    let mut sizes: Vec<usize> = (po.min(pn)..=po.max(pn))
        .map(|p| p * PAGE as usize)
        .chain([old.len(), new.len()])
        .collect();
    sizes.sort();
    sizes.dedup();
    let mut out = Vec::new();
    for size in sizes {
        let size_pages = size.div_ceil(PAGE as usize);
        for mask in 0..(3u32.pow(differing.len() as u32)) {
            let mut img = Vec::new();
            let mut m = mask;
            for i in 0..size_pages {
                let choice = if differing.contains(&i) {
                    let c = m % 3;
                    m /= 3;
                    c
                } else {
                    0
                };
                // A page the old file had is old or new, never zeros.
                let choice = if choice == 2 && i < po { 0 } else { choice };
                img.extend(match choice {
                    0 => page(old, i),
                    1 => page(new, i),
                    _ => vec![0u8; PAGE as usize],
                });
            }
            img.truncate(size);
            if !out.contains(&img) {
                out.push(img);
            }
        }
    }
    out
}

/// Writes `durable` (fsynced), then `then` at `off`, and checks every torn state: the durable
/// bytes all read back, and no byte reads as anything but its old or its new value.
fn check_torn(durable: &[u8], off: u64, then: &[u8]) -> usize {
    let (d, core) = paged_volume();
    let (a, fh) = core
        .create(ROOT_INO, b"log", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, durable).expect("write");
    core.fsync(fh, false).expect("fsync");
    let path = backing_of(d.path(), a.ino);
    let old = std::fs::read(&path).expect("old bytes");
    core.write(fh, off, then).expect("second write");
    let new = std::fs::read(&path).expect("new bytes");
    core.release(fh);
    drop(core);
    let mut new_plain = durable.to_vec();
    let end = off as usize + then.len();
    if new_plain.len() < end {
        new_plain.resize(end, 0);
    }
    new_plain[off as usize..end].copy_from_slice(then);
    let states = torn_states(&old, &new);
    for (k, img) in states.iter().enumerate() {
        std::fs::write(&path, img).expect("torn state");
        let (size, got) = read_state(d.path(), b"log");
        for (i, b) in got.iter().enumerate() {
            if let Some(b) = b {
                let ok = durable.get(i) == Some(b) || new_plain.get(i) == Some(b);
                assert!(ok, "state {k}: byte {i} is neither old nor new");
            }
        }
        let kept = durable.len().min(off as usize);
        assert!(
            size as usize >= kept,
            "state {k}: size {size} lost durable bytes"
        );
        for i in 0..kept {
            assert_eq!(got[i], Some(durable[i]), "state {k}: durable byte {i} lost");
        }
    }
    states.len()
}

#[test]
fn torn_append_into_a_partial_last_block_keeps_fsynced_bytes() {
    // The reported case: records appended to a log, fsync between them.
    let rec: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let n = check_torn(&rec, 3000, &[0xA5; 100]);
    assert!(n >= 2);
    // An append that fills the partial block and spills into new pages.
    let n = check_torn(&rec, 3000, &[0x5A; 9000]);
    assert!(n >= 9, "{n} states");
}

#[test]
fn torn_rewrite_of_fsynced_blocks_keeps_old_or_new() {
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 239) as u8).collect();
    // Across a block boundary in the middle of the file.
    check_torn(&data, 4000, &[0x11; 200]);
    // A truncate-free shrink is not a write; an extension with a gap is.
    check_torn(&data[..5000], 9000, &[0x22; 10]);
}

#[test]
fn v1_layout_loses_the_fsynced_tail_in_the_same_cut() {
    // The state ext4 leaves most often: the new size, the old bytes of the rewritten block.
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"log", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, &[1u8; 3000]).expect("write");
    core.fsync(fh, false).expect("fsync");
    let path = backing_of(d.path(), a.ino);
    let old = std::fs::read(&path).expect("old");
    core.write(fh, 3000, &[2u8; 100]).expect("append");
    let new = std::fs::read(&path).expect("new");
    core.release(fh);
    drop(core);
    let mut torn = old.clone();
    torn.resize(new.len(), 0);
    torn[old.len()..].copy_from_slice(&new[old.len()..]);
    std::fs::write(&path, &torn).expect("torn");
    let core = reopen(d.path());
    let ino = core.lookup(ROOT_INO, b"log").expect("lookup").ino;
    let fh = core.open(ino, libc::O_RDONLY).expect("open");
    assert_eq!(
        errno(core.read(fh, 0, 100)),
        Some(Errno::EIO),
        "v1 loses the block"
    );
    core.release(fh);
}

#[test]
fn paged_file_keeps_its_layout_across_a_move_and_an_xattr_on_an_empty_file() {
    let (_d, core) = paged_volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("mkdir a").ino;
    let b = core.mkdir(ROOT_INO, b"b", 0o755, ME).expect("mkdir b").ino;
    let (_, fh) = core
        .create(a, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    core.write(fh, 0, &data).expect("write");
    core.release(fh);
    core.rename(a, b"f", b, b"g", 0).expect("move");
    let (e, fh) = core
        .create(b, b"x", 0o644, libc::O_RDWR, ME)
        .expect("create x");
    core.setxattr(e.ino, b"user.k", b"v", 0)
        .expect("xattr on an empty file");
    core.write(fh, 0, b"after the header").expect("write x");
    core.release(fh);
    drop(core);
    let core = reopen_paged(_d.path());
    let b = core.lookup(ROOT_INO, b"b").expect("b").ino;
    let g = core.lookup(b, b"g").expect("g");
    assert_eq!(g.size, 10_000);
    let fh = core.open(g.ino, libc::O_RDONLY).expect("open");
    assert_eq!(core.read(fh, 0, 20_000).expect("read"), data);
    core.release(fh);
    let x = core.lookup(b, b"x").expect("x");
    assert_eq!(x.size, 16);
    let fh = core.open(x.ino, libc::O_RDONLY).expect("open x");
    assert_eq!(core.read(fh, 0, 100).expect("read x"), b"after the header");
    core.release(fh);
}

#[test]
fn reseal_paged_migrates_a_v1_file() {
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"old", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let data: Vec<u8> = (0..9_999u32).map(|i| (i % 241) as u8).collect();
    core.write(fh, 0, &data).expect("write");
    core.release(fh);
    drop(core);
    let keys = test_keys();
    let root = keys
        .open_root_dir(&std::fs::read(d.path().join(DIR_META_NAME)).expect("meta"))
        .expect("root");
    let src_path = backing_of(d.path(), a.ino);
    let src = std::fs::File::open(&src_path).expect("src");
    let tmp = d.path().join("migrated.tmp");
    let dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .expect("dst");
    let n = crate::fs::file_io::reseal_paged(&keys, &root, &src, &dst, Requester::NONE)
        .expect("reseal");
    assert_eq!(n, 9_999);
    drop((src, dst));
    std::fs::rename(&tmp, &src_path).expect("rename over");
    let bytes = std::fs::read(&src_path).expect("read");
    assert_eq!(
        bytes.len(),
        4096 * 4 + 9_999 % 4064,
        "header page, 3 pages, size tail"
    );
    assert_eq!(
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        FEATURE_PAGED
    );
    // The migration flips the volume to paged once every file is converted.
    let core = reopen_paged(d.path());
    let e = core.lookup(ROOT_INO, b"old").expect("lookup");
    assert_eq!(e.size, 9_999);
    let fh = core.open(e.ino, libc::O_RDONLY).expect("open");
    assert_eq!(core.read(fh, 0, 20_000).expect("read"), data);
    core.release(fh);
}

#[test]
fn a_paged_file_is_renewed_in_its_own_layout_under_an_open_handle() {
    let (d, core) = paged_volume();
    let (a, fh) = core
        .create(ROOT_INO, b"p", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let mut model: Vec<u8> = (0..3 * 4064 + 100).map(|i| (i % 253) as u8).collect();
    core.write(fh, 0, &model).expect("write");
    let header = |core_dir: &Path| {
        let b = std::fs::read(backing_of(core_dir, a.ino)).expect("read");
        crate::format::FileHeader::parse(&b[..crate::format::HEADER_LEN]).expect("header")
    };
    let before = header(d.path());
    core.renew_live("/", &mut |_| {}).expect("renew");
    let after = header(d.path());
    assert_ne!(
        after.file_id, before.file_id,
        "a new DEK came with a new id"
    );
    assert_ne!(
        after.required_features & FEATURE_PAGED,
        0,
        "the renewed header keeps the paged layout"
    );
    core.write(fh, model.len() as u64, b"tail")
        .expect("the open handle keeps writing");
    model.extend_from_slice(b"tail");
    core.release(fh);
    let core = reopen_paged(d.path());
    core.lookup(ROOT_INO, b"p").expect("lookup");
    let fh = core.open(a.ino, libc::O_RDONLY).expect("open");
    assert_eq!(core.read(fh, 0, 1 << 20).expect("read"), model);
    core.release(fh);
}
