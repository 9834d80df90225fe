//! Property tests: every parser and decoder that sees on-disk or user bytes is total (returns
//! Ok/Err, never panics) on arbitrary and on mutated-valid input. Must NOT assert specific error
//! variants: only totality and round trips.

use dekfs::crypto::{DirKey, FileKey, VolumeKeys};
use dekfs::format::{
    cipher_size, plain_size, DirMeta, FileHeader, KekRecord, KekState, PassphraseBody,
    ProtectorBody, ProtectorRecord, RecoveryBody, VolumeConfig, KDF_ARGON2ID_V13,
};
use dekfs::layout;
use dekfs::secret::{Key32, RecoveryKey};
use proptest::prelude::*;
use std::sync::OnceLock;

struct Fixture {
    vk: VolumeKeys,
    root: DirKey,
    root_meta: Vec<u8>,
    file: FileKey,
    header: Vec<u8>,
    config: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let vk = VolumeKeys::from_parts([7; 16], vec![(1, Key32::random().unwrap())], 1).unwrap();
        let (root, meta) = vk.create_root_dir().unwrap();
        let (file, header) = vk.create_file(&root).unwrap();
        let config = VolumeConfig {
            required_features: 0,
            optional_features: 0,
            volume_id: [7; 16],
            created: 1,
            keks: vec![KekRecord {
                version: 1,
                state: KekState::Active,
                created: 1,
            }],
            protectors: vec![
                ProtectorRecord {
                    flags: 0,
                    kek_version: 1,
                    created: 1,
                    protector_id: [1; 16],
                    body: ProtectorBody::Passphrase(PassphraseBody {
                        kdf_alg: KDF_ARGON2ID_V13,
                        m_cost_kib: 65536,
                        t_cost: 3,
                        p_lanes: 4,
                        salt: [2; 32],
                        wrapped_kek: [3; 64],
                    }),
                },
                ProtectorRecord {
                    flags: 0,
                    kek_version: 1,
                    created: 1,
                    protector_id: [4; 16],
                    body: ProtectorBody::Recovery(RecoveryBody {
                        salt: [5; 32],
                        wrapped_kek: [6; 64],
                    }),
                },
            ],
            rotation_period: None,
            mac: [9; 32],
        }
        .to_bytes();
        Fixture {
            vk,
            root,
            root_meta: meta.to_vec(),
            file,
            header: header.to_vec(),
            config,
        }
    })
}

/// Mutations of a valid structure: overwrite some bytes, then optionally truncate or extend.
fn mutate(base: &[u8], edits: &[(usize, u8)], cut: Option<usize>, extra: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, val) in edits {
        if !v.is_empty() {
            let i = pos % v.len();
            v[i] = val;
        }
    }
    if let Some(c) = cut {
        v.truncate(c % (v.len() + 1));
    }
    v.extend_from_slice(extra);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_parser_total(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = VolumeConfig::parse(&bytes);
        let mut with_magic = b"DEKFSVOL\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = VolumeConfig::parse(&with_magic);
    }

    #[test]
    fn config_parser_total_on_mutations(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<usize>()),
        extra in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let v = mutate(&fixture().config, &edits, cut, &extra);
        if let Ok(c) = VolumeConfig::parse(&v) {
            // Canonical: whatever parses re-serialises to the same bytes.
            prop_assert_eq!(c.to_bytes(), v);
        }
    }

    #[test]
    fn header_and_dir_meta_parsers_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = FileHeader::parse(&bytes);
        let _ = DirMeta::parse(&bytes);
        let f = fixture();
        let _ = f.vk.open_file(&f.root, &bytes);
        let _ = f.vk.open_dir(&f.root, &bytes);
        let _ = f.vk.open_root_dir(&bytes);
        let _ = f.file.header_with_reservation(&bytes, 5);
    }

    #[test]
    fn header_and_dir_meta_mutations_total(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let f = fixture();
        let h = mutate(&f.header, &edits, cut, &[]);
        if let Ok(p) = FileHeader::parse(&h) {
            prop_assert_eq!(p.to_bytes().to_vec(), h.clone());
        }
        // A fresh header uses slot 0; bytes of the unused slot 1 are not authenticated (they can
        // never yield the key that is used), so success is only allowed if bytes 0..144 are intact.
        let opened = f.vk.open_file(&f.root, &h);
        prop_assert!(opened.is_err() || h[..144] == f.header[..144]);
        let m = mutate(&f.root_meta, &edits, cut, &[]);
        if let Ok(p) = DirMeta::parse(&m) {
            prop_assert_eq!(p.to_bytes().to_vec(), m.clone());
        }
        let opened = f.vk.open_root_dir(&m);
        prop_assert!(opened.is_err() || m[..152] == f.root_meta[..152]);
    }

    #[test]
    fn plain_size_total_and_inverse(s in any::<u64>(), p in 0u64..(1u64 << 52)) {
        let _ = plain_size(s);
        prop_assert_eq!(plain_size(cipher_size(p)), Ok(p));
        if let Ok(q) = plain_size(s) {
            prop_assert_eq!(cipher_size(q), s);
        }
    }

    #[test]
    fn name_decoders_total(s in ".{0,600}", b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture();
        let _ = f.root.decrypt_name(&s);
        let _ = f.root.decrypt_symlink(s.as_bytes());
        let _ = f.root.decrypt_symlink(&b);
        let _ = f.root.xattr().decrypt_name(&s);
        let _ = f.root.xattr().decrypt_name(&format!("user.{s}"));
        let _ = f.file.xattr().open_value(&s, &b);
        let _ = RecoveryKey::parse(&s);
        let mut out = [0u8; 4096];
        let _ = f.file.open_block(0, &b, &mut out);
        let _ = f.file.open_block(u64::MAX, &b, &mut out[..10]);
    }

    #[test]
    fn base64url_alphabet_decoders_total(s in "[A-Za-z0-9_-]{0,400}") {
        let f = fixture();
        prop_assert!(f.root.decrypt_name(&s).is_err());
        let _ = f.root.xattr().decrypt_name(&format!("user.{s}"));
    }

    #[test]
    fn names_round_trip(name in proptest::collection::vec(1u8..=255, 1..=255)) {
        let f = fixture();
        let valid = !name.contains(&b'/') && name != b"." && name != b"..";
        match f.root.encrypt_name(&name) {
            Ok(e) => {
                prop_assert!(valid);
                prop_assert!(!e.contains('.') && !e.contains('/'));
                prop_assert_eq!(f.root.decrypt_name(&e).unwrap(), name);
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    /// The decoder the daemon runs (dekfs::layout): total on any backing
    /// name and record, and whatever it accepts is the one canonical backing
    /// form of its plaintext (no name can be listed twice).
    #[test]
    fn layout_decoder_total_and_canonical(
        s in ".{0,300}",
        rec in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let f = fixture();
        for name in [s.clone(), format!("dekfs.ln.{s}"), format!("dekfs.ln.{s}.name")] {
            let _ = layout::classify(&name);
            let d = layout::decode_with(&f.root, &name, |h| layout::parse_record(h, rec.clone()));
            if let layout::Decoded::Name(p) = d {
                let bn = layout::BackingName::encode(&f.root, &p).unwrap();
                prop_assert_eq!(bn.name(), name.as_str());
            }
        }
    }

    #[test]
    fn layout_names_round_trip(name in proptest::collection::vec(1u8..=255, 1..=255)) {
        let f = fixture();
        let Ok(bn) = layout::BackingName::encode(&f.root, &name) else {
            return Ok(());
        };
        let full = match &bn {
            layout::BackingName::Short(e) => e.clone(),
            layout::BackingName::Long { full, .. } => full.clone(),
        };
        let got = layout::decode_with(&f.root, bn.name(), |h| layout::parse_record(h, full.clone().into_bytes()));
        prop_assert_eq!(got, layout::Decoded::Name(name));
    }
}
