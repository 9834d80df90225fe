//! fsx-style randomized workload: the same random operations (writes at
//! random offsets and lengths, across block boundaries and beyond EOF,
//! truncates up and down, reads, fsync, close/reopen) applied to a file on the
//! mount, a file in a plain directory and an in-memory model (plus mmap reads
//! and writes of the mounted file). Every read is
//! compared byte for byte, the final contents too, and again after remount.
//!
//! Env: FSX_OPS (ops per seed, default 2000), FSX_SEEDS (default 3).

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use rand::{Rng, SeedableRng};

const MAX_LEN: u64 = 1 << 20; // keep files under 1 MiB (+ a write)
const BLOCK: u64 = 4096;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Pair {
    mnt_path: PathBuf,
    ref_path: PathBuf,
    mnt: Option<fs::File>,
    reff: Option<fs::File>,
    model: Vec<u8>,
}

fn open_rw(p: &Path, create: bool) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

impl Pair {
    fn new(mnt_path: PathBuf, ref_path: PathBuf) -> Pair {
        let mnt = Some(open_rw(&mnt_path, true));
        let reff = Some(open_rw(&ref_path, true));
        Pair {
            mnt_path,
            ref_path,
            mnt,
            reff,
            model: Vec::new(),
        }
    }
    fn m(&self) -> &fs::File {
        self.mnt.as_ref().unwrap()
    }
    fn r(&self) -> &fs::File {
        self.reff.as_ref().unwrap()
    }
}

/// An offset that likes block boundaries.
fn pick_offset(rng: &mut impl Rng, len: u64) -> u64 {
    let limit = (len + 3 * BLOCK).min(MAX_LEN);
    match rng.gen_range(0..10) {
        0..=2 => {
            // near a block boundary
            let b = rng.gen_range(0..=limit / BLOCK);
            let delta: i64 = rng.gen_range(-3..=3);
            (b as i64 * BLOCK as i64 + delta).clamp(0, limit as i64) as u64
        }
        3 => len,                                                // append
        4 => (len + rng.gen_range(1..(4 * BLOCK))).min(MAX_LEN), // beyond EOF: a hole
        _ => rng.gen_range(0..=limit),
    }
}

fn pick_len(rng: &mut impl Rng) -> usize {
    match rng.gen_range(0..10) {
        0 => rng.gen_range(1..=16),
        1..=2 => BLOCK as usize + rng.gen_range(0..=2) - 1,
        3 => rng.gen_range(1..=(3 * BLOCK as usize)),
        4 => rng.gen_range(1..=(64 * 1024)),
        _ => rng.gen_range(1..=8192),
    }
}

fn do_read(p: &Pair, rng: &mut impl Rng, seed: u64, op: usize, what: &str) {
    let len = p.model.len() as u64;
    let off = if len == 0 || rng.gen_bool(0.1) {
        rng.gen_range(0..=len + 100)
    } else {
        rng.gen_range(0..len)
    };
    let want_len = rng.gen_range(1..=70_000usize);
    let end = (off as usize + want_len)
        .min(p.model.len())
        .max(off as usize);
    let expect = if (off as usize) < p.model.len() {
        &p.model[off as usize..end]
    } else {
        &[][..]
    };
    for (name, f) in [("mount", p.m()), ("plain", p.r())] {
        let mut buf = vec![0u8; want_len];
        let mut got = 0;
        loop {
            let n = f
                .read_at(&mut buf[got..], off + got as u64)
                .unwrap_or_else(|e| {
                    panic!("seed {seed} op {op} {what}: {name} read at {off}: {e}")
                });
            if n == 0 {
                break;
            }
            got += n;
            if got == want_len {
                break;
            }
        }
        if buf[..got] != *expect {
            let first = buf[..got]
                .iter()
                .zip(expect.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(got.min(expect.len()));
            panic!(
                "seed {seed} op {op} {what}: {name} read of {want_len} at {off}: got {got} bytes, \
                 want {} (file len {len}); first difference at file offset {}",
                expect.len(),
                off + first as u64
            );
        }
    }
}

/// mmap (MAP_SHARED) a page-aligned window inside the file on the mount:
/// compare it with the model, or write random bytes into it + msync.
fn do_mmap(p: &mut Pair, rng: &mut impl Rng, seed: u64, op: usize) {
    use std::os::fd::AsRawFd;
    let len = p.model.len();
    let page = 4096usize;
    let start = rng.gen_range(0..=(len - 1) / page) * page;
    let maplen = rng.gen_range(1..=(len - start).min(256 * 1024));
    let write = rng.gen_bool(0.5);
    // SAFETY: a fresh shared mapping of an open fd, inside the file's size;
    // unmapped before returning.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            maplen,
            libc::PROT_READ | if write { libc::PROT_WRITE } else { 0 },
            libc::MAP_SHARED,
            p.m().as_raw_fd(),
            start as libc::off_t,
        )
    };
    assert!(
        addr != libc::MAP_FAILED,
        "seed {seed} op {op}: mmap {maplen}@{start}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the mapping is maplen bytes long and stays mapped below.
    let view = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), maplen) };
    if write {
        let off = rng.gen_range(0..maplen);
        let n = rng.gen_range(1..=(maplen - off).min(10_000));
        let mut data = vec![0u8; n];
        rng.fill(&mut data[..]);
        view[off..off + n].copy_from_slice(&data);
        // SAFETY: addr/maplen describe the mapping made above.
        let r = unsafe { libc::msync(addr, maplen, libc::MS_SYNC) };
        assert_eq!(
            r,
            0,
            "seed {seed} op {op}: msync: {}",
            std::io::Error::last_os_error()
        );
        p.r().write_all_at(&data, (start + off) as u64).unwrap();
        p.model[start + off..start + off + n].copy_from_slice(&data);
    } else if view[..] != p.model[start..start + maplen] {
        let first = view
            .iter()
            .zip(&p.model[start..])
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "seed {seed} op {op}: mmap view {maplen}@{start} differs at file offset {}",
            start + first
        );
    }
    // SAFETY: unmapping exactly the mapping made above.
    unsafe { libc::munmap(addr, maplen) };
}

fn run_seed(seed: u64, ops: usize, mnt_path: PathBuf, ref_path: PathBuf) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut p = Pair::new(mnt_path, ref_path);
    for op in 0..ops {
        let choice = rng.gen_range(0..100);
        match choice {
            0..=44 => {
                // write
                let off = pick_offset(&mut rng, p.model.len() as u64);
                let len = pick_len(&mut rng);
                let mut data = vec![0u8; len];
                rng.fill(&mut data[..]);
                // sometimes zeros (must not be confused with holes)
                if rng.gen_bool(0.05) {
                    data.iter_mut().for_each(|b| *b = 0);
                }
                p.m().write_all_at(&data, off).unwrap_or_else(|e| {
                    panic!("seed {seed} op {op}: mount write {len}@{off}: {e}")
                });
                p.r().write_all_at(&data, off).unwrap();
                let end = off as usize + len;
                if p.model.len() < end {
                    p.model.resize(end, 0);
                }
                p.model[off as usize..end].copy_from_slice(&data);
            }
            45..=74 => do_read(&p, &mut rng, seed, op, "read"),
            75..=86 => {
                // truncate up or down
                let len = p.model.len() as u64;
                let new = match rng.gen_range(0..4) {
                    0 => rng.gen_range(0..=len),
                    1 => (len / BLOCK) * BLOCK + rng.gen_range(0..=1) * BLOCK,
                    2 => (len + rng.gen_range(1..(5 * BLOCK))).min(MAX_LEN),
                    _ => rng.gen_range(0..=MAX_LEN / 4),
                };
                p.m().set_len(new).unwrap_or_else(|e| {
                    panic!("seed {seed} op {op}: mount truncate to {new}: {e}")
                });
                p.r().set_len(new).unwrap();
                p.model.resize(new as usize, 0);
            }
            87..=90 => {
                p.m()
                    .sync_all()
                    .unwrap_or_else(|e| panic!("seed {seed} op {op}: fsync: {e}"));
                p.r().sync_data().unwrap();
            }
            91..=94 => {
                // close and reopen
                p.mnt = None;
                p.reff = None;
                p.mnt = Some(open_rw(&p.mnt_path, false));
                p.reff = Some(open_rw(&p.ref_path, false));
            }
            95..=97 if !p.model.is_empty() => do_mmap(&mut p, &mut rng, seed, op),
            _ => {
                // stat size
                let ms = p.m().metadata().unwrap().len();
                assert_eq!(
                    ms,
                    p.model.len() as u64,
                    "seed {seed} op {op}: st_size on the mount"
                );
                assert_eq!(p.r().metadata().unwrap().len(), p.model.len() as u64);
            }
        }
    }
    p.m().sync_all().unwrap();
    let final_mnt = fs::read(&p.mnt_path).unwrap();
    let final_ref = fs::read(&p.ref_path).unwrap();
    assert!(
        final_ref == p.model,
        "seed {seed}: plain reference file differs from the model"
    );
    assert_eq!(final_mnt.len(), p.model.len(), "seed {seed}: final length");
    assert!(
        final_mnt == p.model,
        "seed {seed}: final content on the mount"
    );
    p.model
}

#[test]
fn fsx_single_file_seeds() {
    require_fuse!();
    let v = TestVolume::new("fsx");
    v.mount();
    let refdir = scratch_dir("dekfs-fsx-ref-");
    let ops = env_num("FSX_OPS", 2000) as usize;
    let seeds = env_num("FSX_SEEDS", 3);
    let mut finals = Vec::new();
    fs::create_dir(v.p("fsx")).unwrap();
    for seed in 1..=seeds {
        let name = format!("fsx/file-{seed}");
        let model = run_seed(
            seed,
            ops,
            v.p(&name),
            refdir.path().join(format!("file-{seed}")),
        );
        finals.push((name, model));
    }
    v.remount();
    for (name, model) in &finals {
        let got = read_file(&v.p(name)).unwrap();
        assert_eq!(got.len(), model.len(), "{name} length after remount");
        assert!(got == *model, "{name} content after remount");
    }
}

#[test]
fn fsx_four_threads() {
    require_fuse!();
    let v = TestVolume::new("fsx-mt");
    v.mount();
    let refdir = scratch_dir("dekfs-fsx-mt-ref-");
    let ops = env_num("FSX_OPS", 2000) as usize / 2;
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let mp = v.p(&format!("t{t}"));
            let rp = refdir.path().join(format!("t{t}"));
            std::thread::spawn(move || run_seed(100 + t, ops, mp, rp))
        })
        .collect();
    let finals: Vec<Vec<u8>> = handles
        .into_iter()
        .map(|h| h.join().expect("fsx thread panicked"))
        .collect();
    v.remount();
    for (t, model) in finals.iter().enumerate() {
        let got = read_file(&v.p(&format!("t{t}"))).unwrap();
        assert!(got == *model, "t{t} content after remount");
    }
}

#[test]
fn fsx_shared_file_two_handles() {
    // two descriptors on one file (as with two processes): writes through one
    // are seen by reads through the other
    require_fuse!();
    let v = TestVolume::new("fsx-2fd");
    v.mount();
    let p = v.p("shared");
    let a = open_rw(&p, true);
    let b = open_rw(&p, false);
    let mut model = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    for op in 0..500 {
        let (w, r) = if rng.gen_bool(0.5) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let off = pick_offset(&mut rng, model.len() as u64);
        let len = pick_len(&mut rng).min(20_000);
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        w.write_all_at(&data, off).unwrap();
        if model.len() < off as usize + len {
            model.resize(off as usize + len, 0);
        }
        model[off as usize..off as usize + len].copy_from_slice(&data);
        let mut back = vec![0u8; len];
        r.read_exact_at(&mut back, off)
            .unwrap_or_else(|e| panic!("op {op}: read back {len}@{off}: {e}"));
        assert!(
            back == data,
            "op {op}: other descriptor sees stale data at {off}"
        );
        if op % 97 == 0 {
            let t = rng.gen_range(0..=model.len() as u64);
            r.set_len(t).unwrap();
            model.truncate(t as usize);
        }
    }
    drop(a);
    drop(b);
    v.remount();
    assert!(read_file(&p).unwrap() == model);
}

/// 4 threads create, rename, write and delete entries in ONE shared
/// directory at the same time; the final listing and every content match
/// what each thread did, before and after remount.
#[test]
fn concurrent_namespace_ops_in_one_directory() {
    require_fuse!();
    let v = TestVolume::new("ns-mt");
    v.mount();
    fs::create_dir(v.p("shared")).unwrap();
    fs::create_dir(v.p("other")).unwrap();
    let dir = v.p("shared");
    let other = v.p("other");
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let dir = dir.clone();
            let other = other.clone();
            std::thread::spawn(move || {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(500 + t);
                let mut alive: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
                for i in 0..300 {
                    match rng.gen_range(0..10) {
                        0..=4 => {
                            let name = format!("t{t}-{i}");
                            let mut data = vec![0u8; rng.gen_range(0..9000)];
                            rng.fill(&mut data[..]);
                            fs::write(dir.join(&name), &data).unwrap();
                            alive.insert(name, data);
                        }
                        5..=6 if !alive.is_empty() => {
                            let k = alive
                                .keys()
                                .nth(rng.gen_range(0..alive.len()))
                                .unwrap()
                                .clone();
                            let data = alive.remove(&k).unwrap();
                            let new = format!("{k}-r{i}");
                            fs::rename(dir.join(&k), dir.join(&new)).unwrap();
                            alive.insert(new, data);
                        }
                        7 if !alive.is_empty() => {
                            let k = alive
                                .keys()
                                .nth(rng.gen_range(0..alive.len()))
                                .unwrap()
                                .clone();
                            fs::remove_file(dir.join(&k)).unwrap();
                            alive.remove(&k);
                        }
                        8 if !alive.is_empty() => {
                            // move out to another directory and back
                            let k = alive
                                .keys()
                                .nth(rng.gen_range(0..alive.len()))
                                .unwrap()
                                .clone();
                            fs::rename(dir.join(&k), other.join(&k)).unwrap();
                            fs::rename(other.join(&k), dir.join(&k)).unwrap();
                        }
                        _ => {
                            let _ = fs::read_dir(&dir).unwrap().count();
                        }
                    }
                }
                alive
            })
        })
        .collect();
    let mut want: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for h in handles {
        want.extend(h.join().expect("namespace thread panicked"));
    }
    let check = |when: &str| {
        let names: Vec<String> = dir_names(&dir);
        let want_names: Vec<String> = want.keys().cloned().collect();
        assert_eq!(names, want_names, "listing of the shared dir ({when})");
        for (k, data) in &want {
            assert!(read_file(&dir.join(k)).unwrap() == *data, "{k} ({when})");
        }
        assert!(dir_names(&other).is_empty());
    };
    check("mounted");
    v.remount();
    check("after remount");
}
