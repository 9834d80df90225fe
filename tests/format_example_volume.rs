//! The frozen example volume tests/vectors/example-volume-v1: written once by the ignored
//! generator below, committed, and from then on only READ. Every future dekfs must unlock it
//! and read back exactly the plaintext tree listed in `expected()`. Must NOT be regenerated:
//! if reading fails, the code broke format v1.

use dekfs::crypto::names::{backing_name, long_name_hash};
use dekfs::crypto::{fill_random, DirKey, VolumeKeys};
use dekfs::format::{
    block_count, block_offset, plain_size, stored_block_len, DIR_META_NAME, HEADER_LEN,
    LONGNAME_PREFIX, LONGNAME_SUFFIX,
};
use dekfs::secret::{RecoveryKey, SecretBytes};
use dekfs::volume::{self, Credential, InitOptions, KdfParams};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const PASSPHRASE: &str = "dekfs example volume v1";
/// Printed by the generator when the volume was created; stored here on purpose (test volume).
const RECOVERY_KEY: &str =
    "65812c09-45c8101e-1323538b-726fbcd4-383b2573-d714975a-f9542a15-19ac7672";

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Node>),
}

fn long_name() -> Vec<u8> {
    vec![b'L'; 200]
}

fn big() -> Vec<u8> {
    (0..10_000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

fn expected() -> BTreeMap<Vec<u8>, Node> {
    let mut sub = BTreeMap::new();
    sub.insert(
        b"nested.txt".to_vec(),
        Node::File(b"nested file\n".to_vec()),
    );
    sub.insert(long_name(), Node::File(b"long name\n".to_vec()));
    let mut root = BTreeMap::new();
    root.insert(
        b"hello.txt".to_vec(),
        Node::File(b"Hello, dekfs!\n".to_vec()),
    );
    root.insert(b"empty".to_vec(), Node::File(Vec::new()));
    root.insert(b"big.bin".to_vec(), Node::File(big()));
    root.insert(b"link".to_vec(), Node::Symlink(b"hello.txt".to_vec()));
    root.insert(b"sub".to_vec(), Node::Dir(sub));
    root
}

fn volume_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/example-volume-v1")
}

// ---------------------------------------------------------------- reader

fn read_file(vk: &VolumeKeys, dir: &DirKey, path: &Path) -> Vec<u8> {
    let data = fs::read(path).unwrap();
    let size = plain_size(data.len() as u64).unwrap();
    if size == 0 {
        return Vec::new();
    }
    let fk = vk.open_file(dir, &data[..HEADER_LEN]).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..block_count(size) {
        let off = block_offset(i) as usize;
        let len = stored_block_len(size, i);
        let n = fk.open_block(i, &data[off..off + len], &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, size);
    out
}

fn read_tree(vk: &VolumeKeys, dir: &DirKey, path: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let backing = entry.file_name().into_string().unwrap();
        let encoded = if let Some(h) = backing.strip_prefix(LONGNAME_PREFIX) {
            if h.ends_with(LONGNAME_SUFFIX) {
                continue;
            }
            let enc = fs::read_to_string(path.join(format!("{backing}{LONGNAME_SUFFIX}"))).unwrap();
            assert_eq!(long_name_hash(&enc), h, "long-name hash");
            enc
        } else if backing.contains('.') {
            continue; // dekfs.dir, dekfs.conf
        } else {
            backing.clone()
        };
        let name = dir.decrypt_name(&encoded).unwrap();
        let p = entry.path();
        let meta = fs::symlink_metadata(&p).unwrap();
        let node = if meta.file_type().is_symlink() {
            let t = fs::read_link(&p).unwrap();
            Node::Symlink(
                dir.decrypt_symlink(t.as_os_str().as_encoded_bytes())
                    .unwrap(),
            )
        } else if meta.is_dir() {
            let sub = vk
                .open_dir(dir, &fs::read(p.join(DIR_META_NAME)).unwrap())
                .unwrap();
            Node::Dir(read_tree(vk, &sub, &p))
        } else {
            Node::File(read_file(vk, dir, &p))
        };
        assert!(out.insert(name, node).is_none());
    }
    out
}

fn read_volume(cred: &Credential) -> BTreeMap<Vec<u8>, Node> {
    let dir = volume_dir();
    let v = volume::unlock(&dir, cred).unwrap();
    let root = v
        .keys
        .open_root_dir(&fs::read(dir.join(DIR_META_NAME)).unwrap())
        .unwrap();
    read_tree(&v.keys, &root, &dir)
}

#[test]
fn frozen_example_volume_reads_with_passphrase() {
    let cred = Credential::Passphrase(SecretBytes::new(PASSPHRASE.as_bytes().to_vec()));
    assert_eq!(read_volume(&cred), expected());
}

#[test]
fn frozen_example_volume_reads_with_recovery_key() {
    let cred = Credential::RecoveryKey(RecoveryKey::parse(RECOVERY_KEY).unwrap());
    assert_eq!(read_volume(&cred), expected());
}

#[test]
fn frozen_example_volume_info_and_sizes() {
    let dir = volume_dir();
    let info = volume::read_info(&dir).unwrap();
    assert_eq!(info.format_version, 1);
    assert_eq!(info.keks.len(), 1);
    let kinds: Vec<&str> = info.protectors.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, ["passphrase", "recovery-key"]);
    assert!(matches!(
        volume::unlock(
            &dir,
            &Credential::Passphrase(SecretBytes::new(b"wrong".to_vec()))
        ),
        Err(volume::VolumeError::WrongKey)
    ));
}

// ---------------------------------------------------------------- generator (run once)

fn write_file(vk: &VolumeKeys, dir: &DirKey, path: &Path, data: &[u8]) {
    if data.is_empty() {
        fs::write(path, b"").unwrap();
        return;
    }
    let (fk, header) = vk.create_file(dir).unwrap();
    let mut out = header.to_vec();
    for (i, chunk) in data.chunks(4096).enumerate() {
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce).unwrap();
        let mut stored = vec![0u8; chunk.len() + 28];
        fk.seal_block(i as u64, &nonce, chunk, &mut stored);
        out.extend_from_slice(&stored);
    }
    fs::write(path, out).unwrap();
}

fn entry_path(dir: &DirKey, path: &Path, name: &[u8]) -> PathBuf {
    let enc = dir.encrypt_name(name).unwrap();
    let b = backing_name(&enc);
    if b != enc {
        fs::write(path.join(format!("{b}{LONGNAME_SUFFIX}")), &enc).unwrap();
    }
    path.join(b)
}

fn write_tree(vk: &VolumeKeys, dir: &DirKey, path: &Path, tree: &BTreeMap<Vec<u8>, Node>) {
    for (name, node) in tree {
        let p = entry_path(dir, path, name);
        match node {
            Node::File(data) => write_file(vk, dir, &p, data),
            Node::Symlink(t) => {
                std::os::unix::fs::symlink(dir.encrypt_symlink(t).unwrap(), &p).unwrap()
            }
            Node::Dir(children) => {
                fs::create_dir(&p).unwrap();
                let (sub, meta) = vk.create_dir(dir).unwrap();
                fs::write(p.join(DIR_META_NAME), meta).unwrap();
                write_tree(vk, &sub, &p, children);
            }
        }
    }
}

/// `DEKFS_WRITE_EXAMPLE_VOLUME=1 cargo test --test format_example_volume -- --ignored`
/// Only for creating the volume the first time; the committed copy is authoritative.
#[test]
#[ignore]
fn generate_example_volume() {
    if std::env::var("DEKFS_WRITE_EXAMPLE_VOLUME").as_deref() != Ok("1") {
        return;
    }
    let dir = volume_dir();
    let out = volume::init(
        &dir,
        InitOptions {
            passphrase: SecretBytes::new(PASSPHRASE.as_bytes().to_vec()),
            kdf: KdfParams {
                m_cost_kib: 8192,
                t_cost: 1,
                p_lanes: 1,
            },
            recovery_key: true,
        },
    )
    .unwrap();
    println!("RECOVERY_KEY = {}", out.recovery_key.unwrap().display());
    let cred = Credential::Passphrase(SecretBytes::new(PASSPHRASE.as_bytes().to_vec()));
    let v = volume::unlock(&dir, &cred).unwrap();
    let root = v
        .keys
        .open_root_dir(&fs::read(dir.join(DIR_META_NAME)).unwrap())
        .unwrap();
    write_tree(&v.keys, &root, &dir, &expected());
}
