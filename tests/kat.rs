//! Known-answer tests: published vectors (RFC 3394, RFC 5869, RFC 9106, GCM spec) run through
//! dekfs's own helpers, and the frozen dekfs v1 vectors, which are also re-derived here with
//! independent crates (hkdf, hmac, aes-kw, aes-siv, aes-gcm) straight from docs/FORMAT.md.
//! Must NOT regenerate or "fix" vectors: a failure here is a format break.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use dekfs::crypto::{kdf, kw, BlockAead, FileKey, RingAead, VolumeKeys};
use dekfs::format::{DirMeta, FileHeader, DIR_META_LEN, HEADER_LEN};
use dekfs::secret::Key32;
use std::collections::HashMap;

type Record = HashMap<String, String>;

/// Parses the tests/vectors format described at the top of each vector file.
fn load(name: &str) -> Vec<(String, Record)> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out: Vec<(String, Record)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((sec.to_string(), HashMap::new()));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}:{}: expected key = value", n + 1));
        let rec = &mut out
            .last_mut()
            .unwrap_or_else(|| panic!("{name}:{}: field before any [record]", n + 1))
            .1;
        assert!(
            rec.insert(k.trim().to_string(), v.trim().to_string())
                .is_none(),
            "{name}:{}: duplicate field",
            n + 1
        );
    }
    assert!(!out.is_empty(), "{name}: no records");
    out
}

fn hex(r: &Record, k: &str) -> Vec<u8> {
    hex::decode(r.get(k).unwrap_or_else(|| panic!("missing field {k}")))
        .unwrap_or_else(|e| panic!("field {k}: {e}"))
}

fn arr<const N: usize>(r: &Record, k: &str) -> [u8; N] {
    hex(r, k)
        .try_into()
        .unwrap_or_else(|_| panic!("field {k}: wrong length"))
}

fn text<'a>(r: &'a Record, k: &str) -> &'a str {
    r.get(k).unwrap_or_else(|| panic!("missing field {k}"))
}

fn num(r: &Record, k: &str) -> u64 {
    text(r, k)
        .parse()
        .unwrap_or_else(|e| panic!("field {k}: {e}"))
}

fn key(r: &Record, k: &str) -> Key32 {
    Key32::from_array(&mut arr::<32>(r, k))
}

#[test]
fn rfc3394_key_wrap() {
    for (name, r) in load("rfc3394-aes-kw.txt") {
        let kek = key(&r, "kek");
        let wrapped = kw::wrap(&kek, &hex(&r, "plain")).unwrap();
        assert_eq!(wrapped, hex(&r, "wrapped"), "{name}");
        let back = kw::unwrap(&kek, &hex(&r, "wrapped")).unwrap();
        assert_eq!(back.expose(), &hex(&r, "plain")[..], "{name}");
        let mut bad = hex(&r, "wrapped");
        bad[0] ^= 1;
        assert!(kw::unwrap(&kek, &bad).is_err(), "{name}");
    }
}

#[test]
fn rfc5869_hkdf_sha256() {
    let cases = load("rfc5869-hkdf-sha256.txt");
    assert_eq!(cases.len(), 3);
    for (name, r) in cases {
        let salt = hex(&r, "salt");
        let mut okm = vec![0u8; num(&r, "len") as usize];
        kdf::hkdf_sha256(&hex(&r, "ikm"), Some(&salt), &hex(&r, "info"), &mut okm).unwrap();
        assert_eq!(okm, hex(&r, "okm"), "{name}");
        if salt.is_empty() {
            // RFC 5869: "not provided" salt equals HashLen zero bytes.
            let mut okm2 = vec![0u8; okm.len()];
            kdf::hkdf_sha256(&hex(&r, "ikm"), None, &hex(&r, "info"), &mut okm2).unwrap();
            assert_eq!(okm2, okm, "{name} (salt = None)");
        }
    }
}

#[test]
fn rfc9106_argon2id() {
    for (name, r) in load("rfc9106-argon2id.txt") {
        let mut tag = vec![0u8; hex(&r, "tag").len()];
        let (password, salt) = (hex(&r, "password"), hex(&r, "salt"));
        let (secret, ad) = (hex(&r, "secret"), hex(&r, "ad"));
        let input = kdf::Argon2Input {
            password: &password,
            salt: &salt,
            secret: &secret,
            associated_data: &ad,
        };
        let cost = kdf::Argon2Cost::new(
            num(&r, "m_cost_kib") as u32,
            num(&r, "t_cost") as u32,
            num(&r, "p_lanes") as u32,
        );
        kdf::argon2id_raw(&input, cost, &mut tag).unwrap();
        assert_eq!(tag, hex(&r, "tag"), "{name}");
    }
}

#[test]
fn gcm_aes256_ring_and_rustcrypto_agree_with_spec() {
    let cases = load("gcm-aes256.txt");
    assert_eq!(cases.len(), 4);
    for (name, r) in cases {
        let iv: [u8; 12] = arr(&r, "iv");
        let (plain, aad, cipher) = (hex(&r, "plain"), hex(&r, "aad"), hex(&r, "cipher"));
        let tag: [u8; 16] = arr(&r, "tag");

        let ring = RingAead::new(&key(&r, "key")).unwrap();
        let mut buf = plain.clone();
        assert_eq!(
            ring.seal_in_place(&iv, &aad, &mut buf),
            tag,
            "{name} ring tag"
        );
        assert_eq!(buf, cipher, "{name} ring ciphertext");
        ring.open_in_place(&iv, &aad, &mut buf, &tag).unwrap();
        assert_eq!(buf, plain, "{name} ring open");

        let rc = aes_gcm::Aes256Gcm::new_from_slice(&hex(&r, "key")).unwrap();
        let sealed = rc
            .encrypt(
                (&iv).into(),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(
            sealed,
            [cipher.clone(), tag.to_vec()].concat(),
            "{name} aes-gcm"
        );
    }
}

fn frozen() -> Record {
    let mut v = load("dekfs-derivations-v1.txt");
    assert_eq!(v.len(), 1);
    v.remove(0).1
}

#[test]
fn dekfs_v1_key_derivations_are_frozen() {
    let r = frozen();
    let vid: [u8; 16] = arr(&r, "volume_id");
    let (root_id, sub_id, file_id) = (
        arr::<16>(&r, "root_dir_id"),
        arr::<16>(&r, "sub_dir_id"),
        arr::<16>(&r, "file_id"),
    );
    let kek = key(&r, "kek");
    let (root_k, sub_k, dek) = (
        key(&r, "root_dir_key"),
        key(&r, "sub_dir_key"),
        key(&r, "dek"),
    );
    let salt: [u8; 32] = arr(&r, "recovery_salt");
    let checks: Vec<(&str, Key32)> = vec![
        (
            "recovery_protector_key",
            kdf::recovery_protector_key(&key(&r, "recovery_key"), &salt).unwrap(),
        ),
        ("config_mac_key", kdf::config_mac_key(&kek, &vid).unwrap()),
        (
            "root_wrap_key",
            kdf::root_wrap_key(&kek, &vid, &root_id).unwrap(),
        ),
        (
            "sub_dir_wrap_key",
            kdf::dir_wrap_key(&kek, &root_k, &vid, &sub_id).unwrap(),
        ),
        (
            "sub_dir_mac_key",
            kdf::dir_mac_key(&sub_k, &vid, &sub_id).unwrap(),
        ),
        ("sub_xattr_key", kdf::dir_xattr_key(&sub_k, &vid).unwrap()),
        (
            "file_wrap_key",
            kdf::file_wrap_key(&kek, &sub_k, &vid, &sub_id, &file_id).unwrap(),
        ),
        (
            "header_mac_key",
            kdf::header_mac_key(&dek, &vid, &file_id).unwrap(),
        ),
        (
            "content_key",
            kdf::content_key(&dek, &vid, &file_id).unwrap(),
        ),
        (
            "file_xattr_key",
            kdf::file_xattr_key(&dek, &vid, &file_id).unwrap(),
        ),
    ];
    for (name, k) in &checks {
        assert!(k.ct_eq(&arr(&r, name)), "{name} changed: format v1 break");
    }
    let name_key = kdf::name_key(&sub_k, &vid).unwrap();
    assert!(name_key.ct_eq(&hex(&r, "sub_name_key")), "sub_name_key");
    let sxk = kdf::dir_xattr_key(&sub_k, &vid).unwrap();
    assert!(kdf::xattr_name_key(&sxk)
        .unwrap()
        .ct_eq(&hex(&r, "sub_xattr_name_key")));
    let fxk = kdf::file_xattr_key(&dek, &vid, &file_id).unwrap();
    assert!(kdf::xattr_name_key(&fxk)
        .unwrap()
        .ct_eq(&hex(&r, "file_xattr_name_key")));
}

#[test]
fn dekfs_v1_objects_are_frozen_and_readable() {
    let r = frozen();
    let vid: [u8; 16] = arr(&r, "volume_id");
    let vk = VolumeKeys::from_parts(
        vid,
        vec![(num(&r, "kek_version") as u32, key(&r, "kek"))],
        1,
    )
    .unwrap();
    let (root, root_meta) = vk
        .create_root_dir_from_parts(key(&r, "root_dir_key"), arr(&r, "root_dir_id"))
        .unwrap();
    assert_eq!(
        root_meta.to_vec(),
        hex(&r, "root_dir_meta"),
        "root dekfs.dir"
    );
    let (sub, sub_meta) = vk
        .create_dir_from_parts(&root, key(&r, "sub_dir_key"), arr(&r, "sub_dir_id"))
        .unwrap();
    assert_eq!(sub_meta.to_vec(), hex(&r, "sub_dir_meta"), "sub dekfs.dir");
    let (fk, header) = vk
        .create_file_from_parts(&sub, key(&r, "dek"), arr(&r, "file_id"), 1024)
        .unwrap();
    assert_eq!(header.to_vec(), hex(&r, "file_header"), "file header");

    assert_eq!(
        sub.encrypt_name(&hex(&r, "name_plain")).unwrap(),
        text(&r, "name_encrypted")
    );
    assert_eq!(
        sub.encrypt_symlink(&hex(&r, "symlink_plain")).unwrap(),
        text(&r, "symlink_encrypted")
    );
    assert_eq!(
        sub.xattr()
            .encrypt_name(&hex(&r, "xattr_name_plain"))
            .unwrap(),
        text(&r, "dir_xattr_name_encrypted")
    );
    assert_eq!(
        fk.xattr()
            .encrypt_name(&hex(&r, "xattr_name_plain"))
            .unwrap(),
        text(&r, "file_xattr_name_encrypted")
    );
    let nonce: [u8; 12] = arr(&r, "block_nonce");
    let plain = hex(&r, "block_plain");
    let mut stored = vec![0u8; plain.len() + 28];
    fk.seal_block(num(&r, "block_index"), &nonce, &plain, &mut stored);
    assert_eq!(stored, hex(&r, "block_stored"), "sealed block");

    // Reading direction: the frozen bytes open with today's code.
    let root2 = vk.open_root_dir(&hex(&r, "root_dir_meta")).unwrap();
    let sub2 = vk.open_dir(&root2, &hex(&r, "sub_dir_meta")).unwrap();
    assert_eq!(
        sub2.decrypt_name(text(&r, "name_encrypted")).unwrap(),
        hex(&r, "name_plain")
    );
    assert_eq!(
        sub2.decrypt_symlink(text(&r, "symlink_encrypted").as_bytes())
            .unwrap(),
        hex(&r, "symlink_plain")
    );
    let fk2: FileKey = vk.open_file(&sub2, &hex(&r, "file_header")).unwrap();
    assert_eq!(fk2.nonce_reserved(), 1024);
    let mut out = [0u8; 4096];
    let n = fk2
        .open_block(num(&r, "block_index"), &hex(&r, "block_stored"), &mut out)
        .unwrap();
    assert_eq!(&out[..n], &plain[..]);
}

// ---- Independent re-implementation of the v1 spec (docs/FORMAT.md), no dekfs crypto code ----

fn ind_hkdf(ikm: &[&[u8]], salt: Option<&[u8]>, info: &[&[u8]], len: usize) -> Vec<u8> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(salt, &ikm.concat());
    let mut okm = vec![0u8; len];
    hk.expand(&info.concat(), &mut okm).unwrap();
    okm
}

fn ind_hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn ind_unwrap(kek: &[u8], wrapped: &[u8]) -> Vec<u8> {
    let kw = aes_kw::KekAes256::try_from(kek).unwrap();
    kw.unwrap_vec(wrapped).unwrap()
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap())
}

#[test]
fn frozen_objects_match_an_independent_reading_of_the_spec() {
    let r = frozen();
    let vid = hex(&r, "volume_id");
    let kek = hex(&r, "kek");

    // Root dekfs.dir: magic, version, length, features, dir_id, reserved, MAC, slots.
    let m = hex(&r, "root_dir_meta");
    assert_eq!(m.len(), DIR_META_LEN);
    assert_eq!(&m[0..4], b"DKFD");
    assert_eq!(&m[4..8], &[1, 0, 224, 0]);
    let root_id = &m[16..32];
    assert_eq!(root_id, &hex(&r, "root_dir_id")[..]);
    assert!(m[32..48].iter().all(|&b| b == 0));
    assert_eq!(le32(&m[80..84]), 1);
    assert!(m[152..224].iter().all(|&b| b == 0), "slot 1 empty");
    let dwk = ind_hkdf(&[&kek], Some(&vid), &[b"dekfs v1 root-wrap", root_id], 32);
    let inner = ind_unwrap(&dwk, &m[88..152]);
    let root_key = &inner[..32];
    assert_eq!(root_key, &hex(&r, "root_dir_key")[..]);
    assert_eq!(&inner[32..48], root_id);
    assert_eq!(&inner[48..56], &1u64.to_le_bytes());
    let mac_key = ind_hkdf(&[root_key], Some(&vid), &[b"dekfs v1 dir-mac", root_id], 32);
    assert_eq!(ind_hmac(&mac_key, &m[..48]), &m[48..80]);

    // Sub dekfs.dir, wrapped under KEK || parent DirKey.
    let s = hex(&r, "sub_dir_meta");
    let sub_id = &s[16..32];
    let dwk = ind_hkdf(
        &[&kek, root_key],
        Some(&vid),
        &[b"dekfs v1 dir-wrap", sub_id],
        32,
    );
    let inner = ind_unwrap(&dwk, &s[88..152]);
    let sub_key = inner[..32].to_vec();
    assert_eq!(sub_key, hex(&r, "sub_dir_key"));
    let mac_key = ind_hkdf(&[&sub_key], Some(&vid), &[b"dekfs v1 dir-mac", sub_id], 32);
    assert_eq!(ind_hmac(&mac_key, &s[..48]), &s[48..80]);

    // Names: AES-SIV(NameKey) without AD, base64url without padding.
    use aes_siv::aead::KeyInit as _;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let name_key = ind_hkdf(&[&sub_key], Some(&vid), &[b"dekfs v1 names"], 64);
    let mut siv = aes_siv::siv::Aes256Siv::new_from_slice(&name_key).unwrap();
    let enc = siv
        .encrypt::<[&[u8]; 0], &[u8]>([], &hex(&r, "name_plain"))
        .unwrap();
    assert_eq!(b64.encode(enc), text(&r, "name_encrypted"));
    let enc = siv
        .encrypt([b"symlink".as_slice()], &hex(&r, "symlink_plain"))
        .unwrap();
    assert_eq!(b64.encode(enc), text(&r, "symlink_encrypted"));
    let dir_xk = ind_hkdf(&[&sub_key], Some(&vid), &[b"dekfs v1 xattr"], 32);
    let xnk = ind_hkdf(&[&dir_xk], None, &[b"dekfs v1 xattr-name"], 64);
    let enc = aes_siv::siv::Aes256Siv::new_from_slice(&xnk)
        .unwrap()
        .encrypt::<[&[u8]; 0], &[u8]>([], &hex(&r, "xattr_name_plain"))
        .unwrap();
    assert_eq!(
        format!("user.{}", b64.encode(enc)),
        text(&r, "dir_xattr_name_encrypted")
    );

    // File header.
    let h = hex(&r, "file_header");
    assert_eq!(h.len(), HEADER_LEN);
    assert_eq!(&h[0..8], &[b'D', b'K', b'F', b'H', 1, 0, 216, 0]);
    let file_id = &h[16..32];
    assert_eq!(u64::from_le_bytes(h[32..40].try_into().unwrap()), 1024);
    assert_eq!(le32(&h[72..76]), 1);
    let fwk = ind_hkdf(
        &[&kek, &sub_key],
        Some(&vid),
        &[b"dekfs v1 file-wrap", sub_id, file_id],
        32,
    );
    let inner = ind_unwrap(&fwk, &h[80..144]);
    let dek = &inner[..32];
    assert_eq!(dek, &hex(&r, "dek")[..]);
    assert_eq!(&inner[32..48], file_id);
    let hmk = ind_hkdf(&[dek], Some(&vid), &[b"dekfs v1 header-mac", file_id], 32);
    assert_eq!(ind_hmac(&hmk, &h[..40]), &h[40..72]);

    // Content block: AES-256-GCM(ContentKey), AAD = volume_id || file_id || u64 index.
    let ck = ind_hkdf(&[dek], Some(&vid), &[b"dekfs v1 content", file_id], 32);
    let stored = hex(&r, "block_stored");
    let idx = num(&r, "block_index");
    let aad = [&vid[..], file_id, &idx.to_le_bytes()].concat();
    let gcm = aes_gcm::Aes256Gcm::new_from_slice(&ck).unwrap();
    let plain = gcm
        .decrypt(
            stored[..12].into(),
            Payload {
                msg: &stored[12..],
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(plain, hex(&r, "block_plain"));

    // The dekfs parsers agree with the offsets used above.
    let parsed = FileHeader::parse(&h).unwrap();
    assert_eq!(&parsed.file_id[..], file_id);
    assert_eq!(&DirMeta::parse(&s).unwrap().dir_id[..], sub_id);
}

#[test]
fn blocks_sealed_by_dekfs_open_with_rustcrypto_aes_gcm() {
    // A fresh random volume: proves seal_block writes exactly nonce || ct || tag under the
    // spec's ContentKey and AAD, for every block size class.
    let r = frozen();
    let vid: [u8; 16] = arr(&r, "volume_id");
    let vk = VolumeKeys::from_parts(vid, vec![(1, key(&r, "kek"))], 1).unwrap();
    let (root, _) = vk
        .create_root_dir_from_parts(key(&r, "root_dir_key"), arr(&r, "root_dir_id"))
        .unwrap();
    let dek_bytes: [u8; 32] = rand::random();
    let file_id: [u8; 16] = rand::random();
    let (fk, _) = vk
        .create_file_from_parts(
            &root,
            Key32::from_array(&mut dek_bytes.clone()),
            file_id,
            1024,
        )
        .unwrap();
    let ck = ind_hkdf(
        &[&dek_bytes],
        Some(&vid),
        &[b"dekfs v1 content", &file_id],
        32,
    );
    let gcm = aes_gcm::Aes256Gcm::new_from_slice(&ck).unwrap();
    for (index, len) in [(0u64, 1usize), (1, 4096), (u64::MAX, 1808)] {
        let plain: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        let nonce: [u8; 12] = rand::random();
        let mut stored = vec![0u8; len + 28];
        fk.seal_block(index, &nonce, &plain, &mut stored);
        let aad = [&vid[..], &file_id[..], &index.to_le_bytes()].concat();
        let opened = gcm
            .decrypt(
                stored[..12].into(),
                Payload {
                    msg: &stored[12..],
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(opened, plain);
        assert_eq!(&stored[..12], &nonce);
    }
}

/// RFC 5649 through the aes-kw crate dekfs wraps with (the RFC's KEK is 192-bit, dekfs's
/// helpers are AES-256 only), then dekfs's own padded helpers against the same crate at 256.
#[test]
fn rfc5649_key_wrap_with_padding() {
    for (name, r) in load("rfc5649-aes-kwp.txt") {
        let kek = aes_kw::KekAes192::from(arr::<24>(&r, "kek"));
        let wrapped = kek.wrap_with_padding_vec(&hex(&r, "plain")).unwrap();
        assert_eq!(wrapped, hex(&r, "wrapped"), "{name}");
        let back = kek.unwrap_with_padding_vec(&wrapped).unwrap();
        assert_eq!(back, hex(&r, "plain"), "{name}");
        let mut bad = wrapped.clone();
        bad[3] ^= 1;
        assert!(kek.unwrap_with_padding_vec(&bad).is_err(), "{name}");

        let k256 = [0x5au8; 32];
        let ours =
            kw::wrap_padded(&Key32::from_array(&mut k256.clone()), &hex(&r, "plain")).unwrap();
        let theirs = aes_kw::KekAes256::from(k256)
            .wrap_with_padding_vec(&hex(&r, "plain"))
            .unwrap();
        assert_eq!(ours, theirs, "{name} (AES-256)");
        let back = kw::unwrap_padded(&Key32::from_array(&mut k256.clone()), &ours).unwrap();
        assert_eq!(back.expose(), &hex(&r, "plain")[..], "{name} (AES-256)");
    }
}

/// The frozen KEK export (made by an independent implementation from FORMAT.md): dekfs must
/// produce it byte for byte, and parse and check it.
#[test]
fn frozen_kek_export_v1() {
    for (name, r) in load("dekfs-kek-export-v1.txt") {
        let blob = dekfs::volume::export_blob(
            &key(&r, "transport_key"),
            &key(&r, "kek"),
            &arr::<16>(&r, "volume_id"),
            num(&r, "kek_version") as u32,
            num(&r, "created"),
        )
        .unwrap();
        assert_eq!(blob, hex(&r, "blob"), "{name}");
        let e = dekfs::format::KekExport::parse(&blob).unwrap();
        assert_eq!(e.kek_version as u64, num(&r, "kek_version"), "{name}");
        assert_eq!(e.created, num(&r, "created"), "{name}");
        let plain = kw::unwrap(&key(&r, "transport_key"), &e.wrapped).unwrap();
        assert_eq!(&plain.expose()[..32], &hex(&r, "kek")[..], "{name}");
    }
}
