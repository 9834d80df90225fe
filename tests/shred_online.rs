//! Online shred through the daemon (issue 11): a directory of many files in
//! many subdirectories (DEKFS_SHRED_FILES / DEKFS_SHRED_DIRS) is destroyed
//! while a sibling directory is being written and a reader holds a file
//! open under it; the sibling's files match afterwards, the reader gets
//! EIO, nothing under the path reads or lists, and none of the subtree's
//! directory keys or DEKs (derived here independently, before the shred)
//! is left in the cipher directory, the config, any file of the test
//! directory or the daemon's memory. Also: a file, the root, outside
//! paths, twice, a concurrent rename, kill -9 of the daemon at each shred
//! failpoint, and the time until every key is destroyed and synced
//! (DEKFS_SHRED_PERF_FILES / DEKFS_SHRED_PERF_DIRS).

mod common;
mod shred_kit;

use common::*;
use dekfs::engine::shred;
use shred_kit::fill;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `dekfs shred ARGS... --yes`.
fn shred_online(args: &[&OsStr]) -> Out {
    let mut a: Vec<&OsStr> = vec![OsStr::new("shred")];
    a.extend(args);
    a.push(OsStr::new("--yes"));
    dekfs(a)
}

fn hkdf(ikm: &[&[u8]], salt: &[u8], info: &[&[u8]]) -> Vec<u8> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm.concat());
    let mut okm = vec![0u8; 32];
    hk.expand(&info.concat(), &mut okm).unwrap();
    okm
}

/// Unwraps the first of two 72-byte slots whose wrapped key opens under `kek`.
fn unwrap_slots(kek: &[u8], slots: &[u8]) -> Option<Vec<u8>> {
    let kw = aes_kw::KekAes256::try_from(kek).unwrap();
    [8..72, 80..144]
        .into_iter()
        .find_map(|r| kw.unwrap_vec(slots.get(r)?).ok())
        .map(|k| k[..32].to_vec())
}

/// The test hook: every directory key and DEK of the volume, derived from
/// the recovery key by the documented formulas (FORMAT.md), by backing path.
struct KeyMap {
    keys: BTreeMap<PathBuf, Vec<u8>>,
}

impl KeyMap {
    fn capture(v: &TestVolume) -> KeyMap {
        let conf = fs::read(v.cipher.join(CONF)).unwrap();
        let vid = conf[20..36].to_vec();
        let rec = &conf[64 + 144..];
        assert_eq!(rec[0], 2, "second protector is the recovery key");
        let rk = hex::decode(v.recovery_key.as_ref().unwrap().replace('-', "")).unwrap();
        let pk = hkdf(&[&rk], &rec[32..64], &[b"dekfs v1 recovery"]);
        let kw = aes_kw::KekAes256::try_from(&pk[..]).unwrap();
        let kek = kw.unwrap_vec(&rec[64..128]).unwrap()[..32].to_vec();
        let meta = fs::read(v.cipher.join(DIR_META)).unwrap();
        let dir_id = meta[16..32].to_vec();
        let dwk = hkdf(&[&kek], &vid, &[b"dekfs v1 root-wrap", &dir_id]);
        let root_key = unwrap_slots(&dwk, &meta[80..224]).expect("root key");
        let mut m = KeyMap {
            keys: BTreeMap::new(),
        };
        m.walk(&v.cipher, &kek, &vid, &root_key, &dir_id);
        m.keys.insert(v.cipher.clone(), root_key);
        m
    }

    fn walk(&mut self, dir: &Path, kek: &[u8], vid: &[u8], key: &[u8], dir_id: &[u8]) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let (p, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            if name.starts_with("dekfs.") && !name.starts_with("dekfs.ln.")
                || name.ends_with(".name")
            {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                let Ok(meta) = fs::read(p.join(DIR_META)) else {
                    continue;
                };
                let id = meta[16..32].to_vec();
                let dwk = hkdf(&[kek, key], vid, &[b"dekfs v1 dir-wrap", &id]);
                let k = unwrap_slots(&dwk, &meta[80..224]).expect("dir key");
                self.walk(&p, kek, vid, &k, &id);
                self.keys.insert(p, k);
            } else if ft.is_file() {
                let h = fs::read(&p).unwrap();
                if h.len() < HEADER_LEN as usize {
                    continue;
                }
                let fwk = hkdf(
                    &[kek, key],
                    vid,
                    &[b"dekfs v1 file-wrap", dir_id, &h[16..32]],
                );
                let dek = unwrap_slots(&fwk, &h[72..216]).expect("DEK");
                self.keys.insert(p, dek);
            }
        }
    }

    /// Keys of the objects whose backing path is gone now.
    fn gone(&self) -> Vec<(PathBuf, Vec<u8>)> {
        self.keys
            .iter()
            .filter(|(p, _)| fs::symlink_metadata(p).is_err())
            .map(|(p, k)| (p.clone(), k.clone()))
            .collect()
    }
}

/// A set of 32-byte needles, found by their first 8 bytes.
struct Needles(HashMap<u64, Vec<Vec<u8>>>);

impl Needles {
    fn new<'a>(keys: impl IntoIterator<Item = &'a Vec<u8>>) -> Needles {
        let mut m: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for k in keys {
            m.entry(u64::from_le_bytes(k[..8].try_into().unwrap()))
                .or_default()
                .push(k.clone());
        }
        Needles(m)
    }

    /// Which needles `buf` holds.
    fn find(&self, buf: &[u8], hits: &mut Vec<Vec<u8>>) {
        if buf.len() < 32 {
            return;
        }
        for i in 0..=buf.len() - 32 {
            let p = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap());
            if let Some(ks) = self.0.get(&p) {
                for k in ks {
                    if &buf[i..i + 32] == k.as_slice() && !hits.contains(k) {
                        hits.push(k.clone());
                    }
                }
            }
        }
    }
}

fn scan_memory(pid: u32, n: &Needles) -> Vec<Vec<u8>> {
    let mut hits = Vec::new();
    for_each_region(pid, |_, _, buf| n.find(buf, &mut hits));
    hits
}

fn scan_files(dir: &Path, n: &Needles, hits: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            scan_files(&e.path(), n, hits);
        } else if ft.is_file() {
            let mut found = Vec::new();
            n.find(&fs::read(e.path()).unwrap(), &mut found);
            hits.extend(found.into_iter().map(|k| (e.path(), k)));
        }
    }
}

fn daemon_pid(v: &TestVolume) -> u32 {
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    pids[0]
}

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
