//! Space of removed files. The daemon keeps a removed file's node (and so
//! its backing inode) until the kernel's FORGET, which comes on its own time
//! after `rm` returns, or never while a process pins the inode; a write that
//! then finds the disk full first gives that space back and runs again. A
//! file still open keeps its inode until its last close, as on any
//! filesystem. Needs root and FUSE; looks at no process but the daemon.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

fn daemon_pid(v: &TestVolume) -> u32 {
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    pids[0]
}

fn wait_for(done: impl Fn() -> bool, what: &str) {
    assert!(
        wait_until(Duration::from_secs(10), done),
        "waited 10 s for {what}"
    );
}

/// Backing inodes without a link that the daemon still holds a descriptor
/// of: their space cannot be freed.
fn unlinked_fds(pid: u32) -> Vec<String> {
    held_unlinked(pid, |_| true)
}

/// An O_PATH descriptor: it holds the kernel's inode without a FUSE open.
fn pin_inode(p: &std::path::Path) -> std::os::fd::OwnedFd {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap()
}

/// Open handles of the daemon on files under `cipher`, its lock aside.
fn open_handles(pid: u32, cipher: &std::path::Path) -> usize {
    let cipher = cipher.to_string_lossy().into_owned();
    held_files(pid, |o_path| !o_path)
        .iter()
        // The volume lock stays open for the life of the mount.
        .filter(|(t, _)| t.starts_with(&cipher) && !t.ends_with(VOLUME_LOCK))
        .count()
}

/// A disk with room for one big file: every round writes one, then removes
/// it (by unlink, or by a rename over it), and the next round needs the
/// space at once, possibly before the daemon has seen the FORGET.
#[test]
fn rm_then_write_on_a_full_disk_succeeds() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("reclaim", "6m");
    v.mount();
    let pid = daemon_pid(&v);
    let big = random_bytes(1, 4 << 20);
    for round in 0..60 {
        let p = v.p("big");
        fs::write(&p, &big).unwrap_or_else(|e| panic!("round {round}: write: {e}"));
        // close(2) sends RELEASE without waiting for it; until the daemon
        // has it, the file is open and its space rightly held.
        wait_for(|| open_handles(pid, &v.cipher) == 0, "release");
        fs::metadata(&p).unwrap();
        if round % 2 == 0 {
            fs::remove_file(&p).unwrap();
        } else {
            fs::write(v.p("small"), b"small").unwrap();
            fs::rename(v.p("small"), &p).unwrap();
        }
    }
    assert_eq!(read_file(&v.p("big")).unwrap(), b"small");
    v.umount();
    v.assert_fsck_clean("after the test");
}

/// A process pins a removed file by an O_PATH descriptor (no FUSE open), so
/// the kernel never sends FORGET: the daemon would hold the space for good.
/// On ENOSPC it gives it back; the pinned descriptor then reads ESTALE.
#[test]
fn full_disk_takes_back_a_removed_file_the_kernel_still_pins() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("reclaim-pinned", "6m");
    v.mount();
    let pid = daemon_pid(&v);
    let big = random_bytes(2, 4 << 20);
    fs::write(v.p("a"), &big).unwrap();
    let pin = pin_inode(&v.p("a"));
    fs::remove_file(v.p("a")).unwrap();
    wait_for(
        || held_unlinked(pid, |o_path| !o_path).is_empty(),
        "release",
    );
    assert_eq!(unlinked_fds(pid).len(), 1, "the node of the pinned file");
    fs::write(v.p("b"), &big).expect("the removed file's space is given back");
    assert_eq!(unlinked_fds(pid), Vec::<String>::new());
    assert_eq!(read_file(&v.p("b")).unwrap(), big);
    let e = rustix::fs::fstat(&pin).unwrap_err();
    assert_eq!(e, rustix::io::Errno::STALE, "pinned, reclaimed inode");
    drop(pin);
    assert!(
        v.log().contains("disk full: closed 1 removed file"),
        "{}",
        v.log()
    );
    // the same for a truncate that extends (written as encrypted zeros)
    let pin = pin_inode(&v.p("b"));
    fs::remove_file(v.p("b")).unwrap();
    let c = fs::File::create(v.p("c")).unwrap();
    c.set_len(big.len() as u64)
        .expect("truncate up after a reclaim");
    drop((c, pin));
    assert_eq!(read_file(&v.p("c")).unwrap(), vec![0u8; big.len()]);
    v.umount();
    v.assert_fsck_clean("after the test");
}

#[test]
fn open_file_survives_rm_and_is_freed_at_last_close() {
    require_fuse!();
    let v = TestVolume::new("reclaim-open");
    v.mount();
    let pid = daemon_pid(&v);
    let data = random_bytes(7, 100_000);
    fs::write(v.p("open"), &data).unwrap();
    // a second link keeps the inode after the first name goes
    fs::write(v.p("linked"), &data).unwrap();
    fs::hard_link(v.p("linked"), v.p("other")).unwrap();
    fs::remove_file(v.p("linked")).unwrap();
    assert_eq!(read_file(&v.p("other")).unwrap(), data);
    assert_eq!(fs::metadata(v.p("other")).unwrap().nlink(), 1);

    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.p("open"))
        .unwrap();
    fs::remove_file(v.p("open")).unwrap();
    // unlinked but open: stat, read and write still work through the handle
    let md = f.metadata().unwrap();
    assert_eq!((md.nlink(), md.len()), (0, data.len() as u64));
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"still here", 5).unwrap();
    let mut buf = vec![0u8; 20];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[5..15], b"still here");
    assert!(
        !unlinked_fds(pid).is_empty(),
        "an open file keeps its inode"
    );
    drop(f);
    // The kernel sends RELEASE after close(2) returns, so give it a moment.
    wait_for(|| unlinked_fds(pid).is_empty(), "the last close");
    // the volume is consistent and the surviving link intact
    v.remount();
    assert_eq!(read_file(&v.p("other")).unwrap(), data);
    assert!(!v.p("open").exists());
    v.umount();
    v.assert_fsck_clean("after the test");
}
