//! Criterion benchmarks of the crypto hot paths: content blocks, headers, names and the
//! passphrase KDF at its default cost, and the
//! cost of memory hygiene. Must NOT assert correctness (tests do that).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dekfs::crypto::{kdf, VolumeKeys};
use dekfs::secret::Key32;
use dekfs::volume::KdfParams;

fn volume() -> VolumeKeys {
    VolumeKeys::from_parts([1; 16], vec![(1, Key32::random().unwrap())], 1).unwrap()
}

fn blocks(c: &mut Criterion) {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fk, _) = vk.create_file(&root).unwrap();
    let plain = vec![0x5au8; 4096];
    let nonce = [7u8; 12];
    let mut stored = vec![0u8; 4124];
    let mut out = vec![0u8; 4096];

    let mut g = c.benchmark_group("block_4k");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("seal", |b| {
        b.iter(|| fk.seal_block(black_box(3), &nonce, black_box(&plain), &mut stored))
    });
    fk.seal_block(3, &nonce, &plain, &mut stored);
    g.bench_function("open", |b| {
        b.iter(|| {
            fk.open_block(black_box(3), black_box(&stored), &mut out)
                .unwrap()
        })
    });
    g.finish();

    let mib = vec![0xa5u8; 1 << 20];
    let mut stored_run = vec![0u8; 256 * 4124];
    let mut g = c.benchmark_group("block_run_1MiB");
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("seal", |b| {
        b.iter(|| {
            for (i, (p, s)) in mib
                .chunks(4096)
                .zip(stored_run.chunks_mut(4124))
                .enumerate()
            {
                fk.seal_block(i as u64, &nonce, p, s);
            }
        })
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            for (i, s) in stored_run.chunks(4124).enumerate() {
                fk.open_block(i as u64, s, &mut out).unwrap();
            }
        })
    });
    g.finish();
}

fn headers_and_names(c: &mut Criterion) {
    let vk = volume();
    let (root, root_meta) = vk.create_root_dir().unwrap();
    let (_, header) = vk.create_file(&root).unwrap();
    let mut g = c.benchmark_group("header");
    g.bench_function("create_file", |b| b.iter(|| vk.create_file(&root).unwrap()));
    g.bench_function("open_file", |b| {
        b.iter(|| vk.open_file(&root, black_box(&header)).unwrap())
    });
    g.bench_function("open_root_dir", |b| {
        b.iter(|| vk.open_root_dir(black_box(&root_meta)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("name");
    for len in [12usize, 255] {
        let name = vec![b'n'; len];
        let enc = root.encrypt_name(&name).unwrap();
        g.bench_with_input(BenchmarkId::new("encrypt", len), &name, |b, n| {
            b.iter(|| root.encrypt_name(n).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("decrypt", len), &enc, |b, e| {
            b.iter(|| root.decrypt_name(e).unwrap())
        });
    }
    g.finish();
}

fn argon2_default(c: &mut Criterion) {
    let p = KdfParams::default();
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(10);
    g.bench_function("default_64MiB_t3_p4", |b| {
        b.iter(|| {
            kdf::argon2id(
                b"correct horse battery staple",
                &[3; 32],
                p.m_cost_kib,
                p.t_cost,
                p.p_lanes,
            )
            .unwrap()
        })
    });
    g.finish();
}

/// The price of memory hygiene: one stack scrub (after every KDF, SIV, KW and HMAC call) and
/// one content-key schedule in a wiped, locked slot (two per opened file).
fn hygiene(c: &mut Criterion) {
    let mut g = c.benchmark_group("hygiene");
    g.bench_function("scrub_stack", |b| b.iter(dekfs::secret::scrub_stack));
    let k = Key32::random().unwrap();
    g.bench_function("ring_aead_new_drop", |b| {
        b.iter(|| drop(black_box(dekfs::crypto::RingAead::new(&k).unwrap())))
    });
    g.finish();
}

criterion_group!(benches, blocks, headers_and_names, argon2_default, hygiene);
criterion_main!(benches);
