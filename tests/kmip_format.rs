//! Kind-4 (kmip) protector record: the frozen vector (every byte of docs/FORMAT.md, the
//! associated data and payload checked with a stock AES-GCM), and property tests that parsing
//! is total, round-trips, and never makes a config unparseable. Must NOT need a key manager.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use dekfs::format::{
    kmip_aad, KekRecord, KekState, KmipBody, ProtectorBody, ProtectorRecord, VolumeConfig,
    PROTECTOR_KIND_KMIP,
};
use proptest::prelude::*;

fn field(text: &str, k: &str) -> Vec<u8> {
    let h = text
        .lines()
        .find_map(|l| l.strip_prefix(k))
        .map(|v| v.trim().to_string())
        .unwrap();
    hex::decode(h).unwrap()
}

const VECTOR: &str = include_str!("vectors/dekfs-kmip-record-v1.txt");

fn config_with(records: Vec<ProtectorRecord>) -> VolumeConfig {
    VolumeConfig {
        required_features: 0,
        optional_features: 0,
        volume_id: std::array::from_fn(|i| 0x40 + i as u8),
        created: 1,
        keks: vec![KekRecord {
            version: 1,
            state: KekState::Active,
            created: 1,
        }],
        protectors: records,
        rotation_period: None,
        mac: [0; 32],
    }
}

#[test]
fn frozen_kmip_record_v1() {
    let record = field(VECTOR, "record = ");
    let aad = field(VECTOR, "aad = ");
    let payload = field(VECTOR, "payload = ");
    let manager_key = field(VECTOR, "manager_key = ");

    // Fixed part: kind 4, flags 0 (not critical), body_len, kek_version, created, protector_id.
    assert_eq!(record[0], PROTECTOR_KIND_KMIP);
    assert_eq!(record[1], 0);
    let body_len = u16::from_le_bytes([record[2], record[3]]) as usize;
    assert_eq!(record.len(), 32 + body_len);
    let vid: [u8; 16] = std::array::from_fn(|i| 0x40 + i as u8);
    let pid: [u8; 16] = record[16..32].try_into().unwrap();
    assert_eq!(pid, std::array::from_fn(|i| 0x50 + i as u8));

    let body = KmipBody::parse(&record[32..]).unwrap();
    assert_eq!(
        body.servers,
        vec![
            ("127.0.0.1".to_string(), 5696),
            ("kmip2.example".to_string(), 15696)
        ]
    );
    assert_eq!(body.tls_name, "kmip.example");
    assert_eq!(body.key_uid, "1");
    assert_eq!(body.ca_path, "/etc/dekfs/kmip/ca.crt");
    assert_eq!(body.cert_path, "/etc/dekfs/kmip/client.crt");
    assert_eq!(body.key_path, "/etc/dekfs/kmip/client.key");
    assert_eq!(body.iv, std::array::from_fn(|i| 0x60 + i as u8));
    assert_eq!(body.to_bytes().unwrap(), &record[32..]);

    // The associated data dekfs sends, and the manager's GCM over the payload.
    assert_eq!(kmip_aad(&vid, &pid, 1), aad);
    let gcm = aes_gcm::Aes256Gcm::new_from_slice(&manager_key).unwrap();
    let mut ct = body.blob.to_vec();
    ct.extend_from_slice(&body.tag);
    let nonce = aes_gcm::Nonce::from_slice(&body.iv);
    let plain = gcm
        .decrypt(
            nonce,
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(plain, payload);
    assert_eq!(&payload[32..48], &vid);
    assert_eq!(&payload[48..], &1u64.to_le_bytes());
    let other = kmip_aad(&vid, &pid, 2);
    assert!(gcm
        .decrypt(
            nonce,
            Payload {
                msg: &ct,
                aad: &other
            }
        )
        .is_err());

    // Inside a config it is kept verbatim (non-critical, opaque to the config parser).
    let rec = ProtectorRecord {
        flags: 0,
        kek_version: 1,
        created: 1_700_000_000,
        protector_id: pid,
        body: ProtectorBody::Unknown {
            kind: PROTECTOR_KIND_KMIP,
            body: record[32..].to_vec(),
        },
    };
    let cfg = config_with(vec![rec]);
    let bytes = cfg.to_bytes();
    assert_eq!(&bytes[48 + 16..48 + 16 + record.len()], &record[..]);
    assert_eq!(VolumeConfig::parse(&bytes).unwrap(), cfg);
}

fn frozen_body() -> Vec<u8> {
    field(VECTOR, "record = ")[32..].to_vec()
}

proptest! {
    #[test]
    fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = KmipBody::parse(&bytes);
    }

    #[test]
    fn mutated_valid_never_panics_and_round_trips(pos in 0usize..400, val in any::<u8>(), cut in 0usize..400) {
        let mut bytes = frozen_body();
        let p = pos % bytes.len();
        bytes[p] = val;
        if let Ok(b) = KmipBody::parse(&bytes) {
            prop_assert_eq!(b.to_bytes().unwrap(), bytes.clone());
        }
        let _ = KmipBody::parse(&bytes[..cut.min(bytes.len())]);
    }

    /// Any kind-4 body, even garbage, leaves the config parseable: a broken KMIP record can
    /// never lock out the other protectors.
    #[test]
    fn garbage_kmip_body_keeps_config_parseable(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let cfg = config_with(vec![ProtectorRecord {
            flags: 0,
            kek_version: 1,
            created: 1,
            protector_id: [1; 16],
            body: ProtectorBody::Unknown { kind: PROTECTOR_KIND_KMIP, body },
        }]);
        let back = VolumeConfig::parse(&cfg.to_bytes()).unwrap();
        prop_assert_eq!(back, cfg);
    }
}
