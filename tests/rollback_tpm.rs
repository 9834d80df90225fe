//! The TPM's copy of the rollback record (swtpm): a TPM-protected volume's rotation raises an NV
//! index of its own; a restored pre-rotation backup is refused by a TPM unlock even after this
//! machine's file record is gone (exit 17, the TPM named), and `--allow-rollback` accepts it.
//! Nothing transient is left in the TPM. Skips only without swtpm.

mod common;
mod tpm_support;

use common::*;
use std::fs;
use std::process::{Command, Stdio};

/// `dekfs rekey` with no terminal and nothing on stdin: the TPM is the only credential.
fn rekey_tpm(v: &TestVolume, args: &[&str]) -> Out {
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

fn active_kek(v: &TestVolume) -> Option<u32> {
    dekfs::format::VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap())
        .unwrap()
        .active_kek_version()
}

#[test]
fn tpm_nv_record_refuses_a_restored_backup_without_the_file_record() {
    let tpm = require_swtpm!();
    let t = tpm.tcti();
    let v = TestVolume::with_init_args(
        "rollback-tpm",
        &["--tpm2", "--tpm-only", "--yes", "--tpm-tcti", &t],
    );
    let backup = v.dir.path().join("backup");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        assert!(Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    cp(&v.cipher, &backup);
    rekey_tpm(&v, &["--tpm-tcti", &t]).expect_code(exit::OK, "rekey through the TPM");
    assert_eq!(active_kek(&v), Some(2));
    // the backup goes back, and this machine's file record is gone too (wiped state, or an
    // attacker who can delete it): the TPM still knows
    fs::remove_dir_all(&v.cipher).unwrap();
    cp(&backup, &v.cipher);
    forget_rollback_record(&v.cipher);
    let o = rekey_tpm(&v, &["--tpm-tcti", &t]);
    o.expect_code(exit::ROLLBACK, "TPM unlock of a rolled-back config")
        .expect_one_line_error("rollback");
    assert!(
        o.stderr.contains("KEK version 1") && o.stderr.contains("seen version 2"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("TPM NV index"), "{}", o.stderr);
    assert_eq!(active_kek(&v), Some(1), "nothing written");
    let o = rekey_tpm(&v, &["--tpm-tcti", &t, "--allow-rollback"]);
    o.expect_code(exit::OK, "rekey --allow-rollback");
    assert!(o.stderr.contains("recorded in the TPM"), "{}", o.stderr);
    assert_eq!(active_kek(&v), Some(2));
    tpm.assert_nothing_leaked();
}
