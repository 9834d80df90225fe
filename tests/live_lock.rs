//! Live key control on real mounts: `dekfs status` over the control socket
//! shows live counters; `dekfs lock` with readers and writers running loses no
//! fsynced byte, tears no write, refuses with EKEYREVOKED (also for a read
//! the page cache held) and logs it once; a wrong credential leaves the
//! volume locked; `dekfs unlock` resumes the open descriptors; another uid
//! cannot lock; a path that is no dekfs mount is a clear error.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const REC: usize = 64 * 1024;

fn status_json(v: &TestVolume) -> serde_json::Value {
    let out = dekfs([
        OsStr::new("status"),
        v.mnt.as_os_str(),
        OsStr::new("--json"),
    ]);
    out.expect_code(exit::OK, "status --json");
    serde_json::from_str(out.stdout.trim()).expect("status --json is JSON")
}

fn live(v: &TestVolume) -> serde_json::Value {
    let j = status_json(v);
    assert!(j["live"].is_object(), "no live figures: {j}");
    j["live"].clone()
}

fn lock(v: &TestVolume) {
    dekfs([OsStr::new("lock"), v.mnt.as_os_str()]).expect_code(exit::OK, "dekfs lock");
}

fn unlock_with(v: &TestVolume, passfile: &Path) -> Out {
    dekfs([
        OsStr::new("unlock"),
        v.mnt.as_os_str(),
        OsStr::new("--passfile"),
        passfile.as_os_str(),
    ])
}

/// The content of record `i` (its number in every byte's neighbourhood).
fn record(i: u64) -> Vec<u8> {
    random_bytes(i + 1000, REC)
}

#[test]
fn status_over_the_socket_shows_live_counters() {
    require_fuse!();
    let v = TestVolume::new("live-status");
    v.mount();
    let data = random_bytes(1, 300_000);
    std::fs::create_dir(v.p("d")).unwrap();
    std::fs::write(v.p("d/f"), &data).unwrap();
    assert!(live(&v)["bytes_written"].as_u64().unwrap() >= data.len() as u64);
    // A fresh mount, so the reads below reach the daemon, not the page cache.
    v.remount();
    let held = File::open(v.p("d/f")).unwrap();
    let mut back = vec![0u8; data.len()];
    held.read_exact_at(&mut back, 0).unwrap();
    assert!(back == data);
    let l = live(&v);
    let pids = pids_mentioning(&v.cipher);
    assert!(
        pids.contains(&(l["pid"].as_u64().unwrap() as u32)),
        "{l} vs {pids:?}"
    );
    assert_eq!(l["locked"], false);
    assert_eq!(l["kek_version"], 1);
    assert_eq!(l["open_files"], 1, "{l}");
    assert!(l["cached_dir_keys"].as_u64().unwrap() >= 2, "{l}");
    assert_eq!(l["cached_file_keys"], 1, "{l}");
    assert_eq!(l["bytes_written"], 0, "{l}");
    assert!(
        l["bytes_read"].as_u64().unwrap() >= data.len() as u64,
        "{l}"
    );
    assert_eq!(l["integrity_errors"], 0);
    drop(held);
    let human = dekfs([OsStr::new("status"), v.mnt.as_os_str()]);
    human.expect_code(exit::OK, "status");
    for line in [
        "daemon:         pid ",
        "keys:           unlocked, KEK v1 in use",
    ] {
        assert!(
            human.stdout.contains(line),
            "{line:?} in:\n{}",
            human.stdout
        );
    }
    // By cipher directory too, and the socket goes with the mount.
    assert!(status_json(&v)["live"].is_object());
    let sock = v.wait_log_lines(&["control socket at "]);
    let sock = sock[0]
        .rsplit("control socket at ")
        .next()
        .unwrap()
        .to_owned();
    assert!(Path::new(&sock).exists(), "{sock}");
    v.umount();
    assert!(
        !Path::new(&sock).exists(),
        "socket {sock} left after umount"
    );
    let after = dekfs([
        OsStr::new("status"),
        v.cipher.as_os_str(),
        OsStr::new("--json"),
    ]);
    after.expect_code(exit::OK, "status of the unmounted volume");
    assert!(after.stdout.contains("\"live\":null"), "{}", after.stdout);
}

#[test]
fn lock_with_readers_and_writers_then_unlock_resumes_them() {
    require_fuse!();
    let v = TestVolume::new("live-lock");
    v.mount();
    std::fs::create_dir(v.p("dir")).unwrap();
    let cached = random_bytes(7, 1 << 20);
    std::fs::write(v.p("dir/cached"), &cached).unwrap();
    let reader_fd = File::open(v.p("dir/cached")).unwrap();
    let mut buf = vec![0u8; cached.len()];
    reader_fd.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == cached, "read before the lock");

    let stop = Arc::new(AtomicBool::new(false));
    let synced = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, synced) = (stop.clone(), synced.clone());
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(v.p("dir/log"))
            .unwrap();
        std::thread::spawn(move || {
            let (mut i, mut refused, mut resumed) = (0u64, 0u64, false);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while (!stop.load(Ordering::SeqCst) || !resumed) && std::time::Instant::now() < deadline
            {
                let r = f
                    .write_all_at(&record(i), i * REC as u64)
                    .and_then(|()| f.sync_data());
                match r {
                    Ok(()) => {
                        synced.store(i + 1, Ordering::SeqCst);
                        resumed = refused > 0;
                        i += 1;
                    }
                    Err(e) => {
                        assert_eq!(errno(&e), libc::EKEYREVOKED, "writer: {e}");
                        refused += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                if i > 2000 && refused == 0 {
                    // Keep the file small while waiting for the lock.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            (i, refused)
        })
    };
    let reader = {
        let stop = stop.clone();
        let f = reader_fd.try_clone().unwrap();
        let want = cached.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let (mut refused, mut resumed) = (0u64, false);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while (!stop.load(Ordering::SeqCst) || !resumed) && std::time::Instant::now() < deadline
            {
                let off = (refused * 4096 * 7) % (want.len() as u64 - 4096);
                match f.read_exact_at(&mut buf, off) {
                    Ok(()) => {
                        assert!(buf[..] == want[off as usize..off as usize + 4096]);
                        resumed = refused > 0;
                    }
                    Err(e) => {
                        assert_eq!(errno(&e), libc::EKEYREVOKED, "reader: {e}");
                        refused += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            refused
        })
    };
    assert!(wait_until(Duration::from_secs(10), || synced
        .load(Ordering::SeqCst)
        >= 5));

    lock(&v);
    let synced_at_lock = synced.load(Ordering::SeqCst);
    // The page cache held all of `cached`: a read through the same open
    // descriptor must still reach the daemon and be refused.
    let e = reader_fd.read_exact_at(&mut buf[..4096], 0).unwrap_err();
    assert_eq!(errno(&e), libc::EKEYREVOKED, "cached read after lock: {e}");
    for (what, r) in [
        (
            "read of a new descriptor",
            std::fs::read(v.p("dir/cached")).map(drop),
        ),
        ("listing", std::fs::read_dir(v.p("dir")).map(drop)),
        ("stat", std::fs::metadata(v.p("dir/cached")).map(drop)),
        ("create", File::create(v.p("new")).map(drop)),
    ] {
        let e = r.expect_err(what);
        assert_eq!(errno(&e), libc::EKEYREVOKED, "{what}: {e}");
    }
    assert!(
        std::fs::metadata(&v.mnt).is_ok(),
        "the mountpoint itself answers"
    );
    let l = live(&v);
    assert_eq!(l["locked"], true);
    assert_eq!(
        (
            l["cached_dir_keys"].as_u64(),
            l["cached_file_keys"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert!(l["kek_version"].is_null());
    std::thread::sleep(Duration::from_millis(200));
    let refusals = v.wait_log_lines(&["volume is locked: refusing access (EKEYREVOKED)"]);
    assert_eq!(refusals.len(), 1, "one log line per lock: {refusals:?}");

    // A wrong passphrase: distinct exit code, still locked.
    let bad = v.dir.path().join("bad");
    std::fs::write(&bad, "not the passphrase\n").unwrap();
    let out = unlock_with(&v, &bad);
    out.expect_code(exit::WRONG_KEY, "unlock with a wrong passphrase");
    out.expect_one_line_error("wrong passphrase");
    assert!(out.stderr.contains("stays locked"), "{}", out.stderr);
    assert_eq!(live(&v)["locked"], true);
    let e = std::fs::read(v.p("dir/cached")).unwrap_err();
    assert_eq!(errno(&e), libc::EKEYREVOKED);

    unlock_with(&v, &v.passfile).expect_code(exit::OK, "unlock");
    assert_eq!(live(&v)["locked"], false);
    assert_eq!(std::fs::read(v.p("dir/cached")).unwrap(), cached);
    stop.store(true, Ordering::SeqCst);
    let (written, writer_refused) = writer.join().expect("writer");
    let reader_refused = reader.join().expect("reader");
    assert!(
        writer_refused > 0 && reader_refused > 0,
        "the lock was not seen: {writer_refused} {reader_refused}"
    );
    assert!(written > synced_at_lock, "the writer did not resume");
    eprintln!(
        "writer: {written} records of {REC} bytes ({synced_at_lock} fsynced at the lock), \
         {writer_refused} refused; reader: {reader_refused} refused"
    );
    drop(reader_fd);

    // Nothing fsynced is lost and no record is torn, across a remount.
    v.remount();
    let log = std::fs::read(v.p("dir/log")).unwrap();
    assert_eq!(log.len() as u64, written * REC as u64, "whole records only");
    for i in 0..written {
        let s = i as usize * REC;
        assert!(log[s..s + REC] == record(i)[..], "record {i} damaged");
    }
    v.umount();
    v.assert_fsck_clean("after lock and unlock");
}

#[test]
fn lock_and_unlock_answer_clearly_when_nothing_is_to_do() {
    require_fuse!();
    let v = TestVolume::new("live-idem");
    v.mount();
    unlock_with(&v, &v.passfile).expect_code(exit::OK, "unlock of an unlocked volume");
    lock(&v);
    lock(&v);
    unlock_with(&v, &v.passfile).expect_code(exit::OK, "unlock");
    // The recovery key unlocks too, as at mount time.
    lock(&v);
    let rk = v.dir.path().join("rk");
    std::fs::write(&rk, v.recovery_key.as_deref().expect("recovery key")).unwrap();
    dekfs([
        OsStr::new("unlock"),
        v.mnt.as_os_str(),
        OsStr::new("--recovery-key-file"),
        rk.as_os_str(),
    ])
    .expect_code(exit::OK, "unlock with the recovery key");
    std::fs::write(v.p("f"), b"x").unwrap();
    // A locked volume still unmounts cleanly.
    lock(&v);
    v.umount();
}

#[test]
fn writeback_cache_dirty_pages_reach_the_disk_before_the_keys_go() {
    require_fuse!();
    let v = TestVolume::new("live-wb");
    v.mount_with(&["-o", "writeback_cache"]);
    let data = random_bytes(3, 3 * REC + 123);
    // Neither fsync nor close (which flushes): with a writeback cache these
    // pages are still dirty in the kernel when the lock comes.
    let before = v.cipher_listing();
    let mut f = File::create(v.p("dirty")).unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();
    lock(&v);
    // Written back before the keys went: all of it is on disk now, although
    // the file is still open and was never synced.
    let after = v.cipher_listing();
    let backing = v.new_backing_file(&before, &after, "dirty");
    assert_backing_size(&backing, data.len() as u64);
    unlock_with(&v, &v.passfile).expect_code(exit::OK, "unlock");
    drop(f);
    v.remount();
    assert!(
        std::fs::read(v.p("dirty")).unwrap() == data,
        "dirty pages lost"
    );
    v.umount();
}

#[test]
fn another_uid_cannot_lock() {
    require_fuse!();
    let v = TestVolume::new("live-uid");
    v.mount();
    std::fs::write(v.p("f"), b"still readable").unwrap();
    let xdg = scratch_dir("dekfs-live-xdg-");
    let chown = run_cmd(
        "chown",
        [OsStr::new("tests:tests"), xdg.path().as_os_str()],
        None,
    );
    assert!(chown.ok(), "chown: {}", chown.stderr);
    let attempt = |xdg: Option<&Path>| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=tests", "--regid=tests", "--clear-groups"])
            .arg(DEKFS)
            .arg("lock")
            .arg(&v.mnt)
            .env_remove("XDG_RUNTIME_DIR");
        if let Some(x) = xdg {
            c.env("XDG_RUNTIME_DIR", x);
        }
        c.output().expect("setpriv")
    };
    for x in [None, Some(xdg.path())] {
        let out = attempt(x);
        assert!(!out.status.success(), "uid tests locked the mount: {out:?}");
    }
    // The root socket is out of reach of other users altogether.
    let sock = v.wait_log_lines(&["control socket at "]);
    let sock = sock[0]
        .rsplit("control socket at ")
        .next()
        .unwrap()
        .to_owned();
    let probe = std::process::Command::new("setpriv")
        .args([
            "--reuid=tests",
            "--regid=tests",
            "--clear-groups",
            "test",
            "-r",
        ])
        .arg(&sock)
        .status()
        .expect("setpriv");
    assert!(!probe.success(), "uid tests can reach {sock}");
    assert_eq!(live(&v)["locked"], false);
    assert_eq!(std::fs::read(v.p("f")).unwrap(), b"still readable");
    v.umount();
}

#[test]
fn status_and_lock_of_a_path_that_is_no_dekfs_mount() {
    let d = scratch_dir("dekfs-live-plain-");
    let out = dekfs([OsStr::new("status"), d.path().as_os_str()]);
    out.expect_code(exit::NOT_A_VOLUME, "status of a plain directory");
    out.expect_one_line_error("status of a plain directory");
    let out = dekfs([OsStr::new("lock"), d.path().as_os_str()]);
    out.expect_code(exit::NOT_A_VOLUME, "lock of a plain directory");
    out.expect_one_line_error("lock of a plain directory");
    assert!(
        out.stderr.contains("no dekfs daemon is serving"),
        "{}",
        out.stderr
    );
    let out = unlock_with_path(d.path());
    out.expect_code(exit::NOT_A_VOLUME, "unlock of a plain directory");
}

fn unlock_with_path(p: &Path) -> Out {
    dekfs([
        OsStr::new("unlock"),
        p.as_os_str(),
        OsStr::new("--passfile"),
        OsStr::new("/dev/null"),
    ])
}

#[test]
fn status_falls_back_to_the_config_when_no_daemon_answers() {
    require_fuse!();
    let v = TestVolume::new("live-nosock");
    v.mount();
    let sock = v.wait_log_lines(&["control socket at "]);
    let sock = sock[0]
        .rsplit("control socket at ")
        .next()
        .unwrap()
        .to_owned();
    std::fs::remove_file(&sock).unwrap();
    let human = dekfs([OsStr::new("status"), v.mnt.as_os_str()]);
    human.expect_code(exit::OK, "status without a socket");
    assert!(
        human
            .stdout
            .contains("live:           unavailable (no dekfs daemon is serving"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("volume id:"), "{}", human.stdout);
    let j = status_json(&v);
    assert!(j["live"].is_null() && j["live_note"].is_string(), "{j}");
    let out = dekfs([OsStr::new("lock"), v.mnt.as_os_str()]);
    out.expect_code(exit::NOT_A_VOLUME, "lock without a socket");
    // Nothing was locked.
    std::fs::write(v.p("f"), b"x").unwrap();
    v.umount();
}
