//! Crash safety and completeness of offline shred (issue 11): kill -9 at
//! each failpoint of a shred, then a rerun finishes it, with every file
//! under the path fully readable or unreadable in between and the rest of
//! the volume intact; an attacker holding the config, the passphrase and a
//! copy of the cipher directory taken just before the removal step opens
//! nothing under the path, including a file caught mid-move from a
//! directory outside it (its old slot wraps it for that directory).

mod common;
mod shred_kit;

use common::*;
use dekfs::engine::shred::{self, Journal};
use shred_kit::*;
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

/// A cross-directory move that dies after the new slot and the rename are
/// durable, before the old slot is cleared.
fn crash_move(v: &TestVolume, from: &str, to: &str) {
    v.mount_armed("rename.cross_dir.renamed");
    fs::rename(v.p(from), v.p(to)).expect_err("the daemon dies mid-move");
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

/// Every victim file reads back whole or not at all; the others intact.
/// Read-only, so the mount leaves the pending journal alone (a read-write
/// mount finishes it).
fn assert_all_or_nothing(
    v: &TestVolume,
    victim: &BTreeMap<String, Vec<u8>>,
    keep: &BTreeMap<String, Vec<u8>>,
    when: &str,
) -> (usize, usize) {
    v.mount_with(&["-o", "ro"]);
    let (mut whole, mut gone) = (0, 0);
    for (p, data) in victim {
        match fs::read(v.p(p)) {
            Ok(got) => {
                assert!(got == *data, "{when}: {p} reads but differs");
                whole += 1;
            }
            Err(_) => gone += 1,
        }
    }
    for (p, data) in keep {
        assert!(fs::read(v.p(p)).unwrap() == *data, "{when}: {p} changed");
    }
    v.umount();
    (whole, gone)
}

#[test]
fn kill9_at_each_step_then_rerun_finishes() {
    require_fuse!();
    for point in [
        shred::FP_JOURNAL,
        shred::FP_HALF,
        shred::FP_SYNCED,
        shred::FP_CONTENTS,
        shred::FP_REMOVED,
    ] {
        let v = TestVolume::new("shred-kill9");
        v.mount();
        let victim = fill(&v, "/victim", 4, 40, 1);
        let keep = fill(&v, "/keep", 2, 10, 500);
        v.umount();
        shred_killed_at(&v, "/victim", point);
        assert!(v.cipher.join("dekfs.shred").exists(), "{point}: journal");
        let (whole, gone) = assert_all_or_nothing(&v, &victim, &keep, point);
        println!("{point}: {whole} whole, {gone} unreadable");
        if point == shred::FP_JOURNAL {
            assert_eq!(whole, victim.len(), "nothing destroyed before the journal");
        } else {
            assert_eq!(gone, victim.len(), "{point}: after the dir key died");
        }
        if point == shred::FP_HALF {
            let out = v.fsck();
            assert!(
                out.stdout.contains("interrupted shred is pending"),
                "{}",
                out.stdout
            );
            let (c, pf) = (v.cipher.to_str().unwrap(), v.passfile.to_str().unwrap());
            dekfs(["fsck", c, "--passfile", pf, "--repair"]).expect_code(
                exit::MOUNT_FAILED,
                "repair refused while a shred is pending",
            );
        }
        // A rerun without a path finishes the job from the journal alone.
        let out = shred(&v, None, &["--verify"]);
        out.expect_code(exit::OK, "rerun");
        assert!(
            out.stdout.contains("finishing an interrupted shred"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains(": clean"), "{}", out.stdout);
        assert!(!v.cipher.join("dekfs.shred").exists());
        v.assert_fsck_clean(point);
        v.mount();
        assert!(fs::symlink_metadata(v.p("/victim")).is_err(), "{point}");
        for (p, data) in &keep {
            assert!(fs::read(v.p(p)).unwrap() == *data, "{point}: {p}");
        }
        v.umount();
    }
}

#[test]
fn copy_before_removal_opens_nothing_even_through_an_old_move_slot() {
    require_fuse!();
    let v = TestVolume::new("shred-attack");
    v.mount();
    fs::create_dir(v.p("/outside")).unwrap();
    let moved = random_bytes(5, 9000);
    fs::write(v.p("/outside/moved"), &moved).unwrap();
    fill(&v, "/victim", 3, 30, 1);
    let keep = fill(&v, "/keep", 2, 10, 700);
    v.umount();
    crash_move(&v, "/outside/moved", "/victim/moved");
    v.mount();
    assert_eq!(
        fs::read(v.p("/victim/moved")).unwrap(),
        moved,
        "the move landed"
    );
    v.umount();

    // A dekfs.dir temp file a crash left in the subtree holds the same key.
    let j0 = {
        shred_killed_at(&v, "/victim", shred::FP_JOURNAL);
        Journal::parse(&fs::read_to_string(v.cipher.join("dekfs.shred")).unwrap()).unwrap()
    };
    let sub = fs::read_dir(v.cipher.join(&j0.entry))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    fs::copy(sub.join(DIR_META), sub.join("dekfs.dir.tmp")).unwrap();

    // Journal written, nothing destroyed yet: the attack works.
    let ids = journal_ids(&v.cipher);
    let loot = attack(&v.cipher, &v.passphrase, &ids);
    assert!(loot.tried_destroyed >= 34, "{loot:?}");
    assert_eq!(
        loot.opened_destroyed.len(),
        loot.tried_destroyed,
        "{loot:?}"
    );

    // Killing only the victim's own dekfs.dir (the review's finding) would
    // leave the moved file open through its old slot.
    let naive = v.dir.path().join("naive");
    copy_tree(&v.cipher, &naive);
    let j = Journal::parse(&fs::read_to_string(naive.join("dekfs.shred")).unwrap()).unwrap();
    let meta = naive.join(&j.entry).join(DIR_META);
    let mut b = fs::read(&meta).unwrap();
    b[80..224].fill(0);
    fs::write(&meta, &b).unwrap();
    let loot = attack(&naive, &v.passphrase, &ids);
    assert_eq!(
        loot.opened_destroyed.len(),
        1,
        "only the moved file: {loot:?}"
    );

    // The real shred, stopped after every slot is destroyed and synced,
    // before any ciphertext is removed.
    shred_killed_at(&v, "/victim", shred::FP_SYNCED);
    let copy = v.dir.path().join("copy");
    copy_tree(&v.cipher, &copy);
    let loot = attack(&copy, &v.passphrase, &ids);
    println!("attack on the pre-removal copy: {loot:?}");
    assert_eq!(loot.tried_destroyed, 36, "{loot:?}");
    assert!(loot.opened_destroyed.is_empty(), "{loot:?}");
    assert!(
        loot.opened_other >= 12,
        "the attack opens the rest: {loot:?}"
    );

    shred(&v, None, &["--verify"]).expect_code(exit::OK, "finish");
    v.assert_fsck_clean("after the shred");
    v.mount();
    assert!(dir_names(&v.p("/outside")).is_empty());
    for (p, data) in &keep {
        assert!(fs::read(v.p(p)).unwrap() == *data, "{p}");
    }
    v.umount();
}

#[test]
fn a_name_recreated_after_an_interrupted_shred_is_left_alone() {
    require_fuse!();
    let v = TestVolume::new("shred-recreated");
    v.mount();
    fill(&v, "/victim", 2, 6, 1);
    v.umount();
    shred_killed_at(&v, "/victim", shred::FP_REMOVED);
    // A mount finishes the journal itself; keep a copy to replay the case
    // where it could not (the new object must survive the late finish).
    let journal = fs::read(v.cipher.join("dekfs.shred")).unwrap();
    v.mount();
    assert!(
        !v.cipher.join("dekfs.shred").exists(),
        "the mount finished it"
    );
    assert!(fs::symlink_metadata(v.p("/victim")).is_err(), "removed");
    fs::create_dir(v.p("/victim")).unwrap();
    fs::write(v.p("/victim/new"), b"new data").unwrap();
    v.umount();
    fs::write(v.cipher.join("dekfs.shred"), journal).unwrap();
    let out = shred(&v, None, &[]);
    out.expect_code(exit::OK, "finish");
    assert!(out.stdout.contains("left alone"), "{}", out.stdout);
    assert!(!v.cipher.join("dekfs.shred").exists());
    v.mount();
    assert_eq!(fs::read(v.p("/victim/new")).unwrap(), b"new data");
    v.umount();
}
