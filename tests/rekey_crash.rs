//! Crash safety of `dekfs rekey`: the process is SIGKILLed at every
//! persistence step (named failpoints, some at a later hit so the walk is cut
//! in the middle). After each kill: fsck is clean with the config as it was
//! left (every object opens with the old or the new KEK, none with neither),
//! then `rekey --resume` (or the next mount) finishes: every file's hash is
//! unchanged, no header or dekfs.dir is lost, none keeps the old KEK, and the
//! config holds only the new one. Skips only without FUSE.

mod common;
mod rekey_support;

use common::*;
use dekfs::format::VolumeConfig;
use rekey_support::*;
use std::fs;

/// (failpoint, hit), and whether the next mount (not --resume) finishes.
const CASES: &[(&str, u32, bool)] = &[
    ("rekey.config.begun", 1, false),
    ("rekey.dir.both", 1, false),
    ("rekey.dir.both", 3, true),
    ("rekey.dir.fin", 2, false),
    ("rekey.file.both", 1, true),
    ("rekey.file.both", 9, false),
    ("rekey.file.fin", 5, false),
    ("rekey.file.fin", 14, true),
    ("rekey.config.destroyed", 1, false),
];

fn kek_versions(v: &TestVolume) -> Vec<u32> {
    let c = VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap();
    c.keks.iter().map(|k| k.version).collect()
}

fn crash_case(i: usize, point: &str, hit: u32, by_mount: bool) {
    let v = TestVolume::new(&format!("rekey-crash{i}"));
    v.mount();
    let want = populate(&v, 24);
    v.umount();
    let before = slot_versions(&v.cipher);
    let rk = recovery_file(&v);
    let fp = format!("{point}@{hit}");
    let extra = ["--also-recovery-key-file", rk.to_str().unwrap()];
    let out = rekey(&v, &extra, Some(&fp));
    assert_eq!(
        out.code, None,
        "{fp}: rekey must die at the failpoint: {out:?}"
    );
    // Every object opens with one of the keys the config now holds.
    v.assert_fsck_clean(&format!("after a kill at {fp}"));
    let mid = slot_versions(&v.cipher);
    assert_eq!(
        mid.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "{fp}: no header or dekfs.dir lost"
    );
    if point != "rekey.config.destroyed" {
        let st = dekfs(["status", v.cipher.to_str().unwrap()]);
        assert!(
            st.stdout.contains("retiring"),
            "{fp}: status: {}",
            st.stdout
        );
    }
    if i == 1 {
        // A read-only mount reads the half-rotated volume and writes nothing.
        let o = v.try_mount(&["-o", "ro"]);
        o.expect_code(exit::OK, "read-only mount mid-rotation");
        assert!(o.stderr.contains("unfinished"), "{}", o.stderr);
        assert_eq!(hashes(&v, &want), want, "{fp}: read-only mount");
        v.umount();
        assert_eq!(slot_versions(&v.cipher), mid, "{fp}: ro mount wrote");
    }
    if by_mount {
        // The mount serves at once and finishes the rotation in the
        // background (the daemon's rotation thread).
        v.mount();
        assert!(
            wait_until(std::time::Duration::from_secs(60), || kek_versions(&v)
                == vec![2]),
            "{fp}: the mount did not finish the rotation: {}",
            v.log()
        );
    } else {
        rekey(&v, &["--resume"], None).expect_code(exit::OK, &format!("{fp}: rekey --resume"));
        v.mount();
    }
    assert_eq!(hashes(&v, &want), want, "{fp}: file contents");
    v.umount();
    let after = slot_versions(&v.cipher);
    assert_eq!(after.len(), before.len(), "{fp}: object count");
    assert!(
        after.values().all(|s| s == &vec![2]),
        "{fp}: every object on KEK 2 only: {after:?}"
    );
    assert_eq!(kek_versions(&v), vec![2], "{fp}: KEK 1 destroyed");
    v.assert_fsck_clean(&format!("{fp}: after finishing"));
}

#[test]
fn kill_at_every_persistence_step_then_resume() {
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return;
    }
    for (i, (point, hit, by_mount)) in CASES.iter().enumerate() {
        crash_case(i, point, *hit, *by_mount);
    }
}
