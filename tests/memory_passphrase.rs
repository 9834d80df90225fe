//! The passphrase in the mount daemon: no copy is left behind (the daemon is forked from the
//! process that read and used it, so it inherits its heap and stack), and when memory cannot be
//! locked the daemon's log and mount's stderr each say so once. Needs root. Must not modify the
//! daemon.

mod common;

use common::*;
use std::collections::HashSet;
use std::fs;

/// Number of places in the readable memory of `pid` holding 12 consecutive bytes of `pass`
/// (all capital letters: only runs of capitals need a closer look).
fn hits(pid: u32, pass: &[u8]) -> usize {
    let pieces: HashSet<&[u8]> = pass.windows(12).collect();
    let mut n = 0;
    for_each_region(pid, |_, _, buf| {
        for run in buf.split(|b| !b.is_ascii_uppercase()) {
            if run.len() >= 12 && run.windows(12).any(|w| pieces.contains(w)) {
                n += 1;
            }
        }
    });
    n
}

#[test]
fn no_piece_of_the_passphrase_in_the_daemon() {
    require_fuse!();
    let v = TestVolume::uninitialised("memory-pass");
    // A long passphrase: a growing buffer would leave its earlier, shorter copies behind.
    let pass: Vec<u8> = (0..200u32).map(|i| b'A' + (i * 7 % 26) as u8).collect();
    let mut line = pass.clone();
    line.push(b'\n');
    fs::write(&v.passfile, &line).unwrap();
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let mut args = vec!["init", c.as_str(), "--passfile", pf.as_str()];
    args.extend(FAST_KDF);
    dekfs(&args).expect_code(exit::OK, "init");
    // Positive control: a marker of the same alphabet in the daemon's environment must be found.
    let marker: Vec<u8> = (0..40u32).map(|i| b'A' + (i * 11 % 26) as u8).collect();
    let ok = std::process::Command::new(DEKFS)
        .args(["mount", &c, &v.mnt.display().to_string(), "--passfile", &pf])
        .env("DEKFS_TEST_MARKER", std::str::from_utf8(&marker).unwrap())
        .status()
        .unwrap()
        .success();
    assert!(ok && is_mounted(&v.mnt), "mount");
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    assert!(
        hits(pids[0], &marker) > 0,
        "the scan cannot see the environment"
    );
    let found = hits(pids[0], &pass);
    v.umount();
    assert_eq!(
        found, 0,
        "pieces of the passphrase found in the daemon's memory"
    );
}

#[test]
fn unlockable_memory_is_warned_once_on_stderr_and_once_in_the_daemon_log() {
    require_fuse!();
    let v = TestVolume::new("memory-mlock-log");
    let (c, m, pf, log) = (
        v.cipher.display().to_string(),
        v.mnt.display().to_string(),
        v.passfile.display().to_string(),
        v.logfile.display().to_string(),
    );
    // Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK 0 every mlock fails.
    let out = run_cmd(
        "setpriv",
        [
            "--bounding-set",
            "-ipc_lock",
            "--inh-caps",
            "-ipc_lock",
            "prlimit",
            "--memlock=0",
            DEKFS,
            "mount",
            &c,
            &m,
            "--passfile",
            &pf,
            "--log-file",
            &log,
        ],
        None,
    );
    out.expect_code(exit::OK, "mount without mlock");
    assert_eq!(
        out.stderr.matches("cannot lock memory").count(),
        1,
        "{}",
        out.stderr
    );
    fs::write(v.p("f"), b"data").unwrap();
    assert_eq!(fs::read(v.p("f")).unwrap(), b"data");
    v.umount();
    let text = fs::read_to_string(&v.logfile).unwrap();
    assert_eq!(text.matches("cannot lock memory").count(), 1, "{text}");
    // With the limit in place nothing is said.
    let out = v.try_mount(&[]);
    out.expect_code(exit::OK, "mount");
    v.umount();
    assert!(!out.stderr.contains("cannot lock memory"), "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(&v.logfile)
            .unwrap()
            .matches("cannot lock memory")
            .count(),
        1
    );
}
