//! Crash inside a cross-directory move (issue 13 item 6): the daemon kills
//! itself (failpoint `rename.cross_dir.renamed`) after the new key slot is
//! written and synced, the entry renamed and both directories synced, but
//! before the old slot is cleared. After a remount the moved object must
//! read back at one of its two names and fsck must find nothing wrong. It
//! must not arm a failpoint for any other test (each mount sets its own
//! environment).

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const POINT: &str = "rename.cross_dir.renamed";

/// The move dies at the failpoint; the dead mount goes, the volume comes back.
fn crash_move(v: &TestVolume, from: &str, to: &str) {
    let err = fs::rename(v.p(from), v.p(to)).expect_err("the daemon dies mid-move");
    assert!(
        [libc::ENOTCONN, libc::ECONNABORTED].contains(&errno(&err)),
        "{err}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || pids_mentioning(&v.cipher)
            .is_empty()),
        "daemon still running after its failpoint"
    );
    assert!(
        !v.wait_log_lines(&["failpoint", POINT]).is_empty(),
        "the kill came from the failpoint:\n{}",
        v.log()
    );
    let _ = Command::new("fusermount3").arg("-uz").arg(&v.mnt).status();
    if is_mounted(&v.mnt) {
        let _ = Command::new("umount").arg("-l").arg(&v.mnt).status();
    }
    let out = v.fsck();
    assert!(
        out.ok() && out.stdout.contains(" 0 problem(s)"),
        "fsck after a crash mid-move:\n{}{}",
        out.stdout,
        out.stderr
    );
    v.mount();
}

/// The one of two paths that exists now.
fn one_of(v: &TestVolume, a: &str, b: &str) -> std::path::PathBuf {
    let (pa, pb) = (v.p(a), v.p(b));
    match (pa.symlink_metadata().is_ok(), pb.symlink_metadata().is_ok()) {
        (true, false) => pa,
        (false, true) => pb,
        other => panic!("expected exactly one of {a}, {b}: {other:?}"),
    }
}

#[test]
fn crash_between_rename_and_clearing_the_old_slot() {
    require_fuse!();
    let v = TestVolume::new("crash-rename");
    v.mount();
    for d in ["a", "b"] {
        fs::create_dir(v.p(d)).unwrap();
    }
    let data = random_bytes(13, 3 * 4096 + 100);
    let long = "l".repeat(220);
    v.create_file("a/f", &data);
    fs::create_dir(v.p("a/sub")).unwrap();
    v.create_file("a/sub/inner", b"inner");
    v.umount();
    v.mount_armed(POINT);
    crash_move(&v, "a/f", &format!("b/{long}"));
    let f = one_of(&v, "a/f", &format!("b/{long}"));
    assert_eq!(read_file(&f).unwrap(), data, "{}", f.display());
    v.umount();
    v.mount_armed(POINT);
    crash_move(&v, "a/sub", "b/sub");
    let sub = one_of(&v, "a/sub", "b/sub");
    assert_eq!(read_file(&sub.join("inner")).unwrap(), b"inner");
    // A move that completes afterwards clears the old slot as usual.
    fs::rename(&f, v.p("a/back")).unwrap();
    assert_eq!(read_file(&v.p("a/back")).unwrap(), data);
    v.umount();
    v.assert_fsck_clean("after the moves");
    assert!(!Path::new(&v.p("a/back")).exists(), "unmounted");
}
