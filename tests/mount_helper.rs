//! mount.fuse.dekfs: mount(8)'s convention translated into `dekfs mount`,
//! called directly and through `mount -t fuse.dekfs`; fstab's generic
//! options accepted, unknown dekfs options refused by name; `keysource=`
//! unlocking through the ask-password agents, the TPM fallback and `nofail`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use common::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The helper of the same profile as `dekfs`, built on first use (it lives
/// in another workspace member, so cargo does not build it for this test).
fn helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        let path = Path::new(DEKFS).with_file_name("dekfs-mount-helper");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-q", "-p", "mount-helper"]);
        if DEKFS.contains("/release/") {
            build.arg("--release");
        }
        let st = build.status().expect("run cargo build -p mount-helper");
        assert!(st.success(), "cargo build -p mount-helper failed");
        assert!(path.exists(), "{} not built", path.display());
        path
    })
}

/// Runs the helper with no controlling terminal (as at boot), PATH led by
/// `path_front` when given.
fn run_helper(args: &[&str], path_front: Option<&Path>) -> Out {
    let path = std::env::var("PATH").unwrap_or_default();
    let path = match path_front {
        Some(d) => format!("{}:{path}", d.display()),
        None => path,
    };
    let mut full = vec![
        format!("PATH={path}"),
        "setsid".into(),
        "-w".into(),
        s(helper()),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    run_cmd("env", &full, None)
}

/// A stand-in `systemd-ask-password` that records its argv in `argv.log`
/// and answers `answer` (the agent protocol itself is systemd's, tested in
/// tests/e2e/systemd.sh).
fn fake_asker(dir: &Path, answer: &str) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let script = bin.join("systemd-ask-password");
    let log = dir.join("argv.log");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nprintf '%s\\n' '{answer}'\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn asked(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join("argv.log")).ok()
}

#[track_caller]
fn assert_live_and_encrypted(v: &TestVolume) {
    assert!(is_mounted(&v.mnt), "{} not mounted", v.mnt.display());
    assert_eq!(mount_fstype(&v.mnt).as_deref(), Some("fuse.dekfs"));
    fs::write(v.p("plain-name.txt"), b"boot secret").unwrap();
    assert_eq!(fs::read(v.p("plain-name.txt")).unwrap(), b"boot secret");
    let names: Vec<String> = fs::read_dir(&v.cipher)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("plain-name")),
        "plaintext name in the cipher dir: {names:?}"
    );
}

#[test]
fn direct_call_mounts_and_accepts_generic_options() {
    require_fuse!();
    let v = TestVolume::new("mh-direct");
    let opts = format!(
        "rw,defaults,nofail,noauto,_netdev,users,nodev,nosuid,x-gvfs-show,passfile={}",
        s(&v.passfile)
    );
    let (c, m) = (s(&v.cipher), s(&v.mnt));
    let out = run_helper(&[&c, &m, "-o", &opts, "-n", "-s", "-v"], None);
    out.expect_code(exit::OK, "mount.fuse.dekfs with generic options");
    assert_live_and_encrypted(&v);
    v.umount();
}

#[test]
fn unknown_or_unsupported_options_are_refused_by_name() {
    require_fuse!();
    let v = TestVolume::new("mh-unknown");
    let (c, m) = (s(&v.cipher), s(&v.mnt));
    let pf = format!("passfile={}", s(&v.passfile));
    // A passphrase never travels in options: there is no such option.
    for (opt, needle) in [
        ("frobnicate", "`frobnicate`"),
        ("passphrase=hunter2", "`passphrase=hunter2`"),
        ("keysource=usb", "`keysource=usb`"),
    ] {
        let out = run_helper(&[&c, &m, "-o", &format!("ro,{opt},{pf}")], None);
        out.expect_code(exit::USAGE, opt);
        let line = format!("mount.fuse.dekfs: unknown mount option {needle}\n");
        let bad_value = format!("mount.fuse.dekfs: mount option {needle} has a malformed value\n");
        assert!(
            out.stderr == line || out.stderr == bad_value,
            "{opt}: {}",
            out.stderr
        );
        assert!(!is_mounted(&v.mnt), "{opt} mounted");
    }
    let out = run_helper(&[&c, &m, "-o", &format!("idle=10min,{pf}")], None);
    out.expect_code(exit::OK, "idle=");
    assert!(is_mounted(&v.mnt));
    v.umount();
    // -f (mount -f): checks, mounts nothing
    run_helper(&[&c, &m, "-f", "-o", &pf], None).expect_code(exit::OK, "-f");
    assert!(!is_mounted(&v.mnt));
}

/// libmount runs /sbin/mount.fuse.dekfs (a fixed path, not PATH); only this
/// test installs it, and puts back whatever was there.
#[test]
fn mount_8_runs_the_helper() {
    require_fuse!();
    static SBIN: Mutex<()> = Mutex::new(());
    let _g = SBIN.lock().unwrap();
    let link = Path::new("/sbin/mount.fuse.dekfs");
    let backup = Path::new("/sbin/mount.fuse.dekfs.dekfs-test-backup");
    let had = fs::symlink_metadata(link).is_ok();
    if had {
        fs::rename(link, backup).unwrap();
    }
    std::os::unix::fs::symlink(helper(), link).unwrap();
    let restore = scopeguard(move || {
        let _ = fs::remove_file(link);
        if had {
            let _ = fs::rename(backup, link);
        }
    });
    let v = TestVolume::new("mh-mount8");
    let (c, m) = (s(&v.cipher), s(&v.mnt));
    let pf = format!("passfile={}", s(&v.passfile));
    let out = run_cmd(
        "mount",
        [
            "-t",
            "fuse.dekfs",
            &c,
            &m,
            "-o",
            &format!("nofail,{pf},bogus_opt"),
        ],
        None,
    );
    assert_ne!(out.code, Some(0), "mount(8) accepted bogus_opt");
    assert!(out.stderr.contains("`bogus_opt`"), "{}", out.stderr);
    assert!(!is_mounted(&v.mnt));
    let out = run_cmd(
        "mount",
        [
            "-t",
            "fuse.dekfs",
            &c,
            &m,
            "-o",
            &format!("defaults,nofail,{pf}"),
        ],
        None,
    );
    out.expect_code(exit::OK, "mount -t fuse.dekfs");
    assert_live_and_encrypted(&v);
    v.umount();
    drop(restore);
}

#[test]
fn keysource_ask_uses_the_agents_without_a_terminal() {
    require_fuse!();
    let v = TestVolume::new("mh-ask");
    let bin = fake_asker(v.dir.path(), &v.passphrase);
    let (c, m) = (s(&v.cipher), s(&v.mnt));
    let out = run_helper(&[&c, &m, "-o", "keysource=ask"], Some(&bin));
    out.expect_code(exit::OK, "keysource=ask");
    let argv = asked(v.dir.path()).expect("systemd-ask-password was not run");
    assert!(argv.contains("--timeout="), "unbounded ask: {argv}");
    assert!(argv.contains(&format!("--id=dekfs:{m}")), "{argv}");
    assert!(!argv.contains(&v.passphrase));
    assert_live_and_encrypted(&v);
    v.umount();

    // A wrong answer is a wrong key, not a hang.
    let v2 = TestVolume::new("mh-ask-wrong");
    let bin = fake_asker(v2.dir.path(), "not it");
    let (c, m) = (s(&v2.cipher), s(&v2.mnt));
    let out = run_helper(&[&c, &m, "-o", "keysource=ask"], Some(&bin));
    out.expect_code(exit::WRONG_KEY, "keysource=ask, wrong answer");
    assert!(!is_mounted(&v2.mnt));
}

#[test]
fn keysource_tpm_falls_back_to_asking_unless_nofail_or_headless() {
    require_fuse!();
    // No tpm2 protector: the TPM refuses, as it would with changed PCRs.
    let v = TestVolume::new("mh-tpm");
    let bin = fake_asker(v.dir.path(), &v.passphrase);
    let (c, m) = (s(&v.cipher), s(&v.mnt));
    let out = run_helper(&[&c, &m, "-o", "keysource=tpm,nofail"], Some(&bin));
    out.expect_code(exit::TPM_POLICY, "keysource=tpm,nofail without the TPM");
    assert!(asked(v.dir.path()).is_none(), "nofail must not ask");
    assert!(!is_mounted(&v.mnt));
    // What a mount unit passes: systemd has removed nofail by then.
    let out = run_helper(&[&c, &m, "-o", "keysource=tpm,headless"], Some(&bin));
    out.expect_code(exit::TPM_POLICY, "keysource=tpm,headless without the TPM");
    assert!(
        out.stderr.contains("headless: not asking"),
        "{}",
        out.stderr
    );
    assert!(asked(v.dir.path()).is_none(), "headless must not ask");
    assert!(!is_mounted(&v.mnt));
    let out = run_helper(&[&c, &m, "-o", "keysource=tpm"], Some(&bin));
    out.expect_code(exit::OK, "keysource=tpm falling back to ask-password");
    assert!(asked(v.dir.path()).is_some(), "the fallback did not ask");
    assert_live_and_encrypted(&v);
    v.umount();
}

#[test]
fn keysource_recovery_reads_the_key_file_named_by_passfile() {
    require_fuse!();
    let v = TestVolume::new("mh-recovery");
    let rk = v.recovery_key.clone().expect("init printed a recovery key");
    let rkfile = v.dir.path().join("recovery.key");
    fs::write(&rkfile, format!("{rk}\n")).unwrap();
    let (c, m) = (s(&v.cipher), s(&v.mnt));
    // The passphrase file is not a recovery key.
    let out = run_helper(
        &[
            &c,
            &m,
            "-o",
            &format!("keysource=recovery,passfile={}", s(&v.passfile)),
        ],
        None,
    );
    assert_ne!(out.code, Some(0), "passphrase accepted as a recovery key");
    let out = run_helper(
        &[
            &c,
            &m,
            "-o",
            &format!("keysource=recovery,passfile={}", s(&rkfile)),
        ],
        None,
    );
    out.expect_code(exit::OK, "keysource=recovery");
    assert_live_and_encrypted(&v);
    v.umount();
}

/// Runs `f` when dropped (no dependency for one guard).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct G<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for G<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    G(Some(f))
}
