//! The volume lock and the config lock (issue 9): a second mount of a cipher
//! directory is refused before any prompt, naming the mount and the daemon;
//! `fsck --repair` is refused while mounted; concurrent config writers
//! serialise; the runtime directory and pidfile are closed to other users.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn daemon_pid(v: &TestVolume) -> u32 {
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(
        pids.len(),
        1,
        "one daemon for {}: {pids:?}",
        v.cipher.display()
    );
    pids[0]
}

#[test]
fn second_mount_of_a_cipher_dir_is_refused_naming_mount_and_pid() {
    require_fuse!();
    let v = TestVolume::new("vlock-twice");
    v.mount();
    let pid = daemon_pid(&v);
    let mnt2 = v.dir.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    for (target, what) in [
        (&mnt2, "another mount point"),
        (&v.mnt, "the same mount point"),
    ] {
        let out = dekfs([
            "mount",
            &s(&v.cipher),
            &s(target),
            "--passfile",
            &s(&v.passfile),
        ]);
        if is_mounted(&mnt2) {
            let _ = dekfs(["umount", &s(&mnt2)]);
            panic!("{what}: a second mount of one cipher dir came up");
        }
        out.expect_code(15, what);
        assert!(
            out.stderr.contains(&s(&v.mnt)) && out.stderr.contains(&format!("pid {pid}")),
            "{what}: the refusal must name {} and daemon pid {pid}: {}",
            v.mnt.display(),
            out.stderr
        );
    }
    assert!(!is_mounted(&mnt2), "the second mount must not exist");
    assert_eq!(mount_count(&v.mnt), 1, "one mount at {}", v.mnt.display());
    // No credential and no terminal: refused before any prompt.
    let out = dekfs(["mount", &s(&v.cipher), &s(&mnt2)]);
    out.expect_code(15, "second mount without a credential");
    v.umount();
    // Unmounting releases the lock.
    v.mount();
    v.umount();
}

#[test]
fn fsck_repair_is_refused_while_mounted_and_protector_add_is_not() {
    require_fuse!();
    let v = TestVolume::new("vlock-fsck");
    v.mount();
    let out = dekfs([
        "fsck",
        &s(&v.cipher),
        "--repair",
        "--passfile",
        &s(&v.passfile),
    ]);
    out.expect_code(15, "fsck --repair on a mounted volume");
    assert!(out.stderr.contains(&s(&v.mnt)), "{}", out.stderr);
    // Config writers only take the config lock (see docs/design/vlock.md).
    let newpf = v.dir.path().join("new-pass");
    fs::write(&newpf, "a second passphrase\n").unwrap();
    let mut args = vec![
        "protector".to_string(),
        "add".into(),
        s(&v.cipher),
        "--passphrase".into(),
        "--new-passfile".into(),
        s(&newpf),
        "--passfile".into(),
        s(&v.passfile),
    ];
    args.extend(FAST_KDF.iter().map(|a| a.to_string()));
    let out = dekfs(&args);
    assert!(out.ok(), "protector add while mounted: {}", out.stderr);
    v.umount();
    let out = dekfs(["fsck", &s(&v.cipher), "--repair", "--passfile", &s(&newpf)]);
    assert!(
        out.ok(),
        "fsck --repair after umount: {}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn runtime_dir_is_0700_and_pidfile_0600() {
    require_fuse!();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the root daemon's runtime directory needs root");
        return;
    }
    // A too-open directory from an older dekfs is tightened, not trusted.
    let _ = fs::create_dir("/run/dekfs");
    fs::set_permissions("/run/dekfs", fs::Permissions::from_mode(0o777)).unwrap();
    let v = TestVolume::new("vlock-modes");
    v.mount();
    let pid = daemon_pid(&v);
    let dir = fs::symlink_metadata("/run/dekfs").unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o700, "/run/dekfs mode");
    let pidfile = fs::read_dir("/run/dekfs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::read_to_string(p).is_ok_and(|c| c.trim() == pid.to_string()))
        .expect("a pidfile naming the daemon");
    let md = fs::symlink_metadata(&pidfile).unwrap();
    assert!(md.file_type().is_file());
    assert_eq!(md.permissions().mode() & 0o7777, 0o600, "pidfile mode");
    v.umount();
    assert!(!pidfile.exists(), "pidfile removed at unmount");
}

/// 50 writers at once: 40 add a passphrase protector and remove it again,
/// 10 add one and keep it. Every kept passphrase unlocks, every removed one
/// does not, the protector count is exact, and no temp file is left.
#[test]
fn concurrent_config_writers_serialise() {
    let v = TestVolume::new("vlock-storm");
    let c = s(&v.cipher);
    let base = protector_count(&c);
    let (pairs, keepers) = (40usize, 10usize);
    let v = Arc::new(v);
    let handles: Vec<_> = (0..pairs + keepers)
        .map(|i| {
            let v = v.clone();
            std::thread::spawn(move || {
                let c = s(&v.cipher);
                let pf = v.dir.path().join(format!("pass-{i}"));
                fs::write(&pf, format!("storm passphrase {i}\n")).unwrap();
                let mut args = vec![
                    "protector".to_string(),
                    "add".into(),
                    c.clone(),
                    "--passphrase".into(),
                    "--new-passfile".into(),
                    s(&pf),
                    "--passfile".into(),
                    s(&v.passfile),
                ];
                args.extend(FAST_KDF.iter().map(|a| a.to_string()));
                let out = dekfs(&args);
                assert!(out.ok(), "add {i}: {}", out.stderr);
                let id = out
                    .stderr
                    .split_whitespace()
                    .skip_while(|w| *w != "protector")
                    .nth(1)
                    .expect("the new protector id")
                    .to_string();
                if i < pairs {
                    let out = dekfs([
                        "protector",
                        "remove",
                        &c,
                        &id,
                        "--passfile",
                        &s(&v.passfile),
                    ]);
                    assert!(out.ok(), "remove {i} ({id}): {}", out.stderr);
                }
                (i, pf)
            })
        })
        .collect();
    let done: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        protector_count(&c),
        base + keepers,
        "protectors after the storm"
    );
    for (i, pf) in done {
        if i < pairs && i % 8 != 0 {
            continue; // a sample of the removed ones is enough
        }
        // More passphrase records than the unlock limit tries by default.
        let out = dekfs(["fsck", &c, "--passfile", &s(&pf), "--allow-kdf-cost"]);
        if i < pairs {
            out.expect_code(10, &format!("removed passphrase {i}"));
        } else {
            assert!(out.ok(), "kept passphrase {i} unlocks: {}", out.stderr);
        }
    }
    let temps: Vec<_> = fs::read_dir(&v.cipher)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dekfs.conf.tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}

fn protector_count(c: &str) -> usize {
    let out = dekfs(["protector", "list", c]);
    assert!(out.ok(), "protector list: {}", out.stderr);
    out.stdout
        .lines()
        .filter(|l| l.starts_with("passphrase") || l.starts_with("recovery"))
        .count()
}

/// A crashed writer's temp file is reported by fsck and removed by the
/// next config writer.
#[test]
fn stale_config_temp_is_cleaned_by_the_next_writer() {
    let v = TestVolume::new("vlock-stale");
    let c = s(&v.cipher);
    let stale = v.cipher.join("dekfs.conf.tmp.00112233aabbccdd");
    fs::write(&stale, b"half a config").unwrap();
    let out = dekfs(["fsck", &c, "--passfile", &s(&v.passfile)]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stdout.contains("config temp"),
        "fsck notes it: {}",
        out.stdout
    );
    let out = dekfs([
        "protector",
        "add",
        &c,
        "--recovery-key",
        "--passfile",
        &s(&v.passfile),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        !stale.exists(),
        "the next writer removes a crashed writer's temp file"
    );
}
