//! Space of removed files: once `rm` (or a rename over a file) returns, the
//! daemon holds no descriptor of the removed backing file, so its space is
//! free before the kernel's FORGET arrives. A file still open keeps its
//! inode until its last close, as on any filesystem. Needs root and FUSE;
//! must not look at processes other than the volume's daemon.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn daemon_pid(v: &TestVolume) -> u32 {
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    pids[0]
}

fn wait_for(done: impl Fn() -> bool, what: &str) {
    let t0 = Instant::now();
    while !done() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "waited 10 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Backing inodes without a link that the daemon still holds a descriptor
/// of: their space cannot be freed.
fn unlinked_fds(pid: u32) -> Vec<String> {
    held_unlinked(pid, |_| true)
}

/// Unlinked inodes the daemon holds only by a node's O_PATH descriptor,
/// i.e. with no open handle. A handle is legitimately open until the
/// kernel's asynchronous RELEASE arrives, and the node with it.
fn unlinked_nodes_without_handle(pid: u32) -> Vec<String> {
    let handles = held_unlinked(pid, |o_path| !o_path);
    // Handles are looked at first: a release closes the node's descriptor
    // before the handle's, so a node seen after its handle is gone is held.
    held_unlinked(pid, |o_path| o_path)
        .into_iter()
        .filter(|n| !handles.contains(n))
        .collect()
}

fn held_unlinked(pid: u32, which: impl Fn(bool) -> bool) -> Vec<String> {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let o_path = |fd: &std::ffi::OsStr| {
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()));
        let flags = info.ok().and_then(|i| {
            let l = i.lines().find(|l| l.starts_with("flags:"))?;
            u32::from_str_radix(l["flags:".len()..].trim(), 8).ok()
        });
        flags.is_some_and(|f| f & libc::O_PATH as u32 != 0)
    };
    rd.flatten()
        .filter(|e| which(o_path(&e.file_name())))
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.nlink() == 0 && m.is_file()))
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

/// A disk with room for one big file: every round writes one, then removes
/// it (by unlink, or by a rename over it), and the next round needs the
/// space at once. Before, the daemon closed a removed file's descriptor
/// only at the kernel's FORGET, which can come after `rm` returns.
#[test]
fn removed_file_space_is_free_when_rm_returns() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("reclaim", "6m");
    v.mount();
    let pid = daemon_pid(&v);
    let big = random_bytes(1, 4 << 20);
    for round in 0..60 {
        let p = v.p("big");
        if let Err(e) = fs::write(&p, &big) {
            // Only a handle whose RELEASE (sent after close(2) returns) is
            // still on its way may hold the previous round's space.
            assert!(
                !held_unlinked(pid, |o_path| !o_path).is_empty(),
                "round {round}: write: {e}"
            );
            wait_for(|| held_unlinked(pid, |_| true).is_empty(), "release");
            fs::write(&p, &big).unwrap_or_else(|e| panic!("round {round}: write: {e}"));
        }
        fs::metadata(&p).unwrap();
        if round % 2 == 0 {
            fs::remove_file(&p).unwrap();
        } else {
            fs::write(v.p("small"), b"small").unwrap();
            fs::rename(v.p("small"), &p).unwrap();
        }
        let held = unlinked_nodes_without_handle(pid);
        assert!(held.is_empty(), "round {round}: daemon holds {held:?}");
    }
    assert_eq!(read_file(&v.p("big")).unwrap(), b"small");
    v.umount();
    let out = v.fsck();
    assert!(out.ok(), "fsck:\n{}{}", out.stdout, out.stderr);
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
    let out = v.fsck();
    assert!(out.ok(), "fsck:\n{}{}", out.stdout, out.stderr);
}
