//! Kind-3 (tpm2) protector body: frozen template-1 and template-2 vectors, and property tests that parsing is total on
//! arbitrary and mutated-valid bytes, round-trips, and never makes a config unparseable. Must
//! NOT need a TPM.

use dekfs::format::{
    KekRecord, KekState, ProtectorBody, ProtectorRecord, Tpm2Body, VolumeConfig,
    PROTECTOR_KIND_TPM2, TPM2_ALG_SHA256, TPM2_FLAG_PIN, TPM2_NAME_LEN, TPM2_TEMPLATE_V2,
    TPM2_TEMPLATE_V3,
};
use dekfs::tpm::policy::policy_digest;
use proptest::prelude::*;

/// The frozen example: PCRs 0 and 7 (all-zero and all-0x07 values), PIN, synthetic blobs.
fn frozen_body() -> Tpm2Body {
    let values = vec![[0u8; 32], [7u8; 32]];
    Tpm2Body {
        template_version: 1,
        flags: TPM2_FLAG_PIN,
        pcr_bank: TPM2_ALG_SHA256,
        pcr_mask: 0x81,
        policy_digest: policy_digest(0x81, &values, true),
        pcr_values: values,
        public: (0u8..78).collect(),
        private: (0u8..160).map(|b| b.wrapping_mul(3)).collect(),
        srk_name: None,
        nv_index: None,
    }
}

fn field(text: &str, k: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(k))
        .map(|v| v.trim().to_string())
        .unwrap()
}

fn vector() -> (String, String) {
    let text = include_str!("vectors/dekfs-tpm2-record-v1.txt");
    (field(text, "body = "), field(text, "policy_digest = "))
}

#[test]
fn frozen_tpm2_body_v1() {
    let b = frozen_body();
    let (body_hex, policy_hex) = vector();
    assert_eq!(hex::encode(b.policy_digest), policy_hex);
    let bytes = b.to_bytes().unwrap();
    assert_eq!(hex::encode(&bytes), body_hex);
    assert_eq!(bytes.len(), 40 + 64 + 2 + 78 + 2 + 160);
    assert_eq!(Tpm2Body::parse(&hex::decode(body_hex).unwrap()).unwrap(), b);
}

/// Template 2: the v1 example with the SRK name pinned (34 bytes appended, byte 0 = 2).
#[test]
fn frozen_tpm2_body_v2_with_srk_name() {
    let text = include_str!("vectors/dekfs-tpm2-record-v2.txt");
    let name: [u8; TPM2_NAME_LEN] = hex::decode(field(text, "srk_name = "))
        .unwrap()
        .try_into()
        .unwrap();
    let b = Tpm2Body {
        template_version: TPM2_TEMPLATE_V2,
        srk_name: Some(name),
        ..frozen_body()
    };
    assert_eq!(
        hex::encode(b.policy_digest),
        field(text, "policy_digest = ")
    );
    let bytes = b.to_bytes().unwrap();
    assert_eq!(hex::encode(&bytes), field(text, "body = "));
    assert_eq!(bytes.len(), 40 + 64 + 2 + 78 + 2 + 160 + 34);
    assert_eq!(bytes[0], 2);
    assert_eq!(bytes[bytes.len() - 34..], name);
    let (v1_hex, _) = vector();
    assert_eq!(
        bytes[1..bytes.len() - 34],
        hex::decode(v1_hex).unwrap()[1..]
    );
    assert_eq!(Tpm2Body::parse(&bytes).unwrap(), b);
}

/// Template 3: the v2 example with the NV share index appended (4 bytes LE, byte 0 = 3).
#[test]
fn frozen_tpm2_body_v3_with_nv_index() {
    let text = include_str!("vectors/dekfs-tpm2-record-v3.txt");
    let name: [u8; TPM2_NAME_LEN] = hex::decode(field(text, "srk_name = "))
        .unwrap()
        .try_into()
        .unwrap();
    let nv = u32::from_str_radix(&field(text, "nv_index = "), 16).unwrap();
    let b = Tpm2Body {
        template_version: TPM2_TEMPLATE_V3,
        srk_name: Some(name),
        nv_index: Some(nv),
        ..frozen_body()
    };
    assert_eq!(
        hex::encode(b.policy_digest),
        field(text, "policy_digest = ")
    );
    let bytes = b.to_bytes().unwrap();
    assert_eq!(hex::encode(&bytes), field(text, "body = "));
    assert_eq!(bytes.len(), 40 + 64 + 2 + 78 + 2 + 160 + 34 + 4);
    let v2 = include_str!("vectors/dekfs-tpm2-record-v2.txt");
    let v2 = hex::decode(field(v2, "body = ")).unwrap();
    assert_eq!(bytes[1..bytes.len() - 4], v2[1..]);
    assert_eq!(Tpm2Body::parse(&bytes).unwrap(), b);
}

fn config_with(body: Vec<u8>) -> VolumeConfig {
    VolumeConfig {
        required_features: 0,
        optional_features: 0,
        volume_id: [7; 16],
        created: 1,
        keks: vec![KekRecord {
            version: 1,
            state: KekState::Active,
            created: 1,
        }],
        protectors: vec![ProtectorRecord {
            flags: 0,
            kek_version: 1,
            created: 1,
            protector_id: [1; 16],
            body: ProtectorBody::Unknown {
                kind: PROTECTOR_KIND_TPM2,
                body,
            },
        }],
        rotation_period: None,
        mac: [0; 32],
    }
}

proptest! {
    #[test]
    fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = Tpm2Body::parse(&bytes);
    }

    #[test]
    fn mutated_valid_never_panics_and_round_trips(pos in 0usize..344, val in any::<u8>(), cut in 0usize..400) {
        let mut bytes = frozen_body().to_bytes().unwrap();
        let p = pos % bytes.len();
        bytes[p] = val;
        if let Ok(b) = Tpm2Body::parse(&bytes) {
            prop_assert_eq!(b.to_bytes().unwrap(), bytes.clone());
        }
        let _ = Tpm2Body::parse(&bytes[..cut.min(bytes.len())]);
    }

    /// Any kind-3 body, even garbage, leaves the config parseable: a broken TPM record can
    /// never lock out the other protectors.
    #[test]
    fn garbage_tpm2_body_keeps_config_parseable(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let cfg = config_with(body);
        let back = VolumeConfig::parse(&cfg.to_bytes()).unwrap();
        prop_assert_eq!(back, cfg);
    }
}
