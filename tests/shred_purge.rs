//! `dekfs shred --purge-backups` (issue 11, item 3): a full copy of the cipher directory and
//! dekfs.conf taken before the shred, tried afterwards. On a TPM-only volume whose protector
//! is bound to a TPM NV key share (swtpm, same TPM): the old record no longer opens (its share
//! is erased), and nothing under the path decrypts. On a passphrase volume: today's config
//! opens nothing in the old copy (the KEK was rotated), while the old config with the old
//! passphrase still opens all of it, exactly as THREAT-MODEL.md says. Also the NV share
//! lifecycle: a TPM protector without a share is converted by the purge (and the old copy
//! still opens through it, as the printed line says), `destroy` erases shares. Skips only when
//! swtpm or FUSE is absent.

mod common;
mod shred_kit;
mod tpm_support;

use common::*;
use dekfs::format::ProtectorBody;
use dekfs::format::{Tpm2Body, VolumeConfig, PROTECTOR_KIND_TPM2, TPM2_TEMPLATE_V3};
use dekfs::tpm::{nv, Tcti, TpmRefusal};
use dekfs::volume::{self, Credential, VolumeError};
use shred_kit::*;
use std::collections::HashSet;
use std::fs;
use std::path::Path;

fn config(dir: &Path) -> VolumeConfig {
    VolumeConfig::parse(&fs::read(dir.join(CONF)).unwrap()).unwrap()
}

/// The tpm2 record bodies of a config.
fn tpm_bodies(c: &VolumeConfig) -> Vec<Tpm2Body> {
    c.protectors
        .iter()
        .filter_map(|r| match &r.body {
            ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_TPM2 => {
                Some(Tpm2Body::parse(body).unwrap())
            }
            _ => None,
        })
        .collect()
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

/// Every id the shred destroyed, from its `--audit-file` line.
fn audit_ids(file: &Path) -> HashSet<[u8; 16]> {
    let text = fs::read_to_string(file).unwrap();
    let ids = text
        .lines()
        .filter_map(|l| l.split(" ids=").nth(1))
        .next_back()
        .expect("an audit line with ids");
    ids.split(',')
        .map(|h| hex::decode(h.trim()).unwrap().try_into().unwrap())
        .collect()
}

/// `--also-recovery-key-file FILE` with the volume's recovery key written to FILE.
fn recovery_args(v: &TestVolume) -> [String; 2] {
    let f = v.dir.path().join("recovery.key");
    fs::write(
        &f,
        v.recovery_key
            .as_ref()
            .expect("init printed a recovery key"),
    )
    .unwrap();
    ["--also-recovery-key-file".into(), f.display().to_string()]
}

fn fill_volume(v: &TestVolume) {
    fill(v, "/victim", 3, 24, 7);
    fs::write(v.p("/keep.txt"), b"stays").unwrap();
}

#[test]
fn tpm_nv_volume_purge_leaves_a_pre_shred_copy_nothing() {
    let tpm = require_swtpm!();
    if let Err(why) = fuse_available() {
        println!("SKIPPED ({why})");
        return;
    }
    let t = tpm.tcti();
    let tcti: Tcti = t.parse().unwrap();
    let v = TestVolume::with_init_args(
        "purge-tpm",
        &[
            "--tpm2",
            "--tpm-nv",
            "--tpm-only",
            "--yes",
            "--tpm-tcti",
            &t,
        ],
    );
    let before = tpm_bodies(&config(&v.cipher));
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].template_version, TPM2_TEMPLATE_V3);
    let old_share = before[0].nv_index.unwrap();
    // FORMAT.md: the sealed data is a 64-byte wrap, 8 bytes more than template 2's payload.
    assert_eq!(before[0].private.len(), 190);
    assert!(nv::share_exists(&tcti, old_share).unwrap());
    let list = dekfs(["protector", "list", v.cipher.to_str().unwrap()]);
    assert!(list.stdout.contains("sha256:7 +NV"), "{}", list.stdout);
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM");
    fill_volume(&v);
    v.umount();

    let pre = v.dir.path().join("pre-shred-copy");
    copy_tree(&v.cipher, &pre);
    // Control: before the purge the copy opens through the TPM alone.
    let u = volume::unlock_tpm2(&pre, &tcti, None).expect("the copy opens before the purge");
    let control = attack_keys(&pre, &u.keys, &HashSet::new());
    assert!(control.opened_other > 20, "control attack: {control:?}");
    drop(u);

    let audit = v.dir.path().join("audit.log");
    let out = dekfs([
        "shred",
        v.cipher.to_str().unwrap(),
        "/victim",
        "--yes",
        "--purge-backups",
        "--tpm-tcti",
        &t,
        "--audit-file",
        audit.to_str().unwrap(),
    ]);
    out.expect_code(exit::OK, "shred --purge-backups, TPM only");
    assert!(
        out.stdout.contains("opens nothing under /victim any more"),
        "{}",
        out.stdout
    );
    let ids = audit_ids(&audit);
    assert!(ids.len() > 24);

    let now = config(&v.cipher);
    assert_eq!(
        now.keks.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![2]
    );
    let after = tpm_bodies(&now);
    let new_share = after[0].nv_index.unwrap();
    assert_ne!(new_share, old_share);
    assert!(nv::share_exists(&tcti, new_share).unwrap());
    assert!(
        !nv::share_exists(&tcti, old_share).unwrap(),
        "old share erased"
    );

    // The pre-shred copy, config included, on the same TPM in the same PCR state.
    match volume::unlock_tpm2(&pre, &tcti, None) {
        Err(VolumeError::Tpm(TpmRefusal::ShareGone { index })) => assert_eq!(index, old_share),
        Err(e) => panic!("unexpected refusal: {e}"),
        Ok(_) => panic!("the pre-shred copy still opens through the TPM"),
    }
    // The sealed object itself still passes its PCR policy, but what it holds is the KEK
    // wrapped under the erased share's key (64 bytes, not the 56-byte payload).
    let raw = dekfs::tpm::unseal(&tcti, &tpm_bodies(&config(&pre))[0], None).unwrap();
    assert_eq!(raw.expose().len(), 64);
    assert!(!raw.expose().windows(16).any(|w| w == now.volume_id));

    // Today's config and TPM: every key they give, against every object of the old copy.
    let u = volume::unlock_tpm2(&v.cipher, &tcti, None).expect("today's TPM unlock");
    let loot = attack_keys(&pre, &u.keys, &ids);
    assert!(loot.tried_destroyed > 24, "{loot:?}");
    assert!(loot.opened_destroyed.is_empty(), "{loot:?}");
    assert_eq!(
        loot.opened_other, 0,
        "today's keys open nothing in the old copy"
    );
    drop(u);

    mount_tpm(&v, &t).expect_code(exit::OK, "mount after purge");
    assert_eq!(fs::read(v.p("/keep.txt")).unwrap(), b"stays");
    assert!(!v.p("/victim").exists());
    v.umount();

    // destroy erases the share the current record names.
    dekfs([
        "destroy",
        v.cipher.to_str().unwrap(),
        "--yes",
        "--yes-really",
        "--tpm-tcti",
        &t,
    ])
    .expect_code(exit::OK, "destroy");
    assert!(
        !nv::share_exists(&tcti, new_share).unwrap(),
        "destroy erased the share"
    );
}

#[test]
fn passphrase_volume_purge_rotates_but_the_old_passphrase_opens_the_old_copy() {
    if let Err(why) = fuse_available() {
        println!("SKIPPED ({why})");
        return;
    }
    let v = TestVolume::new("purge-pass");
    v.mount();
    fill_volume(&v);
    v.umount();
    let pre = v.dir.path().join("pre-shred-copy");
    copy_tree(&v.cipher, &pre);
    let audit = v.dir.path().join("audit.log");
    // Without the recovery key the purge refuses before anything is destroyed.
    let refused = shred_kit::shred(&v, Some("/victim"), &["--purge-backups"]);
    refused.expect_code(exit::USAGE, "purge without the recovery key");
    assert!(
        refused.stderr.contains("recovery key"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        fs::read(v.cipher.join(CONF)).unwrap(),
        fs::read(pre.join(CONF)).unwrap()
    );
    // Only a lock file may have appeared (dekfs.conf.lock, taken to read the config).
    let entries = |d: &Path| {
        list_tree(d)
            .into_keys()
            .filter(|p| !p.to_string_lossy().ends_with(".lock"))
            .collect::<Vec<_>>()
    };
    assert_eq!(entries(&v.cipher), entries(&pre), "nothing shredded");
    let [flag, file] = recovery_args(&v);
    let out = shred_kit::shred(
        &v,
        Some("/victim"),
        &[
            "--purge-backups",
            "--audit-file",
            audit.to_str().unwrap(),
            &flag,
            &file,
        ],
    );
    out.expect_code(exit::OK, "shred --purge-backups");
    assert!(
        out.stdout.contains(
            "still opens /victim with the passphrase of then or the recovery key of then"
        ),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("today's dekfs.conf opens nothing in it"));
    let ids = audit_ids(&audit);
    let now = config(&v.cipher);
    assert_eq!(
        now.keks.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![2]
    );

    // Today's config with today's passphrase: nothing in the old copy.
    let cred = Credential::Passphrase(dekfs::secret::SecretBytes::new(
        v.passphrase.as_bytes().to_vec(),
    ));
    let u = volume::unlock(&v.cipher, &cred).unwrap();
    let loot = attack_keys(&pre, &u.keys, &ids);
    assert!(loot.tried_destroyed > 24, "{loot:?}");
    assert!(loot.opened_destroyed.is_empty(), "{loot:?}");
    assert_eq!(loot.opened_other, 0);
    drop(u);

    // THREAT-MODEL.md: the old config with the old passphrase still opens the whole copy.
    let old = attack(&pre, &v.passphrase, &ids);
    assert_eq!(old.opened_destroyed.len(), old.tried_destroyed, "{old:?}");
    assert!(old.tried_destroyed > 24);

    v.mount();
    assert_eq!(fs::read(v.p("/keep.txt")).unwrap(), b"stays");
    assert!(!v.p("/victim").exists());
    v.umount();
    v.assert_fsck_clean("after purge");
}

#[test]
fn tpm_protector_without_share_is_bound_by_the_purge_and_the_line_says_what_stays_open() {
    let tpm = require_swtpm!();
    if let Err(why) = fuse_available() {
        println!("SKIPPED ({why})");
        return;
    }
    let t = tpm.tcti();
    let tcti: Tcti = t.parse().unwrap();
    let v = TestVolume::with_init_args("purge-tpm-v2", &["--tpm2", "--tpm-tcti", &t]);
    assert!(tpm_bodies(&config(&v.cipher))[0].nv_index.is_none());
    v.mount();
    fill_volume(&v);
    v.umount();
    let pre = v.dir.path().join("pre-shred-copy");
    copy_tree(&v.cipher, &pre);
    let [flag, file] = recovery_args(&v);
    let out = shred_kit::shred(
        &v,
        Some("/victim"),
        &["--purge-backups", "--tpm-tcti", &t, &flag, &file],
    );
    out.expect_code(exit::OK, "shred --purge-backups, TPM + passphrase");
    assert!(
        out.stdout
            .contains("this TPM in the same PCR state (the record has no NV key share)"),
        "{}",
        out.stdout
    );
    let after = tpm_bodies(&config(&v.cipher));
    assert_eq!(after[0].template_version, TPM2_TEMPLATE_V3);
    let share = after[0].nv_index.unwrap();
    // What the line says: the old template-2 record still opens the old copy on this TPM
    // (past this machine's rollback record, which an attacker's override would skip too).
    volume::rollback::allow_rollback(true);
    volume::unlock_tpm2(&pre, &tcti, None).expect("a share-less record is not erasable");
    // Removing the (now NV-bound) TPM protector erases its share.
    let id = hex::encode(
        config(&v.cipher)
            .protectors
            .iter()
            .find(|r| r.body.kind() == PROTECTOR_KIND_TPM2)
            .unwrap()
            .protector_id,
    );
    dekfs([
        "protector",
        "remove",
        v.cipher.to_str().unwrap(),
        &id[..8],
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--tpm-tcti",
        &t,
    ])
    .expect_code(exit::OK, "protector remove");
    assert!(
        !nv::share_exists(&tcti, share).unwrap(),
        "remove erased the share"
    );
}

#[test]
fn rekey_and_reseal_of_an_nv_bound_protector_replace_its_share() {
    let tpm = require_swtpm!();
    let t = tpm.tcti();
    let tcti: Tcti = t.parse().unwrap();
    let v = TestVolume::with_init_args("purge-rekey", &["--tpm2", "--tpm-nv", "--tpm-tcti", &t]);
    let first = tpm_bodies(&config(&v.cipher))[0].nv_index.unwrap();
    dekfs([
        "rekey",
        v.cipher.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--also-recovery-key-file",
        &recovery_args(&v)[1],
        "--tpm-tcti",
        &t,
    ])
    .expect_code(exit::OK, "rekey");
    let second = tpm_bodies(&config(&v.cipher))[0].nv_index.unwrap();
    assert_ne!(first, second);
    assert!(
        !nv::share_exists(&tcti, first).unwrap(),
        "rekey erased the old share"
    );
    dekfs([
        "protector",
        "reseal",
        v.cipher.to_str().unwrap(),
        "--tpm2",
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--tpm-tcti",
        &t,
    ])
    .expect_code(exit::OK, "reseal");
    let third = tpm_bodies(&config(&v.cipher)).remove(0);
    let third_share = third.nv_index.unwrap();
    assert_eq!(third.template_version, TPM2_TEMPLATE_V3);
    assert!(
        !nv::share_exists(&tcti, second).unwrap(),
        "reseal erased the old share"
    );
    volume::unlock_tpm2(&v.cipher, &tcti, None).expect("the resealed record opens");
    assert!(nv::share_exists(&tcti, third_share).unwrap());
}

/// kill -9 after the old share is erased but before the config loses the old KEK: the volume
/// still opens through the TPM (the retiring KEK is "not held"), the pre-shred copy does not,
/// and `dekfs shred CIPHERDIR --purge-backups` finishes the rotation.
#[test]
fn purge_killed_after_the_erasure_is_finished_by_a_rerun() {
    let tpm = require_swtpm!();
    if let Err(why) = fuse_available() {
        println!("SKIPPED ({why})");
        return;
    }
    let t = tpm.tcti();
    let tcti: Tcti = t.parse().unwrap();
    let v = TestVolume::with_init_args(
        "purge-crash",
        &[
            "--tpm2",
            "--tpm-nv",
            "--tpm-only",
            "--yes",
            "--tpm-tcti",
            &t,
        ],
    );
    let old_share = tpm_bodies(&config(&v.cipher))[0].nv_index.unwrap();
    mount_tpm(&v, &t).expect_code(exit::OK, "mount via TPM");
    fill_volume(&v);
    v.umount();
    let pre = v.dir.path().join("pre-shred-copy");
    copy_tree(&v.cipher, &pre);
    let out = std::process::Command::new(DEKFS)
        .args(["shred", v.cipher.to_str().unwrap(), "/victim", "--yes"])
        .args(["--purge-backups", "--tpm-tcti", &t])
        .env("DEKFS_FAILPOINT", "purge.shares.erased")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    let mid = config(&v.cipher);
    assert_eq!(mid.keks.len(), 2, "the old KEK is still in the config");
    assert!(!nv::share_exists(&tcti, old_share).unwrap());
    let u = volume::unlock_tpm2(&v.cipher, &tcti, None).expect("opens mid-purge");
    assert_eq!(u.keys.active_kek_version(), 2);
    drop(u);
    assert!(volume::unlock_tpm2(&pre, &tcti, None).is_err());
    dekfs([
        "shred",
        v.cipher.to_str().unwrap(),
        "--purge-backups",
        "--tpm-tcti",
        &t,
    ])
    .expect_code(exit::OK, "rerun finishes the purge");
    let now = config(&v.cipher);
    assert_eq!(
        now.keks.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![2]
    );
    mount_tpm(&v, &t).expect_code(exit::OK, "mount after the rerun");
    assert_eq!(fs::read(v.p("/keep.txt")).unwrap(), b"stays");
    assert!(!v.p("/victim").exists());
    v.umount();
}
