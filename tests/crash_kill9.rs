//! Crash consistency: a writer logs each fsync while the daemon is killed
//! with SIGKILL at random moments (fixed seed; DEKFS_CRASH_KILLS, default
//! 200, and DEKFS_CRASH_SEED set them). After each kill: lazy unmount,
//! `dekfs fsck` clean, remount, every fsynced block byte-exact, every other
//! block old or new content (never EIO), every directory lists. It must not
//! tamper with the cipher directory itself.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FILES: usize = 6;
const MAX_BLOCKS: u64 = 12;
const B: usize = 4096;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Content of block `blk` of file `f` at generation `g` (g >= 1).
fn block(f: usize, blk: u64, g: u32) -> Vec<u8> {
    let mut v = random_bytes((f as u64) << 40 | blk << 20 | g as u64, B);
    v[..4].copy_from_slice(&g.to_le_bytes());
    v
}

/// Per file: generation of each block at the last successful fsync, and
/// every generation written since (which may or may not have landed).
#[derive(Default, Clone)]
struct FileLog {
    durable: Vec<u32>,
    pending: BTreeMap<u64, BTreeSet<u32>>,
}

fn path_of(f: usize) -> String {
    format!("/d{}/f{f}", f % 2)
}

/// Writes until the first error (the daemon died); fsync results update `log`.
fn writer(
    v: &TestVolume,
    rng: &mut rand_chacha::ChaCha8Rng,
    log: &mut [FileLog],
    next_gen: &mut u32,
    fired: &AtomicBool,
) {
    let files: Vec<fs::File> = match (0..FILES)
        .map(|f| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(v.p(&path_of(f)))
        })
        .collect()
    {
        Ok(fs) => fs,
        Err(_) => return,
    };
    while !fired.load(Ordering::SeqCst) {
        let f = rng.gen_range(0..FILES);
        if rng.gen_bool(0.2) {
            if files[f].sync_all().is_err() {
                return;
            }
            let l = &mut log[f];
            for (blk, gens) in std::mem::take(&mut l.pending) {
                let g = *gens.iter().max().unwrap();
                if l.durable.len() <= blk as usize {
                    l.durable.resize(blk as usize + 1, 0);
                }
                l.durable[blk as usize] = g;
            }
            continue;
        }
        let blk = rng.gen_range(0..MAX_BLOCKS);
        *next_gen += 1;
        let g = *next_gen;
        log[f].pending.entry(blk).or_default().insert(g);
        if files[f]
            .write_all_at(&block(f, blk, g), blk * B as u64)
            .is_err()
        {
            return;
        }
    }
}

fn verify(v: &TestVolume, log: &[FileLog], cycle: u64) {
    for (f, l) in log.iter().enumerate() {
        let rel = path_of(f);
        let data = read_file(&v.p(&rel))
            .unwrap_or_else(|e| panic!("cycle {cycle}: {rel} unreadable after kill -9: {e}"));
        assert_eq!(
            data.len() % B,
            0,
            "cycle {cycle}: {rel} size {}",
            data.len()
        );
        let nblk = (data.len() / B) as u64;
        let durable_len = l.durable.iter().rposition(|g| *g != 0).map_or(0, |i| i + 1) as u64;
        assert!(
            nblk >= durable_len,
            "cycle {cycle}: {rel} lost fsynced blocks ({nblk} < {durable_len})"
        );
        for blk in 0..nblk {
            let got = &data[blk as usize * B..(blk as usize + 1) * B];
            let d = l.durable.get(blk as usize).copied().unwrap_or(0);
            let mut ok: Vec<u32> = l
                .pending
                .get(&blk)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            ok.retain(|g| *g > d);
            let is = |g: u32| {
                if g == 0 {
                    got.iter().all(|b| *b == 0)
                } else {
                    got == block(f, blk, g)
                }
            };
            assert!(
                is(d) || ok.iter().any(|g| is(*g)),
                "cycle {cycle}: {rel} block {blk} is neither fsynced gen {d} nor a later write {ok:?}"
            );
        }
    }
    for d in ["/", "/d0", "/d1"] {
        let _ = dir_names(&v.p(d));
    }
}

/// What is on disk now (generation in each block's first 4 bytes, 0 for a
/// zero block) becomes the new baseline.
fn observed(v: &TestVolume) -> Vec<FileLog> {
    (0..FILES)
        .map(|f| {
            let data = read_file(&v.p(&path_of(f))).unwrap();
            let durable = data
                .chunks(B)
                .map(|c| u32::from_le_bytes(c[..4].try_into().unwrap()))
                .collect();
            FileLog {
                durable,
                pending: BTreeMap::new(),
            }
        })
        .collect()
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
        .stderr(std::process::Stdio::null())
        .status();
    if is_mounted(mnt) {
        let _ = Command::new("umount").arg("-l").arg(mnt).status();
    }
}

#[test]
fn crash_kill9_at_random_moments() {
    require_fuse!();
    let kills = env_u64("DEKFS_CRASH_KILLS", 200);
    let seed = env_u64("DEKFS_CRASH_SEED", 1);
    let v = TestVolume::new("crash-kill9");
    v.mount();
    fs::create_dir(v.p("d0")).unwrap();
    fs::create_dir(v.p("d1")).unwrap();
    for f in 0..FILES {
        fs::File::create(v.p(&path_of(f)))
            .unwrap()
            .sync_all()
            .unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut log = vec![FileLog::default(); FILES];
    let mut next_gen = 0u32;
    let pass = v.passfile.display().to_string();
    let cipher = v.cipher.display().to_string();
    for cycle in 0..kills {
        let delay = Duration::from_micros(rng.gen_range(0..60_000));
        let fired = Arc::new(AtomicBool::new(false));
        let killer = {
            let (fired, cipher) = (fired.clone(), v.cipher.clone());
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                for pid in pids_mentioning(&cipher) {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
                fired.store(true, Ordering::SeqCst);
            })
        };
        writer(&v, &mut rng, &mut log, &mut next_gen, &fired);
        killer.join().unwrap();
        assert!(fired.load(Ordering::SeqCst));
        kill_daemon(&v);
        lazy_unmount(&v.mnt);
        std::thread::sleep(Duration::from_millis(20));
        let out = dekfs(["fsck", &cipher, "--passfile", &pass]);
        assert!(
            out.ok(),
            "cycle {cycle} (seed {seed}): fsck not clean:\n{}{}",
            out.stdout,
            out.stderr
        );
        v.mount();
        verify(&v, &log, cycle);
        log = observed(&v);
    }
    eprintln!("crash_kill9: {kills} kills (seed {seed}), {next_gen} block writes");
}
