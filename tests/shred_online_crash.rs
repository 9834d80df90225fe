//! Online shred and crashes, and its speed (issue 11): kill -9 of the
//! daemon at each shred failpoint, then a read-only mount shows every victim
//! file whole or unreadable and the rest intact, a read-write mount finishes
//! the journal silently, and a rerun says the path is gone; and the time
//! from the request until every key of a large tree is destroyed and synced
//! on tmpfs and on disk (DEKFS_SHRED_PERF_FILES / DEKFS_SHRED_PERF_DIRS).

mod common;
mod shred_kit;

use common::*;
use dekfs::engine::shred;
use shred_kit::fill;
use shred_kit::online::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

/// Unmounts what a killed daemon left.
fn reap(v: &TestVolume) {
    assert!(
        wait_until(Duration::from_secs(5), || pids_mentioning(&v.cipher)
            .is_empty()),
        "daemon still running after its failpoint"
    );
    let _ = Command::new("fusermount3").arg("-uz").arg(&v.mnt).status();
    if is_mounted(&v.mnt) {
        let _ = Command::new("umount").arg("-l").arg(&v.mnt).status();
    }
}

#[test]
fn kill9_of_the_daemon_at_each_step_then_the_mount_finishes_it() {
    require_fuse!();
    for point in [
        shred::FP_JOURNAL,
        shred::FP_HALF,
        shred::FP_SYNCED,
        shred::FP_CONTENTS,
        shred::FP_REMOVED,
    ] {
        let v = TestVolume::new("shred-online-kill9");
        v.mount();
        let victim = fill(&v, "/victim", 4, 40, 1);
        let keep = fill(&v, "/keep", 2, 10, 500);
        v.umount();
        v.mount_armed(point);
        let out = shred_online(&[v.p("/victim").as_os_str()]);
        assert_ne!(
            out.code,
            Some(exit::OK),
            "{point}: the daemon died: {}",
            out.stderr
        );
        reap(&v);
        assert!(
            v.cipher.join(shred::JOURNAL_NAME).exists(),
            "{point}: journal"
        );

        // Read-only: the journal stays (with a warning); each victim file
        // reads whole or not at all, the rest is intact.
        let ro = v.try_mount(&["-o", "ro"]);
        ro.expect_code(exit::OK, "read-only mount");
        assert!(
            ro.stderr.contains("interrupted shred is pending"),
            "{}",
            ro.stderr
        );
        let (mut whole, mut lost) = (0, 0);
        for (p, data) in &victim {
            match fs::read(v.p(p)) {
                Ok(got) => {
                    assert!(got == *data, "{point}: {p} reads but differs");
                    whole += 1;
                }
                Err(_) => lost += 1,
            }
        }
        for (p, data) in &keep {
            assert!(fs::read(v.p(p)).unwrap() == *data, "{point}: {p}");
        }
        println!("{point}: {whole} whole, {lost} unreadable");
        if point != shred::FP_JOURNAL {
            assert_eq!(lost, victim.len(), "{point}: the top key died first");
        }
        v.umount();

        // A read-write mount finishes it, printing nothing.
        let out = v.try_mount(&[]);
        out.expect_code(exit::OK, "mount finishes the shred");
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("", ""),
            "{point}"
        );
        assert!(!v.cipher.join(shred::JOURNAL_NAME).exists(), "{point}");
        assert!(fs::symlink_metadata(v.p("/victim")).is_err(), "{point}");
        let again = shred_online(&[v.p("/victim").as_os_str()]);
        again.expect_code(exit::OTHER, "rerun");
        assert!(again.stderr.contains("no such file"), "{}", again.stderr);
        for (p, data) in &keep {
            assert!(fs::read(v.p(p)).unwrap() == *data, "{point}: {p}");
        }
        v.umount();
        v.assert_fsck_clean(point);
    }
}

fn perf(v: &TestVolume, what: &str, files: usize, dirs: usize) {
    v.mount();
    fill(v, "/big", dirs, files, 7);
    // The fill's own writeback is not the shred's cost.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let out = shred_online(&[v.p("/big").as_os_str()]);
    out.expect_code(exit::OK, "perf shred");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("overwritten and synced"))
        .unwrap_or_default()
        .to_owned();
    println!("PERF {what}: {files} files in {dirs} dirs: {line}");
    v.umount();
}

#[test]
fn time_until_every_key_is_destroyed_and_synced() {
    require_fuse!();
    let (files, dirs) = (
        env_or("DEKFS_SHRED_PERF_FILES", 2000),
        env_or("DEKFS_SHRED_PERF_DIRS", 100),
    );
    perf(
        &TestVolume::on_tmpfs("shred-online-perf-tmpfs", "2g"),
        "tmpfs",
        files,
        dirs,
    );
    perf(
        &TestVolume::new("shred-online-perf-disk"),
        "disk",
        files,
        dirs,
    );
}
