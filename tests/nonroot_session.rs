//! A real session of a normal user: as the `tests` user (scripts/deps.sh makes it), in a
//! directory that user owns, `dekfs init`, mount through fusermount3, mkdir, create, rename
//! (within and across directories), remove, user.* xattrs, live `status`, `lock` and `unlock`, `umount`. The user's
//! part runs in a helper process of this binary switched to that user with setpriv. Needs root
//! (to switch users). Must not touch anything outside its temp dir.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const USER: &str = "tests";
const HELPER_ENV: &str = "DEKFS_NONROOT_HOME";

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

/// Unmounts and stops whatever the user's session left behind, whatever happened.
struct Cleanup {
    cipher: PathBuf,
    mnt: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        for pid in pids_mentioning(&self.cipher) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

#[test]
fn nonroot_user_session_init_mount_use_umount() {
    require_fuse!();
    let (uid, gid) = user_ids();
    let scratch = scratch_dir("dekfs-nonroot-");
    let top = scratch.path();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    let home = top.join("home");
    let xdg = home.join("run");
    for d in [&home, &xdg, &home.join("cipher"), &home.join("mnt")] {
        fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let _cleanup = Cleanup {
        cipher: home.join("cipher"),
        mnt: home.join("mnt"),
    };
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "helper_user_session", "--ignored", "--nocapture"])
        .env(HELPER_ENV, &home)
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &xdg)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let log = fs::read_to_string(home.join("daemon.log")).unwrap_or_default();
    assert!(
        out.status.success() && stdout.contains("RESULT session complete"),
        "the user's session failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- daemon log\n{log}"
    );
    assert!(!is_mounted(&home.join("mnt")), "still mounted after umount");
    let gone = wait_until(Duration::from_secs(2), || {
        pids_mentioning(&home.join("cipher")).is_empty()
    });
    assert!(gone, "the user's daemon is still running after umount");
}

/// Runs `dekfs` as the helper's user and checks its exit code.
fn user_dekfs(args: &[&str], what: &str) -> Out {
    let out = dekfs(args);
    out.expect_code(exit::OK, what);
    out
}

fn owner(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().uid()
}

/// Helper process, run as the `tests` user by the test above.
#[test]
#[ignore = "helper process for nonroot_user_session_init_mount_use_umount"]
fn helper_user_session() {
    let Some(home) = std::env::var_os(HELPER_ENV).map(PathBuf::from) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    assert_ne!(me, 0, "the helper must not run as root");
    let (cipher, mnt, pass, log) = (
        home.join("cipher"),
        home.join("mnt"),
        home.join("passfile"),
        home.join("daemon.log"),
    );
    fs::write(&pass, "a normal user's passphrase\n").unwrap();
    let (c, m, p, l) = (
        cipher.to_str().unwrap(),
        mnt.to_str().unwrap(),
        pass.to_str().unwrap(),
        log.to_str().unwrap(),
    );
    let mut init = vec!["init", c, "--passfile", p];
    init.extend(FAST_KDF);
    user_dekfs(&init, "init as a normal user");
    user_dekfs(
        &["mount", c, m, "--passfile", p, "--log-file", l],
        "mount through fusermount3",
    );
    assert!(is_mounted(&mnt), "mount returned 0 but nothing is mounted");
    assert_eq!(mount_fstype(&mnt).as_deref(), Some("fuse.dekfs"));

    // mkdir: the new directory and its backing metadata belong to the user
    fs::create_dir(mnt.join("d")).unwrap_or_else(|e| panic!("mkdir as a normal user: {e}"));
    assert_eq!(owner(&mnt.join("d")), me);
    let backing_dirs: Vec<PathBuf> = fs::read_dir(&cipher)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(backing_dirs.len(), 1, "{backing_dirs:?}");
    assert_eq!(owner(&backing_dirs[0].join(DIR_META)), me);

    // create, read back, rename within and across directories
    let data = random_bytes(9, 20_000);
    fs::write(mnt.join("d/f"), &data).unwrap();
    assert_eq!(owner(&mnt.join("d/f")), me);
    fs::rename(mnt.join("d/f"), mnt.join("d/g")).unwrap();
    fs::rename(mnt.join("d/g"), mnt.join("top")).unwrap();
    fs::create_dir(mnt.join("d/sub")).unwrap();
    fs::rename(mnt.join("d"), mnt.join("e")).unwrap();
    assert_eq!(fs::read(mnt.join("top")).unwrap(), data);
    assert_eq!(dir_names(&mnt), vec!["e", "top"]);
    assert_eq!(dir_names(&mnt.join("e")), vec!["sub"]);

    // user.* xattrs on a file and a directory
    for target in [mnt.join("top"), mnt.join("e")] {
        set_xattr(&target, "user.note", b"kept").unwrap();
        assert_eq!(get_xattr(&target, "user.note").unwrap(), b"kept");
        assert!(list_xattr(&target)
            .unwrap()
            .contains(&"user.note".to_string()));
        remove_xattr(&target, "user.note").unwrap();
        assert!(get_xattr(&target, "user.note").is_err());
    }

    // status of the user's live mount, with the daemon's own figures
    let st = user_dekfs(&["status", m], "status of the user's mount");
    assert!(
        st.stdout.contains(&format!("mounted at:     {m}")),
        "status does not see the mount: {}",
        st.stdout
    );
    let js = user_dekfs(&["status", m, "--json"], "status --json");
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert!(
        v["live"]["pid"].as_u64().is_some(),
        "live figures: {}",
        js.stdout
    );
    assert_eq!(v["live"]["locked"], false, "{}", js.stdout);

    // lock and unlock the user's own mount through its control socket
    user_dekfs(&["lock", m], "lock as a normal user");
    let e = fs::read(mnt.join("top")).expect_err("a read of a locked volume");
    assert_eq!(e.raw_os_error(), Some(libc::EKEYREVOKED), "{e}");
    let js = user_dekfs(&["status", m, "--json"], "status --json while locked");
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["live"]["locked"], true, "{}", js.stdout);
    user_dekfs(&["unlock", m, "--passfile", p], "unlock as a normal user");
    assert_eq!(fs::read(mnt.join("top")).unwrap(), data, "after unlock");

    // remove
    fs::remove_file(mnt.join("top")).unwrap();
    fs::remove_dir(mnt.join("e/sub")).unwrap();
    fs::remove_dir(mnt.join("e")).unwrap();
    assert!(dir_names(&mnt).is_empty());

    user_dekfs(&["umount", m], "umount as a normal user");
    assert!(
        !is_mounted(&mnt),
        "umount returned 0 but it is still mounted"
    );
    // everything the daemon made belongs to the user
    for e in fs::read_dir(&cipher).unwrap().flatten() {
        assert_eq!(owner(&e.path()), me, "{}", e.path().display());
    }
    println!("RESULT session complete");
}
