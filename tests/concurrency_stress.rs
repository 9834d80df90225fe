//! Concurrency: truncate/truncate/write/read on one file (the gocryptfs
//! #1024 class), rename storms across directories, readdir during create and
//! unlink, 16 parallel randomized workloads on separate files, readers of
//! files replaced by rename or unlinked under them; each compared
//! to a plain directory where the outcome is deterministic, never EIO, no
//! panic, and a watchdog fails the test if nothing progresses for 30 s.
//! Durations come from DEKFS_STRESS_SECS (default 4). Must not tamper.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const STALL: Duration = Duration::from_secs(30);

fn secs() -> Duration {
    Duration::from_secs(
        std::env::var("DEKFS_STRESS_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4),
    )
}

struct Run {
    progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Run {
    fn new() -> Run {
        Run {
            progress: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        }
    }
    /// Spawns `f(i, stop, progress)`.
    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>, Arc<AtomicU64>) + Send + 'static) {
        let (s, p) = (self.stop.clone(), self.progress.clone());
        self.handles.push(std::thread::spawn(move || f(s, p)));
    }
    /// Lets workers run for `dur` (or until they all finish), then joins;
    /// a 30 s stall unmounts lazily (to unblock syscalls) and fails.
    fn finish(self, v: &TestVolume, dur: Duration) {
        let t0 = Instant::now();
        let mut last = (self.progress.load(Ordering::SeqCst), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if t0.elapsed() >= dur {
                self.stop.store(true, Ordering::SeqCst);
            }
            if self.handles.iter().all(|h| h.is_finished()) {
                break;
            }
            let p = self.progress.load(Ordering::SeqCst);
            if p != last.0 {
                last = (p, Instant::now());
            } else if last.1.elapsed() > STALL {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&v.mnt)
                    .status();
                panic!("watchdog: no progress for {STALL:?} (hang); mount lazily unmounted");
            }
        }
        for h in self.handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    }
}

/// Every file under `a` equals the one under `b` (names and bytes).
fn assert_same_tree(a: &Path, b: &Path) {
    let (la, lb) = (list_tree(a), list_tree(b));
    let ka: Vec<&PathBuf> = la.keys().collect();
    let kb: Vec<&PathBuf> = lb.keys().collect();
    assert_eq!(ka, kb, "trees differ in names");
    for (rel, (is_file, _)) in &la {
        if *is_file {
            assert!(
                read_file(&a.join(rel)).unwrap() == read_file(&b.join(rel)).unwrap(),
                "{rel:?} differs"
            );
        }
    }
}

#[test]
fn concurrency_two_truncaters_one_writer_one_reader() {
    require_fuse!();
    let v = TestVolume::new("conc-trunc");
    v.mount();
    let path = v.p("victim");
    fs::write(&path, random_bytes(1, 50_000)).unwrap();
    let mut run = Run::new();
    for t in 0..2u64 {
        let path = path.clone();
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10 + t);
            let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            while !stop.load(Ordering::SeqCst) {
                f.set_len(rng.gen_range(0..80_000))
                    .expect("ftruncate must not fail");
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    {
        let path = path.clone();
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
            let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            while !stop.load(Ordering::SeqCst) {
                let off = rng.gen_range(0..70_000u64);
                let data = vec![0xA5u8; rng.gen_range(1..9000)];
                f.write_all_at(&data, off).expect("write must not fail");
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    {
        let path = path.clone();
        run.spawn(move |stop, prog| {
            while !stop.load(Ordering::SeqCst) {
                // any length, but only writer bytes (0xA5), zeros from
                // extension, or the original content's prefix; never EIO
                let data = read_file(&path).expect("read during truncate/write must not fail");
                let orig = random_bytes(1, 50_000);
                for (i, b) in data.iter().enumerate() {
                    assert!(
                        *b == 0xA5 || *b == 0 || orig.get(i) == Some(b),
                        "byte {i} = {b:#x} from nowhere"
                    );
                }
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    run.finish(&v, secs());
    let data = read_file(&path).expect("readable after the storm");
    let tail = random_bytes(2, 10_000);
    fs::write(&path, &tail).unwrap();
    assert_eq!(read_file(&path).unwrap(), tail);
    let _ = data;
    v.umount();
    v.assert_fsck_clean("after stress");
}

#[test]
fn concurrency_rename_storm_across_directories() {
    require_fuse!();
    let v = TestVolume::new("conc-rename");
    v.mount();
    let plain = v.dir.path().join("plain");
    for root in [v.mnt.clone(), plain.clone()] {
        for d in 0..4 {
            fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
        }
    }
    let mut run = Run::new();
    for t in 0..4u64 {
        let (mnt, plain) = (v.mnt.clone(), plain.clone());
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(30 + t);
            let mut at: Vec<u32> = vec![0; 8];
            for (i, _) in at.clone().iter().enumerate() {
                let data = random_bytes(t * 100 + i as u64, 5000 + i);
                for root in [&mnt, &plain] {
                    fs::write(root.join(format!("d0/t{t}f{i}")), &data).unwrap();
                }
            }
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 50 {
                let i = rng.gen_range(0..8);
                let to = rng.gen_range(0..4);
                for root in [&mnt, &plain] {
                    fs::rename(
                        root.join(format!("d{}/t{t}f{i}", at[i])),
                        root.join(format!("d{to}/t{t}f{i}")),
                    )
                    .expect("rename must not fail");
                }
                at[i] = to;
                n += 1;
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    run.finish(&v, secs());
    assert_same_tree(&v.mnt, &plain);
    v.remount();
    assert_same_tree(&v.mnt, &plain);
    v.umount();
    v.assert_fsck_clean("after stress");
}

#[test]
fn concurrency_readdir_during_create_and_unlink() {
    require_fuse!();
    let v = TestVolume::new("conc-readdir");
    v.mount();
    fs::create_dir(v.p("d")).unwrap();
    let dir = v.p("d");
    let mut run = Run::new();
    for t in 0..2u64 {
        let dir = dir.clone();
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(40 + t);
            while !stop.load(Ordering::SeqCst) {
                let p = dir.join(format!("w{t}-{}", rng.gen_range(0..50)));
                if p.exists() {
                    let _ = fs::remove_file(&p);
                } else {
                    fs::write(&p, b"x").expect("create must not fail");
                }
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    for _ in 0..2 {
        let dir = dir.clone();
        run.spawn(move |stop, prog| {
            while !stop.load(Ordering::SeqCst) {
                for e in fs::read_dir(&dir).expect("readdir must not fail") {
                    let n = e
                        .expect("readdir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned();
                    assert!(
                        n.starts_with("w0-") || n.starts_with("w1-"),
                        "unexpected entry {n}"
                    );
                }
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    run.finish(&v, secs());
    for n in dir_names(&dir) {
        assert_eq!(read_file(&dir.join(&n)).unwrap(), b"x", "{n}");
    }
    v.umount();
    v.assert_fsck_clean("after stress");
}

#[test]
fn concurrency_sixteen_random_workloads_on_separate_files() {
    require_fuse!();
    let v = TestVolume::new("conc-16");
    v.mount();
    let plain = v.dir.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let mut run = Run::new();
    for t in 0..16u64 {
        let (m, p) = (v.p(&format!("w{t}")), plain.join(format!("w{t}")));
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(50 + t);
            let open = |p: &Path| {
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .unwrap()
            };
            let (fm, fp) = (open(&m), open(&p));
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 100 {
                match rng.gen_range(0..10) {
                    0..=5 => {
                        let off = rng.gen_range(0..200_000u64);
                        let data: Vec<u8> =
                            (0..rng.gen_range(1..20_000)).map(|_| rng.gen()).collect();
                        fm.write_all_at(&data, off).expect("write");
                        fp.write_all_at(&data, off).unwrap();
                    }
                    6 | 7 => {
                        let size = fp.metadata().unwrap().len();
                        let off = rng.gen_range(0..size + 1);
                        let len = rng.gen_range(0..30_000usize).min((size - off) as usize);
                        let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                        fm.read_exact_at(&mut a, off).expect("read");
                        fp.read_exact_at(&mut b, off).unwrap();
                        assert!(a == b, "w{t}: read {off}+{len} differs from the plain file");
                    }
                    _ => {
                        let size = rng.gen_range(0..220_000u64);
                        fm.set_len(size).expect("truncate");
                        fp.set_len(size).unwrap();
                    }
                }
                n += 1;
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    run.finish(&v, secs());
    let list = |root: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&v.mnt), list(&plain));
    v.remount();
    for t in 0..16 {
        let n = format!("w{t}");
        assert!(
            read_file(&v.p(&n)).unwrap() == read_file(&plain.join(&n)).unwrap(),
            "{n} differs after remount"
        );
    }
    v.umount();
    v.assert_fsck_clean("after stress");
}

/// Version `b` of a replaced file: `b` repeated, at a length only `b` has,
/// so a reader can tell a whole version from a torn or mixed one.
fn version(b: u8) -> Vec<u8> {
    vec![b; 1000 + b as usize * 997]
}

fn check_version(data: &[u8], what: &str) {
    let b = data.first().copied().unwrap_or(0);
    assert!(
        data == version(b),
        "{what}: {} bytes, not one whole version",
        data.len()
    );
}

/// Atomic replace (write a temp file, rename it over the name) and unlink
/// racing readers that open the name and keep reading through their handle
/// after it was replaced: every read is one whole version, never EIO. The
/// daemon retires a replaced file's node at once unless a handle is open,
/// so this is where an open racing the retire has to revive it. Afterwards
/// it holds no removed file, and fsck is clean.
#[test]
fn concurrency_readers_keep_replaced_and_unlinked_files() {
    require_fuse!();
    let v = TestVolume::new("conc-replace");
    v.mount();
    let pid = pids_mentioning(&v.cipher)[0];
    let names: Vec<PathBuf> = (0..4).map(|i| v.p(&format!("n{i}"))).collect();
    for n in &names {
        fs::write(n, version(0)).unwrap();
    }
    let mut run = Run::new();
    for t in 0..2u64 {
        let (names, tmp) = (names.clone(), v.p(&format!("tmp{t}")));
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(70 + t);
            while !stop.load(Ordering::SeqCst) {
                let n = &names[rng.gen_range(0..names.len())];
                if rng.gen_range(0..8) == 0 {
                    let _ = fs::remove_file(n);
                } else {
                    fs::write(&tmp, version(rng.gen())).expect("write temp");
                    fs::rename(&tmp, n).expect("rename over");
                }
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    for t in 0..3u64 {
        let names = names.clone();
        run.spawn(move |stop, prog| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(80 + t);
            while !stop.load(Ordering::SeqCst) {
                let n = &names[rng.gen_range(0..names.len())];
                let f = match fs::File::open(n) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("open {}: {e}", n.display()),
                };
                let read = |what: &str| {
                    let len = f.metadata().expect("fstat").len() as usize;
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, 0)
                        .unwrap_or_else(|e| panic!("{what} {}: {e}", n.display()));
                    buf
                };
                let first = read("read");
                check_version(&first, "read");
                // The name is likely replaced or gone by now: the handle
                // still reads what it opened.
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..2000)));
                assert!(
                    read("re-read") == first,
                    "{}: changed under an open handle",
                    n.display()
                );
                prog.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    run.finish(&v, secs());
    for n in &names {
        if let Ok(d) = read_file(n) {
            check_version(&d, "final");
        }
    }
    // RELEASE follows close(2) asynchronously; give the last ones a moment.
    let clean = wait_until(Duration::from_secs(10), || {
        held_unlinked(pid, |_| true).is_empty()
    });
    assert!(
        clean,
        "daemon still holds {:?}",
        held_unlinked(pid, |_| true)
    );
    v.umount();
    v.assert_fsck_clean("after stress");
}
