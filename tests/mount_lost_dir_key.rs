//! A directory whose key file a power cut took (empty, or missing) while
//! entries were already durable in it (issue 17 item 3): it lists its
//! entries under recovery names, never their contents, and `rm -rf`
//! removes it through the mount, long-name entries and subdirectories
//! included, leaving nothing behind in the cipher directory.

mod common;

use common::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The one backing directory in the cipher root (the test makes one).
fn backing_dir(cipher: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().as_bytes().starts_with(b"dekfs."))
        .collect();
    assert_eq!(dirs.len(), 1, "one backing directory expected: {dirs:?}");
    dirs[0].clone()
}

fn lose_key_and_remove(how: &str, lose: impl Fn(&Path)) {
    let v = TestVolume::new(&format!("lostkey-{how}"));
    v.mount();
    let d = v.mnt.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("a"), b"first").unwrap();
    fs::write(d.join("x".repeat(200)), b"long name").unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("sub/inner"), b"below").unwrap();
    v.umount();
    let bd = backing_dir(&v.cipher);
    lose(&bd.join("dekfs.dir"));

    v.mount();
    let names: Vec<Vec<u8>> = fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{how}: a keyless directory must list: {e}"))
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(names.len(), 3, "{how}: three entries, as recovery names");
    assert!(
        names.iter().all(|n| n.starts_with(b".dekfs-unreadable-")),
        "{how}: only recovery names, never a guessed plaintext name"
    );
    for n in &names {
        let p = d.join(std::ffi::OsStr::from_bytes(n));
        if p.is_file() {
            assert!(fs::read(&p).is_err(), "{how}: contents must not read");
        }
    }
    let e = fs::read(d.join("a")).expect_err("plaintext names are gone");
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EIO),
        "{how}: a lost name is EIO, not ENOENT"
    );
    fs::remove_dir_all(&d).unwrap_or_else(|e| panic!("{how}: rm -rf of a keyless directory: {e}"));
    assert!(!d.exists(), "{how}: removed");
    // The volume goes on: the name can be used again.
    fs::create_dir(&d).unwrap();
    fs::write(d.join("a"), b"again").unwrap();
    assert_eq!(fs::read(d.join("a")).unwrap(), b"again");
    v.umount();
    let bd = backing_dir(&v.cipher);
    let left: Vec<_> = fs::read_dir(&bd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "{how}: only the new key file and entry: {left:?}"
    );
    v.assert_fsck_clean(how);
}

#[test]
fn a_directory_with_an_empty_key_file_can_be_removed() {
    require_fuse!();
    lose_key_and_remove("empty", |meta| {
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(meta)
            .unwrap();
    });
}

#[test]
fn a_directory_with_no_key_file_can_be_removed() {
    require_fuse!();
    lose_key_and_remove("missing", |meta| fs::remove_file(meta).unwrap());
}
