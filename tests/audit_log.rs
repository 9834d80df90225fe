//! The audit log end to end: every wired event writes exactly one line, tampering and tail
//! truncation are named by `dekfs audit --verify`, 16 readers hitting damaged files while other
//! processes append lose no line, and kill -9 mid-append leaves a log that verifies.
//! DEKFS_AUDIT_STRESS_SECS sets the load phase (default 3 s; the full run is 30).

mod common;

use common::*;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn events(v: &TestVolume) -> Vec<(String, String)> {
    let text = fs::read_to_string(v.cipher.join("dekfs.audit")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                j["event"].as_str().unwrap().to_string(),
                j["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn verify(v: &TestVolume) -> Out {
    dekfs([
        "audit",
        &s(&v.cipher),
        "--verify",
        "--passfile",
        &s(&v.passfile),
    ])
}

fn audited(name: &str) -> TestVolume {
    TestVolume::with_init_args(name, &["--audit"])
}

#[test]
fn volumes_without_audit_get_no_log_file() {
    let v = TestVolume::new("noaudit");
    verify(&v).expect_code(exit::USAGE, "verify without a log");
    assert!(!v.cipher.join("dekfs.audit").exists());
    dekfs([
        "audit",
        &s(&v.cipher),
        "--enable",
        "--passfile",
        &s(&v.passfile),
    ])
    .expect_code(exit::OK, "audit --enable");
    let ev = events(&v);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1].0, "audit-enable");
}

#[test]
fn every_event_writes_exactly_one_line() {
    require_fuse!();
    let v = audited("events");
    let c = s(&v.cipher);
    let bad = v.dir.path().join("bad");
    fs::write(&bad, "not the passphrase\n").unwrap();
    dekfs([
        "protector",
        "add",
        &c,
        "--passfile",
        &s(&bad),
        "--recovery-key",
    ])
    .expect_code(exit::WRONG_KEY, "wrong passphrase");
    let added = dekfs([
        "protector",
        "add",
        &c,
        "--passfile",
        &s(&v.passfile),
        "--recovery-key",
    ]);
    added.expect_code(exit::OK, "protector add");
    let id = added
        .stderr
        .split_whitespace()
        .skip_while(|w| *w != "protector")
        .nth(1)
        .unwrap()
        .to_string();
    dekfs([
        "protector",
        "remove",
        &c,
        &id,
        "--passfile",
        &s(&v.passfile),
    ])
    .expect_code(exit::OK, "protector remove");
    let tk = v.dir.path().join("tk");
    dekfs(["key", "transport-key", "new", &s(&tk)]).expect_code(exit::OK, "tk");
    let blob = v.dir.path().join("blob");
    dekfs([
        "key",
        "export",
        &c,
        "--transport-key",
        &s(&tk),
        "--passfile",
        &s(&v.passfile),
        "--out",
        &s(&blob),
    ])
    .expect_code(exit::OK, "export");
    v.mount();
    let backing = v.create_file("f", &random_bytes(1, 9000));
    v.umount();
    flip_bit(&backing, HEADER_LEN + 100, 3);
    v.mount();
    for _ in 0..3 {
        let e = fs::read(v.p("f")).unwrap_err();
        assert_eq!(errno(&e), libc::EIO);
    }
    v.umount();

    let got = events(&v);
    let want = [
        ("init", "ok"),
        ("unlock", "failed"),
        ("unlock", "ok"),
        ("protector-add", "ok"),
        ("unlock", "ok"),
        ("protector-remove", "ok"),
        ("unlock", "ok"),
        ("key-export", "ok"),
        ("unlock", "ok"),
        ("unlock", "ok"),
        ("integrity-error", "failed"),
    ];
    let got_ref: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got_ref, want);
    // Ids by default: the damaged file is named by inode, not by its plaintext name.
    let text = fs::read_to_string(v.cipher.join("dekfs.audit")).unwrap();
    let integrity = text.lines().last().unwrap();
    assert!(integrity.contains("\"object\":\"ino "), "{integrity}");
    assert!(!integrity.contains("\"path\""), "{integrity}");
    // The daemon's log (syslog when not given a file) has the same event.
    assert!(
        v.log().contains("audit: event=integrity-error"),
        "{}",
        v.log()
    );
    verify(&v).expect_code(exit::OK, "verify");
}

/// The key lifecycle past unlock: lock and unlock of a live mount, a KEK
/// rotation (the chain crosses to the new key through a link line), a
/// shred; each writes its lines once and the chain verifies under the new KEK.
#[test]
fn lock_rotation_and_shred_are_recorded_once_and_verify() {
    require_fuse!();
    let v = audited("lifecycle");
    let c = s(&v.cipher);
    v.mount();
    fs::create_dir(v.p("gone")).unwrap();
    fs::write(v.p("gone/f"), b"to be shredded").unwrap();
    let m = s(&v.mnt);
    dekfs(["lock", &m]).expect_code(exit::OK, "lock");
    dekfs(["unlock", &m, "--passfile", &s(&v.passfile)]).expect_code(exit::OK, "unlock");
    v.umount();
    let before = events(&v).len();
    let rk = v.dir.path().join("rk");
    fs::write(&rk, v.recovery_key.as_deref().expect("recovery key")).unwrap();
    dekfs([
        "rekey",
        &c,
        "--passfile",
        &s(&v.passfile),
        "--also-recovery-key-file",
        &s(&rk),
    ])
    .expect_code(exit::OK, "rekey");
    dekfs(["shred", &c, "/gone", "--yes", "--passfile", &s(&v.passfile)])
        .expect_code(exit::OK, "shred");
    let got = events(&v);
    let names: Vec<&str> = got.iter().map(|(e, _)| e.as_str()).collect();
    let count = |e: &str| names.iter().filter(|n| **n == e).count();
    for e in [
        "lock",
        "rotation-start",
        "rotation-rewrap",
        "kek-destroyed",
        "rotation-finish",
        "shred",
    ] {
        assert_eq!(count(e), 1, "{e} in {names:?}");
    }
    // The live unlock is one "unlock" line besides those of the CLI's own unlocks.
    assert!(count("unlock") >= 2, "{names:?}");
    assert!(
        names[before..].iter().any(|e| e.contains("link")),
        "a key link line after the rotation: {names:?}"
    );
    let order: Vec<&str> = names[before..]
        .iter()
        .copied()
        .filter(|e| e.starts_with("rotation") || *e == "kek-destroyed" || *e == "shred")
        .collect();
    assert_eq!(
        order,
        [
            "rotation-start",
            "rotation-rewrap",
            "kek-destroyed",
            "rotation-finish",
            "shred"
        ]
    );
    verify(&v).expect_code(exit::OK, "verify across the rotation");
}

#[test]
fn tampering_and_tail_truncation_are_named_by_verify() {
    let v = audited("tamper");
    for _ in 0..5 {
        verify(&v).expect_code(exit::OK, "verify");
    }
    let log = v.cipher.join("dekfs.audit");
    let seal_path = v.cipher.join("dekfs.audit.seal");
    let seal = fs::read(&seal_path).unwrap();
    // Each keyed verify appends its own unlock line: restore log and seal between cases.
    let restore_seal = || fs::write(&seal_path, &seal).unwrap();
    let orig = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = orig.lines().collect();
    assert_eq!(lines.len(), 6);

    let listed = dekfs(["audit", &s(&v.cipher)]);
    listed.expect_code(exit::OK, "list without key");
    assert!(listed.stderr.contains("NOT verified"), "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 6);

    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replace("\"unlock\"", "\"unlocK\"");
    fs::write(&log, edited.join("\n") + "\n").unwrap();
    let o = verify(&v);
    o.expect_code(exit::CORRUPT, "edited line 3");
    assert!(o.stderr.contains("line 3"), "{}", o.stderr);

    restore_seal();
    let mut gone = lines.clone();
    gone.remove(1);
    fs::write(&log, gone.join("\n") + "\n").unwrap();
    let o = verify(&v);
    o.expect_code(exit::CORRUPT, "deleted line 2");
    assert!(o.stderr.contains("line 2"), "{}", o.stderr);

    // Tail truncation: the seal said 6 lines; the next appender records that before resealing.
    restore_seal();
    fs::write(&log, lines[..4].join("\n") + "\n").unwrap();
    let o = verify(&v);
    o.expect_code(exit::CORRUPT, "tail truncated");
    assert!(
        o.stderr.contains("line 5") && o.stderr.contains("seal recorded 6 lines"),
        "{}",
        o.stderr
    );
}

#[test]
fn parallel_readers_with_integrity_errors_lose_no_line() {
    require_fuse!();
    let secs: u64 = std::env::var("DEKFS_AUDIT_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let v = audited("stress");
    v.mount();
    let n_files = 48;
    let backings: Vec<_> = (0..n_files)
        .map(|i| v.create_file(&format!("f{i}"), &random_bytes(i, 8192)))
        .collect();
    v.umount();
    let damaged: Vec<usize> = (0..n_files as usize).filter(|i| i % 3 == 0).collect();
    for &i in &damaged {
        flip_bit(&backings[i], HEADER_LEN + 40, 1);
    }
    v.mount();
    let stop = Arc::new(AtomicBool::new(false));
    let eio = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (stop, eio, mnt) = (stop.clone(), eio.clone(), v.mnt.clone());
            std::thread::spawn(move || {
                let mut k = w;
                while !stop.load(Ordering::Relaxed) {
                    let p = mnt.join(format!("f{}", k % n_files as usize));
                    k += 7;
                    let mut f = fs::File::open(&p).unwrap();
                    let mut buf = Vec::new();
                    match f.read_to_end(&mut buf) {
                        Ok(_) => assert_eq!(buf.len(), 8192),
                        Err(e) => {
                            assert_eq!(errno(&e), libc::EIO);
                            eio.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // Other processes append at the same time (each `audit --verify` records its unlock).
    let t0 = Instant::now();
    let mut cli_runs = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        verify(&v).expect_code(exit::OK, "verify under load");
        cli_runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    v.umount();
    assert!(eio.load(Ordering::Relaxed) >= damaged.len());
    let ev = events(&v);
    let integrity = ev.iter().filter(|e| e.0 == "integrity-error").count();
    let logged = v.log().matches("integrity error:").count();
    assert_eq!(
        integrity,
        damaged.len(),
        "one line per damaged file (reports are per file)"
    );
    assert_eq!(integrity, logged, "audit lines vs daemon log lines");
    let unlocks = ev.iter().filter(|e| e.0 == "unlock").count();
    assert_eq!(
        unlocks,
        1 + cli_runs + 1,
        "mount + CLI runs + the mount after damage"
    );
    assert_eq!(
        ev.len(),
        1 + unlocks + integrity,
        "init + unlocks + integrity: {ev:?}"
    );
    verify(&v).expect_code(exit::OK, "final verify");
    eprintln!(
        "audit stress: {secs} s, {cli_runs} CLI appends, {integrity} integrity lines, {} EIO reads",
        eio.load(Ordering::Relaxed)
    );
}

#[test]
fn kill_9_mid_append_leaves_a_verifiable_log() {
    let v = audited("kill9");
    let mut seed = 0x2545_f491u32;
    for _ in 0..25 {
        let mut child = std::process::Command::new(DEKFS)
            .args([
                "audit",
                &s(&v.cipher),
                "--verify",
                "--passfile",
                &s(&v.passfile),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        std::thread::sleep(Duration::from_micros(u64::from(seed % 60_000)));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Listing needs no key and never writes; then a keyed verify (which appends) must pass.
    dekfs(["audit", &s(&v.cipher)]).expect_code(exit::OK, "list after kills");
    verify(&v).expect_code(exit::OK, "verify after kill -9 loop");
    let whole = events(&v).len();

    // Deterministic kills at the two crash points of an append.
    let killed = |point: &str| {
        let o = std::process::Command::new(DEKFS)
            .args([
                "audit",
                &s(&v.cipher),
                "--verify",
                "--passfile",
                &s(&v.passfile),
            ])
            .env("DEKFS_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), None, "{point}: not killed");
    };
    killed("audit.append.torn");
    let log = v.cipher.join("dekfs.audit");
    let torn = fs::read(&log).unwrap();
    assert!(!torn.ends_with(b"\n"), "no torn line left");
    let listed = dekfs(["audit", &s(&v.cipher)]);
    listed.expect_code(exit::OK, "list with a torn line");
    assert!(listed.stderr.contains("torn line"), "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), whole, "whole lines listed");
    killed("audit.append.before_seal");
    assert_eq!(
        events(&v).len(),
        whole + 1,
        "the torn line was cut, the new one kept"
    );
    let o = verify(&v);
    o.expect_code(exit::OK, "verify after kill -9 loop");
    assert!(events(&v).len() >= 2);
}

#[test]
fn listing_filters_by_event_and_time_and_prints_json() {
    let v = audited("filters");
    verify(&v).expect_code(exit::OK, "verify");
    verify(&v).expect_code(exit::OK, "verify");
    let c = s(&v.cipher);
    let o = dekfs(["audit", &c, "--event", "unlock"]);
    o.expect_code(exit::OK, "--event");
    assert_eq!(o.stdout.lines().count(), 2, "{}", o.stdout);
    let o = dekfs(["audit", &c, "--json"]);
    o.expect_code(exit::OK, "--json");
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["mac"].as_str().unwrap().len() == 64));
    assert_eq!(lines[0]["event"], "init");
    let all = dekfs(["audit", &c, "--since", "2000-01-01"]);
    assert_eq!(all.stdout.lines().count(), 3);
    let none = dekfs(["audit", &c, "--since", "2999-01-01T00:00:00Z"]);
    none.expect_code(exit::OK, "future --since");
    assert_eq!(none.stdout.lines().count(), 0);
    dekfs(["audit", &c, "--since", "yesterday"]).expect_code(exit::USAGE, "bad --since");
}
