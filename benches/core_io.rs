//! Criterion benches of the FS core's read and write paths without FUSE:
//! what dekfs costs per request once the kernel round trip is taken away.
//! It must not mount anything; the backing store is a temp dir (tmpfs when
//! TMPDIR points at one).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dekfs::crypto::VolumeKeys;
use dekfs::format::DIR_META_NAME;
use dekfs::fs::{Caller, CoreFs, ROOT_INO};
use dekfs::secret::Key32;
use std::sync::Arc;

const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    umask: 0o022,
};

fn volume() -> (tempfile::TempDir, CoreFs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = VolumeKeys::from_parts([9u8; 16], vec![(1, Key32::random().expect("rng"))], 1)
        .expect("keys");
    let (_, meta) = keys.create_root_dir().expect("root");
    std::fs::write(dir.path().join(DIR_META_NAME), meta).expect("meta");
    let core = CoreFs::new(dir.path(), Arc::new(keys), false).expect("core");
    (dir, core)
}

fn io(c: &mut Criterion) {
    let (_d, core) = volume();
    let (_, fh) = core
        .create(ROOT_INO, b"big", 0o644, libc::O_RDWR, ME)
        .expect("create");
    let data = vec![0x5au8; 1 << 20];
    core.write(fh, 0, &data).expect("prefill");
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("write 1 MiB aligned", |b| {
        b.iter(|| core.write(fh, 0, &data).expect("write"))
    });
    g.bench_function("read 1 MiB", |b| {
        b.iter(|| core.read(fh, 0, 1 << 20).expect("read"))
    });
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("write 4 KiB aligned", |b| {
        b.iter(|| core.write(fh, 8192, &data[..4096]).expect("write"))
    });
    g.bench_function("write 100 B unaligned (RMW)", |b| {
        b.iter(|| core.write(fh, 5000, &data[..100]).expect("write"))
    });
    g.bench_function("read 4 KiB", |b| {
        b.iter(|| core.read(fh, 8192, 4096).expect("read"))
    });
    g.finish();
    core.release(fh);

    let mut g = c.benchmark_group("core-small-files");
    let mut n = 0u64;
    g.bench_function("create + write 4 KiB + release", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("f{n}")
            },
            |name| {
                let (a, fh) = core
                    .create(ROOT_INO, name.as_bytes(), 0o644, libc::O_RDWR, ME)
                    .expect("create");
                core.write(fh, 0, &data[..4096]).expect("write");
                core.release(fh);
                // As the kernel would: otherwise every node keeps its O_PATH
                // descriptor and the run ends in EMFILE.
                core.forget(a.ino, 1);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("lookup", |b| {
        b.iter(|| core.lookup(ROOT_INO, b"big").expect("lookup"))
    });
    g.finish();
}

criterion_group!(benches, io);
criterion_main!(benches);
