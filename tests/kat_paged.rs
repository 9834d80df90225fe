//! Frozen vectors of the paged content layout (tests/vectors/dekfs-paged-v1.txt): a paged file
//! header and two pages built from the fixed inputs of dekfs-derivations-v1.txt must come out
//! byte for byte as frozen, and the frozen pages must open both with dekfs and with an
//! independent reading of docs/FORMAT.md ("Paged content") using the aes-gcm crate. Must NOT
//! regenerate or "fix" the vector file: a failure here is a format break.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use dekfs::crypto::VolumeKeys;
use dekfs::format::{frame_page, page_sealed, FileHeader, FEATURE_PAGED};
use dekfs::secret::Key32;
use std::collections::HashMap;

type Record = HashMap<String, String>;

fn load(name: &str) -> Record {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut rec = Record::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("key = value");
        assert!(rec.insert(k.trim().into(), v.trim().into()).is_none());
    }
    rec
}

fn hex(r: &Record, k: &str) -> Vec<u8> {
    hex::decode(r.get(k).unwrap_or_else(|| panic!("missing {k}"))).unwrap()
}

fn arr<const N: usize>(r: &Record, k: &str) -> [u8; N] {
    hex(r, k).try_into().unwrap()
}

fn key(r: &Record, k: &str) -> Key32 {
    Key32::from_array(&mut arr::<32>(r, k))
}

/// The v1 derivation inputs (shared with kat.rs), the frozen paged objects beside them.
fn inputs() -> Record {
    let mut r = Record::new();
    let v1 = std::fs::read_to_string(format!(
        "{}/tests/vectors/dekfs-derivations-v1.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for line in v1.lines().map(str::trim) {
        if let Some((k, v)) = line.split_once('=') {
            r.insert(k.trim().into(), v.trim().into());
        }
    }
    r
}

/// Page of block `index` holding `plain`, sealed with `nonce` by dekfs.
fn page(fk: &dekfs::crypto::FileKey, index: u64, nonce: &[u8; 12], plain: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    fk.seal_block(index, nonce, plain, &mut p[4..]);
    frame_page(&mut p, plain.len());
    p
}

fn build(r: &Record, p: &Record) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let vid: [u8; 16] = arr(r, "volume_id");
    let vk = VolumeKeys::from_parts(vid, vec![(1, key(r, "kek"))], 1).unwrap();
    let (root, _) = vk
        .create_root_dir_from_parts(key(r, "root_dir_key"), arr(r, "root_dir_id"))
        .unwrap();
    let (sub, _) = vk
        .create_dir_from_parts(&root, key(r, "sub_dir_key"), arr(r, "sub_dir_id"))
        .unwrap();
    let (fk, header) = vk
        .create_file_with(&sub, key(r, "dek"), arr(r, "file_id"), 1024, FEATURE_PAGED)
        .unwrap();
    let full = page(&fk, 0, &arr(p, "page0_nonce"), &hex(p, "page0_plain"));
    let last = page(&fk, 1, &arr(p, "page1_nonce"), &hex(p, "page1_plain"));
    (header.to_vec(), full, last)
}

#[test]
fn paged_objects_are_frozen() {
    let (r, p) = (inputs(), load("dekfs-paged-v1.txt"));
    let (header, full, last) = build(&r, &p);
    assert_eq!(header, hex(&p, "paged_file_header"), "paged header");
    assert_eq!(full, hex(&p, "page0"), "full page");
    assert_eq!(last, hex(&p, "page1"), "last page");
    assert!(FileHeader::parse(&header).unwrap().is_paged());
}

#[test]
fn frozen_pages_match_an_independent_reading_of_the_spec() {
    let (r, p) = (inputs(), load("dekfs-paged-v1.txt"));
    let (vid, file_id): ([u8; 16], [u8; 16]) = (arr(&r, "volume_id"), arr(&r, "file_id"));
    let header = hex(&p, "paged_file_header");
    assert_eq!(u32::from_le_bytes(header[8..12].try_into().unwrap()), 1);
    // ContentKey = HKDF-SHA256(DEK, salt = volume_id, "dekfs v1 content" ‖ file_id).
    let mut ck = [0u8; 32];
    let info = [&b"dekfs v1 content"[..], &file_id[..]].concat();
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&vid), &hex(&r, "dek"))
        .expand(&info, &mut ck)
        .unwrap();
    let gcm = aes_gcm::Aes256Gcm::new_from_slice(&ck).unwrap();
    for (index, name, plain) in [(0u64, "page0", "page0_plain"), (1, "page1", "page1_plain")] {
        let pg = hex(&p, name);
        assert_eq!(pg.len(), 4096);
        let n = u16::from_le_bytes([pg[0], pg[1]]) as usize;
        assert_eq!(&pg[2..4], &[0, 0]);
        assert!(pg[32 + n..].iter().all(|&b| b == 0), "zero padding");
        let aad = [&vid[..], &file_id[..], &index.to_le_bytes()].concat();
        let opened = gcm
            .decrypt(
                pg[4..16].into(),
                Payload {
                    msg: &pg[16..32 + n],
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(opened, hex(&p, plain));
        assert_eq!(page_sealed(&pg).unwrap().len(), n + 28);
    }
}

/// `DEKFS_PRINT_PAGED_VECTORS=1 cargo test --test kat_paged -- --ignored --nocapture` printed
/// the object lines of the vector file once; the committed file is authoritative.
#[test]
#[ignore]
fn print_paged_vectors() {
    if std::env::var("DEKFS_PRINT_PAGED_VECTORS").as_deref() != Ok("1") {
        return;
    }
    let mut p = Record::new();
    let plain0: Vec<u8> = (0..4064u32).map(|i| (i % 256) as u8).collect();
    p.insert("page0_nonce".into(), "e0e1e2e3e4e5e6e7e8e9eaeb".into());
    p.insert("page0_plain".into(), hex::encode(&plain0));
    p.insert("page1_nonce".into(), "f0f1f2f3f4f5f6f7f8f9fafb".into());
    p.insert("page1_plain".into(), hex::encode(b"tail!"));
    let (header, full, last) = build(&inputs(), &p);
    for k in ["page0_nonce", "page0_plain", "page1_nonce", "page1_plain"] {
        println!("{k} = {}", p[k]);
    }
    println!("paged_file_header = {}", hex::encode(header));
    println!("page0 = {}", hex::encode(full));
    println!("page1 = {}", hex::encode(last));
}
