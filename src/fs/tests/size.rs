//! Core tests of the size limits: a far write or truncate must be refused
//! up front (ENOSPC, EFBIG) instead of filling the backing disk with
//! encrypted zeros, while ordinary extensions keep working. They must not
//! need root, and must never fill the disk they run on.

use super::*;
use crate::fs::file_io::MAX_FILE_SIZE;

fn backing_size(dir: &Path, ino: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    backing_files(dir)
        .into_iter()
        .map(|p| std::fs::metadata(p).expect("stat"))
        .find(|m| m.ino() == ino)
        .expect("backing file")
        .len()
}

fn free_bytes(dir: &Path) -> u64 {
    let s = rustix::fs::statvfs(dir).expect("statvfs");
    s.f_bavail * s.f_frsize
}

#[test]
fn far_write_is_refused_up_front_without_filling() {
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"far", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"kept").expect("write");
    let before = backing_size(d.path(), a.ino);
    // Past what the disk holds, but below the maximum file size.
    let off = free_bytes(d.path()) + (1 << 30);
    assert!(off < MAX_FILE_SIZE, "test disk larger than the file limit");
    assert_eq!(
        errno(core.write(fh, off, &[1u8; 4096])),
        Some(Errno::ENOSPC)
    );
    let set = SetAttr {
        size: Some(off),
        fh: Some(fh),
        ..SetAttr::default()
    };
    assert_eq!(errno(core.setattr(a.ino, set)), Some(Errno::ENOSPC));
    assert_eq!(errno(core.fallocate(fh, 0, off, 0)), Some(Errno::ENOSPC));
    assert_eq!(backing_size(d.path(), a.ino), before, "nothing was filled");
    assert_eq!(core.getattr(a.ino).expect("stat").size, 4);
    assert_eq!(core.read(fh, 0, 100).expect("read"), b"kept");
    core.release(fh);
}

#[test]
fn sizes_beyond_the_maximum_are_efbig() {
    let (d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"big", 0o644, libc::O_RDWR, ME)
        .expect("create");
    // The reported case: one 4 KiB pwrite just below 16 TiB.
    let far = (16u64 << 40) - 4096;
    assert_eq!(errno(core.write(fh, far, &[7u8; 4096])), Some(Errno::EFBIG));
    assert_eq!(
        errno(core.write(fh, MAX_FILE_SIZE, b"x")),
        Some(Errno::EFBIG)
    );
    let set = SetAttr {
        size: Some(MAX_FILE_SIZE + 1),
        ..SetAttr::default()
    };
    assert_eq!(errno(core.setattr(a.ino, set)), Some(Errno::EFBIG));
    assert_eq!(
        errno(core.fallocate(fh, MAX_FILE_SIZE, 1, 0)),
        Some(Errno::EFBIG)
    );
    assert_eq!(
        errno(core.fallocate(fh, u64::MAX, 2, 0)),
        Some(Errno::EFBIG)
    );
    assert_eq!(core.getattr(a.ino).expect("stat").size, 0);
    assert!(backing_size(d.path(), a.ino) <= crate::format::HEADER_LEN as u64);
    core.release(fh);
}

#[test]
fn extending_within_free_space_still_works() {
    let (_d, core) = volume();
    let (a, fh) = core
        .create(ROOT_INO, b"sparse", 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, b"head").expect("write");
    // A gap larger than the unchecked fill: checked, and it fits.
    let off = 5 << 20;
    assert_eq!(core.write(fh, off + 3, b"tail").expect("far write"), 4);
    assert_eq!(core.getattr(a.ino).expect("stat").size, off + 7);
    assert_eq!(core.read(fh, 0, 4).expect("head"), b"head");
    assert_eq!(core.read(fh, off - 2, 5).expect("gap"), [0u8; 5]);
    assert_eq!(core.read(fh, off + 3, 10).expect("tail"), b"tail");
    let grow = SetAttr {
        size: Some(9 << 20),
        ..SetAttr::default()
    };
    assert_eq!(core.setattr(a.ino, grow).expect("grow").size, 9 << 20);
    core.fallocate(fh, 9 << 20, 4096 + 1, 0).expect("fallocate");
    assert_eq!(core.getattr(a.ino).expect("stat").size, (9 << 20) + 4097);
    assert_eq!(core.read(fh, off + 3, 4).expect("tail kept"), b"tail");
    assert_eq!(core.read(fh, (9 << 20) - 1, 2).expect("zeros"), [0u8; 2]);
    core.release(fh);
}
