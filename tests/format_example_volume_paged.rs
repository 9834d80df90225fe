//! The frozen paged example volume tests/vectors/example-volume-paged-v1: made once by
//! scripts/make-example-volume-paged.sh through a real mount, committed, and from then on only
//! READ. Every future dekfs must unlock it and read back exactly the tree in `expected()`,
//! here with a reader of docs/FORMAT.md's "Paged content" written apart from src/fs. Must NOT be
//! regenerated: if reading fails, the code broke the paged layout.

use dekfs::crypto::names::long_name_hash;
use dekfs::crypto::{DirKey, VolumeKeys};
use dekfs::format::{FileHeader, DIR_META_NAME, HEADER_LEN, LONGNAME_PREFIX, LONGNAME_SUFFIX};
use dekfs::secret::{RecoveryKey, SecretBytes};
use dekfs::volume::{self, Credential};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const PASSPHRASE: &str = "dekfs example volume paged v1";
/// Printed by the script when the volume was made; stored here on purpose (test volume).
const RECOVERY_KEY: &str = include_str!("vectors/example-volume-paged-v1.recovery-key");

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Node>),
}

fn expected() -> BTreeMap<Vec<u8>, Node> {
    let mut sub = BTreeMap::new();
    sub.insert(
        b"nested.txt".to_vec(),
        Node::File(b"nested file\n".to_vec()),
    );
    sub.insert(vec![b'L'; 200], Node::File(b"long name\n".to_vec()));
    let mut root = BTreeMap::new();
    root.insert(
        b"hello.txt".to_vec(),
        Node::File(b"Hello, dekfs!\n".to_vec()),
    );
    root.insert(b"empty".to_vec(), Node::File(Vec::new()));
    let big = (0..10_000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect();
    root.insert(b"big.bin".to_vec(), Node::File(big));
    let page = (0..4064u32).map(|i| (i % 256) as u8).collect();
    root.insert(b"page.bin".to_vec(), Node::File(page));
    let log = b"record one\nrecord two\nrecord three\n".to_vec();
    root.insert(b"log.txt".to_vec(), Node::File(log));
    root.insert(b"link".to_vec(), Node::Symlink(b"hello.txt".to_vec()));
    root.insert(b"sub".to_vec(), Node::Dir(sub));
    root
}

fn volume_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/example-volume-paged-v1")
}

/// FORMAT.md "Paged content": header page, then one 4,096-byte page per block:
/// u16 length ‖ u16 0 ‖ nonce ‖ ciphertext ‖ tag ‖ zeros; the bytes past the last whole page
/// (the size tail, a hole) say how many bytes the last block holds, none meaning a full block.
fn read_file(vk: &VolumeKeys, dir: &DirKey, path: &Path) -> Vec<u8> {
    let data = fs::read(path).unwrap();
    if data.is_empty() {
        return Vec::new();
    }
    let whole = data.len() / 4096 * 4096;
    let tail = data.len() % 4096;
    assert!(
        data[whole..].iter().all(|&b| b == 0),
        "the size tail is a hole"
    );
    let h = FileHeader::parse(&data[..HEADER_LEN]).unwrap();
    assert_eq!(h.required_features, 1, "PAGED");
    assert!(data[HEADER_LEN..4096].iter().all(|&b| b == 0));
    let fk = vk.open_file(dir, &data[..HEADER_LEN]).unwrap();
    let mut out = Vec::new();
    let pages: Vec<&[u8]> = data[4096..whole].chunks(4096).collect();
    for (i, pg) in pages.iter().enumerate() {
        let n = u16::from_le_bytes([pg[0], pg[1]]) as usize;
        let want = if i + 1 < pages.len() || tail == 0 {
            4064
        } else {
            tail
        };
        assert_eq!(n, want, "page {i} holds what the size says");
        assert_eq!(&pg[2..4], &[0, 0]);
        assert!(pg[32 + n..].iter().all(|&b| b == 0));
        let mut buf = [0u8; 4096];
        let got = fk.open_block(i as u64, &pg[4..32 + n], &mut buf).unwrap();
        out.extend_from_slice(&buf[..got]);
    }
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
            continue;
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
    assert!(v.keys.paged_files(), "the config requires PAGED");
    let root = v
        .keys
        .open_root_dir(&fs::read(dir.join(DIR_META_NAME)).unwrap())
        .unwrap();
    read_tree(&v.keys, &root, &dir)
}

#[test]
fn frozen_paged_example_volume_reads_with_passphrase() {
    let cred = Credential::Passphrase(SecretBytes::new(PASSPHRASE.as_bytes().to_vec()));
    assert_eq!(read_volume(&cred), expected());
}

#[test]
fn frozen_paged_example_volume_reads_with_recovery_key() {
    let cred = Credential::RecoveryKey(RecoveryKey::parse(RECOVERY_KEY.trim()).unwrap());
    assert_eq!(read_volume(&cred), expected());
}

#[test]
fn frozen_paged_example_volume_config_and_sizes() {
    let dir = volume_dir();
    let conf = fs::read(dir.join("dekfs.conf")).unwrap();
    assert_eq!(
        u32::from_le_bytes(conf[12..16].try_into().unwrap()),
        1,
        "PAGED"
    );
    let mut sizes: Vec<u64> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .filter(|e| !e.file_name().to_string_lossy().contains('.'))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    sizes.sort();
    // empty; page.bin (one full page); hello.txt and log.txt (one page and a size tail of 14
    // and 35); big.bin (3 pages and 1,872).
    assert_eq!(sizes, [0, 8192, 8206, 8227, 18_256]);
}
