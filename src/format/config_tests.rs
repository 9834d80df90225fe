//! Unit tests for the config parser: layout, round trips and every refusal. Must NOT touch
//! files or crypto.
use super::*;

fn sample() -> VolumeConfig {
    VolumeConfig {
        required_features: 0,
        optional_features: 0,
        volume_id: [0x11; 16],
        created: 1_700_000_000,
        keks: vec![KekRecord {
            version: 1,
            state: KekState::Active,
            created: 1_700_000_000,
        }],
        protectors: vec![
            ProtectorRecord {
                flags: 0,
                kek_version: 1,
                created: 1_700_000_001,
                protector_id: [0x22; 16],
                body: ProtectorBody::Passphrase(PassphraseBody {
                    kdf_alg: KDF_ARGON2ID_V13,
                    m_cost_kib: 65536,
                    t_cost: 3,
                    p_lanes: 4,
                    salt: [0x33; 32],
                    wrapped_kek: [0x44; 64],
                }),
            },
            ProtectorRecord {
                flags: 0,
                kek_version: 1,
                created: 1_700_000_002,
                protector_id: [0x55; 16],
                body: ProtectorBody::Recovery(RecoveryBody {
                    salt: [0x66; 32],
                    wrapped_kek: [0x77; 64],
                }),
            },
        ],
        rotation_period: None,
        mac: [0x88; 32],
    }
}

#[test]
fn round_trip_and_layout() {
    let c = sample();
    let b = c.to_bytes();
    assert_eq!(b.len(), 48 + 16 + (32 + 112) + (32 + 96) + 32);
    assert_eq!(&b[..8], b"DEKFSVOL");
    assert_eq!(&b[b.len() - 32..], &[0x88; 32]);
    assert_eq!(VolumeConfig::parse(&b).unwrap(), c);
    assert_eq!(c.active_kek_version(), Some(1));
}

#[test]
fn unknown_noncritical_kind_is_preserved_and_critical_refused() {
    let mut c = sample();
    c.protectors.push(ProtectorRecord {
        flags: 0,
        kek_version: 1,
        created: 5,
        protector_id: [9; 16],
        body: ProtectorBody::Unknown {
            kind: PROTECTOR_KIND_TPM2,
            body: vec![1, 2, 3],
        },
    });
    let b = c.to_bytes();
    assert_eq!(VolumeConfig::parse(&b).unwrap(), c);
    if let Some(p) = c.protectors.last_mut() {
        p.flags = PROTECTOR_FLAG_CRITICAL;
    }
    assert!(VolumeConfig::parse(&c.to_bytes()).is_err());
}

#[test]
fn refusals() {
    let b = sample().to_bytes();
    let mut v = b.clone();
    v[8] = 2;
    assert_eq!(
        VolumeConfig::parse(&v),
        Err(FormatError::UnsupportedVersion(2))
    );
    let mut v = b.clone();
    v[12] = 4;
    assert_eq!(
        VolumeConfig::parse(&v),
        Err(FormatError::UnknownRequiredFeature(4))
    );
    let mut v = b.clone();
    v[44] = 17; // n_keks
    assert!(VolumeConfig::parse(&v).is_err());
    let mut v = b.clone();
    v[46] = 65; // n_protectors
    assert!(VolumeConfig::parse(&v).is_err());
    let mut v = b.clone();
    v[46] = 0;
    assert!(VolumeConfig::parse(&v).is_err());
    let mut v = b.clone();
    v[52] = 3; // KEK state
    assert!(VolumeConfig::parse(&v).is_err());
    let mut v = b.clone();
    v[66] = 113; // passphrase body_len
    assert!(VolumeConfig::parse(&v).is_err());
    for bit in 1..8 {
        let mut v = b.clone();
        v[65] = 1 << bit; // protector flags: only bit 0 is defined
        assert_eq!(
            VolumeConfig::parse(&v),
            Err(FormatError::Invalid("protector record flag bits 1..7 set")),
            "flag bit {bit}"
        );
    }
    let mut v = b.clone();
    v[96] = 2; // kdf_alg
    assert!(VolumeConfig::parse(&v).is_err());
    let mut v = b.clone();
    v.push(0);
    assert!(VolumeConfig::parse(&v).is_err());
    assert_eq!(
        VolumeConfig::parse(&b[..b.len() - 1]),
        Err(FormatError::Truncated)
    );
    assert_eq!(
        VolumeConfig::parse(&vec![0u8; CONFIG_MAX_LEN + 1]),
        Err(FormatError::TooLarge)
    );
    assert_eq!(
        VolumeConfig::parse(b"NOTAVOLUME"),
        Err(FormatError::BadMagic)
    );
}
