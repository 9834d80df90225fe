//! Tamper battery, volume config downgrade: KDF cost lowered (below the
//! minimum, and within bounds), format version decreased and increased, an
//! unknown required feature bit set, a protector record copied from another
//! volume. Each must be refused at mount with the documented exit code and a
//! message naming the attack class, and the volume must mount and read
//! normally once the original config is back. Must not test file tampering.

mod common;
mod tamper_kit;

use common::*;
use std::fs;
use tamper_kit::*;

/// Config offsets (docs/FORMAT.md): version at 8, required features at 12,
/// the first protector (passphrase) at 64, its m_cost at 64+32+4.
const OFF_VERSION: usize = 8;
const OFF_REQUIRED: usize = 12;
const OFF_PASS_REC: usize = 64;
const PASS_REC_LEN: usize = 32 + 112;
const OFF_M_COST: usize = OFF_PASS_REC + 32 + 4;
const OFF_T_COST: usize = OFF_PASS_REC + 32 + 8;

/// Writes `edit(original)` as the config, expects `dekfs mount` (passphrase)
/// to fail with `code` and stderr containing `needle`, then restores.
#[track_caller]
fn refused(b: &Bench, edit: impl Fn(&mut Vec<u8>), code: i32, needle: &str) {
    let conf = b.v.cipher.join(CONF);
    let orig = fs::read(&conf).unwrap();
    let mut bad = orig.clone();
    edit(&mut bad);
    assert_ne!(bad, orig, "the edit must change the config");
    write_conf(&conf, &bad);
    let out = b.v.try_mount(&[]);
    let _ = out.expect_code(code, "mount with a tampered config");
    assert!(
        out.stderr.contains(needle),
        "stderr must name '{needle}': {}",
        out.stderr
    );
    assert!(!is_mounted(&b.v.mnt));
    write_conf(&conf, &orig);
    b.v.mount();
    b.check_rest_works();
    b.v.umount();
}

fn write_conf(conf: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(conf, fs::Permissions::from_mode(0o600));
    fs::write(conf, bytes).unwrap();
}

fn put_u32(c: &mut [u8], off: usize, v: u32) {
    c[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn bench_unmounted(name: &str) -> Bench {
    let b = bench(name);
    b.v.umount();
    b
}

#[test]
fn config_kdf_cost_lowered_below_minimum() {
    require_fuse!();
    let b = bench_unmounted("conf-kdf-min");
    refused(
        &b,
        |c| put_u32(c, OFF_M_COST, 4096),
        exit::CORRUPT,
        "below the minimum",
    );
    refused(
        &b,
        |c| put_u32(c, OFF_T_COST, 0),
        exit::CORRUPT,
        "below the minimum",
    );
}

#[test]
fn config_kdf_cost_lowered_within_bounds() {
    require_fuse!();
    // init at m = 16 MiB, lower to the 8 MiB minimum: the KDF output changes,
    // so the passphrase no longer opens (refused as a wrong key: the config
    // MAC can only be checked with the KEK), and the recovery key refuses the
    // changed bytes through the config MAC.
    let v = TestVolume::uninitialised("conf-kdf-lower");
    let c = v.cipher.display().to_string();
    let pf = v.passfile.display().to_string();
    let init = dekfs([
        "init",
        &c,
        "--passfile",
        &pf,
        "--kdf-memory",
        "16384",
        "--kdf-time",
        "1",
        "--kdf-lanes",
        "1",
    ]);
    init.expect_code(exit::OK, "init");
    let rk = v.dir.path().join("rk");
    fs::write(&rk, parse_recovery_key(&init.stdout).unwrap()).unwrap();
    v.mount();
    fs::write(v.p("f"), b"data").unwrap();
    v.umount();
    let conf = v.cipher.join(CONF);
    let orig = fs::read(&conf).unwrap();
    let mut bad = orig.clone();
    assert_eq!(bad[OFF_M_COST..OFF_M_COST + 4], 16384u32.to_le_bytes());
    put_u32(&mut bad, OFF_M_COST, 8192);
    write_conf(&conf, &bad);
    v.try_mount(&[])
        .expect_code(exit::WRONG_KEY, "lowered KDF cost");
    assert!(!is_mounted(&v.mnt));
    let out = dekfs([
        "mount".as_ref(),
        v.cipher.as_os_str(),
        v.mnt.as_os_str(),
        "--recovery-key-file".as_ref(),
        rk.as_os_str(),
    ]);
    out.expect_code(exit::CORRUPT, "recovery unlock of a changed config");
    assert!(out.stderr.contains("MAC"), "{}", out.stderr);
    assert!(!is_mounted(&v.mnt));
    write_conf(&conf, &orig);
    v.mount();
    assert_eq!(read_file(&v.p("f")).unwrap(), b"data");
}

#[test]
fn config_version_decreased_and_increased() {
    require_fuse!();
    let b = bench_unmounted("conf-version");
    refused(&b, |c| c[OFF_VERSION] = 0, exit::UNSUPPORTED, "version 0");
    refused(&b, |c| c[OFF_VERSION] = 2, exit::UNSUPPORTED, "version 2");
}

#[test]
fn config_unknown_required_feature_bit() {
    require_fuse!();
    let b = bench_unmounted("conf-feature");
    // Bit 0 is PAGED (FORMAT.md, "Paged content"); every other bit is unknown.
    for bit in [1u32, 7, 31] {
        refused(
            &b,
            |c| put_u32(c, OFF_REQUIRED, 1 << bit),
            exit::UNSUPPORTED,
            "unsupported feature",
        );
    }
}

#[test]
fn config_protector_record_copied_from_another_volume() {
    require_fuse!();
    // same name = same passphrase: the foreign record really unwraps
    let b = bench_unmounted("conf-foreign");
    let other = TestVolume::new("conf-foreign");
    assert_eq!(other.passphrase, b.v.passphrase);
    let foreign = fs::read(other.cipher.join(CONF)).unwrap();
    let rec = foreign[OFF_PASS_REC..OFF_PASS_REC + PASS_REC_LEN].to_vec();
    refused(
        &b,
        |c| c[OFF_PASS_REC..OFF_PASS_REC + PASS_REC_LEN].copy_from_slice(&rec),
        exit::CORRUPT,
        "belongs to another volume",
    );
}

#[test]
fn config_kdf_cost_inflated_is_refused_quickly_and_the_override_works() {
    require_fuse!();
    // A forged config asks for the format's maximum (4 GiB, t=64): refused before Argon2 runs,
    // naming the parameters and the limit. No MAC fix-up needed: the refusal comes first.
    let b = bench_unmounted("conf-kdf-huge");
    let t0 = std::time::Instant::now();
    refused(
        &b,
        |c| {
            put_u32(c, OFF_M_COST, 4_194_304);
            put_u32(c, OFF_T_COST, 64);
        },
        exit::USAGE,
        "m_cost=4194304 KiB, t_cost=64, p_lanes=1 (limit m ≤",
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(60));

    // A volume made above the limit on purpose (t=17) opens with --allow-kdf-cost only.
    let v = TestVolume::uninitialised("conf-kdf-slow");
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let init = dekfs([
        "init",
        &c,
        "--passfile",
        &pf,
        "--kdf-memory",
        "8192",
        "--kdf-time",
        "17",
        "--kdf-lanes",
        "1",
    ]);
    init.expect_code(exit::OK, "init t=17");
    assert!(
        init.stderr.contains("unlocking will need --allow-kdf-cost"),
        "{}",
        init.stderr
    );
    let out = v.try_mount(&[]);
    out.expect_code(exit::USAGE, "mount above the unlock limit");
    assert!(
        out.stderr.contains("t_cost=17") && out.stderr.contains("--allow-kdf-cost"),
        "{}",
        out.stderr
    );
    assert!(!is_mounted(&v.mnt));
    v.mount_with(&["--allow-kdf-cost"]);
    v.umount();
}
