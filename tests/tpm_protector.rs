//! TPM2 protector end to end on a private swtpm: unattended unlock in a fresh process, PCR change
//! refused by number with passphrase fallback, reseal, PIN, DA lockout, wiped TPM + recovery key,
//! corrupted blobs, protector management. Must NOT skip unless swtpm is absent (and FUSE for the
//! mounting tests); every test also checks that no TPM handle or session leaked.

mod common;
mod tpm_support;

use common::{dekfs, exit, Out, TestVolume, FAST_KDF};
use std::path::Path;
use std::time::{Duration, Instant};

fn tpm_volume(name: &str, tcti: &str, extra: &[&str]) -> TestVolume {
    let mut args = vec!["--tpm2", "--tpm-tcti", tcti];
    args.extend_from_slice(extra);
    TestVolume::with_init_args(name, &args)
}

/// `dekfs mount` with no passphrase source (stdin is /dev/null, no terminal).
fn mount_tpm(v: &TestVolume, tcti: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "mount".to_string(),
        v.cipher.display().to_string(),
        v.mnt.display().to_string(),
        "--tpm-tcti".into(),
        tcti.into(),
        "--log-file".into(),
        v.logfile.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    dekfs(&args)
}

fn write_pin(v: &TestVolume, name: &str, pin: &str) -> String {
    let p = v.dir.path().join(name);
    std::fs::write(&p, format!("{pin}\n")).unwrap();
    p.display().to_string()
}

fn protector_list(cipher: &Path) -> String {
    let out = dekfs(["protector", "list", &cipher.display().to_string()]);
    out.expect_code(exit::OK, "protector list");
    out.stdout
}

#[test]
fn seal_then_unlock_in_a_fresh_process_without_prompt() {
    require_fuse!();
    let tpm = require_swtpm!();
    let v = tpm_volume("tpm-seal", &tpm.tcti(), &[]);
    let list = protector_list(&v.cipher);
    assert!(list.contains("tpm2") && list.contains("sha256:7"), "{list}");
    assert!(
        list.contains("passphrase") && list.contains("recovery-key"),
        "{list}"
    );
    mount_tpm(&v, &tpm.tcti(), &[]).expect_code(exit::OK, "TPM mount");
    std::fs::write(v.p("hello"), b"sealed by the TPM").unwrap();
    v.umount();
    // A fresh process, no credential at all: the TPM alone opens it.
    mount_tpm(&v, &tpm.tcti(), &[]).expect_code(exit::OK, "TPM remount");
    assert_eq!(std::fs::read(v.p("hello")).unwrap(), b"sealed by the TPM");
    v.umount();
    // -o tpm_tcti= (what fstab/systemd use) works too, despite the commas in the TCTI.
    let opt = format!("tpm_tcti={}", tpm.tcti());
    let out = dekfs([
        "mount",
        &v.cipher.display().to_string(),
        &v.mnt.display().to_string(),
        "-o",
        &opt,
    ]);
    out.expect_code(exit::OK, "mount -o tpm_tcti=");
    v.umount();
    tpm.assert_nothing_leaked();
    assert_eq!(tpm.lockout_counter(), 0);
}

#[test]
fn pcr_change_is_refused_by_number_and_the_passphrase_still_opens() {
    require_fuse!();
    let tpm = require_swtpm!();
    let v = tpm_volume("tpm-pcr", &tpm.tcti(), &[]);
    tpm.extend_pcr(7);
    let out = mount_tpm(&v, &tpm.tcti(), &[]);
    out.expect_code(exit::TPM_POLICY, "mount after PCR 7 changed")
        .expect_one_line_error("PCR refusal");
    assert!(
        out.stderr.contains("PCR 7 changed since sealing"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("dekfs protector reseal --tpm2"),
        "{}",
        out.stderr
    );
    // Same command with the passphrase: the TPM is refused (and says why), then the passphrase
    // opens it, all within 2 seconds.
    let t0 = Instant::now();
    let out = mount_tpm(
        &v,
        &tpm.tcti(),
        &["--passfile", &v.passfile.display().to_string()],
    );
    let took = t0.elapsed();
    out.expect_code(exit::OK, "passphrase fallback");
    assert!(out.stderr.contains("PCR 7 changed"), "{}", out.stderr);
    assert!(took < Duration::from_secs(2), "fallback took {took:?}");
    v.umount();
    tpm.assert_nothing_leaked();
    assert_eq!(
        tpm.lockout_counter(),
        0,
        "a PCR refusal must not count as an auth failure"
    );
}

#[test]
fn reseal_after_a_pcr_change_restores_unattended_unlock() {
    require_fuse!();
    let tpm = require_swtpm!();
    let v = tpm_volume("tpm-reseal", &tpm.tcti(), &["--pcrs", "7,8"]);
    tpm.extend_pcr(8);
    let out = mount_tpm(&v, &tpm.tcti(), &[]);
    out.expect_code(exit::TPM_POLICY, "mount after PCR 8 changed");
    assert!(out.stderr.contains("PCR 8 changed"), "{}", out.stderr);
    // Reseal needs another protector; without one (no terminal) it fails cleanly.
    let c = v.cipher.display().to_string();
    let t = tpm.tcti();
    let out = dekfs(["protector", "reseal", "--tpm2", &c, "--tpm-tcti", &t]);
    assert_ne!(out.code, Some(0), "reseal without authorisation must fail");
    let pf = v.passfile.display().to_string();
    dekfs([
        "protector",
        "reseal",
        "--tpm2",
        &c,
        "--tpm-tcti",
        &t,
        "--passfile",
        &pf,
    ])
    .expect_code(exit::OK, "reseal");
    assert!(protector_list(&v.cipher).contains("sha256:7,8"));
    mount_tpm(&v, &tpm.tcti(), &[]).expect_code(exit::OK, "mount after reseal");
    v.umount();
    tpm.assert_nothing_leaked();
}

#[test]
fn wrong_pin_then_right_pin_repeatedly_without_lockout() {
    require_fuse!();
    let tpm = require_swtpm!();
    // A realistic DA policy: 5 tries, one try back every 600 s.
    tpm.set_da(5, 600);
    let v = TestVolume::uninitialised("tpm-pin");
    let right = write_pin(&v, "pin", "2468");
    let wrong = write_pin(&v, "badpin", "1357");
    let mut args = vec!["init", "--tpm2", "--pin", "--pin-file", &right];
    let (c, pf, t) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
        tpm.tcti(),
    );
    args.extend(["--tpm-tcti", &t, &c, "--passfile", &pf]);
    args.extend(FAST_KDF);
    dekfs(&args).expect_code(exit::OK, "init --tpm2 --pin");
    assert!(protector_list(&v.cipher).contains("sha256:7 +PIN"));
    // No PIN source at all: refused without costing a try.
    let out = mount_tpm(&v, &t, &[]);
    out.expect_code(exit::TPM_POLICY, "no PIN");
    assert!(out.stderr.contains("needs a PIN"), "{}", out.stderr);
    assert_eq!(tpm.lockout_counter(), 0);
    for round in 1..=3u32 {
        let out = mount_tpm(&v, &t, &["--pin-file", &wrong]);
        out.expect_code(exit::TPM_POLICY, "wrong PIN")
            .expect_one_line_error("wrong PIN");
        let left = 5 - round;
        assert!(
            out.stderr
                .contains(&format!("wrong TPM PIN ({left} tries left")),
            "round {round}: {}",
            out.stderr
        );
        // Exactly one failed try per wrong PIN, none for the right one.
        assert_eq!(tpm.lockout_counter(), round);
        mount_tpm(&v, &t, &["--pin-file", &right]).expect_code(exit::OK, "right PIN");
        v.umount();
        assert_eq!(tpm.lockout_counter(), round);
    }
    tpm.assert_nothing_leaked();
}

#[test]
fn lockout_is_reported_with_the_wait_and_the_passphrase_still_opens() {
    require_fuse!();
    let tpm = require_swtpm!();
    tpm.set_da(2, 600);
    let v = TestVolume::uninitialised("tpm-lockout");
    let right = write_pin(&v, "pin", "2468");
    let wrong = write_pin(&v, "badpin", "0000");
    let (c, pf, t) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
        tpm.tcti(),
    );
    let mut args = vec![
        "init",
        &c,
        "--tpm2",
        "--pin",
        "--pin-file",
        &right,
        "--tpm-tcti",
        &t,
    ];
    args.extend(["--passfile", &pf]);
    args.extend(FAST_KDF);
    dekfs(&args).expect_code(exit::OK, "init");
    for _ in 0..2 {
        mount_tpm(&v, &t, &["--pin-file", &wrong]).expect_code(exit::TPM_POLICY, "wrong PIN");
    }
    let out = mount_tpm(&v, &t, &["--pin-file", &right]);
    out.expect_code(exit::TPM_POLICY, "in lockout");
    assert!(
        out.stderr.contains("dictionary-attack lockout"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("every 600 s"), "{}", out.stderr);
    mount_tpm(&v, &t, &["--pin-file", &right, "--passfile", &pf])
        .expect_code(exit::OK, "passphrase during lockout");
    v.umount();
    tpm.assert_nothing_leaked();
}

#[test]
fn wiped_tpm_is_reported_and_the_recovery_key_opens() {
    require_fuse!();
    let mut tpm = require_swtpm!();
    let v = tpm_volume("tpm-wipe", &tpm.tcti(), &[]);
    std::fs::create_dir_all(v.dir.path()).unwrap();
    mount_tpm(&v, &tpm.tcti(), &[]).expect_code(exit::OK, "mount");
    std::fs::write(v.p("keep"), b"survives the TPM").unwrap();
    v.umount();
    tpm.wipe();
    let out = mount_tpm(&v, &tpm.tcti(), &[]);
    out.expect_code(exit::TPM_POLICY, "wiped TPM");
    // Another owner seed, another SRK: refused by the pinned name before the blob is loaded.
    assert!(out.stderr.contains("SRK mismatch"), "{}", out.stderr);
    let rk = v.dir.path().join("rk");
    std::fs::write(&rk, v.recovery_key.as_ref().unwrap()).unwrap();
    mount_tpm(
        &v,
        &tpm.tcti(),
        &["--recovery-key-file", &rk.display().to_string()],
    )
    .expect_code(exit::OK, "recovery key");
    assert_eq!(std::fs::read(v.p("keep")).unwrap(), b"survives the TPM");
    v.umount();
    tpm.assert_nothing_leaked();
}

#[test]
fn absent_tpm_is_clear_and_falls_back() {
    require_fuse!();
    let tpm = require_swtpm!();
    let v = tpm_volume("tpm-absent", &tpm.tcti(), &[]);
    let out = mount_tpm(&v, "device:/dev/no-such-tpm", &[]);
    out.expect_code(exit::TPM_POLICY, "absent device")
        .expect_one_line_error("absent TPM");
    assert!(out.stderr.contains("no TPM reachable"), "{}", out.stderr);
    drop(tpm); // nothing listens on the port any more
    let t0 = Instant::now();
    let out = mount_tpm(
        &v,
        "swtpm:host=127.0.0.1,port=1",
        &["--passfile", &v.passfile.display().to_string()],
    );
    out.expect_code(exit::OK, "fallback from an unreachable TPM");
    assert!(t0.elapsed() < Duration::from_secs(2));
    v.umount();
}
