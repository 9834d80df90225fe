//! Shared by the rekey tests: a populated volume (nested directories, a
//! long-name entry, an empty file, a symlink), plaintext hashes, and a raw
//! scan of the cipher tree for the KEK versions of every key slot. Must not
//! write to a cipher directory.

#![allow(dead_code)]

use crate::common::*;
use dekfs::format::{DirMeta, FileHeader, KeySlot};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const LONG: &str = "a-file-name-long-enough-to-need-the-long-form-entry-with-its-own-name-record-\
beside-it-because-its-encrypted-base64-encoding-runs-past-the-backing-limit-xxxxxxxxxxxxxxxxxxxxxxxxx";

/// Writes a tree of `n` files (plus the fixed odd ones) into the mounted
/// volume and returns every regular file's plaintext path and hash.
pub fn populate(v: &TestVolume, n: usize) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in ["a", "a/b", "a/b/c", "e"] {
        fs::create_dir(v.p(d)).unwrap();
    }
    fs::create_dir(v.p("empty-dir")).unwrap();
    for i in 0..n {
        let rel = match i % 4 {
            0 => format!("f{i}"),
            1 => format!("a/f{i}"),
            2 => format!("a/b/c/f{i}"),
            _ => format!("e/f{i}"),
        };
        let data = random_bytes(i as u64, (i * 997) % 20_000 + 1);
        fs::write(v.p(&rel), &data).unwrap();
        out.insert(rel, sha256(&data));
    }
    let long = format!("a/{LONG}");
    fs::write(v.p(&long), b"long name").unwrap();
    out.insert(long, sha256(b"long name"));
    fs::write(v.p("a/empty"), b"").unwrap();
    out.insert("a/empty".into(), sha256(b""));
    std::os::unix::fs::symlink("a/b", v.p("link")).unwrap();
    out
}

/// Hashes of the same files, read through the mount.
pub fn hashes(v: &TestVolume, want: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    want.keys()
        .map(|k| (k.clone(), sha256(&fs::read(v.p(k)).unwrap())))
        .collect()
}

/// KEK versions of every non-empty slot of every dekfs.dir and header under
/// `cipher` (the quarantine excepted), by backing path.
pub fn slot_versions(cipher: &Path) -> BTreeMap<PathBuf, Vec<u32>> {
    let mut out = BTreeMap::new();
    scan(cipher, cipher, &mut out);
    out
}

fn versions(slots: &[Option<KeySlot>; 2]) -> Vec<u32> {
    slots.iter().flatten().map(|s| s.kek_version).collect()
}

fn scan(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u32>>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            scan(root, &p, out);
        } else if name == "dekfs.dir" {
            let m = DirMeta::parse(&fs::read(&p).unwrap()).unwrap();
            out.insert(rel, versions(&m.slots));
        } else if ft.is_file() && (name.starts_with("dekfs.") && !name.starts_with("dekfs.ln."))
            || name.ends_with(".name")
        {
            // config, lock, long-name records: no key slots
        } else if ft.is_file() {
            let b = fs::read(&p).unwrap();
            if b.len() >= 216 {
                let h = FileHeader::parse(&b[..216]).unwrap();
                out.insert(rel, versions(&h.slots));
            }
        }
    }
}

/// Every file's hash under `cipher`, by path (to show nothing changed);
/// lock files are not volume contents.
pub fn raw_tree(cipher: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                go(root, &p, out);
            } else if !rel.to_string_lossy().ends_with(".lock") {
                out.insert(rel, sha256(&fs::read(&p).unwrap_or_default()));
            }
        }
    }
    go(cipher, cipher, &mut out);
    out
}

/// `dekfs rekey CIPHER --passfile ... extra`, with an optional failpoint.
pub fn rekey(v: &TestVolume, extra: &[&str], failpoint: Option<&str>) -> Out {
    let mut c = Command::new(DEKFS);
    c.arg("rekey")
        .arg(&v.cipher)
        .arg("--passfile")
        .arg(&v.passfile);
    c.args(extra);
    match failpoint {
        Some(f) => c.env("DEKFS_FAILPOINT", f),
        None => c.env_remove("DEKFS_FAILPOINT"),
    };
    let o = c.output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Mounts `v` with a recovery key file instead of the passphrase.
pub fn mount_recovery(v: &TestVolume, file: &Path) -> Out {
    dekfs([
        "mount",
        v.cipher.to_str().unwrap(),
        v.mnt.to_str().unwrap(),
        "--recovery-key-file",
        file.to_str().unwrap(),
        "--log-file",
        v.logfile.to_str().unwrap(),
    ])
}

/// The recovery key of `v` in a file of its own (for --also-recovery-key-file).
pub fn recovery_file(v: &TestVolume) -> PathBuf {
    let p = v.dir.path().join("recovery");
    fs::write(&p, v.recovery_key.as_ref().unwrap()).unwrap();
    p
}
