//! Lock, unlock and subtree revocation of the core without a mount.

use super::super::kcache::KernelCache;
use super::super::tests::{errno, volume, ME};
use super::*;
use crate::secret::Key32;
use std::sync::Mutex;

fn keys(kek: u8) -> Arc<VolumeKeys> {
    let k = Key32::from_array(&mut [kek; 32]);
    Arc::new(VolumeKeys::from_parts([7u8; 16], vec![(1, k)], 1).expect("keys"))
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl KernelCache for Recorder {
    fn inval_inode(&self, ino: u64, _off: i64, _len: i64) {
        lock(&self.0).push(format!("inode {ino}"));
    }
    fn inval_entry(&self, parent: u64, name: &[u8]) {
        let n = String::from_utf8_lossy(name);
        lock(&self.0).push(format!("entry {parent} {n}"));
    }
}

const REVOKED: Option<Errno> = Some(Errno::EKEYREVOKED);

#[test]
fn lock_refuses_everything_and_unlock_resumes_open_handles() {
    let (_d, core) = volume();
    let rec = Arc::new(Recorder::default());
    core.set_kernel_cache(rec.clone());
    let d = core.mkdir(ROOT_INO, b"d", 0o755, ME).expect("mkdir");
    let (f, fh) = core
        .create(d.ino, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"before the lock").expect("write");
    let before = core.stats();
    assert_eq!((before.cached_dir_keys, before.cached_file_keys), (2, 1));
    assert_eq!(before.bytes_written, 15);

    let out = core.lock_keys();
    assert_eq!((out.dir_keys, out.file_keys), (2, 1));
    let s = core.stats();
    assert!(s.locked && s.kek_version.is_none());
    assert_eq!(
        (s.cached_dir_keys, s.cached_file_keys, s.open_files),
        (0, 0, 1)
    );
    // Both passes reached the kernel: the names and every inode.
    let seen = lock(&rec.0).clone();
    for want in [
        "entry 1 d".to_string(),
        format!("entry {} f", d.ino),
        format!("inode {}", f.ino),
    ] {
        assert_eq!(
            seen.iter().filter(|s| **s == want).count(),
            2,
            "{want}: {seen:?}"
        );
    }

    assert_eq!(errno(core.read(fh, 0, 100)), REVOKED);
    assert_eq!(errno(core.write(fh, 0, b"x")), REVOKED);
    assert_eq!(errno(core.lookup(ROOT_INO, b"d")), REVOKED);
    assert_eq!(errno(core.getattr(f.ino)), REVOKED);
    assert_eq!(errno(core.opendir(ROOT_INO)), REVOKED);
    assert_eq!(errno(core.mkdir(ROOT_INO, b"e", 0o755, ME)), REVOKED);
    assert_eq!(errno(core.open(f.ino, libc::O_RDONLY)), REVOKED);
    assert_eq!(errno(core.getxattr(d.ino, b"user.x")), REVOKED);
    assert!(
        core.getattr(ROOT_INO).is_ok(),
        "the mountpoint itself answers"
    );

    assert_eq!(core.install_keys(keys(8)), Err(InstallError::WrongKey));
    assert!(core.is_locked());
    assert_eq!(errno(core.read(fh, 0, 100)), REVOKED);

    core.install_keys(keys(9)).expect("unlock");
    assert_eq!(core.install_keys(keys(9)), Err(InstallError::NotLocked));
    // The handle opened before the lock reads and writes again: its DEK
    // comes back from the header, its directory's key from the metadata.
    assert_eq!(core.read(fh, 0, 100).expect("read"), b"before the lock");
    core.write(fh, 15, b", after").expect("write after unlock");
    assert_eq!(
        core.read(fh, 0, 100).expect("read"),
        b"before the lock, after"
    );
    assert_eq!(core.lookup(ROOT_INO, b"d").expect("lookup").ino, d.ino);
    core.release(fh);
}

#[test]
fn empty_file_created_before_the_lock_gets_its_header_after_unlock() {
    let (_d, core) = volume();
    let (_, fh) = core
        .create(ROOT_INO, b"new", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.lock_keys();
    assert_eq!(errno(core.write(fh, 0, b"x")), REVOKED);
    // A locked, empty state must not read as an empty file.
    assert_eq!(errno(core.read(fh, 0, 10)), REVOKED);
    core.install_keys(keys(9)).expect("unlock");
    core.write(fh, 0, b"data").expect("write");
    assert_eq!(core.read(fh, 0, 10).expect("read"), b"data");
    core.release(fh);
}

#[test]
fn revoke_subtree_drops_only_that_subtree_and_keys_come_back() {
    let (_d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("mkdir a");
    let b = core.mkdir(a.ino, b"b", 0o755, ME).expect("mkdir b");
    let c = core.mkdir(ROOT_INO, b"c", 0o755, ME).expect("mkdir c");
    let (_, fh) = core
        .create(b.ino, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"deep").expect("write");
    let out = core.revoke_subtree(a.ino);
    assert_eq!((out.dir_keys, out.file_keys), (2, 1));
    assert!(!core.is_locked());
    let nodes = |ino| core.node(ino).expect("node");
    assert!(!nodes(a.ino).has_dir_key() && !nodes(b.ino).has_dir_key());
    assert!(nodes(c.ino).has_dir_key() && nodes(ROOT_INO).has_dir_key());
    // Derived again from the metadata, parents first.
    assert_eq!(core.read(fh, 0, 10).expect("read"), b"deep");
    assert!(nodes(a.ino).has_dir_key() && nodes(b.ino).has_dir_key());
    core.release(fh);
}

#[test]
fn a_write_racing_the_lock_is_whole_or_refused() {
    let (_d, core) = volume();
    let core = Arc::new(core);
    let (_, fh) = core
        .create(ROOT_INO, b"race", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let block = vec![0xa5u8; 256 * 1024];
    let writer = {
        let (core, block) = (core.clone(), block.clone());
        std::thread::spawn(move || {
            let mut done = 0u64;
            for i in 0..200u64 {
                match core.write(fh, i * block.len() as u64, &block) {
                    Ok(n) => {
                        assert_eq!(n as usize, block.len(), "short write");
                        done += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.errno(), Errno::EKEYREVOKED);
                        break;
                    }
                }
            }
            done
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    core.lock_keys();
    let done = writer.join().expect("writer");
    core.install_keys(keys(9)).expect("unlock");
    let len = core.getattr(core.lookup(ROOT_INO, b"race").expect("lookup").ino);
    assert_eq!(len.expect("attr").size, done * block.len() as u64);
    for i in 0..done {
        let got = core.read(fh, i * block.len() as u64, block.len() as u32);
        assert!(got.expect("read") == block, "write {i} torn");
    }
    core.release(fh);
}

/// KEK versions of the key slots of every file header in the cipher root.
fn header_versions(dir: &std::path::Path) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("list") {
        let p = e.expect("entry").path();
        let b = std::fs::read(&p).unwrap_or_default();
        if p.is_file() && b.len() >= crate::format::HEADER_LEN {
            if let Ok(h) = crate::format::FileHeader::parse(&b[..crate::format::HEADER_LEN]) {
                out.push(h.slots.iter().flatten().map(|s| s.kek_version).collect());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn replacing_live_keys_keys_new_files_to_the_new_kek() {
    let (d, core) = volume();
    let (_, fh) = core
        .create(ROOT_INO, b"old", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"v1").expect("write");
    assert_eq!(
        core.replace_keys(keys(8)).err(),
        Some(InstallError::WrongKey)
    );
    let (two, v) = keys(9).with_new_kek().expect("new KEK");
    assert_eq!(v, 2);
    let prev = core.replace_keys(Arc::new(two)).expect("replace");
    assert_eq!(prev.active_kek_version(), 1);
    assert_eq!(core.stats().kek_version, Some(2));
    // The open file keeps working on its KEK 1 header.
    core.write(fh, 2, b"+").expect("write after the swap");
    assert_eq!(core.read(fh, 0, 10).expect("read"), b"v1+");
    let (_, fh2) = core
        .create(ROOT_INO, b"new", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh2, 0, b"x").expect("write");
    assert_eq!(header_versions(d.path()), vec![vec![1], vec![2]]);
    core.release(fh);
    core.release(fh2);
    core.lock_keys();
    assert_eq!(core.replace_keys(keys(9)).err(), Some(InstallError::Locked));
}
