//! Volume-layer tests: init/unlock round trips and every refusal unlock must make. Uses the
//! minimum Argon2 cost to stay fast; must NOT rely on frozen vectors.

use super::*;
use crate::crypto::kdf;
use crate::crypto::mac::hmac_sha256;
use crate::format::{ProtectorBody, VolumeConfig, CONFIG_NAME, CONFIG_TMP_NAME, DIR_META_NAME};
use std::fs;
use std::os::unix::fs::PermissionsExt;

const FAST: KdfParams = KdfParams {
    m_cost_kib: 8192,
    t_cost: 1,
    p_lanes: 1,
};

fn pass(s: &str) -> SecretBytes {
    SecretBytes::new(s.as_bytes().to_vec())
}

fn new_volume(dir: &Path, pw: &str, recovery: bool) -> InitOutcome {
    init(
        dir,
        InitOptions {
            passphrase: pass(pw),
            kdf: FAST,
            recovery_key: recovery,
        },
    )
    .unwrap()
}

fn write_conf(dir: &Path, bytes: &[u8]) {
    let p = dir.join(CONFIG_NAME);
    let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
    fs::write(p, bytes).unwrap();
}

fn read_conf(dir: &Path) -> VolumeConfig {
    VolumeConfig::parse(&fs::read(dir.join(CONFIG_NAME)).unwrap()).unwrap()
}

fn corrupt_msg(r: Result<UnlockedVolume, VolumeError>) -> String {
    match r {
        Err(VolumeError::Corrupt(m)) => m,
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(_) => panic!("expected Corrupt, got Ok"),
    }
}

#[test]
fn init_then_unlock_with_passphrase_and_recovery_key() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("vol");
    let out = new_volume(&dir, "correct horse", true);
    assert!(dir.join(CONFIG_NAME).is_file());
    assert_eq!(fs::metadata(dir.join(DIR_META_NAME)).unwrap().len(), 224);
    assert!(!dir.join(CONFIG_TMP_NAME).exists());

    let v = unlock(&dir, &Credential::Passphrase(pass("correct horse"))).unwrap();
    assert_eq!(v.keys.volume_id(), &out.volume_id);
    assert_eq!(v.keys.active_kek_version(), 1);
    assert_eq!(v.info.volume_id, out.volume_id);
    assert_eq!(v.info.keks.len(), 1);
    assert_eq!(v.info.protectors.len(), 2);
    assert_eq!(v.info.protectors[0].kdf, Some(FAST));

    let rk_text = out.recovery_key.as_ref().unwrap().display();
    let rk = crate::secret::RecoveryKey::parse(&rk_text).unwrap();
    let v2 = unlock(&dir, &Credential::RecoveryKey(rk)).unwrap();
    // Both credentials lead to the same KEK: the root opens identically.
    let root_meta = fs::read(dir.join(DIR_META_NAME)).unwrap();
    let r1 = v.keys.open_root_dir(&root_meta).unwrap();
    let r2 = v2.keys.open_root_dir(&root_meta).unwrap();
    let e = r1.encrypt_name(b"same").unwrap();
    assert_eq!(r2.decrypt_name(&e).unwrap(), b"same");

    let info = read_info(&dir).unwrap();
    assert_eq!(info, v.info);
    assert_eq!(info.protectors[1].kind, "recovery-key");
}

#[test]
fn wrong_credentials() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    new_volume(dir, "pw-one", false);
    assert!(matches!(
        unlock(dir, &Credential::Passphrase(pass("pw-two"))),
        Err(VolumeError::WrongKey)
    ));
    let rk = crate::secret::RecoveryKey::generate().unwrap();
    assert!(matches!(
        unlock(dir, &Credential::RecoveryKey(rk)),
        Err(VolumeError::NoSuchProtector("recovery key"))
    ));
}

#[test]
fn init_refuses_non_empty_and_bad_params() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("x"), b"x").unwrap();
    let r = init(
        t.path(),
        InitOptions {
            passphrase: pass("p"),
            kdf: FAST,
            recovery_key: false,
        },
    );
    assert!(matches!(r, Err(VolumeError::NotEmpty(_))));
    let t2 = tempfile::tempdir().unwrap();
    let low = KdfParams {
        m_cost_kib: 1024,
        ..FAST
    };
    let r = init(
        t2.path(),
        InitOptions {
            passphrase: pass("p"),
            kdf: low,
            recovery_key: false,
        },
    );
    assert!(r.is_err());
    assert_eq!(fs::read_dir(t2.path()).unwrap().count(), 0);
    let r = init(
        t2.path(),
        InitOptions {
            passphrase: pass(""),
            kdf: FAST,
            recovery_key: false,
        },
    );
    assert!(r.is_err());
}

#[test]
fn not_a_volume() {
    let t = tempfile::tempdir().unwrap();
    assert!(matches!(
        unlock(t.path(), &Credential::Passphrase(pass("x"))),
        Err(VolumeError::NotAVolume(_))
    ));
    fs::write(t.path().join(CONFIG_NAME), b"garbage garbage garbage").unwrap();
    assert!(matches!(
        read_info(t.path()),
        Err(VolumeError::NotAVolume(_))
    ));
    fs::write(t.path().join(CONFIG_NAME), vec![0u8; 70_000]).unwrap();
    assert!(matches!(read_info(t.path()), Err(VolumeError::Corrupt(_))));
}

#[test]
fn lowered_kdf_cost_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    new_volume(dir, "pw", false);
    let mut c = read_conf(dir);
    if let ProtectorBody::Passphrase(b) = &mut c.protectors[0].body {
        b.m_cost_kib = 1024;
    }
    write_conf(dir, &c.to_bytes());
    let m = corrupt_msg(unlock(dir, &Credential::Passphrase(pass("pw"))));
    assert!(m.contains("KDF parameters below the minimum"), "{m}");
    if let ProtectorBody::Passphrase(b) = &mut c.protectors[0].body {
        b.m_cost_kib = 8192;
        b.t_cost = 1000;
    }
    write_conf(dir, &c.to_bytes());
    let m = corrupt_msg(unlock(dir, &Credential::Passphrase(pass("pw"))));
    assert!(m.contains("above the maximum"), "{m}");
}

#[test]
fn protector_from_another_volume_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    new_volume(&a, "shared", false);
    new_volume(&b, "shared", false);
    let mut ca = read_conf(&a);
    let cb = read_conf(&b);
    ca.protectors[0] = cb.protectors[0].clone();
    write_conf(&a, &ca.to_bytes());
    let m = corrupt_msg(unlock(&a, &Credential::Passphrase(pass("shared"))));
    assert!(m.contains("another volume"), "{m}");
}

#[test]
fn config_tamper_and_swap_detected_by_mac() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    new_volume(&a, "pw", false);
    new_volume(&b, "pw", false);
    let orig = read_conf(&a);
    let mut c = orig.clone();
    c.created ^= 1;
    write_conf(&a, &c.to_bytes());
    let m = corrupt_msg(unlock(&a, &Credential::Passphrase(pass("pw"))));
    assert!(m.contains("config MAC mismatch"), "{m}");
    // Extra unknown non-critical record inserted by an attacker: MAC catches it.
    let mut c = orig.clone();
    c.protectors.push(crate::format::ProtectorRecord {
        flags: 0,
        kek_version: 1,
        created: 0,
        protector_id: [0; 16],
        body: ProtectorBody::Unknown {
            kind: 3,
            body: vec![],
        },
    });
    write_conf(&a, &c.to_bytes());
    assert!(corrupt_msg(unlock(&a, &Credential::Passphrase(pass("pw")))).contains("MAC"));
    // Root dekfs.dir from another volume.
    write_conf(&a, &orig.to_bytes());
    fs::copy(b.join(DIR_META_NAME), a.join(DIR_META_NAME)).unwrap();
    let m = corrupt_msg(unlock(&a, &Credential::Passphrase(pass("pw"))));
    assert!(m.contains("root dekfs.dir"), "{m}");
    fs::remove_file(a.join(DIR_META_NAME)).unwrap();
    assert!(corrupt_msg(unlock(&a, &Credential::Passphrase(pass("pw")))).contains("missing"));
}

#[test]
fn unsupported_version_and_feature() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    new_volume(dir, "pw", false);
    let raw = fs::read(dir.join(CONFIG_NAME)).unwrap();
    let mut v = raw.clone();
    v[8] = 2;
    write_conf(dir, &v);
    assert!(matches!(
        unlock(dir, &Credential::Passphrase(pass("pw"))),
        Err(VolumeError::UnsupportedVersion(2))
    ));
    let mut v = raw.clone();
    v[13] = 0x01;
    write_conf(dir, &v);
    assert!(matches!(
        unlock(dir, &Credential::Passphrase(pass("pw"))),
        Err(VolumeError::UnsupportedFeature(0x100))
    ));
    assert!(matches!(
        read_info(dir),
        Err(VolumeError::UnsupportedFeature(0x100))
    ));
}

#[test]
fn retiring_kek_reachable_through_same_protector() {
    // Simulates a mid-rotation config: KEK v2 active, v1 retiring, one passphrase protector
    // with a record per version.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    new_volume(dir, "pw", false);
    unlock(dir, &Credential::Passphrase(pass("pw"))).unwrap();
    let mut c = read_conf(dir);
    let kek2 = crate::secret::Key32::random().unwrap();
    let ProtectorBody::Passphrase(b) = c.protectors[0].body.clone() else {
        panic!()
    };
    let pk = protector::passphrase_key(b"pw", &b.salt, &FAST).unwrap();
    let mut rec2 = c.protectors[0].clone();
    if let ProtectorBody::Passphrase(b2) = &mut rec2.body {
        b2.wrapped_kek = protector::wrap_kek(&pk, &kek2, &c.volume_id, 2).unwrap();
    }
    rec2.kek_version = 2;
    c.protectors.push(rec2);
    c.keks[0].state = crate::format::KekState::Retiring;
    c.keks.push(crate::format::KekRecord {
        version: 2,
        state: crate::format::KekState::Active,
        created: 1,
    });
    c.mac = hmac_sha256(
        &kdf::config_mac_key(&kek2, &c.volume_id).unwrap(),
        &c.mac_input(),
    )
    .unwrap();
    write_conf(dir, &c.to_bytes());
    let root_meta = fs::read(dir.join(DIR_META_NAME)).unwrap();
    let v2 = unlock(dir, &Credential::Passphrase(pass("pw"))).unwrap();
    assert_eq!(v2.keys.active_kek_version(), 2);
    // The root is still wrapped under v1, which unlock recovered through the retiring record.
    assert!(v2.keys.open_root_dir(&root_meta).is_ok());
    assert_eq!(
        v2.info.keks,
        vec![(1, c.keks[0].created, false), (2, 1, true)]
    );
}

#[test]
fn display_messages_are_one_line() {
    let errs = [
        VolumeError::NotAVolume("/x".into()),
        VolumeError::UnsupportedVersion(9),
        VolumeError::UnsupportedFeature(4),
        VolumeError::WrongKey,
        VolumeError::NoSuchProtector("recovery key"),
        VolumeError::Corrupt("config MAC mismatch".into()),
        VolumeError::NotEmpty("/y".into()),
        VolumeError::Io(std::io::Error::other("boom")),
        VolumeError::Crypto(crate::crypto::CryptoError::AuthFailed),
    ];
    for e in errs {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s}");
    }
}
