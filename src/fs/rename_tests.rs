//! Core tests of renames and the other namespace fixes (issue 13 items 1-6a,
//! issue 9's unprivileged mkdir), without a mount. They must not need
//! /dev/fuse; the unprivileged test needs root and the `tests` user.

use super::tests::{errno, reopen, volume, ME};
use super::*;
use std::os::unix::fs::MetadataExt;

const LONG_A: [u8; 200] = [b'a'; 200];
const LONG_B: [u8; 210] = [b'b'; 210];
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;
const WHITEOUT: u32 = libc::RENAME_WHITEOUT;

fn listing(core: &CoreFs, dir: u64) -> Vec<Vec<u8>> {
    let dfh = core.opendir(dir).expect("opendir");
    let mut v: Vec<Vec<u8>> = core
        .readdir_entries(dir, dfh, 0)
        .expect("entries")
        .entries
        .iter()
        .map(|e| e.plain.clone())
        .collect();
    core.releasedir(dfh);
    v.sort();
    v
}

fn put(core: &CoreFs, dir: u64, name: &[u8], data: &[u8]) {
    let (_, fh) = core
        .create(dir, name, 0o644, libc::O_RDWR, ME)
        .expect("create");
    core.write(fh, 0, data).expect("write");
    core.release(fh);
}

fn get(core: &CoreFs, dir: u64, name: &[u8]) -> Vec<u8> {
    let ino = core.lookup(dir, name).expect("lookup").ino;
    let fh = core.open(ino, libc::O_RDONLY).expect("open");
    let data = core.read(fh, 0, 1 << 20).expect("read");
    core.release(fh);
    data
}

/// No long-name record without its entry, and none the other way round:
/// what fsck checks, seen from the backing directory.
fn assert_records_match(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read backing dir") {
        let n = e.expect("entry").file_name().into_string().expect("ascii");
        if let Some(entry) = n.strip_suffix(".name") {
            assert!(
                dir.join(entry).symlink_metadata().is_ok(),
                "orphan long-name record {n} in {}",
                dir.display()
            );
        } else if n.starts_with("dekfs.ln.") && !n.contains(".tmp") {
            assert!(
                dir.join(format!("{n}.name")).exists(),
                "long-name entry {n} without its record"
            );
        }
    }
}

/// Regression (issue 13 item 1): the kernel keeps the node of a symlink
/// moved to another directory until its next lookup; readlink through it
/// read the old backing symlink under the new directory's key: EIO and a
/// false integrity error.
#[test]
fn moved_symlink_reads_through_the_node_the_kernel_kept() {
    let (_d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("a").ino;
    let b = core.mkdir(ROOT_INO, b"b", 0o755, ME).expect("b").ino;
    let l = core.symlink(a, b"l", b"some/target", ME).expect("ln").ino;
    core.rename(a, b"l", b, b"l", 0).expect("mv");
    assert_eq!(core.readlink(l).expect("readlink old node"), b"some/target");
    assert_eq!(core.getattr(l).expect("stat old node").size, 11);
}

/// Regression (issue 13 item 2): a same-directory exchange or whiteout
/// with a long source name removed the record its name still needs.
#[test]
fn exchange_and_whiteout_keep_long_name_records() {
    let (d, core) = volume();
    put(&core, ROOT_INO, &LONG_A, b"long");
    put(&core, ROOT_INO, b"short", b"short");
    core.rename(ROOT_INO, &LONG_A, ROOT_INO, b"short", EXCHANGE)
        .expect("exchange");
    assert_eq!(
        listing(&core, ROOT_INO),
        vec![LONG_A.to_vec(), b"short".to_vec()]
    );
    assert_eq!(get(&core, ROOT_INO, &LONG_A), b"short");
    assert_eq!(get(&core, ROOT_INO, b"short"), b"long");
    core.rename(ROOT_INO, &LONG_A, ROOT_INO, &LONG_B, WHITEOUT)
        .expect("whiteout");
    assert_eq!(
        listing(&core, ROOT_INO),
        vec![LONG_A.to_vec(), LONG_B.to_vec(), b"short".to_vec()]
    );
    let wh = core.lookup(ROOT_INO, &LONG_A).expect("whiteout entry");
    assert_eq!((wh.kind, wh.rdev), (Kind::CharDev, 0));
    assert_eq!(get(&core, ROOT_INO, &LONG_B), b"short");
    assert_records_match(d.path());
}

/// Regression (issue 13 item 3): a cross-directory move refused with EXDEV
/// (a file with two links) to a long name left that name's record behind,
/// so the target directory could never be removed.
#[test]
fn refused_move_leaves_no_long_name_record() {
    let (_d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("a").ino;
    let b = core.mkdir(ROOT_INO, b"b", 0o755, ME).expect("b").ino;
    put(&core, a, b"f", b"data");
    let f = core.lookup(a, b"f").expect("f").ino;
    core.link(f, a, b"f2").expect("link");
    assert_eq!(
        errno(core.rename(a, b"f", b, &LONG_A, 0)),
        Some(Errno::EXDEV)
    );
    core.rmdir(ROOT_INO, b"b")
        .expect("rmdir of the untouched target");
}

/// Regression (issue 13 item 4): a cross-directory RENAME_WHITEOUT
/// returned 0 without leaving a whiteout.
#[test]
fn cross_directory_whiteout_leaves_a_whiteout() {
    let (d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("a").ino;
    let b = core.mkdir(ROOT_INO, b"b", 0o755, ME).expect("b").ino;
    put(&core, a, &LONG_A, b"moved");
    core.symlink(a, b"l", b"t", ME).expect("ln");
    core.rename(a, &LONG_A, b, b"f", WHITEOUT).expect("file");
    core.rename(a, b"l", b, b"l", WHITEOUT).expect("symlink");
    assert_eq!(listing(&core, a), vec![LONG_A.to_vec(), b"l".to_vec()]);
    for n in [&LONG_A[..], b"l"] {
        let wh = core.lookup(a, n).expect("whiteout");
        assert_eq!((wh.kind, wh.rdev), (Kind::CharDev, 0));
    }
    assert_eq!(get(&core, b, b"f"), b"moved");
    let l = core.lookup(b, b"l").expect("l").ino;
    assert_eq!(core.readlink(l).expect("readlink"), b"t");
    for sub in std::fs::read_dir(d.path()).expect("root") {
        let p = sub.expect("entry").path();
        if p.is_dir() {
            assert_records_match(&p);
        }
    }
}

/// Regression (issue 13 item 5): every cross-directory exchange was EXDEV.
/// Files and directories swap, each rewrapped to its new parent, and read
/// back after a fresh start.
#[test]
fn cross_directory_exchange_rewraps_both() {
    let (d, core) = volume();
    let a = core.mkdir(ROOT_INO, b"a", 0o755, ME).expect("a").ino;
    let b = core.mkdir(ROOT_INO, b"b", 0o755, ME).expect("b").ino;
    put(&core, a, b"x", &[1u8; 9000]);
    let sub = core.mkdir(b, &LONG_B, 0o755, ME).expect("sub").ino;
    put(&core, sub, b"inner", b"inside");
    core.rename(a, b"x", b, &LONG_B, EXCHANGE)
        .expect("exchange");
    put(&core, a, b"y", b"yy");
    put(&core, b, b"z", b"zz");
    core.rename(a, b"y", b, b"z", EXCHANGE)
        .expect("exchange files");
    core.symlink(a, b"s", b"t", ME).expect("ln");
    assert_eq!(
        errno(core.rename(a, b"s", b, b"z", EXCHANGE)),
        Some(Errno::EXDEV),
        "a symlink has no two-slot form"
    );
    drop(core);
    let core = reopen(d.path());
    let a = core.lookup(ROOT_INO, b"a").expect("a").ino;
    let b = core.lookup(ROOT_INO, b"b").expect("b").ino;
    assert_eq!(get(&core, b, &LONG_B), vec![1u8; 9000]);
    let moved = core.lookup(a, b"x").expect("dir now in a").ino;
    assert_eq!(get(&core, moved, b"inner"), b"inside");
    assert_eq!(get(&core, a, b"y"), b"zz");
    assert_eq!(get(&core, b, b"z"), b"yy");
}

/// Regression (issue 13 item 6a): the listing was made at opendir, so a
/// rewound stream did not show entries created since.
#[test]
fn readdir_at_offset_zero_sees_new_entries() {
    let (_d, core) = volume();
    put(&core, ROOT_INO, b"first", b"");
    let dfh = core.opendir(ROOT_INO).expect("opendir");
    assert_eq!(
        core.readdir_entries(ROOT_INO, dfh, 0)
            .expect("pass 1")
            .entries
            .len(),
        1
    );
    put(&core, ROOT_INO, b"second", b"");
    let same_pass = core.readdir_entries(ROOT_INO, dfh, 3).expect("continue");
    assert_eq!(
        same_pass.entries.len(),
        1,
        "offsets stay stable within a pass"
    );
    let rewound = core.readdir_entries(ROOT_INO, dfh, 0).expect("pass 2");
    assert_eq!(rewound.entries.len(), 2);
    core.releasedir(dfh);
}

/// Regression (issue 9): a daemon run by a normal user forced the new
/// directory's key file to root ownership, so every mkdir failed with
/// EPERM. As root, this test runs itself again as the `tests` user.
#[test]
fn unprivileged_daemon_makes_and_moves_directories() {
    const AS_USER: &str = "DEKFS_TEST_UNPRIVILEGED";
    if rustix::process::geteuid().is_root() && std::env::var_os(AS_USER).is_none() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=tests", "--regid=tests", "--clear-groups", "--"])
            .arg(exe)
            .args([
                "--exact",
                "fs::rename_tests::unprivileged_daemon_makes_and_moves_directories",
                "--test-threads=1",
            ])
            .env(AS_USER, "1")
            .env("TMPDIR", "/tmp")
            .output()
            .expect("setpriv (needs the `tests` user)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "as the tests user:\n{text}"
        );
        return;
    }
    let (d, core) = volume();
    let me = Caller {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        umask: 0o022,
    };
    let a = core.mkdir(ROOT_INO, b"a", 0o755, me).expect("mkdir").ino;
    let b = core.mkdir(a, b"b", 0o755, me).expect("nested mkdir").ino;
    let (_, fh) = core
        .create(b, b"f", 0o644, libc::O_RDWR, me)
        .expect("create");
    core.write(fh, 0, b"data").expect("write");
    core.release(fh);
    core.rename(a, b"b", ROOT_INO, b"b2", 0).expect("move dir");
    core.rename(ROOT_INO, b"b2", ROOT_INO, b"b3", 0)
        .expect("rename dir");
    assert_eq!(get(&core, b, b"f"), b"data");
    let st = std::fs::metadata(
        d.path().join(
            std::fs::read_dir(d.path())
                .expect("root")
                .map(|e| e.expect("e").path())
                .find(|p| p.is_dir())
                .expect("a dir"),
        ),
    )
    .expect("stat");
    assert_eq!(st.uid(), me.uid);
    core.unlink(b, b"f").expect("unlink");
    core.rmdir(ROOT_INO, b"b3").expect("rmdir");
    core.rmdir(ROOT_INO, b"a").expect("rmdir a");
}
