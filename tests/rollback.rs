//! Config rollback protection end to end: after a rekey, a restored pre-rotation backup of the
//! cipher directory is refused by every unlock (fsck, mount, rekey) and flagged by `status`
//! (exit 17, both versions named, a hint); `--allow-rollback` and `$DEKFS_ALLOW_ROLLBACK`
//! accept it with a warning; a machine without a record accepts and records; a damaged record
//! is rewritten; a normal user keeps records under its own state directory. The mount check
//! needs FUSE; the rest does not.

mod common;
mod rekey_support;

use common::*;
use rekey_support::rekey;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn vid_hex(cipher: &Path) -> String {
    let conf = fs::read(cipher.join(CONF)).unwrap();
    conf[20..36].iter().map(|b| format!("{b:02x}")).collect()
}

/// This run's record of the volume (under $DEKFS_STATE_DIR in `cargo test`).
fn root_record(cipher: &Path) -> PathBuf {
    dekfs::volume::rollback::seen_dir()
        .expect("state dir")
        .join(vid_hex(cipher))
}

fn fsck_with(v: &TestVolume, extra: &[&str]) -> Out {
    let mut a = vec![
        "fsck",
        v.cipher.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
    ];
    a.extend(extra);
    dekfs(a)
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success(), "cp -a");
}

#[test]
fn restored_backup_is_refused_until_allowed() {
    assert!(rustix::process::geteuid().is_root(), "needs root");
    let v = TestVolume::with_init_args("rollback", &["--no-recovery-key"]);
    let record = root_record(&v.cipher);
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        "dekfs-seen v1\nkek 1\n",
        "init records"
    );
    let meta = fs::metadata(&record).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(record.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    let backup = v.dir.path().join("backup");
    copy_tree(&v.cipher, &backup);
    rekey(&v, &[], None).expect_code(exit::OK, "rekey");
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        "dekfs-seen v1\nkek 2\n",
        "rekey raises"
    );
    // the backup goes back: the whole cipher directory, consistent with its old config
    fs::remove_dir_all(&v.cipher).unwrap();
    copy_tree(&backup, &v.cipher);
    let o = fsck_with(&v, &[]);
    o.expect_code(exit::ROLLBACK, "fsck of a rolled-back config")
        .expect_one_line_error("rollback");
    assert!(
        o.stderr.contains("KEK version 1") && o.stderr.contains("seen version 2"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("--allow-rollback") && o.stderr.contains(record.to_str().unwrap()),
        "{}",
        o.stderr
    );
    let st = dekfs(["status", v.cipher.to_str().unwrap()]);
    st.expect_code(exit::ROLLBACK, "status");
    assert!(st.stdout.contains("ROLLBACK:"), "{}", st.stdout);
    let st = dekfs(["status", v.cipher.to_str().unwrap(), "--json"]);
    st.expect_code(exit::ROLLBACK, "status --json");
    let j: serde_json::Value = serde_json::from_str(st.stdout.trim()).unwrap();
    assert_eq!(
        (j["rollback"].clone(), j["seen_kek_version"].clone()),
        (true.into(), 2.into())
    );
    rekey(&v, &[], None).expect_code(exit::ROLLBACK, "rekey of a rolled-back config");
    if fuse_available().is_ok() {
        v.try_mount(&[]).expect_code(exit::ROLLBACK, "mount");
    }
    // the override, flag and variable: accepted with a warning; the record is not lowered
    let o = fsck_with(&v, &["--allow-rollback"]);
    o.expect_code(exit::OK, "fsck --allow-rollback");
    assert!(
        o.stderr.contains("warning: --allow-rollback"),
        "{}",
        o.stderr
    );
    let o = Command::new(DEKFS)
        .args(["fsck", v.cipher.to_str().unwrap(), "--passfile"])
        .arg(&v.passfile)
        .env("DEKFS_ALLOW_ROLLBACK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        "dekfs-seen v1\nkek 2\n"
    );
    // a rotation with the override moves the volume past the record again
    rekey(&v, &["--allow-rollback"], None).expect_code(exit::OK, "rekey --allow-rollback");
    fsck_with(&v, &[]).expect_code(exit::OK, "fsck after rotating past the record");
}

#[test]
fn no_record_accepts_and_records_and_a_damaged_one_is_rewritten() {
    let v = TestVolume::with_init_args("rollback-fresh", &["--no-recovery-key"]);
    let record = root_record(&v.cipher);
    fs::remove_file(&record).unwrap();
    fsck_with(&v, &[]).expect_code(exit::OK, "fsck on a machine without a record");
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        "dekfs-seen v1\nkek 1\n"
    );
    fs::write(&record, "garbage").unwrap();
    let o = fsck_with(&v, &[]);
    o.expect_code(exit::OK, "fsck with a damaged record");
    assert!(o.stderr.contains("is damaged"), "{}", o.stderr);
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        "dekfs-seen v1\nkek 1\n"
    );
    // a higher record (this machine saw a later config) refuses the current one
    fs::write(&record, "dekfs-seen v1\nkek 9\n").unwrap();
    fsck_with(&v, &[]).expect_code(exit::ROLLBACK, "record above the config");
}

#[test]
fn root_keeps_records_in_var_lib_dekfs() {
    assert!(rustix::process::geteuid().is_root(), "needs root");
    let dir = scratch_dir("dekfs-rollback-varlib-");
    let (cipher, pass) = (dir.path().join("c"), dir.path().join("pass"));
    fs::write(&pass, "pw\n").unwrap();
    let mut args = vec![
        "init",
        cipher.to_str().unwrap(),
        "--passfile",
        pass.to_str().unwrap(),
        "--no-recovery-key",
    ];
    args.extend(FAST_KDF);
    let o = Command::new(DEKFS)
        .args(&args)
        .env_remove("DEKFS_STATE_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record = Path::new("/var/lib/dekfs/seen").join(vid_hex(&cipher));
    let text = fs::read_to_string(&record);
    let _ = fs::remove_file(&record);
    assert_eq!(text.unwrap(), "dekfs-seen v1\nkek 1\n");
    let m = fs::metadata("/var/lib/dekfs/seen").unwrap();
    assert_eq!(m.mode() & 0o777, 0o700);
    assert!(!root_record(&cipher).exists(), "only the default location");
}

const USER: &str = "tests";

fn user_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, USER]).output().unwrap();
        assert!(
            out.status.success(),
            "no `{USER}` user: run scripts/deps.sh"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// `dekfs ARGS` as the `tests` user with HOME (and optionally XDG_STATE_HOME) set.
fn as_user(home: &Path, xdg_state: Option<&Path>, args: &[&str]) -> std::process::Output {
    let (uid, gid) = user_ids();
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
    ])
    .arg(DEKFS)
    .args(args)
    .env("HOME", home)
    .env_remove("DEKFS_STATE_DIR")
    .env_remove("XDG_STATE_HOME");
    if let Some(x) = xdg_state {
        c.env("XDG_STATE_HOME", x);
    }
    c.output().unwrap()
}

#[test]
fn a_normal_user_keeps_records_in_its_state_dir() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root to switch users"
    );
    let (uid, gid) = user_ids();
    let scratch = scratch_dir("dekfs-rollback-user-");
    let top = scratch.path();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    let home = top.join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let (cipher, pass) = (home.join("cipher"), home.join("pass"));
    fs::write(&pass, "a user's passphrase\n").unwrap();
    std::os::unix::fs::chown(&pass, Some(uid), Some(gid)).unwrap();
    let (c, p) = (cipher.to_str().unwrap(), pass.to_str().unwrap());
    let mut init = vec!["init", c, "--passfile", p, "--no-recovery-key"];
    init.extend(FAST_KDF);
    let o = as_user(&home, None, &init);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = home.join(".local/state/dekfs/seen");
    let record = dir.join(vid_hex(&cipher));
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        "dekfs-seen v1\nkek 1\n"
    );
    let m = fs::metadata(&record).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o600));
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    assert!(
        !root_record(&cipher).exists(),
        "a user's record is not root's"
    );
    assert!(!Path::new("/var/lib/dekfs/seen")
        .join(vid_hex(&cipher))
        .exists());
    // $XDG_STATE_HOME wins over ~/.local/state
    let xdg = home.join("xdg");
    let o = as_user(&home, Some(&xdg), &["fsck", c, "--passfile", p]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let xrec = xdg.join("dekfs/seen").join(vid_hex(&cipher));
    assert_eq!(fs::read_to_string(&xrec).unwrap(), "dekfs-seen v1\nkek 1\n");
    // and the user's record is what the user's unlock checks
    fs::write(&record, "dekfs-seen v1\nkek 4\n").unwrap();
    let o = as_user(&home, None, &["fsck", c, "--passfile", p]);
    assert_eq!(
        o.status.code(),
        Some(exit::ROLLBACK),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
