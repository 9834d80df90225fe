//! The frozen filesystem volume tests/fixtures/fs-volume-v1: written once
//! through a real dekfs mount (moves across directories, hard link, long
//! name, sparse and truncated files), committed, and from then on only read.
//! Every later dekfs must read back exactly `manifest.txt` from it, unlocked
//! by passphrase or by recovery key. Never regenerate it: a failure here
//! means format v1 broke.

use dekfs::fs::{CoreFs, Kind, ROOT_INO};
use dekfs::secret::{RecoveryKey, SecretBytes};
use dekfs::volume::{self, Credential};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fs-volume-v1");

/// Copies the fixture so that no test can ever modify the committed bytes.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir") {
        let e = e.expect("entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            copy_tree(&src, &dst);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).expect("readlink"), &dst)
                .expect("symlink");
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

fn walk(core: &CoreFs, ino: u64, prefix: &str, out: &mut Vec<String>) {
    let fh = core.opendir(ino).expect("opendir");
    let mut names: Vec<Vec<u8>> = core
        .readdir_entries(ino, fh, 0)
        .expect("entries")
        .entries
        .iter()
        .map(|e| e.plain.clone())
        .collect();
    core.releasedir(fh);
    names.sort();
    for n in names {
        let name = String::from_utf8(n.clone()).expect("utf8 name");
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let a = core.lookup(ino, &n).expect("lookup");
        match a.kind {
            Kind::Dir => {
                out.push(format!("dir\t{rel}\t-"));
                walk(core, a.ino, &rel, out);
            }
            Kind::Symlink => {
                let t = core.readlink(a.ino).expect("readlink");
                out.push(format!(
                    "symlink\t{rel}\t{}",
                    String::from_utf8(t).expect("utf8 target")
                ));
            }
            Kind::File => {
                let fh = core.open(a.ino, libc::O_RDONLY).expect("open");
                let mut data = Vec::new();
                loop {
                    let chunk = core.read(fh, data.len() as u64, 1 << 20).expect("read");
                    if chunk.is_empty() {
                        break;
                    }
                    data.extend_from_slice(&chunk);
                }
                core.release(fh);
                assert_eq!(a.size, data.len() as u64, "{rel}: stat size vs content");
                out.push(format!(
                    "file\t{rel}\t{}\t{}",
                    data.len(),
                    hex::encode(Sha256::digest(&data))
                ));
            }
            other => panic!("{rel}: unexpected kind {other:?}"),
        }
    }
}

fn read_volume(cred: Credential) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cipher: PathBuf = tmp.path().join("cipher");
    copy_tree(&Path::new(FIXTURE).join("cipher"), &cipher);
    let unlocked = volume::unlock(&cipher, &cred).expect("unlock frozen volume");
    let core = CoreFs::new(&cipher, unlocked.keys.clone(), true).expect("core");
    let mut out = Vec::new();
    walk(&core, ROOT_INO, "", &mut out);
    out
}

fn manifest() -> Vec<String> {
    std::fs::read_to_string(Path::new(FIXTURE).join("manifest.txt"))
        .expect("manifest")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn frozen_fs_volume_v1_reads_with_passphrase() {
    let pw = std::fs::read_to_string(Path::new(FIXTURE).join("passphrase")).expect("passphrase");
    let got = read_volume(Credential::Passphrase(SecretBytes::new(
        pw.trim_end().as_bytes().to_vec(),
    )));
    assert_eq!(got, manifest());
}

#[test]
fn frozen_fs_volume_v1_reads_with_recovery_key() {
    let rk =
        std::fs::read_to_string(Path::new(FIXTURE).join("recovery-key")).expect("recovery key");
    let got = read_volume(Credential::RecoveryKey(
        RecoveryKey::parse(rk.trim()).expect("parse"),
    ));
    assert_eq!(got, manifest());
}
