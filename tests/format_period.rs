//! The rotation-period record (config record kind 5) and cryptoperiods: the frozen vector parses,
//! serialises to the same bytes and verifies under its KEK; a reader that knows only format v1's
//! generic record rule skips it; `init --rotation-period`, `dekfs period`, `status`
//! (text and JSON) and `rekey --if-due` use it; a rotation keeps it; volumes without it (the
//! frozen example volume) show the 365-day default. Needs no FUSE.

mod common;

use common::*;
use dekfs::crypto::kdf;
use dekfs::format::{VolumeConfig, RECORD_KIND_ROTATION_PERIOD};
use dekfs::secret::Key32;
use std::fs;
use std::path::Path;

/// `key = value` fields of the one record of a tests/vectors file.
fn vector(name: &str) -> std::collections::HashMap<String, String> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Format v1's rule for the record list, as a reader from before kind 5 applies it: known kinds
/// 1..=3, any other kind skipped by body_len unless critical. Returns the kinds it skipped.
fn v1_generic_walk(conf: &[u8]) -> Vec<u8> {
    let n_keks = usize::from(u16::from_le_bytes([conf[44], conf[45]]));
    let n_records = usize::from(u16::from_le_bytes([conf[46], conf[47]]));
    let mut at = 48 + 16 * n_keks;
    let mut skipped = Vec::new();
    for _ in 0..n_records {
        let (kind, flags) = (conf[at], conf[at + 1]);
        let body_len = usize::from(u16::from_le_bytes([conf[at + 2], conf[at + 3]]));
        assert_eq!(flags & 0xfe, 0, "reserved flag bits");
        if !(1..=3).contains(&kind) {
            assert_eq!(
                flags & 1,
                0,
                "an old reader would refuse a critical kind {kind}"
            );
            skipped.push(kind);
        }
        at += 32 + body_len;
    }
    assert_eq!(at + 32, conf.len(), "records then exactly the MAC");
    skipped
}

#[test]
fn frozen_rotation_period_vector() {
    let r = vector("dekfs-rotation-period-v1.txt");
    let bytes = unhex(&r["config"]);
    let c = VolumeConfig::parse(&bytes).unwrap();
    let p = c.rotation_period.as_ref().expect("period record");
    assert_eq!(
        (p.days, p.kek_version, p.created, p.flags, p.position),
        (90, 2, 1_767_225_660, 0, 1)
    );
    assert_eq!(c.protectors.len(), 1);
    assert_eq!(c.record_count(), 2);
    assert_eq!(
        c.to_bytes(),
        bytes,
        "a parsed config serialises to its own bytes"
    );
    let kek_bytes: [u8; 32] = unhex(&r["kek"]).try_into().unwrap();
    let vid: [u8; 16] = unhex(&r["volume_id"]).try_into().unwrap();
    // The MAC key as FORMAT.md derives it, with independent crates; dekfs agrees.
    let mut mk = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&vid), &kek_bytes)
        .expand(b"dekfs v1 config-mac", &mut mk)
        .unwrap();
    let kek = Key32::from_array(&mut kek_bytes.clone());
    assert!(kdf::config_mac_key(&kek, &vid).unwrap().ct_eq(&mk));
    use hmac::Mac;
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&mk).unwrap();
    m.update(&bytes[..bytes.len() - 32]);
    m.verify_slice(&c.mac)
        .expect("MAC of the vector under its KEK");
    assert_eq!(v1_generic_walk(&bytes), vec![RECORD_KIND_ROTATION_PERIOD]);
}

fn status_json(cipher: &Path) -> serde_json::Value {
    let o = dekfs(["status", cipher.to_str().unwrap(), "--json"]);
    o.expect_code(exit::OK, "status --json");
    serde_json::from_str(o.stdout.trim()).unwrap()
}

#[test]
fn init_set_status_rekey_keep_the_period() {
    let v = TestVolume::with_init_args("period", &["--no-recovery-key", "--rotation-period", "30"]);
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    assert_eq!(
        conf.len(),
        240 + 40,
        "passphrase-only config plus the 40-byte record"
    );
    assert_eq!(v1_generic_walk(&conf), vec![RECORD_KIND_ROTATION_PERIOD]);
    let s = status_json(&v.cipher);
    let rot = &s["rotation"];
    assert_eq!(rot["rotation_period_days"], 30);
    assert_eq!(rot["rotation_period_stored"], true);
    assert_eq!(rot["kek_version"], 1);
    assert_eq!(rot["kek_age_days"], 0);
    assert_eq!(rot["rotation_due_in_days"], 30);
    assert_eq!(rot["rotation_overdue"], false);
    assert_eq!(
        s["protectors"].as_array().unwrap().len(),
        1,
        "not a protector"
    );
    let text = dekfs(["status", v.cipher.to_str().unwrap()]);
    assert!(
        text.stdout.contains("rotation period: 30 days (stored)")
            && text
                .stdout
                .contains("KEK age:        v1 is 0 days old; rotation due ")
            && text.stdout.contains("(in 30 days)"),
        "{}",
        text.stdout
    );
    // not due: nothing changes
    let c = v.cipher.to_str().unwrap();
    let p = v.passfile.to_str().unwrap();
    let o = dekfs(["rekey", c, "--passfile", p, "--if-due"]);
    o.expect_code(exit::OK, "rekey --if-due");
    assert!(o.stderr.contains("rotation due in 30 days"), "{}", o.stderr);
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), conf);
    // set a new period: one MAC-covered rewrite, then the schedule
    let o = dekfs(["period", c, "7", "--passfile", p]);
    o.expect_code(exit::OK, "period 7");
    assert!(
        o.stdout.contains("rotation period: 7 days (stored)"),
        "{}",
        o.stdout
    );
    let o = dekfs(["period", c, "0", "--passfile", p]);
    o.expect_code(exit::USAGE, "period 0");
    let o = dekfs([
        "period",
        c,
        "7",
        "--passfile",
        v.dir.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!o.ok());
    let o = dekfs(["period", c, "--json"]);
    o.expect_code(exit::OK, "period --json");
    let j: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(j["rotation_period_days"], 7);
    // a rotation (due by the override) keeps the period; the record follows the new KEK
    let o = dekfs([
        "rekey",
        c,
        "--passfile",
        p,
        "--if-due",
        "--period-days",
        "0",
    ]);
    o.expect_code(exit::OK, "rekey --if-due --period-days 0");
    let after = VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap();
    assert_eq!(after.keks.len(), 1);
    let rp = after.rotation_period.expect("period kept by the rotation");
    assert_eq!((rp.days, rp.kek_version, after.keks[0].version), (7, 2, 2));
    let s = status_json(&v.cipher);
    assert_eq!(s["rotation"]["kek_version"], 2);
    assert_eq!(s["rotation"]["rotation_period_days"], 7);
    v.assert_fsck_clean("after rekey with a period record");
}

#[test]
fn volumes_without_the_record_use_the_default() {
    let v = TestVolume::with_init_args("period-default", &["--no-recovery-key"]);
    assert_eq!(
        fs::read(v.cipher.join(CONF)).unwrap().len(),
        240,
        "no record by default"
    );
    let s = status_json(&v.cipher);
    assert_eq!(s["rotation"]["rotation_period_days"], 365);
    assert_eq!(s["rotation"]["rotation_period_stored"], false);
    // the frozen example volume (dekfs 0.1.0) reads the same way
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/example-volume-v1");
    let s = status_json(&example);
    assert_eq!(s["rotation"]["rotation_period_days"], 365);
    let rot = &s["rotation"];
    assert_eq!(
        rot["rotation_due"].as_u64().unwrap(),
        rot["kek_created"].as_u64().unwrap() + 365 * 86_400
    );
    let o = dekfs(["status", example.to_str().unwrap()]);
    assert!(
        o.stdout.contains("rotation period: 365 days (default)"),
        "{}",
        o.stdout
    );
}
