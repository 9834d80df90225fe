//! Far writes on a mounted volume whose cipher directory is a small tmpfs:
//! one pwrite far past the end (or a truncate or fallocate that far) must
//! fail at once with ENOSPC, or EFBIG past the maximum file size, without
//! filling the backing disk; ordinary extending writes and truncates within
//! the free space keep working and fsck stays clean. Needs root. Must not
//! touch other mounts.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The maximum file size (4 TiB) the README documents.
const MAX_FILE_SIZE: u64 = 1 << 42;

fn free_bytes(p: &Path) -> u64 {
    let s = rustix::fs::statvfs(p).unwrap();
    s.f_bavail * s.f_frsize
}

fn fallocate(f: &fs::File, off: u64, len: u64) -> i32 {
    match rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), off, len) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error(),
    }
}

#[test]
fn far_writes_fail_up_front_and_leave_the_disk_free() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("sizelimit", "32m");
    v.mount();
    let path = v.p("far");
    fs::write(&path, b"kept").unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let free = free_bytes(&v.cipher);

    // The reported case: 4 KiB at 16 TiB - 4 KiB filled the disk.
    let t = Instant::now();
    let e = f.write_at(&[1u8; 4096], (16 << 40) - 4096).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "write near 16 TiB: {e}");
    let e = f.write_at(b"x", MAX_FILE_SIZE).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "write at the maximum: {e}");
    let e = f.set_len(MAX_FILE_SIZE + 1).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "truncate past the maximum: {e}");

    // Below the maximum but past the free space: ENOSPC before any fill.
    let e = f.write_at(&[1u8; 4096], 1 << 30).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "write at 1 GiB: {e}");
    let e = f.set_len(1 << 30).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "truncate to 1 GiB: {e}");
    assert_eq!(fallocate(&f, 0, 1 << 30), libc::ENOSPC, "fallocate 1 GiB");
    // 31 MiB of zeros would fit the tmpfs but not its metadata reserve.
    let e = f.write_at(b"y", 31 << 20).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "write into the reserve: {e}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "refusals took {:?}",
        t.elapsed()
    );
    assert!(
        free_bytes(&v.cipher) + (256 << 10) >= free,
        "the refused requests used backing space: {} -> {} bytes free",
        free,
        free_bytes(&v.cipher)
    );
    assert_eq!(f.metadata().unwrap().len(), 4);
    assert_eq!(fs::read(&path).unwrap(), b"kept");

    // Ordinary extensions within the free space still work.
    assert_eq!(f.write_at(b"tail", 8 << 20).unwrap(), 4);
    let mut gap = [9u8; 12];
    f.read_exact_at(&mut gap, (8 << 20) - 8).unwrap();
    assert_eq!(gap[..8], [0u8; 8]);
    assert_eq!(&gap[8..12], b"tail");
    f.set_len(20 << 20).unwrap();
    assert_eq!(fallocate(&f, 20 << 20, 1 << 20), 0, "fallocate 1 MiB");
    assert_eq!(f.metadata().unwrap().len(), 21 << 20);
    f.set_len(1 << 20).unwrap();
    assert_eq!(fs::read(&path).unwrap()[..4], *b"kept");
    drop(f);
    assert!(!v.log().contains("integrity error"), "log:\n{}", v.log());
    v.umount();
    v.assert_fsck_clean("after far writes");
}

/// Killing the writer of a far pwrite stops the daemon's zero fill (it
/// used to run on until the disk was full) and gives the space back.
#[test]
fn killing_the_writer_stops_the_fill() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("sizekill", "2g");
    v.mount();
    let path = v.p("victim");
    fs::write(&path, b"kept").unwrap();
    let free = free_bytes(&v.cipher);
    let target: u64 = 1536 << 20;
    let mut dd = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", path.display()))
        .args(["bs=4096", "count=1", "conv=notrunc", "status=none"])
        .arg(format!("seek={}", target / 4096))
        .spawn()
        .unwrap();
    let started = wait_until(Duration::from_secs(10), || {
        free_bytes(&v.cipher) + (8 << 20) < free
    });
    assert!(started, "the fill did not start");
    let t = Instant::now();
    dd.kill().unwrap();
    let exited = wait_until(Duration::from_secs(5), || {
        matches!(dd.try_wait(), Ok(Some(_)))
    });
    let took = t.elapsed();
    if !exited {
        let _ = dd.wait();
    }
    assert!(exited, "the killed writer hung in the fill");
    let after = free_bytes(&v.cipher);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        4,
        "the stopped fill was not given back (killed after {took:?})"
    );
    assert!(
        after + (1 << 20) >= free,
        "backing space not given back: {free} -> {after} bytes free"
    );
    assert_eq!(fs::read(&path).unwrap(), b"kept");
    v.umount();
    v.assert_fsck_clean("after a killed fill");
}
