//! Config-side rotation tests: begin adds KEK v+1 for every kept protector,
//! refuses before writing anything when a credential is missing or wrong,
//! and destroy leaves no record of the old KEK.

use super::rotate::{begin, destroy, pending_rotation, RotateOptions};
use super::*;
use crate::format::{KekState, VolumeConfig, CONFIG_NAME};
use std::fs;

const FAST: KdfParams = KdfParams {
    m_cost_kib: 8192,
    t_cost: 1,
    p_lanes: 1,
};

fn pass(s: &str) -> Credential {
    Credential::Passphrase(SecretBytes::new(s.as_bytes().to_vec()))
}

fn volume(dir: &Path) -> RecoveryKey {
    let out = init(
        dir,
        InitOptions {
            passphrase: SecretBytes::new(b"pw".to_vec()),
            kdf: FAST,
            recovery_key: true,
        },
    )
    .unwrap();
    out.recovery_key.unwrap()
}

fn opts(creds: Vec<Credential>) -> RotateOptions {
    RotateOptions {
        credentials: creds,
        ..RotateOptions::default()
    }
}

#[test]
fn begin_then_destroy_keeps_each_protector_on_the_new_kek_only() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    let rk = volume(&dir);
    let u = unlock(&dir, &pass("pw")).unwrap();
    let b = begin(
        &dir,
        &u.keys,
        &opts(vec![pass("pw"), Credential::RecoveryKey(rk)]),
    )
    .unwrap();
    assert_eq!((b.old, b.new, b.kept.len()), (1, 2, 2));
    assert_eq!(pending_rotation(&dir).unwrap(), Some((1, 2)));
    // Mid-rotation the passphrase opens both KEKs.
    let mid = unlock(&dir, &pass("pw")).unwrap();
    assert_eq!(mid.keys.kek_versions(), vec![1, 2]);
    assert_eq!(mid.keys.active_kek_version(), 2);
    // The root still has only a KEK-1 slot: rewrap it (the engine's job)
    // before the old KEK goes, else nothing would open.
    let meta_path = dir.join(crate::format::DIR_META_NAME);
    let r = mid
        .keys
        .rewrap_dir_kek(None, &fs::read(&meta_path).unwrap());
    fs::write(&meta_path, r.unwrap().unwrap().fin).unwrap();
    destroy(&dir, &mid.keys, 1).unwrap();
    let c = VolumeConfig::parse(&fs::read(dir.join(CONFIG_NAME)).unwrap()).unwrap();
    assert!(c
        .keks
        .iter()
        .all(|k| k.version == 2 && k.state == KekState::Active));
    assert!(c.protectors.iter().all(|p| p.kek_version == 2));
    assert_eq!(c.protectors.len(), 2);
    assert_eq!(
        unlock(&dir, &pass("pw")).unwrap().keys.kek_versions(),
        vec![2]
    );
    assert_eq!(pending_rotation(&dir).unwrap(), None);
}

#[test]
fn missing_or_wrong_credential_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    let _rk = volume(&dir);
    let before = fs::read(dir.join(CONFIG_NAME)).unwrap();
    let u = unlock(&dir, &pass("pw")).unwrap();
    // the recovery protector has no credential and is not dropped
    assert!(matches!(
        begin(&dir, &u.keys, &opts(vec![pass("pw")])),
        Err(VolumeError::Refused(_))
    ));
    assert!(begin(&dir, &u.keys, &opts(vec![pass("wrong")])).is_err());
    assert_eq!(fs::read(dir.join(CONFIG_NAME)).unwrap(), before);
}

#[test]
fn dropped_protector_and_new_recovery_key() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("v");
    let rk = volume(&dir);
    let u = unlock(&dir, &pass("pw")).unwrap();
    let rec_id = u
        .info
        .protectors
        .iter()
        .find(|p| p.kind == "recovery-key")
        .unwrap()
        .id
        .clone();
    let mut o = opts(vec![pass("pw")]);
    o.drop = vec![rec_id[..8].to_string()];
    o.new_recovery_key = true;
    let b = begin(&dir, &u.keys, &o).unwrap();
    assert_eq!(b.dropped, vec![rec_id]);
    let fresh = b.recovery_key.unwrap();
    assert!(unlock(&dir, &Credential::RecoveryKey(rk)).is_err());
    let mid = unlock(&dir, &Credential::RecoveryKey(fresh)).unwrap();
    assert_eq!(mid.keys.kek_versions(), vec![1, 2]);
    // a second begin while one is pending is refused
    assert!(begin(&dir, &mid.keys, &opts(vec![pass("pw")])).is_err());
}
