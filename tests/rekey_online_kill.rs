//! kill -9 of the daemon at random moments of online KEK rotations of a
//! volume with thousands of files (DEKFS_REKEY_FILES, default 2000), as many
//! times as DEKFS_REKEY_KILLS says (default 6, fixed seed DEKFS_REKEY_SEED).
//! The delays are uniform within the wall time of one whole rotation
//! measured first, so kills land inside rotations on any machine: in
//! `dekfs rekey MOUNTPOINT` or in the background resume of the mount after
//! the previous kill. After each: the volume checks clean
//! offline with no header lost, and the remount (which resumes the rotation
//! in the background) reads every file with its original hash. At the end
//! one KEK is left and every object holds it. Skips only without FUSE.

mod common;
mod rekey_support;

use common::*;
use dekfs::format::VolumeConfig;
use rekey_support::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kek_versions(v: &TestVolume) -> Vec<u32> {
    let c = VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap();
    c.keks.iter().map(|k| k.version).collect()
}

fn kill_daemon(v: &TestVolume) {
    for pid in pids_mentioning(&v.cipher) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

fn lazy_unmount(mnt: &Path) {
    let _ = Command::new("fusermount3")
        .arg("-uz")
        .arg(mnt)
        .stderr(Stdio::null())
        .status();
    if is_mounted(mnt) {
        let _ = Command::new("umount").arg("-l").arg(mnt).status();
    }
}

/// Writes `n` files in 20 directories; their hashes by path.
fn populate_many(v: &TestVolume, n: u64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in 0..20 {
        fs::create_dir(v.p(&format!("d{d}"))).unwrap();
    }
    for i in 0..n {
        let rel = format!("d{}/f{i}", i % 20);
        let data = random_bytes(i, (i as usize * 131) % 3000 + 1);
        fs::write(v.p(&rel), &data).unwrap();
        out.insert(rel, sha256(&data));
    }
    out
}

#[test]
fn kill_the_daemon_during_online_rotations() {
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return;
    }
    let files = env_u64("DEKFS_REKEY_FILES", 2000);
    let kills = env_u64("DEKFS_REKEY_KILLS", 6);
    let mut seed = env_u64("DEKFS_REKEY_SEED", 1) | 1;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let v = TestVolume::new("rekey-online-kill");
    v.mount();
    let want = populate_many(&v, files);
    v.umount();
    let objects = slot_versions(&v.cipher).len();
    let rk = recovery_file(&v);
    v.mount();
    // One whole rotation first: its wall time bounds the kill delays, so
    // that they land inside rotations whatever the machine's speed.
    let t0 = std::time::Instant::now();
    let first = dekfs([
        "rekey",
        v.mnt.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--also-recovery-key-file",
        rk.to_str().unwrap(),
    ]);
    first.expect_code(exit::OK, "first online rekey");
    let span = t0.elapsed().as_millis() as u64 + 1;
    let mut started = 1;
    let mut mid = 0;
    for k in 0..kills {
        // A rotation is running in the background (resumed by the mount)
        // or one is started now.
        let cli = if kek_versions(&v).len() == 1 {
            started += 1;
            Some(
                Command::new(DEKFS)
                    .arg("rekey")
                    .arg(&v.mnt)
                    .arg("--passfile")
                    .arg(&v.passfile)
                    .arg("--also-recovery-key-file")
                    .arg(&rk)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        } else {
            None
        };
        let delay = rand(span);
        std::thread::sleep(Duration::from_millis(delay));
        kill_daemon(&v);
        if let Some(mut c) = cli {
            let _ = c.wait();
        }
        lazy_unmount(&v.mnt);
        assert!(
            wait_until(Duration::from_secs(5), || pids_mentioning(&v.cipher)
                .is_empty()),
            "kill {k}: daemon still alive"
        );
        let keks = kek_versions(&v);
        assert!(!keks.is_empty() && keks.len() <= 2, "kill {k}: {keks:?}");
        mid += u32::from(keks.len() == 2);
        let now = slot_versions(&v.cipher);
        assert_eq!(
            now.len(),
            objects,
            "kill {k} after {delay} ms: headers lost"
        );
        for (p, s) in &now {
            assert!(
                !s.is_empty() && s.iter().all(|x| keks.contains(x)),
                "kill {k}: {} holds {s:?}, config has {keks:?}",
                p.display()
            );
        }
        v.assert_fsck_clean(&format!("kill {k} after {delay} ms"));
        eprintln!("kill {k} after {delay} ms: KEKs {keks:?}");
        // The remount serves at once and resumes the rotation meanwhile.
        v.mount();
        assert_eq!(hashes(&v, &want), want, "kill {k}: file contents");
    }
    assert!(
        wait_until(Duration::from_secs(120), || kek_versions(&v).len() == 1),
        "the last rotation did not finish: {}",
        v.log()
    );
    assert_eq!(hashes(&v, &want), want, "file contents at the end");
    v.umount();
    let keks = kek_versions(&v);
    let end = slot_versions(&v.cipher);
    assert_eq!(end.len(), objects, "headers lost");
    assert!(
        end.values().all(|s| s == &keks),
        "every object on KEK {keks:?} only"
    );
    assert!(keks[0] >= 2, "the first rotation finished: {keks:?}");
    // Uniform delays within a rotation's span: with a handful of kills some
    // land between the config step and the destruction.
    assert!(
        kills < 5 || mid > 0,
        "no kill landed mid-rotation (span {span} ms)"
    );
    v.assert_fsck_clean("at the end");
    eprintln!(
        "rekey_online_kill: {kills} kills ({mid} mid-rotation), {started} rotations started, \
         rotation span {span} ms, final KEK {keys:?}",
        keys = keks
    );
}
