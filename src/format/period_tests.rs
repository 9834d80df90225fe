//! Unit tests of the rotation-period record inside a config: layout, position kept on a round
//! trip, re-pointing after its KEK left, and every refusal. Must NOT touch files or crypto.
use super::*;
use crate::format::{
    KekRecord, KekState, ProtectorBody, ProtectorRecord, RecoveryBody, VolumeConfig,
};

fn recovery(id: u8, kek_version: u32) -> ProtectorRecord {
    ProtectorRecord {
        flags: 0,
        kek_version,
        created: 7,
        protector_id: [id; 16],
        body: ProtectorBody::Recovery(RecoveryBody {
            salt: [id; 32],
            wrapped_kek: [id; 64],
        }),
    }
}

fn config(period_at: usize) -> VolumeConfig {
    let mut p = RotationPeriod::new(90, 1, 1_700_000_000).unwrap();
    p.position = period_at;
    VolumeConfig {
        required_features: 0,
        optional_features: 0,
        volume_id: [1; 16],
        created: 5,
        keks: vec![KekRecord {
            version: 1,
            state: KekState::Active,
            created: 5,
        }],
        protectors: vec![recovery(2, 1), recovery(3, 1)],
        rotation_period: Some(p),
        mac: [9; 32],
    }
}

/// Offset of the period record in `config(at)`'s bytes.
fn record_at(at: usize) -> usize {
    48 + 16 + at * (32 + 96)
}

#[test]
fn layout_and_position_round_trip() {
    for at in 0..=2 {
        let c = config(at);
        let b = c.to_bytes();
        assert_eq!(b.len(), 48 + 16 + 2 * 128 + 40 + 32);
        assert_eq!(&b[46..48], &3u16.to_le_bytes(), "counted in n_protectors");
        let o = record_at(at);
        assert_eq!(&b[o..o + 8], &[5, 0, 8, 0, 1, 0, 0, 0]);
        assert_eq!(&b[o + 8..o + 16], &1_700_000_000u64.to_le_bytes());
        assert_eq!(&b[o + 16..o + 32], &[0; 16]);
        assert_eq!(&b[o + 32..o + 40], &[90, 0, 0, 0, 0, 0, 0, 0]);
        let back = VolumeConfig::parse(&b).unwrap();
        assert_eq!(back, c, "position {at}");
        assert_eq!(back.to_bytes(), b);
    }
    // a new record (position usize::MAX) goes last
    let mut c = config(0);
    c.rotation_period = Some(RotationPeriod::new(30, 1, 1).unwrap());
    let b = c.to_bytes();
    assert_eq!(b[record_at(2)], RECORD_KIND_ROTATION_PERIOD);
}

#[test]
fn the_record_follows_the_active_kek_when_its_own_leaves() {
    let mut c = config(1);
    c.keks.push(KekRecord {
        version: 2,
        state: KekState::Active,
        created: 6,
    });
    c.keks[0].state = KekState::Retiring;
    assert_eq!(
        VolumeConfig::parse(&c.to_bytes())
            .unwrap()
            .rotation_period
            .unwrap()
            .kek_version,
        1
    );
    // what rotate::destroy does: KEK 1 and its protector records go
    c.keks.retain(|k| k.version != 1);
    c.protectors = vec![recovery(4, 2)];
    let back = VolumeConfig::parse(&c.to_bytes()).unwrap();
    let p = back.rotation_period.unwrap();
    assert_eq!((p.kek_version, p.days, p.position), (2, 90, 1));
}

#[test]
fn refusals() {
    let good = config(1).to_bytes();
    let o = record_at(1);
    let refused = |edit: &dyn Fn(&mut Vec<u8>), what: &str| {
        let mut b = good.clone();
        edit(&mut b);
        assert!(VolumeConfig::parse(&b).is_err(), "{what} must be refused");
    };
    refused(&|b| b[o + 2] = 9, "body_len 9");
    refused(&|b| b[o + 16] = 1, "non-zero id");
    refused(
        &|b| b[o + 32..o + 36].copy_from_slice(&0u32.to_le_bytes()),
        "0 days",
    );
    refused(
        &|b| b[o + 32..o + 36].copy_from_slice(&36_501u32.to_le_bytes()),
        "36501 days",
    );
    refused(&|b| b[o + 36] = 1, "reserved byte");
    refused(&|b| b[o + 4] = 7, "unknown KEK version");
    refused(&|b| b[o + 1] = 2, "flag bit 1");
    // the critical bit is accepted: this reader knows the kind
    let mut b = good.clone();
    b[o + 1] = 1;
    assert_eq!(
        VolumeConfig::parse(&b)
            .unwrap()
            .rotation_period
            .unwrap()
            .flags,
        1
    );
    // two records
    let mut c = config(0);
    let mut b = c.to_bytes();
    let rec = b[record_at(0)..record_at(0) + 40].to_vec();
    b.splice(record_at(0)..record_at(0), rec);
    b[46] = 4;
    assert!(VolumeConfig::parse(&b).is_err(), "two period records");
    // nothing but the period record
    c.protectors.clear();
    c.rotation_period.as_mut().unwrap().position = 0;
    assert!(VolumeConfig::parse(&c.to_bytes()).is_err(), "no protector");
    assert!(RotationPeriod::new(0, 1, 0).is_err());
    assert!(RotationPeriod::new(36_500, 1, 0).is_ok());
}

#[test]
fn truncated_records_never_panic() {
    let good = config(2).to_bytes();
    for cut in 0..good.len() {
        let _ = VolumeConfig::parse(&good[..cut]);
    }
}
