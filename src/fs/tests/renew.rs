//! Core tests of the nonce reservation's cost and of DEK renewal: small
//! write sessions use what they write, a nearly used-up DEK is replaced
//! without the file noticing, and an interrupted renewal is undone on load.
//! They must not need root.

use super::*;
use crate::crypto::{DirKey, FileKey, BLOCK_SIZE};
use crate::format::{FileHeader, HEADER_LEN};
use crate::fs::file_io::NONCE_LIMIT;
use crate::fs::renew::{journal_name, JOURNAL_DIR};
use std::os::unix::fs::{FileExt, MetadataExt};

fn backing_of(dir: &Path, ino: u64) -> std::path::PathBuf {
    backing_files(dir)
        .into_iter()
        .find(|p| std::fs::metadata(p).expect("stat").ino() == ino)
        .expect("backing file")
}

fn header_of(dir: &Path, ino: u64) -> FileHeader {
    let b = std::fs::read(backing_of(dir, ino)).expect("read");
    FileHeader::parse(&b[..HEADER_LEN]).expect("header")
}

fn root_dir_key(dir: &Path) -> DirKey {
    let meta = std::fs::read(dir.join(DIR_META_NAME)).expect("meta");
    test_keys().open_root_dir(&meta).expect("root key")
}

fn read_all(core: &CoreFs, ino: u64) -> Vec<u8> {
    let fh = core.open(ino, libc::O_RDONLY).expect("open");
    let data = core.read(fh, 0, 1 << 20).expect("read");
    core.release(fh);
    data
}

#[test]
fn append_sessions_cost_what_they_use() {
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"log", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"start\n").expect("write");
    core.release(fh);
    let created = header_of(d.path(), a.ino).nonce_reserved;
    let mut model = b"start\n".to_vec();
    const SESSIONS: u64 = 10_000;
    for i in 0..SESSIONS {
        let fh = core.open(a.ino, libc::O_WRONLY).expect("open");
        let line = format!("line {i}\n");
        core.write(fh, model.len() as u64, line.as_bytes())
            .expect("append");
        model.extend_from_slice(line.as_bytes());
        core.release(fh);
    }
    let after = header_of(d.path(), a.ino).nonce_reserved;
    // One re-sealed block per session (two where a line crosses a block
    // boundary); before, each session reserved 1,024.
    let crossings = model.len() as u64 / BLOCK_SIZE as u64 + 1;
    let grew = after - created;
    assert!(
        (SESSIONS..=SESSIONS + crossings).contains(&grew),
        "reservation grew by {grew}"
    );
    // A session of many writes gives back what it reserved and did not use.
    let fh = core.open(a.ino, libc::O_WRONLY).expect("open");
    let base = model.len().next_multiple_of(BLOCK_SIZE);
    for i in 0..100 {
        let off = (base + i * BLOCK_SIZE) as u64;
        core.write(fh, off, &[b'x'; BLOCK_SIZE]).expect("write");
    }
    core.release(fh);
    let end = header_of(d.path(), a.ino).nonce_reserved;
    // 100 whole blocks and the old partial last block, padded with zeros.
    assert_eq!(end - after, 101, "a 100-block session kept more reserved");
    model.resize(base, 0);
    model.resize(base + 100 * BLOCK_SIZE, b'x');
    assert_eq!(read_all(&core, a.ino), model);
}

/// Writes a header for `ino` whose counter says `used` encryptions were done.
fn forge_counter(dir: &Path, ino: u64, used: u64) -> FileKey {
    let p = backing_of(dir, ino);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    let mut h = [0u8; HEADER_LEN];
    f.read_exact_at(&mut h, 0).expect("read");
    let key = test_keys().open_file(&root_dir_key(dir), &h).expect("key");
    let nh = key.header_with_reservation(&h, used).expect("forge");
    f.write_all_at(&nh, 0).expect("write");
    key
}

#[test]
fn a_nearly_used_dek_is_renewed_and_the_file_keeps_working() {
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"busy", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let mut model: Vec<u8> = (0..5 * BLOCK_SIZE + 77).map(|i| (i % 251) as u8).collect();
    core.write(fh, 0, &model).expect("write");
    core.release(fh);
    let has_xattr = core.setxattr(a.ino, b"user.note", b"kept", 0).is_ok();
    let before = header_of(d.path(), a.ino);
    let old_key = forge_counter(d.path(), a.ino, NONCE_LIMIT - 3);
    let core = reopen(d.path());
    core.lookup(ROOT_INO, b"busy").expect("lookup");
    let fh = core.open(a.ino, libc::O_RDWR).expect("open");
    let more = vec![0xA5u8; 3 * BLOCK_SIZE];
    core.write(fh, model.len() as u64, &more)
        .expect("write past the old budget");
    model.extend_from_slice(&more);
    // And it keeps going well past what the old DEK had left.
    for _ in 0..4 {
        core.write(fh, 0, &model[..2 * BLOCK_SIZE])
            .expect("overwrite");
    }
    core.release(fh);
    assert_eq!(read_all(&core, a.ino), model);
    if has_xattr {
        assert_eq!(core.getxattr(a.ino, b"user.note").expect("xattr"), b"kept");
        assert_eq!(core.listxattr(a.ino).expect("list"), b"user.note\0");
    }
    let after = header_of(d.path(), a.ino);
    assert_ne!(
        after.file_id, before.file_id,
        "a new file_id comes with the new DEK"
    );
    assert!(
        after.nonce_reserved < 64,
        "new DEK counts from the re-sealed blocks"
    );
    assert_eq!(after.optional_features, 0);
    let jdir = d.path().join(JOURNAL_DIR);
    assert_eq!(std::fs::read_dir(&jdir).expect("journal dir").count(), 0);
    // The old DEK (with its header) opens no block of the renewed file.
    let b = std::fs::read(backing_of(d.path(), a.ino)).expect("read");
    let block0 = &b[HEADER_LEN..HEADER_LEN + crate::crypto::CIPHER_BLOCK_SIZE];
    let mut out = vec![0u8; BLOCK_SIZE];
    assert!(old_key.open_block(0, block0, &mut out).is_err());
    // A fresh daemon opens it as well.
    let core = reopen(d.path());
    core.lookup(ROOT_INO, b"busy").expect("lookup");
    assert_eq!(read_all(&core, a.ino), model);
}

#[test]
fn an_interrupted_renewal_is_undone_when_the_file_is_loaded() {
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"torn", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let model: Vec<u8> = (0..3 * BLOCK_SIZE + 5).map(|i| (i % 13) as u8).collect();
    core.write(fh, 0, &model).expect("write");
    core.release(fh);
    drop(core);
    // The state a crash leaves after the journal and the flag, with one
    // block already re-sealed (here: overwritten by junk).
    let p = backing_of(d.path(), a.ino);
    let orig = std::fs::read(&p).expect("read");
    let key = test_keys()
        .open_file(&root_dir_key(d.path()), &orig[..HEADER_LEN])
        .expect("key");
    let jdir = d.path().join(JOURNAL_DIR);
    std::fs::create_dir(&jdir).expect("mkdir");
    std::fs::write(jdir.join(journal_name(key.file_id())), &orig).expect("journal");
    let flagged = key
        .header_with_features(&orig[..HEADER_LEN], crate::crypto::FEATURE_RENEWING)
        .expect("flag");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    f.write_all_at(&flagged, 0).expect("flag");
    f.write_all_at(&[0x5A; 100], HEADER_LEN as u64 + 10)
        .expect("junk");
    drop(f);
    let core = reopen(d.path());
    core.lookup(ROOT_INO, b"torn").expect("lookup");
    assert_eq!(read_all(&core, a.ino), model);
    assert_eq!(header_of(d.path(), a.ino).optional_features, 0);
    assert_eq!(std::fs::read_dir(&jdir).expect("journal dir").count(), 0);
    // Without its journal a flagged file is reported, not read as garbage.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    f.write_all_at(&flagged, 0).expect("flag");
    drop(f);
    let core = reopen(d.path());
    core.lookup(ROOT_INO, b"torn").expect("lookup");
    assert!(core.open(a.ino, libc::O_RDONLY).is_err());
}

#[test]
fn live_renewal_renews_a_subtree_under_open_handles() {
    let (d, core) = volume();
    let sub = core.mkdir(ROOT_INO, b"sub", 0o755, ME).expect("mkdir");
    let mut files = Vec::new();
    for (parent, name, len) in [
        (ROOT_INO, &b"top"[..], 5000usize),
        (sub.ino, b"a", 3 * BLOCK_SIZE + 1),
        (sub.ino, b"b", 10),
        (sub.ino, b"empty", 0),
    ] {
        let (a, fh) = core
            .create(parent, name, 0o644, libc::O_RDWR, ME)
            .expect("create");
        let data: Vec<u8> = (0..len).map(|i| (i % 199) as u8).collect();
        if !data.is_empty() {
            core.write(fh, 0, &data).expect("write");
        }
        files.push((a.ino, fh, data));
    }
    // "sub/a" stays open across the renewal; the others are closed.
    for (_, fh, _) in files.iter().filter(|f| f.0 != files[1].0) {
        core.release(*fh);
    }
    let ids = |ino| header_of(d.path(), ino).file_id;
    let before: Vec<_> = files
        .iter()
        .filter(|f| !f.2.is_empty())
        .map(|f| ids(f.0))
        .collect();
    let mut steps = 0;
    let r = core.renew_live("/sub", &mut |_| steps += 1).expect("renew");
    assert_eq!((r.files, r.renewed, r.empty), (3, 2, 1), "{r:?}");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(steps, 3);
    assert_eq!(ids(files[0].0), before[0], "outside the scope: untouched");
    assert_ne!(ids(files[1].0), before[1]);
    assert_ne!(ids(files[2].0), before[2]);
    // The open handle reads and writes on under the new key.
    let (ino, fh, mut data) = files[1].clone();
    assert!(core.read(fh, 0, 1 << 20).expect("read") == data);
    core.write(fh, 7, b"after").expect("write after");
    data[7..12].copy_from_slice(b"after");
    core.release(fh);
    assert!(read_all(&core, ino) == data, "content after the renewal");
    files[1].2 = data;
    let r = core.renew_live("/", &mut |_| {}).expect("renew all");
    assert_eq!(r.renewed, 3, "{r:?}");
    assert_ne!(ids(files[0].0), before[0]);
    for (ino, _, data) in &files {
        assert!(&read_all(&core, *ino) == data, "content of {ino}");
    }
}
