//! The online walk (fs/online.rs) over a live core without a mount: it sees
//! the whole tree, names damage by path, gives back every lookup it takes,
//! and reports nothing false while files are written, renamed and removed
//! under it.

use super::tests::{volume, ME};
use super::*;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU32};

fn put(core: &CoreFs, dir: u64, name: &[u8], data: &[u8]) {
    let (_, fh) = core
        .create(dir, name, 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, data).expect("write");
    core.release(fh);
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// The backing files under `dir`, largest first.
fn backing_files(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let e = e.expect("entry");
            let t = e.file_type().expect("type");
            let name = e.file_name();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() && !name.to_string_lossy().starts_with("dekfs.") {
                out.push((e.metadata().expect("meta").len(), e.path()));
            }
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    out
}

#[test]
fn live_check_sees_the_whole_tree_and_gives_back_its_lookups() {
    let (_d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("a").ino;
    let b = core.mkdir(a, b"b", 0o755, ME).expect("b").ino;
    put(&core, ROOT_INO, b"top", &pattern(1, 10_000));
    put(&core, a, b"mid", &pattern(2, 4096 * 3 + 5));
    put(&core, b, &[b'L'; 200], &pattern(3, 100));
    put(&core, b, b"empty", b"");
    core.symlink(a, b"ln", b"../top", ME).expect("symlink");
    // Forget everything the setup looked up, as the kernel would.
    for ino in [a, b] {
        core.forget(ino, 1);
    }
    let before = core.node_count();
    let r = core.check_live().expect("walk");
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!((r.dirs, r.files, r.symlinks), (3, 4, 1));
    // 3 + 4 + 1 blocks of content (the empty file has none)
    assert_eq!(r.blocks, 3 + 4 + 1);
    assert_eq!(core.node_count(), before, "every lookup given back");
}

#[test]
fn live_check_names_a_damaged_block_by_path() {
    let (d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("a").ino;
    put(&core, a, b"victim", &pattern(4, 50_000));
    put(&core, a, b"small", b"fine");
    let (_, path) = backing_files(d.path()).remove(0);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open backing");
    f.write_all_at(b"\xff\xff", 216 + 4124 * 2 + 100)
        .expect("flip");
    let r = core.check_live().expect("walk");
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].path, "/a/victim");
    assert!(
        r.problems[0].what.contains("block 2"),
        "{:?}",
        r.problems[0]
    );
}

/// Writers rewrite multi-block files, rename them across directories and
/// remove them while walks run: a walk must never take a write in flight
/// for damage, nor fail.
#[test]
fn live_check_reports_nothing_false_under_churn() {
    let (_d, core) = volume();
    let core = Arc::new(core);
    let x = core.mkdir(ROOT_INO, b"x", 0o755, ME).expect("x").ino;
    let y = core.mkdir(ROOT_INO, b"y", 0o755, ME).expect("y").ino;
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU32::new(0));
    let writer = {
        let (core, stop, rounds) = (core.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // A fresh name, then renamed over one of a few shared names
                // in the other directory (replacing what a walk may hold).
                let name = format!("new{round}").into_bytes();
                let target = format!("f{}", round % 7).into_bytes();
                let (from, to) = if round % 2 == 0 { (x, y) } else { (y, x) };
                let (_, fh) = core
                    .create(from, &name, 0o644, libc::O_RDWR, ME)
                    .expect("create");
                let ino = core.lookup(from, &name).expect("lookup").ino;
                core.forget(ino, 1);
                for pass in 0..4u8 {
                    let data = pattern(pass ^ round as u8, 4096 * 5 + 77);
                    core.write(fh, 0, &data).expect("write");
                    // A truncate into a block cuts, then rewrites the kept
                    // part of the last block: a moment an unheld reader
                    // would see as damage.
                    let set = SetAttr {
                        size: Some(4096 * 2 + 10 + u64::from(pass)),
                        fh: Some(fh),
                        ..Default::default()
                    };
                    core.setattr(ino, set).expect("truncate");
                }
                core.release(fh);
                core.rename(from, &name, to, &target, 0).expect("rename");
                if round % 3 == 0 {
                    core.unlink(to, &target).expect("unlink");
                }
                round += 1;
                rounds.store(round, Ordering::Relaxed);
            }
        })
    };
    // At least 50 walks, overlapping at least 300 rounds of the writer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut walks = 0;
    while walks < 50 || rounds.load(Ordering::Relaxed) < 300 {
        let r = core.check_live().expect("walk");
        assert!(r.is_clean(), "walk {walks}: {:?}", r.problems);
        walks += 1;
        assert!(std::time::Instant::now() < deadline, "writer too slow");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let r = core.check_live().expect("final walk");
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// Reads `name` in `dir` whole through `core`.
fn read_all(core: &CoreFs, dir: u64, name: &[u8]) -> Vec<u8> {
    let ino = core.lookup(dir, name).expect("lookup").ino;
    let fh = core.open(ino, libc::O_RDONLY).expect("open");
    let mut out = Vec::new();
    loop {
        let got = core.read(fh, out.len() as u64, 1 << 20).expect("read");
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    core.release(fh);
    out
}

#[test]
fn a_live_rekey_moves_open_files_which_keep_writing() {
    use crate::engine::rekey::{rewrap_live, verify_live, Rewritten};
    let (d, core) = volume();
    let sub = core.mkdir(ROOT_INO, b"sub", 0o755, ME).expect("mkdir");
    put(&core, sub.ino, b"closed", b"a closed file");
    let (_, fh) = core
        .create(sub.ino, b"open", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let first = pattern(1, 5000);
    core.write(fh, 0, &first).expect("write");
    let one = core.current_keys().expect("unlocked");
    let (two, v) = one.with_new_kek().expect("new KEK");
    assert_eq!(v, 2);
    let two = Arc::new(two);
    core.replace_keys(two.clone()).expect("swap");
    let cell = Rewritten::default();
    let source = core.rekey_source(cell.clone());
    let r = rewrap_live(source, d.path(), &two, 1, cell, &mut |_| {}).expect("rewrap");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.stats.rewrapped, 4, "root, sub and two headers");
    // The handle opened before keeps writing: past its nonce reservation
    // too, which rewrites the header's fixed part from the cached copy.
    let more = pattern(2, 6 << 20);
    core.write(fh, first.len() as u64, &more)
        .expect("write after");
    core.release(fh);
    let v = verify_live(core.live_source(), d.path(), &two, 1, &mut |_| {}).expect("verify");
    assert!(v.old_slots.is_empty(), "{:?}", v.old_slots);
    assert_eq!(core.stats().open_files, 0);
    drop(core);
    // KEK 2 alone opens everything: nothing needs KEK 1 any more.
    let only = Arc::new(two.without_kek(1).expect("drop KEK 1"));
    let core = CoreFs::new(d.path(), only, false).expect("core on KEK 2");
    let sub = core.lookup(ROOT_INO, b"sub").expect("sub").ino;
    assert_eq!(read_all(&core, sub, b"closed"), b"a closed file");
    let mut want = first;
    want.extend_from_slice(&more);
    assert!(
        read_all(&core, sub, b"open") == want,
        "the open file's bytes"
    );
}
