//! The test harness cleans up after itself (issue 13 item 21): a dropped
//! TestVolume leaves no directory and no mount behind, also when its cipher
//! dir is a tmpfs and when its daemon was killed. It must only test the
//! harness (tests/common), not dekfs behaviour.

mod common;

use common::*;
use std::path::PathBuf;

/// Drops `v` and says what of its temp dir is left (None: nothing).
fn leftovers(v: TestVolume) -> Option<String> {
    let dir: PathBuf = v.dir.path().to_owned();
    let mnt = v.mnt.clone();
    let cipher = v.cipher.clone();
    drop(v);
    let mounts: Vec<_> = [&mnt, &cipher]
        .into_iter()
        .filter(|p| is_mounted(p))
        .collect();
    (dir.exists() || !mounts.is_empty()).then(|| {
        let listing = if dir.exists() {
            list_tree(&dir).into_keys().collect()
        } else {
            Vec::new()
        };
        format!("{} left: {listing:?}, mounted: {mounts:?}", dir.display())
    })
}

#[test]
fn mounted_volume_on_tmpfs_leaves_nothing() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("cleanup-tmpfs", "8m");
    v.mount();
    std::fs::write(v.p("f"), b"data").unwrap();
    assert_eq!(leftovers(v), None);
}

#[test]
fn mounted_volume_leaves_nothing() {
    require_fuse!();
    let v = TestVolume::new("cleanup-plain");
    v.mount();
    std::fs::create_dir(v.p("d")).unwrap();
    std::fs::write(v.p("d/f"), b"data").unwrap();
    assert_eq!(leftovers(v), None);
}

#[test]
fn volume_whose_daemon_was_killed_leaves_nothing() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("cleanup-killed", "8m");
    v.mount();
    for pid in pids_mentioning(&v.cipher) {
        run_cmd("kill", ["-KILL", &pid.to_string()], None);
    }
    assert_eq!(leftovers(v), None);
}

#[test]
fn uninitialised_volume_and_scratch_dir_leave_nothing() {
    let v = TestVolume::uninitialised("cleanup-uninit");
    assert_eq!(leftovers(v), None);
    let s = scratch_dir("dekfs-cleanup-scratch-");
    let p = s.path().to_owned();
    std::fs::write(p.join("x"), b"x").unwrap();
    drop(s);
    assert!(!p.exists(), "{} left behind", p.display());
}

#[test]
fn volume_with_a_mount_of_its_own_inside_leaves_nothing() {
    require_fuse!();
    // What a test that mounts a second mountpoint in the volume's dir and
    // fails before unmounting it leaves at drop.
    let v = TestVolume::new("cleanup-inner-mount");
    let inner = v.mnt.with_file_name("mnt2");
    std::fs::create_dir(&inner).unwrap();
    let out = run_cmd(
        "mount",
        ["-t", "tmpfs", "tmpfs", &inner.display().to_string()],
        None,
    );
    assert!(out.ok(), "mount tmpfs: {out:?}");
    std::fs::write(inner.join("f"), b"x").unwrap();
    assert_eq!(leftovers(v), None);
    assert!(!is_mounted(&inner));
}
