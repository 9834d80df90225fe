//! `dekfs rekey` on TPM-protected volumes (swtpm): a TPM-only volume
//! rotates with no credential and no prompt; a TPM + passphrase + recovery
//! volume re-seals its TPM protector to the new KEK beside the others, and
//! afterwards the TPM still unlocks while only KEK 2 remains. Skips only when
//! swtpm or FUSE is absent.

mod common;
mod rekey_support;
mod tpm_support;

use common::*;
use dekfs::format::{VolumeConfig, PROTECTOR_KIND_TPM2};
use rekey_support::*;
use std::fs;
use std::process::{Command, Stdio};

fn config(v: &TestVolume) -> VolumeConfig {
    VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap()
}

fn mount_tpm(v: &TestVolume, tcti: &str) -> Out {
    dekfs([
        "mount",
        v.cipher.to_str().unwrap(),
        v.mnt.to_str().unwrap(),
        "--tpm-tcti",
        tcti,
        "--log-file",
        v.logfile.to_str().unwrap(),
    ])
}

/// `dekfs rekey` with no terminal and nothing on stdin: a prompt would fail.
fn rekey_no_prompt(v: &TestVolume, args: &[&str]) -> Out {
    let o = Command::new(DEKFS)
        .arg("rekey")
        .arg(&v.cipher)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn tpm_only_volume_rotates_without_any_prompt() {
    let tpm = require_swtpm!();
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return;
    }
    let t = tpm.tcti();
    let v = TestVolume::with_init_args(
        "rekey-tpm-only",
        &["--tpm2", "--tpm-only", "--yes", "--tpm-tcti", &t],
    );
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM");
    fs::write(v.p("x"), b"tpm data").unwrap();
    v.umount();
    rekey_no_prompt(&v, &["--tpm-tcti", &t]).expect_code(exit::OK, "rekey, TPM only");
    let c = config(&v);
    assert_eq!(
        c.keks.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(c.protectors.len(), 1);
    assert_eq!(c.protectors[0].body.kind(), PROTECTOR_KIND_TPM2);
    assert_eq!(c.protectors[0].kek_version, 2);
    assert!(slot_versions(&v.cipher).values().all(|s| s == &vec![2]));
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM after rekey");
    assert_eq!(fs::read(v.p("x")).unwrap(), b"tpm data");
    v.umount();
}

#[test]
fn tpm_only_volume_rotates_online_without_any_prompt() {
    let tpm = require_swtpm!();
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return;
    }
    let t = tpm.tcti();
    let v = TestVolume::with_init_args(
        "rekey-tpm-online",
        &["--tpm2", "--tpm-only", "--yes", "--tpm-tcti", &t],
    );
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM");
    fs::create_dir(v.p("d")).unwrap();
    fs::write(v.p("d/x"), b"tpm data").unwrap();
    // The mount point: the daemon rotates while the volume stays mounted.
    let o = Command::new(DEKFS)
        .arg("rekey")
        .arg(&v.mnt)
        .args(["--tpm-tcti", &t])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "online rekey, TPM only: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fs::read(v.p("d/x")).unwrap(), b"tpm data");
    fs::write(v.p("d/y"), b"after").unwrap();
    v.umount();
    let c = config(&v);
    assert_eq!(
        c.keks.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(c.protectors.len(), 1);
    assert_eq!(c.protectors[0].kek_version, 2);
    assert!(slot_versions(&v.cipher).values().all(|s| s == &vec![2]));
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM after the online rekey");
    assert_eq!(fs::read(v.p("d/x")).unwrap(), b"tpm data");
    assert_eq!(fs::read(v.p("d/y")).unwrap(), b"after");
    v.umount();
}

#[test]
fn tpm_protector_is_resealed_beside_passphrase_and_recovery_key() {
    let tpm = require_swtpm!();
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return;
    }
    let t = tpm.tcti();
    let v = TestVolume::with_init_args("rekey-tpm", &["--tpm2", "--tpm-tcti", &t]);
    v.mount();
    let want = populate(&v, 8);
    v.umount();
    let rk = recovery_file(&v);
    let out = rekey_no_prompt(
        &v,
        &[
            "--tpm-tcti",
            &t,
            "--passfile",
            v.passfile.to_str().unwrap(),
            "--also-recovery-key-file",
            rk.to_str().unwrap(),
        ],
    );
    out.expect_code(exit::OK, "rekey with TPM + passphrase + recovery");
    let c = config(&v);
    assert_eq!(c.protectors.len(), 3);
    assert!(c.protectors.iter().all(|p| p.kek_version == 2));
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM after rekey");
    assert_eq!(hashes(&v, &want), want);
    v.umount();
    // without the passphrase (and not dropping it) nothing is started
    let before = fs::read(v.cipher.join(CONF)).unwrap();
    let o = rekey_no_prompt(&v, &["--tpm-tcti", &t]);
    assert!(!o.ok() && o.stderr.contains("--drop-protector"), "{o:?}");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before);
    tpm.assert_nothing_leaked();
}
