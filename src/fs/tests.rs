//! Core tests without a mount: the FS core driven directly, checked against
//! an in-memory model. They must not need root or /dev/fuse.

use super::*;
use crate::crypto::VolumeKeys;
use crate::secret::Key32;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(super) const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    umask: 0o022,
};

pub(super) fn test_keys() -> VolumeKeys {
    VolumeKeys::from_parts([7u8; 16], vec![(1, Key32::from_array(&mut [9u8; 32]))], 1)
        .expect("keys")
}

pub(super) fn volume() -> (tempfile::TempDir, CoreFs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = test_keys();
    let (_, meta) = keys.create_root_dir().expect("root");
    std::fs::write(dir.path().join(DIR_META_NAME), meta).expect("meta");
    let core = reopen(dir.path());
    (dir, core)
}

/// The same volume again, as a fresh daemon would see it.
pub(super) fn reopen(dir: &Path) -> CoreFs {
    CoreFs::new(dir, Arc::new(test_keys()), false).expect("core")
}

/// The errno a user would see (without reporting: tests assert causes).
pub(super) fn errno<T>(r: FsResult<T>) -> Option<Errno> {
    r.err().map(|e| e.errno())
}

fn backing_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(backing_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn random_io_matches_model() {
    let (_d, core) = volume();
    for seed in 0..4u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let name = format!("f{seed}");
        let (_, fh) = core
            .create(ROOT_INO, name.as_bytes(), 0o644, libc::O_RDWR, ME)
            .expect("create");
        let mut model: Vec<u8> = Vec::new();
        for _ in 0..400 {
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
                    let e = (off as usize + len as usize).min(model.len());
                    assert_eq!(got, model[s..e], "seed {seed} read {off}+{len}");
                }
                7 => {
                    let size = rng.gen_range(0..45_000u64);
                    let ino = core.lookup(ROOT_INO, name.as_bytes()).expect("lookup").ino;
                    let set = SetAttr {
                        size: Some(size),
                        fh: Some(fh),
                        ..Default::default()
                    };
                    assert_eq!(core.setattr(ino, set).expect("truncate").size, size);
                    model.resize(size as usize, 0);
                }
                _ => {
                    let a = core.lookup(ROOT_INO, name.as_bytes()).expect("lookup");
                    assert_eq!(a.size, model.len() as u64);
                }
            }
        }
        core.release(fh);
        let ino = core.lookup(ROOT_INO, name.as_bytes()).expect("lookup").ino;
        let fh = core.open(ino, libc::O_RDONLY).expect("reopen");
        assert_eq!(core.read(fh, 0, 1 << 20).expect("read all"), model);
        core.release(fh);
    }
}

#[test]
fn names_are_encrypted_and_listed() {
    let (d, core) = volume();
    let long = vec![b'x'; 255];
    for n in [b"hello.txt".as_slice(), &long] {
        let (_, fh) = core
            .create(ROOT_INO, n, 0o600, libc::O_RDWR, ME)
            .expect("create");
        core.write(fh, 0, b"secret-marker").expect("write");
        core.release(fh);
    }
    let dfh = core.opendir(ROOT_INO).expect("opendir");
    let mut names: Vec<Vec<u8>> = core
        .readdir_entries(ROOT_INO, dfh, 0)
        .expect("entries")
        .entries
        .iter()
        .map(|e| e.plain.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec![b"hello.txt".to_vec(), long.clone()]);
    for p in backing_files(d.path()) {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert!(!name.contains("hello"), "plaintext name on disk: {name}");
        let bytes = std::fs::read(&p).expect("read");
        assert!(
            !bytes.windows(13).any(|w| w == b"secret-marker"),
            "plaintext content in {name}"
        );
    }
}

#[test]
fn rename_across_directories_rewraps() {
    let (_d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("mkdir a").ino;
    let b = core.mkdir(ROOT_INO, b"b", 0o755, ME).expect("mkdir b").ino;
    let sub = core.mkdir(a, b"sub", 0o755, ME).expect("mkdir sub").ino;
    let (_, fh) = core
        .create(sub, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, &[42u8; 10_000]).expect("write");
    core.release(fh);
    let (_, fh) = core
        .create(a, b"g", 0o644, libc::O_RDWR, ME)
        .expect("create g");
    core.write(fh, 0, b"gee").expect("write g");
    core.release(fh);
    core.symlink(a, b"l", b"../target", ME).expect("symlink");
    core.rename(a, b"g", b, b"g2", 0).expect("move file");
    core.rename(ROOT_INO, b"a", b, b"a2", 0).expect("move dir");
    core.rename(b, b"g2", b, b"g3", 0).expect("rename in place");
    let a2 = core.lookup(b, b"a2").expect("a2").ino;
    core.rename(a2, b"l", b, b"l2", 0).expect("move symlink");
    let l2 = core.lookup(b, b"l2").expect("l2").ino;
    assert_eq!(core.readlink(l2).expect("readlink"), b"../target");
    let sub2 = core.lookup(a2, b"sub").expect("sub").ino;
    let f = core.lookup(sub2, b"f").expect("f").ino;
    let fh = core.open(f, libc::O_RDONLY).expect("open");
    assert_eq!(core.read(fh, 0, 20_000).expect("read"), vec![42u8; 10_000]);
    core.release(fh);
    let g = core.lookup(b, b"g3").expect("g3").ino;
    let fh = core.open(g, libc::O_RDONLY).expect("open g");
    assert_eq!(core.read(fh, 0, 100).expect("read g"), b"gee");
    core.release(fh);
    assert_eq!(errno(core.link(g, a2, b"cross")), Some(Errno::EXDEV));
    core.link(g, b, b"g4").expect("link in same dir");
    assert_eq!(errno(core.rmdir(b, b"a2")), Some(Errno::ENOTEMPTY));
}

#[test]
fn tampered_block_is_eio_and_others_still_read() {
    let (d, core) = volume();
    for n in [b"victim".as_slice(), b"bystander"] {
        let (_, fh) = core
            .create(ROOT_INO, n, 0o644, libc::O_RDWR, ME)
            .expect("create");
        core.write(fh, 0, &[1u8; 9000]).expect("write");
        core.release(fh);
    }
    let victim = core.lookup(ROOT_INO, b"victim").expect("lookup").ino;
    let path = backing_files(d.path())
        .into_iter()
        .find(|p| std::fs::metadata(p).map(|m| m.ino()).ok() == Some(victim))
        .expect("backing file");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[216 + 4124 + 100] ^= 0x10;
    std::fs::write(&path, &bytes).expect("tamper");
    let fh = core.open(victim, libc::O_RDONLY).expect("open");
    assert_eq!(
        core.read(fh, 0, 4096).expect("first block intact").len(),
        4096
    );
    match core.read(fh, 4096, 4096) {
        Err(CoreError::Damage(d)) => {
            assert_eq!((d.ino, d.path.as_str()), (victim, "/victim"));
            assert_eq!(d.what, "block 1 failed authentication");
        }
        r => panic!("expected a located damage, got {:?}", r.map(|v| v.len())),
    }
    core.release(fh);
    let other = core.lookup(ROOT_INO, b"bystander").expect("lookup").ino;
    let fh = core.open(other, libc::O_RDONLY).expect("open");
    assert_eq!(core.read(fh, 0, 9000).expect("read"), vec![1u8; 9000]);
    core.release(fh);
}

use std::os::unix::fs::MetadataExt;

/// Regression: readdir once reported rustix's enum discriminant as d_type,
/// so `rm -rf` unlinked directories as files and failed with EISDIR.
#[test]
fn readdir_reports_entry_kinds() {
    let (_d, core) = volume();
    core.mkdir(ROOT_INO, b"dir", 0o755, ME).expect("mkdir");
    let (_, fh) = core
        .create(ROOT_INO, b"file", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.release(fh);
    core.symlink(ROOT_INO, b"sym", b"file", ME)
        .expect("symlink");
    core.mknod(ROOT_INO, b"fifo", libc::S_IFIFO | 0o644, 0, ME)
        .expect("mkfifo");
    let dfh = core.opendir(ROOT_INO).expect("opendir");
    let mut got: Vec<(Vec<u8>, Kind)> = core
        .readdir_entries(ROOT_INO, dfh, 0)
        .expect("entries")
        .entries
        .iter()
        .map(|e| (e.plain.clone(), e.kind))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (b"dir".to_vec(), Kind::Dir),
            (b"fifo".to_vec(), Kind::Fifo),
            (b"file".to_vec(), Kind::File),
            (b"sym".to_vec(), Kind::Symlink),
        ]
    );
}

/// Regression: a crash that tears an extending write can leave a stub of
/// 1..=28 bytes after the last full block. The file must still open and its
/// intact blocks read; only the stub fails (EIO), and stat shows it.
#[test]
fn torn_stub_after_full_blocks_fails_only_itself() {
    let (d, core) = volume();
    let (_, fh) = core
        .create(ROOT_INO, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, &[3u8; 8192]).expect("write");
    core.release(fh);
    let ino = core.lookup(ROOT_INO, b"f").expect("lookup").ino;
    let path = backing_files(d.path())
        .into_iter()
        .find(|p| std::fs::metadata(p).map(|m| m.ino()).ok() == Some(ino))
        .expect("backing file");
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open backing");
    std::io::Write::write_all(&mut &f, &[0xAB; 20]).expect("append stub");
    drop(f);
    assert_eq!(core.getattr(ino).expect("stat").size, 8193);
    let fh = core
        .open(ino, libc::O_RDONLY)
        .expect("a torn stub must not make the file unopenable");
    assert_eq!(
        core.read(fh, 0, 8192).expect("intact blocks"),
        vec![3u8; 8192]
    );
    assert!(
        matches!(core.read(fh, 8192, 1), Err(CoreError::Damage(d)) if d.what == "block 2 failed authentication")
    );
    core.release(fh);
    // Truncating back to the intact blocks repairs the file.
    let set = SetAttr {
        size: Some(8192),
        ..Default::default()
    };
    assert_eq!(core.setattr(ino, set).expect("truncate").size, 8192);
}

#[test]
fn new_directory_keys_are_flushed_before_their_children() {
    let (_d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("mkdir a");
    let b = core.mkdir(a.ino, b"b", 0o755, ME).expect("mkdir b");
    let unsynced = |ino| {
        core.node(ino)
            .expect("node")
            .key_unsynced
            .load(std::sync::atomic::Ordering::Acquire)
    };
    assert!(unsynced(a.ino) && unsynced(b.ino), "mkdir must not flush");
    let (_, fh) = core
        .create(b.ino, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"data").expect("write");
    core.fsync(fh, true).expect("fsync");
    assert!(
        !unsynced(a.ino) && !unsynced(b.ino),
        "fsync flushes every key above"
    );
    core.release(fh);
    let c = core.mkdir(ROOT_INO, b"c", 0o755, ME).expect("mkdir c");
    core.fsyncdir(c.ino).expect("fsyncdir");
    assert!(!unsynced(c.ino));
    // A durable file moved into a new directory is rewrapped under its key:
    // that key must be durable first.
    let d = core.mkdir(ROOT_INO, b"d", 0o755, ME).expect("mkdir d");
    let (_, fh) = core
        .create(ROOT_INO, b"g", 0o644, libc::O_RDWR, ME)
        .expect("create g");
    core.release(fh);
    assert!(unsynced(d.ino));
    core.rename(ROOT_INO, b"g", d.ino, b"g", 0).expect("rename");
    assert!(
        !unsynced(d.ino),
        "a move into a new directory flushes its key"
    );
}

#[test]
fn empty_directory_with_cut_short_key_file_is_rekeyed() {
    let (d, core) = volume();
    core.mkdir(ROOT_INO, b"empty", 0o755, ME).expect("mkdir");
    core.mkdir(ROOT_INO, b"full", 0o755, ME).expect("mkdir");
    let full = core.lookup(ROOT_INO, b"full").expect("lookup");
    let (_, fh) = core
        .create(full.ino, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.release(fh);
    drop(core);
    // What a power cut before writeback can leave: key files of length 0.
    for e in std::fs::read_dir(d.path()).expect("readdir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            std::fs::write(p.join(DIR_META_NAME), b"").expect("truncate meta");
        }
    }
    let core = reopen(d.path());
    let e = core.lookup(ROOT_INO, b"empty").expect("lookup empty");
    core.create(e.ino, b"g", 0o644, libc::O_RDWR, ME)
        .expect("an empty directory is re-keyed and usable");
    let f = core.lookup(ROOT_INO, b"full").expect("lookup full");
    assert_eq!(
        errno(core.lookup(f.ino, b"f")),
        Some(Errno::EIO),
        "a non-empty directory without its key stays an integrity error"
    );
}

#[test]
fn full_disk_reclaims_removed_files_unless_open_or_linked() {
    let (_d, core) = volume();
    let mk = |name: &[u8]| {
        let (a, fh) = core
            .create(ROOT_INO, name, 0o644, libc::O_RDWR, ME)
            .expect("create");
        core.write(fh, 0, &[1u8; 9000]).expect("write");
        (a.ino, fh)
    };
    let (f, fh) = mk(b"f");
    core.release(fh);
    core.unlink(ROOT_INO, b"f").expect("unlink");
    // Until FORGET (or a full disk) the node serves an open that raced rm.
    assert_eq!(core.getattr(f).expect("not forgotten yet").nlink, 0);
    let (g, gfh) = mk(b"g");
    core.unlink(ROOT_INO, b"g").expect("unlink g");
    let (h, fh) = mk(b"h");
    core.release(fh);
    core.link(h, ROOT_INO, b"h2").expect("link");
    core.unlink(ROOT_INO, b"h").expect("unlink h");
    let (x, fh) = mk(b"x");
    core.release(fh);
    core.rename(ROOT_INO, b"h2", ROOT_INO, b"x", 0)
        .expect("rename over");

    assert_eq!(core.reclaim_unlinked(), 2, "f and the renamed-over x");
    for gone in [f, x] {
        assert_eq!(errno(core.getattr(gone)), Some(Errno::ESTALE));
    }
    assert_eq!(core.getattr(g).expect("open, unlinked").nlink, 0);
    assert_eq!(core.read(gfh, 0, 3).expect("read"), [1u8; 3]);
    assert_eq!(core.getattr(h).expect("linked as x").nlink, 1);
    assert_eq!(core.lookup(ROOT_INO, b"x").expect("x").ino, h);
    assert_eq!(core.reclaim_unlinked(), 0, "nothing changed since");
    core.release(gfh);
    assert_eq!(core.reclaim_unlinked(), 1, "g after its last close");
    assert_eq!(errno(core.getattr(g)), Some(Errno::ESTALE));
    for ino in [f, g, x] {
        core.forget(ino, 1);
    }
}

mod open;
mod paged;
mod renew;
mod size;
