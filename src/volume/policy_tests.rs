//! Tests of the unlock-cost policy: forged KDF parameters are refused before any Argon2 memory
//! is allocated, the override opens a volume made above the limit, and only a few records of one
//! kind are tried. Must NOT run Argon2 above the minimum memory cost.

use super::*;
use crate::format::{ProtectorBody, VolumeConfig, CONFIG_NAME};
use std::fs;
use std::time::{Duration, Instant};

const FAST: KdfParams = KdfParams {
    m_cost_kib: 8192,
    t_cost: 1,
    p_lanes: 1,
};

fn pass(s: &str) -> Credential {
    Credential::Passphrase(SecretBytes::new(s.as_bytes().to_vec()))
}

fn make(dir: &Path, pw: &str, kdf: KdfParams) {
    init(
        dir,
        InitOptions {
            passphrase: SecretBytes::new(pw.as_bytes().to_vec()),
            kdf,
            recovery_key: false,
        },
    )
    .unwrap();
}

fn refused_msg(r: Result<UnlockedVolume, VolumeError>) -> String {
    match r {
        Err(VolumeError::Refused(m)) => m,
        Err(e) => panic!("expected Refused, got {e:?}"),
        Ok(_) => panic!("expected Refused, got Ok"),
    }
}

#[test]
fn forged_huge_kdf_cost_is_refused_before_the_kdf_runs() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    make(&dir, "pw", FAST);
    let conf = dir.join(CONFIG_NAME);
    let mut c = VolumeConfig::parse(&fs::read(&conf).unwrap()).unwrap();
    for r in &mut c.protectors {
        if let ProtectorBody::Passphrase(b) = &mut r.body {
            b.m_cost_kib = crate::format::ARGON2_M_MAX_KIB;
            b.t_cost = 64;
        }
    }
    fs::write(&conf, c.to_bytes()).unwrap();
    let t0 = Instant::now();
    let msg = refused_msg(unlock(&dir, &pass("pw")));
    // 4 GiB at t=64 would take minutes (or fail to allocate); the refusal comes first.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(msg.contains("m_cost=4194304 KiB, t_cost=64"), "{msg}");
    assert!(msg.contains("limit m ≤"), "{msg}");
}

#[test]
fn override_opens_a_volume_made_above_the_limit() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    let slow = KdfParams { t_cost: 17, ..FAST };
    make(&dir, "pw", slow);
    let msg = refused_msg(unlock_with(&dir, &pass("pw"), &UnlockPolicy::local()));
    assert!(msg.contains("t_cost=17") && msg.contains("t ≤ 16"), "{msg}");
    assert!(msg.contains("--allow-kdf-cost"), "{msg}");
    unlock_with(&dir, &pass("pw"), &UnlockPolicy::unlimited()).unwrap();
    unlock_with(&dir, &pass("pw"), &UnlockPolicy::from_env(true)).unwrap();
}

#[test]
fn only_the_first_records_of_a_kind_are_tried() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    make(&dir, "p0", FAST);
    let u = unlock(&dir, &pass("p0")).unwrap();
    for i in 1..6 {
        add_protector(
            &dir,
            &u,
            NewProtector::Passphrase {
                passphrase: SecretBytes::new(format!("p{i}").into_bytes()),
                kdf: FAST,
            },
        )
        .unwrap();
    }
    drop(u);
    let local = UnlockPolicy::local();
    assert_eq!(local.max_records, 4);
    unlock_with(&dir, &pass("p3"), &local).unwrap();
    // The sixth record is never reached: no Argon2 run for it.
    match unlock_with(&dir, &pass("p5"), &local) {
        Err(
            e @ VolumeError::WrongKeyWithinLimit {
                tried: 4, total: 6, ..
            },
        ) => {
            assert!(
                e.to_string().contains("first 4 of 6 passphrase records"),
                "{e}"
            )
        }
        Err(e) => panic!("expected WrongKeyWithinLimit, got {e:?}"),
        Ok(_) => panic!("expected WrongKeyWithinLimit, got Ok"),
    }
    unlock_with(&dir, &pass("p5"), &UnlockPolicy::unlimited()).unwrap();
    // With no more records than the limit, a wrong passphrase stays a plain wrong key.
    let t2 = tempfile::tempdir().unwrap();
    let d2 = t2.path().join("v");
    make(&d2, "pw", FAST);
    assert!(matches!(
        unlock_with(&d2, &pass("nope"), &local),
        Err(VolumeError::WrongKey)
    ));
}

#[test]
fn init_refusal_names_the_bounds() {
    let t = tempfile::tempdir().unwrap();
    let r = init(
        &t.path().join("v"),
        InitOptions {
            passphrase: SecretBytes::new(b"pw".to_vec()),
            kdf: KdfParams { t_cost: 65, ..FAST },
            recovery_key: false,
        },
    );
    let msg = match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("t=65 accepted"),
    };
    assert!(
        msg.contains("KDF parameters outside the allowed bounds: m_cost=8192 KiB, t_cost=65")
            && msg.contains("allowed m 8192..=4194304 KiB, t 1..=64, p 1..=16"),
        "{msg}"
    );
}

#[test]
fn retiring_records_beyond_the_limit_are_refused_before_any_runs() {
    use crate::format::{KekRecord, KekState};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    make(&dir, "pw", FAST);
    let conf = dir.join(CONFIG_NAME);
    let mut c = VolumeConfig::parse(&fs::read(&conf).unwrap()).unwrap();
    let ProtectorBody::Passphrase(b) = c.protectors[0].body.clone() else {
        panic!("passphrase record")
    };
    // KEK v4 active and opened by a valid record; v1..v3 retiring with records that never
    // open (garbage wraps): the count alone must stop the unlock before they are tried.
    let pk = protector::passphrase_key(b"pw", &b.salt, &FAST).unwrap();
    let kek4 = crate::secret::Key32::random().unwrap();
    let mut active = c.protectors[0].clone();
    if let ProtectorBody::Passphrase(b4) = &mut active.body {
        b4.wrapped_kek = protector::wrap_kek(&pk, &kek4, &c.volume_id, 4).unwrap();
    }
    active.kek_version = 4;
    c.keks[0].state = KekState::Retiring;
    for v in 2..=3 {
        let mut r = c.protectors[0].clone();
        r.kek_version = v;
        c.protectors.push(r);
        c.keks.push(KekRecord {
            version: v,
            state: KekState::Retiring,
            created: 1,
        });
    }
    c.protectors.insert(0, active);
    c.keks.push(KekRecord {
        version: 4,
        state: KekState::Active,
        created: 1,
    });
    fs::write(&conf, c.to_bytes()).unwrap();
    let msg = refused_msg(unlock_with(&dir, &pass("pw"), &UnlockPolicy::local()));
    assert!(
        msg.contains("3 retiring KEK records") && msg.contains("limit of 2"),
        "{msg}"
    );
    // Lifted, they are tried: v2's record (a copy of v1's) names the wrong version.
    match unlock_with(&dir, &pass("pw"), &UnlockPolicy::unlimited()) {
        Err(VolumeError::Corrupt(m)) => assert!(m.contains("another volume"), "{m}"),
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(_) => panic!("expected Corrupt, got Ok"),
    }
}
