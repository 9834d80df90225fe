//! Online shred through the daemon (issue 11): a directory of many files in
//! many subdirectories (DEKFS_SHRED_FILES / DEKFS_SHRED_DIRS) is destroyed
//! while a sibling directory and the target's parent are being written and
//! a reader holds a file open under it; the written files match afterwards,
//! the reader gets EIO, nothing under the path reads or lists, and none of
//! the subtree's directory keys or DEKs (derived independently before the
//! shred, shred_kit/keys.rs) is left in the cipher directory, the config,
//! any file of the test directory or the daemon's memory. Also: a file, the
//! root, outside paths, twice, a concurrent rename, the audit line.

mod common;
mod shred_kit;

use common::*;
use dekfs::engine::shred;
use shred_kit::fill;
use shred_kit::keys::*;
use shred_kit::online::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes files into `mnt_dir` and, every other one, into `parent_dir`
/// (the shredded directory's parent) until `stop`; records each file's
/// content and the slowest single create+write.
fn writer(
    mnt_dir: PathBuf,
    parent_dir: PathBuf,
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<BTreeMap<PathBuf, Vec<u8>>>>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let p = match i % 2 {
                0 => mnt_dir.join(format!("w{i:05}")),
                _ => parent_dir.join(format!("p{i:05}")),
            };
            let data = random_bytes(40_000 + i, 1000 + (i as usize * 131) % 20_000);
            let t = Instant::now();
            fs::write(&p, &data).unwrap_or_else(|e| panic!("sibling write {}: {e}", p.display()));
            slowest = slowest.max(t.elapsed());
            written.lock().unwrap().insert(p, data);
            i += 1;
        }
        slowest
    })
}

#[test]
fn shred_a_big_directory_while_a_sibling_is_written_and_a_reader_holds_a_file() {
    require_fuse!();
    let (files, dirs) = (
        env_or("DEKFS_SHRED_FILES", 1000),
        env_or("DEKFS_SHRED_DIRS", 50),
    );
    let v = TestVolume::new("shred-online-big");
    v.mount();
    let victim = fill(&v, "/customers/acme", dirs, files, 1);
    let keep = fill(&v, "/customers/other", 5, 60, 90_000);
    fs::create_dir(v.p("/customers/writer")).unwrap();
    let before = KeyMap::capture(&v);
    let entries_before = list_tree(&v.cipher).len();

    // A reader under the path, with its DEK and the directory keys loaded.
    let (rpath, rdata) = victim.iter().next().unwrap();
    let reader = fs::File::open(v.p(rpath)).unwrap();
    let mut b = vec![0u8; 10];
    reader.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(b, rdata[..10]);
    let listed = fs::File::open(v.p("/customers/acme/d000")).unwrap();
    let pid = daemon_pid(&v);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(BTreeMap::new()));
    let w = writer(
        v.p("/customers/writer"),
        v.p("/customers"),
        stop.clone(),
        written.clone(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = shred_online(&[v.p("/customers/acme").as_os_str()]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let slowest = w.join().unwrap();
    out.expect_code(exit::OK, "online shred");
    println!("{}", out.stdout);
    println!("slowest sibling or parent write during the shred: {slowest:?}");
    assert!(
        out.stdout
            .contains(&format!("{} directories, {files} files", dirs + 1)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(": clean"), "{}", out.stdout);
    assert!(
        slowest < Duration::from_secs(10),
        "a sibling write stalled {slowest:?}"
    );

    // The open reader and an open directory under the path: EIO.
    let e = reader
        .read_exact_at(&mut b, 0)
        .expect_err("read after shred");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let fdpath = format!("/proc/self/fd/{}", listed.as_raw_fd());
    let e = fs::read_dir(&fdpath)
        .map(|d| d.count())
        .expect_err("list after shred");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // Nothing under the path by name.
    assert!(fs::symlink_metadata(v.p("/customers/acme")).is_err());
    for p in victim.keys().take(50) {
        assert!(fs::read(v.p(p)).is_err(), "{p} still reads");
    }
    let names: Vec<String> = dir_names(&v.p("/customers"))
        .into_iter()
        .filter(|n| !n.starts_with('p'))
        .collect();
    assert_eq!(names, vec!["other", "writer"]);
    for (p, data) in &keep {
        assert!(fs::read(v.p(p)).unwrap() == *data, "{p}");
    }
    let written = written.lock().unwrap().clone();
    assert!(!written.is_empty(), "the sibling writer wrote nothing");
    for (p, data) in &written {
        assert!(fs::read(p).unwrap() == *data, "{}", p.display());
    }

    // Exactly the subtree's objects went; their keys are nowhere.
    let gone = before.gone();
    assert_eq!(gone.len(), 1 + dirs + files, "one key per victim object");
    assert_eq!(
        list_tree(&v.cipher).len(),
        entries_before + written.len() - (2 + 2 * dirs + files),
        "only the victim's backing entries went (and the writer's came)"
    );
    let needles = Needles::new(gone.iter().map(|(_, k)| k));
    let mut hits = Vec::new();
    scan_files(v.dir.path(), &needles, &mut hits);
    assert!(hits.is_empty(), "victim keys in files: {:?}", hits.len());
    let in_mem = scan_memory(pid, &needles);
    assert!(
        in_mem.is_empty(),
        "{} victim keys still in daemon memory",
        in_mem.len()
    );
    drop((reader, listed));
    v.umount();
    v.assert_fsck_clean("after the online shred");
}

#[test]
fn the_daemon_held_the_keys_before_and_drops_exactly_the_subtrees() {
    require_fuse!();
    let v = TestVolume::new("shred-online-mem");
    v.mount();
    let victim = fill(&v, "/v", 2, 6, 1);
    let keep = fill(&v, "/k", 1, 3, 50);
    let keys = KeyMap::capture(&v);
    let open: Vec<fs::File> = victim
        .keys()
        .chain(keep.keys())
        .map(|p| {
            let f = fs::File::open(v.p(p)).unwrap();
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, 0).unwrap();
            f
        })
        .collect();
    let pid = daemon_pid(&v);
    let all = Needles::new(keys.keys.values());
    let before = scan_memory(pid, &all);
    // Positive control: every open file's DEK and every directory key.
    assert_eq!(
        before.len(),
        keys.keys.len(),
        "the scan finds the held keys"
    );
    shred_online(&[v.p("/v").as_os_str()]).expect_code(exit::OK, "shred");
    let gone: Vec<Vec<u8>> = keys.gone().into_iter().map(|(_, k)| k).collect();
    assert_eq!(gone.len(), 3 + 6);
    let after = scan_memory(pid, &all);
    assert!(
        after.iter().all(|k| !gone.contains(k)),
        "a victim key is still in memory"
    );
    assert_eq!(after.len(), keys.keys.len() - gone.len(), "the others stay");
    drop(open);
    v.umount();
}

#[test]
fn a_file_the_root_outside_paths_twice_and_a_concurrent_rename() {
    require_fuse!();
    let v = TestVolume::new("shred-online-misc");
    let (c, pf) = (v.cipher.as_os_str(), v.passfile.as_os_str());
    let enable = [
        OsStr::new("audit"),
        c,
        OsStr::new("--enable"),
        OsStr::new("--passfile"),
        pf,
    ];
    dekfs(enable).expect_code(exit::OK, "audit --enable");
    v.mount();
    fs::create_dir(v.p("/d")).unwrap();
    fs::write(v.p("/d/secret"), b"destroy me").unwrap();
    fs::write(v.p("/d/keep"), b"keep me").unwrap();
    let keep = fill(&v, "/k", 2, 10, 30);
    let before = list_tree(&v.cipher);
    // Without --yes it shows what goes and asks; "no" destroys nothing.
    let secret = v.p("/d/secret");
    let out = dekfs_stdin([OsStr::new("shred"), secret.as_os_str()], b"no\n");
    out.expect_code(exit::OTHER, "not confirmed");
    assert!(
        out.stdout.contains(
            "will destroy /d/secret (file): 0 directories, 1 files, 0 symlinks, 0 other, 10 bytes"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Type 'yes' to continue"),
        "{}",
        out.stdout
    );
    assert_eq!(list_tree(&v.cipher), before, "nothing destroyed");
    assert_eq!(fs::read(&secret).unwrap(), b"destroy me");
    let out = shred_online(&[v.p("/d/secret").as_os_str()]);
    out.expect_code(exit::OK, "shred a file");
    assert!(
        out.stdout.contains("shredded /d/secret (file)"),
        "{}",
        out.stdout
    );
    assert_eq!(list_tree(&v.cipher).len(), before.len() - 1);
    assert_eq!(fs::read(v.p("/d/keep")).unwrap(), b"keep me");
    let audit = dekfs([
        OsStr::new("audit"),
        c,
        OsStr::new("--event"),
        OsStr::new("shred"),
    ]);
    let line = audit
        .stdout
        .lines()
        .find(|l| l.contains(" shred "))
        .unwrap_or_default();
    assert!(
        line.contains(" ok ")
            && line.contains("uid=0")
            && line.contains("files=1 keys=1 ids_sha256="),
        "one audit line per shred, with the requester and the ids: {}",
        audit.stdout
    );
    let out = shred_online(&[v.p("/d/secret").as_os_str()]);
    out.expect_code(exit::OTHER, "twice");
    assert!(out.stderr.contains("no such file"), "{}", out.stderr);

    let out = shred_online(&[v.mnt.as_os_str()]);
    out.expect_code(exit::USAGE, "root");
    assert!(out.stderr.contains("dekfs destroy"), "{}", out.stderr);
    shred_online(&[v.p("/d/..").as_os_str()]).expect_code(exit::USAGE, "root by ..");
    let out = shred_online(&[v.mnt.as_os_str(), OsStr::new("/d/../../etc")]);
    out.expect_code(exit::USAGE, "outside by ..");
    assert!(out.stderr.contains("outside the volume"), "{}", out.stderr);
    let elsewhere = v.dir.path().join("plain");
    fs::write(&elsewhere, b"x").unwrap();
    let out = shred_online(&[elsewhere.as_os_str()]);
    out.expect_code(exit::USAGE, "a path outside any volume");
    assert!(
        out.stderr.contains("neither inside a mounted dekfs volume"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read(&elsewhere).unwrap(), b"x");
    // MOUNTPOINT PLAINPATH form.
    fs::write(v.p("/d/two"), b"2").unwrap();
    shred_online(&[v.mnt.as_os_str(), OsStr::new("d/two")]).expect_code(exit::OK, "two-arg form");
    assert!(fs::symlink_metadata(v.p("/d/two")).is_err());

    // A directory renamed back and forth while it is shredded: the shred
    // destroys it wherever it went, or says it could not find it.
    for round in 0..4 {
        let r = format!("/r{round}");
        let filled = fill(&v, &format!("{r}/a"), 2, 8, 100 + round);
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, a, bb) = (stop.clone(), v.p(&format!("{r}/a")), v.p(&format!("{r}/b")));
        let t = std::thread::spawn(move || {
            // Mostly at `a`, so the shred usually finds it and then has
            // to follow it.
            while !s2.load(Ordering::Relaxed) {
                let _ = fs::rename(&a, &bb);
                std::thread::sleep(Duration::from_micros(500));
                let _ = fs::rename(&bb, &a);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        let out = shred_online(&[v.p(&format!("{r}/a")).as_os_str()]);
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        println!("round {round}: {:?} {}{}", out.code, out.stdout, out.stderr);
        match out.code {
            Some(exit::OK) => {
                assert!(out.stdout.contains(": clean"), "{}", out.stdout);
                assert!(dir_names(&v.p(&r)).is_empty(), "both names gone");
            }
            Some(exit::OTHER) => {
                assert!(
                    out.stderr.contains("no such file") || out.stderr.contains("renamed"),
                    "{}",
                    out.stderr
                );
                if out.stderr.contains("no such file") {
                    // Not found, so not touched: it reads whole where it is.
                    let at = if v.p(&format!("{r}/a")).exists() {
                        "/a/"
                    } else {
                        "/b/"
                    };
                    for (p, data) in &filled {
                        let p = p.replace("/a/", at);
                        assert!(fs::read(v.p(&p)).unwrap() == *data, "{p}");
                    }
                }
            }
            c => panic!("round {round}: exit {c:?}: {}", out.stderr),
        }
        assert!(!v.cipher.join(shred::JOURNAL_NAME).exists());
    }
    for (p, data) in &keep {
        assert!(fs::read(v.p(p)).unwrap() == *data, "{p}");
    }
    v.umount();
    v.assert_fsck_clean("after the misc shreds");
}
