//! Audit lines of the TPM2 protector (swtpm): unlock by TPM, reseal, and a TPM refusal after a
//! PCR change (an unkeyed line, chained by the next unlock). Must NOT skip unless swtpm is absent.

mod common;
mod tpm_support;

use common::{dekfs, exit, TestVolume};
use std::fs;

fn events(v: &TestVolume) -> Vec<(String, String, String)> {
    fs::read_to_string(v.cipher.join("dekfs.audit"))
        .unwrap()
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| j[k].as_str().unwrap_or("-").to_string();
            (f("event"), f("result"), f("protector"))
        })
        .collect()
}

#[test]
fn tpm_unlock_reseal_and_refusal_are_audited() {
    let tpm = require_swtpm!();
    let t = tpm.tcti();
    let v = TestVolume::with_init_args("audit-tpm", &["--tpm2", "--tpm-tcti", &t, "--audit"]);
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    dekfs(["audit", &c, "--verify", "--tpm-tcti", &t]).expect_code(exit::OK, "verify by TPM");
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
    tpm.extend_pcr(7);
    dekfs(["audit", &c, "--verify", "--tpm-tcti", &t])
        .expect_code(exit::TPM_POLICY, "TPM refuses after a PCR change");
    dekfs(["audit", &c, "--verify", "--passfile", &pf]).expect_code(exit::OK, "verify");
    let got = events(&v);
    let got: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("init", "ok", "-"),
            ("unlock", "ok", "tpm2"),
            ("unlock", "ok", "passphrase"),
            ("protector-reseal", "ok", "tpm2"),
            ("unlock", "failed", "tpm2"),
            ("unlock", "ok", "passphrase"),
        ]
    );
}
