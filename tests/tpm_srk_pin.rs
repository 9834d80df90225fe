//! SRK pinning of tpm2 protector records (template 2): the record names the storage key it was
//! sealed under, a TPM whose owner seed changed (tpm2_clear, another TPM) is refused with the
//! SRK-mismatch message before any session is salted to it, and template-1 records still unseal
//! with a hint to reseal. Must NOT skip unless swtpm is absent (and FUSE for mounting).

mod common;
mod tpm_support;

use common::{dekfs, exit, Out, TestVolume};
use dekfs::format::{ProtectorBody, Tpm2Body, VolumeConfig, PROTECTOR_KIND_TPM2};
use std::path::Path;

fn tpm_volume(name: &str, tcti: &str) -> TestVolume {
    TestVolume::with_init_args(name, &["--tpm2", "--tpm-tcti", tcti])
}

fn mount_tpm(v: &TestVolume, tcti: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "mount".to_string(),
        v.cipher.display().to_string(),
        v.mnt.display().to_string(),
        "--tpm-tcti".into(),
        tcti.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    dekfs(&args)
}

fn tpm_body(cipher: &Path) -> Tpm2Body {
    let cfg = VolumeConfig::parse(&std::fs::read(cipher.join("dekfs.conf")).unwrap()).unwrap();
    cfg.protectors
        .iter()
        .find_map(|p| match &p.body {
            ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_TPM2 => {
                Some(Tpm2Body::parse(body).unwrap())
            }
            _ => None,
        })
        .expect("tpm2 record")
}

#[test]
fn a_changed_owner_seed_is_refused_as_an_srk_mismatch() {
    require_fuse!();
    let tpm = require_swtpm!();
    let t = tpm.tcti();
    let v = tpm_volume("tpm-srk-clear", &t);
    let body = tpm_body(&v.cipher);
    assert_eq!(body.template_version, 2);
    let pinned = body.srk_name.expect("pinned SRK name");
    assert_eq!(pinned[..2], [0x00, 0x0B]);
    mount_tpm(&v, &t, &[]).expect_code(exit::OK, "TPM mount");
    v.umount();

    // TPM2_Clear changes the owner seed: same template, another SRK.
    tpm.tools(&["tpm2_clear"]);
    let out = mount_tpm(&v, &t, &[]);
    out.expect_code(exit::TPM_POLICY, "cleared TPM")
        .expect_one_line_error("SRK mismatch");
    let hexname: String = pinned.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        out.stderr.contains("SRK mismatch") && out.stderr.contains(&hexname),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("does not accept the sealed KEK"),
        "{}",
        out.stderr
    );
    tpm.assert_nothing_leaked();

    // The passphrase still opens; a reseal pins the new SRK and the TPM opens again.
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
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
    let resealed = tpm_body(&v.cipher).srk_name.unwrap();
    assert_ne!(resealed, pinned);
    mount_tpm(&v, &t, &[]).expect_code(exit::OK, "TPM mount after reseal");
    v.umount();
    tpm.assert_nothing_leaked();
}

#[test]
fn a_template_1_record_still_unseals_and_hints_to_reseal() {
    require_fuse!();
    let tpm = require_swtpm!();
    let t = tpm.tcti();
    let v = tpm_volume("tpm-srk-old", &t);
    let rk = v.recovery_key.clone().unwrap();
    // Turn the record into what an older dekfs wrote: template 1, no trailing SRK name.
    let path = v.cipher.join("dekfs.conf");
    let mut cfg = VolumeConfig::parse(&std::fs::read(&path).unwrap()).unwrap();
    for p in &mut cfg.protectors {
        if let ProtectorBody::Unknown { kind, body } = &mut p.body {
            if *kind == PROTECTOR_KIND_TPM2 {
                body.truncate(body.len() - 34);
                body[0] = 1;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, cfg.to_bytes()).unwrap();
    tpm_support::remac_with_recovery_key(&v.cipher, &rk);
    let old = tpm_body(&v.cipher);
    assert_eq!((old.template_version, old.srk_name), (1, None));

    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let list = dekfs(["protector", "list", &c]);
    assert!(list.stdout.contains("(no SRK pin)"), "{}", list.stdout);
    let out = mount_tpm(&v, &t, &[]);
    out.expect_code(exit::OK, "template-1 TPM mount");
    assert_eq!(
        out.stderr.matches("protector reseal --tpm2").count(),
        1,
        "{}",
        out.stderr
    );
    v.umount();
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
    assert_eq!(tpm_body(&v.cipher).template_version, 2);
    let list = dekfs(["protector", "list", &c]);
    assert!(!list.stdout.contains("SRK pin"), "{}", list.stdout);
    let out = mount_tpm(&v, &t, &[]);
    out.expect_code(exit::OK, "pinned TPM mount");
    assert!(!out.stderr.contains("reseal"), "{}", out.stderr);
    v.umount();
    tpm.assert_nothing_leaked();
}
