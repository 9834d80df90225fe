//! `dekfs rekey CIPHERDIR` end to end: every header and dekfs.dir moves to
//! the new KEK and the old one leaves the config; file contents and times are
//! unchanged; an old config put back over today's ciphertext opens nothing;
//! a wrong or missing credential changes nothing; a dropped protector opens
//! nothing; `--new-recovery-key` and `--json` do what they say. Skips only
//! without FUSE.

mod common;
mod rekey_support;

use common::*;
use dekfs::format::{KekState, VolumeConfig};
use rekey_support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn config(v: &TestVolume) -> VolumeConfig {
    VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap()
}

fn skip() -> bool {
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return true;
    }
    false
}

/// A mounted-then-unmounted volume with a populated tree.
fn volume(name: &str, n: usize) -> (TestVolume, std::collections::BTreeMap<String, String>) {
    let v = TestVolume::new(name);
    v.mount();
    let want = populate(&v, n);
    v.umount();
    (v, want)
}

#[test]
fn rekey_moves_every_object_and_the_old_config_opens_nothing() {
    if skip() {
        return;
    }
    let (v, want) = volume("rekey-all", 40);
    let before = slot_versions(&v.cipher);
    assert!(before.values().all(|s| s == &vec![1]), "{before:?}");
    let old_conf = fs::read(v.cipher.join(CONF)).unwrap();
    v.mount();
    let times_before: Vec<_> = want
        .keys()
        .map(|k| lstat(&v.p(k)).modified().unwrap())
        .collect();
    v.umount();
    let rk = recovery_file(&v);
    let audit = v.dir.path().join("audit.log");
    let out = rekey(
        &v,
        &[
            "--also-recovery-key-file",
            rk.to_str().unwrap(),
            "--log-file",
            audit.to_str().unwrap(),
        ],
        None,
    );
    out.expect_code(exit::OK, "rekey");
    let audit = fs::read_to_string(audit).unwrap();
    assert!(audit.contains("rekey: started, KEK 1 -> 2"), "{audit}");
    assert!(audit.contains("KEK 1 destroyed"), "{audit}");
    assert!(out.stderr.contains("KEK 1 destroyed"), "{}", out.stderr);
    let after = slot_versions(&v.cipher);
    assert_eq!(after.len(), before.len(), "no object lost or gained");
    assert!(after.values().all(|s| s == &vec![2]), "{after:?}");
    let c = config(&v);
    assert_eq!(c.keks.len(), 1);
    assert_eq!((c.keks[0].version, c.keks[0].state), (2, KekState::Active));
    assert!(c.protectors.iter().all(|p| p.kek_version == 2));
    assert_eq!(c.protectors.len(), 2);
    // contents and times through the mount are unchanged; both credentials open
    v.mount();
    assert_eq!(hashes(&v, &want), want);
    let times_after: Vec<_> = want
        .keys()
        .map(|k| lstat(&v.p(k)).modified().unwrap())
        .collect();
    assert_eq!(
        times_before, times_after,
        "a key change is not a content change"
    );
    v.umount();
    v.assert_fsck_clean("after rekey");
    let r = mount_recovery(&v, &rk);
    r.expect_code(exit::OK, "mount with the recovery key after rekey");
    v.umount();
    // the old config over today's ciphertext, with the old passphrase: this machine refuses
    // it as a rollback, and even accepted (--allow-rollback) nothing opens
    let conf = v.cipher.join(CONF);
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&conf, &old_conf).unwrap();
    v.try_mount(&[])
        .expect_code(exit::ROLLBACK, "old config on this machine");
    let r = v.try_mount(&["--allow-rollback"]);
    assert!(!r.ok(), "old config must not mount today's tree: {r:?}");
    let f = dekfs([
        "fsck",
        v.cipher.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--allow-rollback",
    ]);
    assert!(!f.ok(), "old config must not read today's tree: {f:?}");
}

#[test]
fn wrong_or_missing_credentials_change_nothing() {
    if skip() {
        return;
    }
    let (v, _) = volume("rekey-wrong", 6);
    let before = raw_tree(&v.cipher);
    // wrong passphrase: refused at unlock
    let wrong = v.dir.path().join("wrong");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    let o = dekfs([
        "rekey",
        v.cipher.to_str().unwrap(),
        "--passfile",
        wrong.to_str().unwrap(),
    ]);
    o.expect_code(exit::WRONG_KEY, "rekey with a wrong passphrase");
    // right passphrase, but the recovery protector has no credential and is not dropped
    let o = rekey(&v, &[], None);
    assert!(!o.ok(), "{o:?}");
    assert!(o.stderr.contains("--drop-protector"), "{}", o.stderr);
    // right passphrase, wrong extra recovery key
    let bad = v.dir.path().join("badrk");
    fs::write(&bad, "00000000-".repeat(8).trim_end_matches('-')).unwrap();
    let o = rekey(
        &v,
        &["--also-recovery-key-file", bad.to_str().unwrap()],
        None,
    );
    assert!(!o.ok(), "{o:?}");
    let after = raw_tree(&v.cipher);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, h)| before.get(*k) != Some(h))
        .map(|(k, _)| k)
        .chain(before.keys().filter(|k| !after.contains_key(*k)))
        .collect();
    assert!(changed.is_empty(), "nothing may be written: {changed:?}");
}

#[test]
fn dropped_protector_opens_nothing_and_a_new_recovery_key_does() {
    if skip() {
        return;
    }
    let (v, want) = volume("rekey-drop", 8);
    let rk = recovery_file(&v);
    let c = config(&v);
    let rec = c
        .protectors
        .iter()
        .find(|p| p.body.kind() == dekfs::format::PROTECTOR_KIND_RECOVERY)
        .unwrap();
    let id: String = rec
        .protector_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = rekey(
        &v,
        &["--drop-protector", &id[..8], "--new-recovery-key", "--json"],
        None,
    );
    out.expect_code(exit::OK, "rekey --drop-protector --new-recovery-key --json");
    let fresh = parse_recovery_key(&out.stdout).expect("new recovery key printed");
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fin = events.iter().find(|e| e["event"] == "finished").unwrap();
    assert_eq!(fin["destroyed"], true);
    assert_eq!(fin["blockers"].as_array().unwrap().len(), 0);
    assert!(events.iter().any(|e| e["event"] == "begun"));
    assert!(config(&v)
        .protectors
        .iter()
        .all(|p| p.protector_id != rec.protector_id));
    let r = mount_recovery(&v, &rk);
    assert!(!r.ok(), "dropped recovery key must open nothing: {r:?}");
    let nf = v.dir.path().join("fresh");
    fs::write(&nf, &fresh).unwrap();
    mount_recovery(&v, &nf).expect_code(exit::OK, "mount with the new recovery key");
    assert_eq!(hashes(&v, &want), want);
    v.umount();
}

#[test]
fn rekey_refuses_a_mounted_volume_and_resume_with_nothing_pending_is_a_no_op() {
    if skip() {
        return;
    }
    let (v, _) = volume("rekey-mounted", 2);
    v.mount();
    let before = fs::read(v.cipher.join(CONF)).unwrap();
    let o = rekey(&v, &["--drop-protector", "0000"], None);
    assert!(!o.ok(), "{o:?}");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before);
    v.umount();
    rekey(&v, &["--resume"], None).expect_code(exit::OK, "resume with nothing pending");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before);
}

#[test]
fn if_due_does_nothing_for_a_young_key_and_rotates_an_old_one() {
    if skip() {
        return;
    }
    let (v, _) = volume("rekey-due", 2);
    let rk = recovery_file(&v);
    let before = fs::read(v.cipher.join(CONF)).unwrap();
    let extra = ["--also-recovery-key-file", rk.to_str().unwrap(), "--if-due"];
    let o = rekey(&v, &extra, None);
    o.expect_code(exit::OK, "rekey --if-due, fresh key");
    assert!(o.stderr.contains("not due"), "{}", o.stderr);
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before);
    let mut due = extra.to_vec();
    due.extend(["--period-days", "0"]);
    rekey(&v, &due, None).expect_code(exit::OK, "rekey --if-due --period-days 0");
    assert_eq!(config(&v).keks[0].version, 2);
}

#[test]
fn damaged_and_quarantined_objects_block_destruction_until_forced() {
    if skip() {
        return;
    }
    let (v, want) = volume("rekey-blocked", 6);
    let rk = recovery_file(&v);
    let extra = ["--also-recovery-key-file", rk.to_str().unwrap()];
    // one header whose only slot no longer unwraps (slots are not under the MAC)
    let victim = slot_versions(&v.cipher)
        .keys()
        .find(|p| !p.ends_with("dekfs.dir"))
        .cloned()
        .unwrap();
    let path = v.cipher.join(&victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0x55; // inside slot 0's wrapped key
    fs::write(&path, &bytes).unwrap();
    let q = v.cipher.join("dekfs.quarantine");
    fs::create_dir(&q).unwrap();
    fs::write(q.join("123-old-entry"), b"x").unwrap();
    let o = rekey(&v, &extra, None);
    o.expect_code(exit::CORRUPT, "rekey with blockers");
    assert!(o.stderr.contains("123-old-entry"), "{}", o.stderr);
    let c = config(&v);
    assert_eq!(c.keks.len(), 2, "old KEK kept while objects need it");
    // everything else moved; the blocked file still holds KEK 1
    let s = slot_versions(&v.cipher);
    assert_eq!(s[&victim], vec![1]);
    assert_eq!(s.values().filter(|x| *x == &vec![2]).count(), s.len() - 1);
    // resume without --force still refuses; with --force it destroys
    rekey(&v, &["--resume"], None).expect_code(exit::CORRUPT, "resume, still blocked");
    let o = rekey(&v, &["--resume", "--force"], None);
    o.expect_code(exit::OK, "resume --force");
    assert!(o.stderr.contains("unreadable"), "{}", o.stderr);
    assert_eq!(config(&v).keks.len(), 1);
    v.mount();
    let readable = want
        .keys()
        .filter(|k| {
            fs::read(v.p(k))
                .map(|b| sha256(&b) == want[*k])
                .unwrap_or(false)
        })
        .count();
    assert_eq!(readable, want.len() - 1, "only the damaged file is lost");
    v.umount();
}
