//! Stable-toolchain runner for the fuzz target bodies: replays every seed in
//! corpus/<target>/ and every saved crash in regressions/<target>/, then
//! runs seeded random mutations of them for DEKFS_FUZZ_STABLE_SECS (default
//! 2) per target. It is the regression suite for crashes libFuzzer finds;
//! it must not replace `cargo fuzz run` (no coverage guidance).

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn mutate(rng: &mut rand_chacha::ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        match rng.gen_range(0..5) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            2 => v.truncate(rng.gen_range(0..=v.len())),
            3 => v.extend((0..rng.gen_range(0..64)).map(|_| rng.gen::<u8>())),
            _ if v.len() >= 4 => {
                let i = rng.gen_range(0..v.len() - 3);
                v[i..i + 4].copy_from_slice(&rng.gen::<u32>().to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

#[test]
fn every_target_survives_seeds_regressions_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let secs: u64 = std::env::var("DEKFS_FUZZ_STABLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    // FUZZ_TARGETS (as for scripts/fuzz.sh) narrows the run to the targets it names.
    let only = std::env::var("FUZZ_TARGETS").ok();
    for (name, target) in dekfs_fuzz::TARGETS {
        if only
            .as_ref()
            .is_some_and(|o| !o.split_whitespace().any(|t| t == *name))
        {
            continue;
        }
        let mut seeds = files(&root.join("corpus").join(name));
        seeds.extend(files(&root.join("regressions").join(name)));
        assert!(!seeds.is_empty(), "no seed corpus for {name}");
        for s in &seeds {
            target(s);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xdec5);
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < Duration::from_secs(secs) {
            let s = &seeds[rng.gen_range(0..seeds.len())];
            target(&mutate(&mut rng, s));
            n += 1;
        }
        eprintln!(
            "stable harness: {name}: {} seeds, {n} mutations",
            seeds.len()
        );
    }
}
