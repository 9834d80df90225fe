//! Fuzz target bodies for every parser of on-disk bytes, shared by the
//! libFuzzer binaries (`fuzz_targets/*.rs`, `cargo fuzz run NAME`) and the
//! stable-toolchain harness (`tests/stable_harness.rs`). Each body must
//! only call dekfs and assert totality (no panic, bounded allocation); it
//! must not do anything a parser does not do (no network, no writes
//! outside its own temp dir).

use dekfs::crypto::{DirKey, VolumeKeys};
use dekfs::format::{self, DirMeta, FileHeader, VolumeConfig};
use dekfs::layout;
use dekfs::secret::{Key32, RecoveryKey};
use std::sync::OnceLock;

/// One fuzz target body.
pub type Target = fn(&[u8]);

/// Every target by name, for the harness and for `cargo fuzz list` parity.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("protector", protector),
    ("dirmeta", dirmeta),
    ("header", header),
    ("names", names),
    ("geometry", geometry),
    ("unlock", unlock),
    ("ttlv", ttlv),
];

struct Fixture {
    keys: VolumeKeys,
    root: DirKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = VolumeKeys::from_parts([7; 16], vec![(1, Key32::from_array(&mut [1; 32]))], 1)
            .expect("keys");
        let (root, _) = keys
            .create_root_dir_from_parts(Key32::from_array(&mut [2; 32]), [3; 16])
            .expect("root");
        Fixture { keys, root }
    })
}

/// Volume config: parse, and re-serialise what parses (must round-trip).
pub fn config(data: &[u8]) {
    if let Ok(c) = VolumeConfig::parse(data) {
        assert_eq!(
            c.to_bytes(),
            data,
            "an accepted config has exactly one encoding"
        );
        let _ = c.active_kek_version();
    }
}

/// One protector record (fixed part + body) inside a valid config envelope.
pub fn protector(data: &[u8]) {
    let mut c = Vec::with_capacity(data.len() + 96);
    c.extend_from_slice(b"DEKFSVOL");
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&[0; 2]);
    c.extend_from_slice(&[0; 8]); // required, optional features
    c.extend_from_slice(&[7; 16]); // volume id
    c.extend_from_slice(&0u64.to_le_bytes()); // created
    c.extend_from_slice(&1u16.to_le_bytes()); // n_keks
    c.extend_from_slice(&1u16.to_le_bytes()); // n_protectors
    c.extend_from_slice(&1u32.to_le_bytes()); // KEK 1
    c.extend_from_slice(&[1, 0, 0, 0]); // active
    c.extend_from_slice(&0u64.to_le_bytes());
    c.extend_from_slice(data);
    c.extend_from_slice(&[0; 32]); // MAC
    config(&c);
}

/// Directory metadata (the per-directory key store): parse, then open as a
/// root and as a child of the fixture root.
pub fn dirmeta(data: &[u8]) {
    let f = fixture();
    if let Ok(m) = DirMeta::parse(data) {
        assert_eq!(&m.to_bytes()[..], data);
    }
    let _ = f.keys.open_root_dir(data);
    let _ = f.keys.open_dir(&f.root, data);
}

/// File header: parse, then open under the fixture directory.
pub fn header(data: &[u8]) {
    let f = fixture();
    if let Ok(h) = FileHeader::parse(data) {
        assert_eq!(&h.to_bytes()[..], data);
    }
    let _ = f.keys.open_file(&f.root, data);
}

/// The backing-name decoder the daemon, fsck and every walker run
/// (`dekfs::layout`): classification of any name, long-name record parsing,
/// and decoding under the fixture directory key, with the input split at its
/// first NUL into (backing name, record bytes). Whatever decodes must be the
/// one canonical backing name of its plaintext, or readdir could show one
/// name twice. Also symlink targets, xattr names/values, recovery keys.
pub fn names(data: &[u8]) {
    let f = fixture();
    let (name, record) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let name = String::from_utf8_lossy(name);
    match layout::classify(&name) {
        layout::Class::Short(s) => assert!(!s.contains('.') && !s.is_empty()),
        layout::Class::Long { hash } | layout::Class::LongRecord { hash } => {
            assert!(!hash.contains('.') && !hash.is_empty())
        }
        _ => {}
    }
    let _ = layout::is_recovery_name(data);
    if let Ok(full) = layout::parse_record(&name, record.to_vec()) {
        assert!(full.len() > layout::MAX_SHORT_NAME && full.len() <= layout::MAX_LONG_RECORD);
    }
    let decoded = layout::decode_with(&f.root, &name, |hash| {
        layout::parse_record(hash, record.to_vec())
    });
    if let layout::Decoded::Name(plain) = decoded {
        let canonical = layout::BackingName::encode(&f.root, &plain).expect("decoded names encode");
        assert_eq!(
            canonical.name(),
            name,
            "a decoded name has one backing form"
        );
    }
    let _ = f.root.decrypt_symlink(data);
    let x = f.root.xattr();
    let _ = x.decrypt_name(&name);
    let (xname, value) = data.split_at(data.len().min(64));
    let _ = x.open_value(&String::from_utf8_lossy(xname), value);
    let _ = RecoveryKey::parse(&String::from_utf8_lossy(data));
}

/// Size rule on any 8-byte backing size.
pub fn geometry(data: &[u8]) {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    let size = u64::from_le_bytes(b);
    if let Ok(p) = format::plain_size(size) {
        // a header-only file (216 bytes) is empty, like a 0-byte file
        let back = format::cipher_size(p);
        assert!(
            back == size || (p == 0 && size == 216),
            "size rule must invert: {size} -> {p} -> {back}"
        );
    }
}

/// The frozen example volume's recovery key (tests/vectors/example-volume-v1.README).
pub const EXAMPLE_RECOVERY_KEY: &str =
    "65812c09-45c8101e-1323538b-726fbcd4-383b2573-d714975a-f9542a15-19ac7672";

/// Full unlock of `data` as dekfs.conf next to the example volume's root
/// dekfs.dir, with the example recovery key (protectors, KDF bounds, MAC).
pub fn unlock(data: &[u8]) {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("dekfs-fuzz-unlock-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        let src = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/example-volume-v1/dekfs.dir"
        );
        std::fs::copy(src, d.join("dekfs.dir")).expect("example dekfs.dir");
        d
    });
    std::fs::write(dir.join("dekfs.conf"), data).expect("write config");
    let rk = RecoveryKey::parse(EXAMPLE_RECOVERY_KEY).expect("recovery key");
    let _ = dekfs::volume::unlock(dir, &dekfs::volume::Credential::RecoveryKey(rk));
}

/// KMIP responses as a key manager (or whoever answers on its address) sends them: the TTLV
/// parser, re-encoding (an accepted message has one encoding), the response checks of every
/// operation dekfs sends, and the kind-4 protector body parser on the same bytes.
pub fn ttlv(data: &[u8]) {
    use dekfs::kmip::{messages, ttlv};
    if let Ok(item) = ttlv::parse(data) {
        let mut again = Vec::new();
        item.encode(&mut again);
        assert_eq!(
            again, data,
            "an accepted TTLV message has exactly one encoding"
        );
        for op in [0x01, 0x08, 0x0B, 0x12, 0x13, 0x14, 0x1F, 0x20] {
            if let Ok(Ok(p)) = messages::response(&item, op) {
                let _ = messages::uid_of(p);
                let _ = messages::encrypted(p, &[0; 12], 56);
                let _ = messages::state_of(p);
            }
        }
    }
    if let Ok(b) = format::KmipBody::parse(data) {
        assert_eq!(
            b.to_bytes().ok().as_deref(),
            Some(data),
            "kind-4 body round trip"
        );
    }
}
