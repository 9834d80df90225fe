//! Memory hygiene of the mount daemon, for every kind of secret it can hold (KEK, directory
//! keys, name and xattr keys, DEKs, content keys as ring's key schedule holds them, header MAC
//! keys, wrapping keys, passphrase and recovery-key bytes; derived here independently, see
//! memory_support): the mount's and the open file's keys are found while in use (positive
//! control); a file's and a subdirectory's keys are gone once they are closed and the kernel
//! forgot their inodes;
//! nothing is left at the moment the daemon exits after unmount (ptrace stops it at
//! PTRACE_EVENT_EXIT, before its memory is torn down); credentials are never there; key pages
//! are locked. Needs root. Must not modify the daemon's memory or the volume.

mod common;
mod memory_support;

use common::*;
use memory_support::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;
fn vm_lck_kib(pid: u32) -> u64 {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let l = st.lines().find(|l| l.starts_with("VmLck:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs a command without CAP_SYS_PTRACE (root otherwise).
const NO_PTRACE: [&str; 3] = ["--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--"];

/// Whether a root process without CAP_SYS_PTRACE may read /proc/PID/environ
/// of a process with the same capabilities: refused exactly when PID is
/// not dumpable.
fn readable_without_caps(pid: u32) -> bool {
    Command::new("setpriv")
        .args(NO_PTRACE)
        .arg("cat")
        .arg(format!("/proc/{pid}/environ"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// How the daemon is unlocked.
#[derive(Clone, Copy)]
enum Cred {
    Passphrase,
    RecoveryKey,
}

/// Mounts `v` with `cred` and returns the daemon's pid.
fn mount(v: &TestVolume, cred: Cred) -> u32 {
    let rk_file = v.dir.path().join("recovery-key");
    let mut args = vec![
        "mount".to_string(),
        v.cipher.display().to_string(),
        v.mnt.display().to_string(),
        "--log-file".to_string(),
        v.logfile.display().to_string(),
    ];
    match cred {
        Cred::Passphrase => {
            args.push("--passfile".into());
            args.push(v.passfile.display().to_string());
        }
        Cred::RecoveryKey => {
            fs::write(&rk_file, v.recovery_key.as_ref().unwrap()).unwrap();
            args.push("--recovery-key-file".into());
            args.push(rk_file.display().to_string());
        }
    }
    dekfs(&args).expect_code(exit::OK, "mount");
    let _ = fs::remove_file(&rk_file);
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    pids[0]
}

/// Unmounts with the daemon stopped at its exit (after it released everything, before the
/// kernel tears its memory down) and returns what `scan` sees there.
fn scan_at_exit(v: &TestVolume, pid: u32, secrets: &[Secret]) -> Vec<Vec<String>> {
    // SAFETY: plain ptrace/waitpid calls on a pid we own as root; no memory of ours is handed
    // to the kernel except the status int.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid as libc::pid_t,
            0,
            libc::PTRACE_O_TRACEEXIT as usize,
        )
    };
    assert_eq!(rc, 0, "PTRACE_SEIZE: {}", std::io::Error::last_os_error());
    let mut umount = Command::new(DEKFS)
        .arg("umount")
        .arg(&v.mnt)
        .spawn()
        .unwrap();
    let mut status = 0;
    let stopped = loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::__WALL) };
        if r != pid as i32 {
            break false;
        }
        if libc::WIFSTOPPED(status)
            && (status >> 8) == (libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8))
        {
            break true;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break false;
        }
        // another stop (signal): let it go on
        let sig = if libc::WIFSTOPPED(status) {
            libc::WSTOPSIG(status)
        } else {
            0
        };
        // SAFETY: resuming a tracee we seized.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid as libc::pid_t, 0, sig as usize) };
    };
    assert!(
        stopped,
        "daemon did not reach its exit stop (status {status:#x})"
    );
    let hits = scan(pid, secrets);
    // SAFETY: detaching lets the tracee finish exiting.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid as libc::pid_t, 0, 0) };
    let _ = umount.wait();
    std::thread::sleep(Duration::from_millis(100));
    hits
}

/// Makes the kernel forget every unused dentry and inode (so FUSE sends FORGET), then waits
/// for the daemon to drop what it held for them; returns the last scan.
fn forget_and_scan(pid: u32, secrets: &[Secret], gone: impl Fn(Life) -> bool) -> Vec<Vec<String>> {
    let mut hits = Vec::new();
    wait_until(Duration::from_secs(10), || {
        fs::write("/proc/sys/vm/drop_caches", "2\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        hits = scan(pid, secrets);
        found(secrets, &hits, &gone).is_empty()
    });
    hits
}

/// The scan for `dekfs lock` (issue 9 item 5): where a volume lock exists, every key must be
/// gone from the live daemon after it. Runs only when this build has the command.
fn lock_scan_hook(v: &TestVolume, pid: u32, secrets: &[Secret]) {
    let has_lock = Command::new(DEKFS)
        .args(["lock", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_lock {
        eprintln!(
            "lock scan: this build has no `dekfs lock`; scanned after close and at exit only"
        );
        return;
    }
    dekfs([OsStr::new("lock"), v.mnt.as_os_str()]).expect_code(exit::OK, "dekfs lock");
    let hits = scan(pid, secrets);
    let left = found(secrets, &hits, |_| true);
    assert!(
        left.is_empty(),
        "secrets in the daemon after `dekfs lock`: {left:#?}"
    );
    let mut args = vec!["unlock".to_string(), v.mnt.display().to_string()];
    args.extend(["--passfile".into(), v.passfile.display().to_string()]);
    dekfs(&args).expect_code(exit::OK, "dekfs unlock");
}

fn every_secret_gone_when_unused(name: &str, cred: Cred) {
    let v = TestVolume::new(name);
    let pid = mount(&v, cred);
    let data = random_bytes(77, 10_000);
    let backing = v.create_file("/f", &data);
    set_xattr(&v.p("/f"), "user.comment", b"file value").unwrap();
    set_xattr(&v.mnt, "user.comment", b"dir value").unwrap();
    fs::create_dir(v.p("/d")).unwrap();
    fs::write(v.p("/d/x"), b"x").unwrap();
    set_xattr(&v.p("/d"), "user.comment", b"subdir value").unwrap();
    let sub: Vec<_> = fs::read_dir(&v.cipher)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(sub.len(), 1, "one backing subdirectory: {sub:?}");
    let sub_meta = fs::read(sub[0].join(DIR_META)).unwrap();
    let header = fs::read(&backing).unwrap()[..216].to_vec();
    let secrets = secrets(&v, &header, &sub_meta);

    // positive control: the mount's and the open file's keys are visible while in use
    let f = fs::File::open(v.p("/f")).unwrap();
    let mut b = [0u8; 10];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(
        get_xattr(&v.p("/f"), "user.comment").unwrap(),
        b"file value"
    );
    assert_eq!(get_xattr(&v.mnt, "user.comment").unwrap(), b"dir value");
    assert_eq!(dir_names(&v.p("/d")), vec!["x"]);
    assert_eq!(
        get_xattr(&v.p("/d"), "user.comment").unwrap(),
        b"subdir value"
    );
    let live = scan(pid, &secrets);
    let unseen = missing(&secrets, &live, |l| l == Life::Mount || l == Life::Inode);
    assert!(
        unseen.is_empty(),
        "not found in the live daemon, so the scan cannot work: {unseen:?}"
    );
    let never = found(&secrets, &live, |l| l == Life::Never);
    assert!(never.is_empty(), "credentials in the daemon: {never:#?}");
    assert!(
        vm_lck_kib(pid) > 0,
        "/proc/{pid}/status VmLck is 0: key pages are not mlocked"
    );
    drop(f);

    // closed and forgotten: only the mount's own keys are left
    let hits = forget_and_scan(pid, &secrets, |l| l != Life::Mount);
    let left = found(&secrets, &hits, |l| l != Life::Mount);
    assert!(
        left.is_empty(),
        "after close and forget, still in the daemon: {left:#?}"
    );
    let unseen = missing(&secrets, &hits, |l| l == Life::Mount);
    assert!(
        unseen.is_empty(),
        "mount keys vanished while mounted: {unseen:?}"
    );

    lock_scan_hook(&v, pid, &secrets);

    let at_exit = scan_at_exit(&v, pid, &secrets);
    let left = found(&secrets, &at_exit, |_| true);
    assert!(left.is_empty(), "in the daemon's memory at exit: {left:#?}");
}

#[test]
fn memory_every_secret_gone_when_unused_passphrase() {
    require_fuse!();
    every_secret_gone_when_unused("memory-pass-all", Cred::Passphrase);
}

#[test]
fn memory_every_secret_gone_when_unused_recovery_key() {
    require_fuse!();
    every_secret_gone_when_unused("memory-rk-all", Cred::RecoveryKey);
}

/// The daemon is not dumpable: a root process without CAP_SYS_PTRACE cannot
/// read its /proc/PID/environ while it can read a dumpable peer's. Ignored:
/// on the CI kernel a process that set PR_SET_DUMPABLE 0 itself is still
/// readable this way, so the check cannot tell the two apart there.
#[test]
#[ignore = "this kernel does not enforce dumpable=0 on /proc/PID/environ; run on a stock kernel"]
fn memory_daemon_not_dumpable() {
    require_fuse!();
    let v = TestVolume::new("memory-dumpable");
    let mut args: Vec<std::ffi::OsString> = NO_PTRACE.iter().map(Into::into).collect();
    args.push(DEKFS.into());
    for a in [
        "mount".as_ref(),
        v.cipher.as_os_str(),
        v.mnt.as_os_str(),
        "--passfile".as_ref(),
        v.passfile.as_os_str(),
    ] {
        args.push(a.into());
    }
    run_cmd("setpriv", &args, None).expect_code(exit::OK, "mount without CAP_SYS_PTRACE");
    let pid = pids_mentioning(&v.cipher)[0];
    let mut probe = Command::new("setpriv")
        .args(NO_PTRACE)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        readable_without_caps(probe.id()),
        "control: a dumpable process is readable"
    );
    let _ = probe.kill();
    let _ = probe.wait();
    assert!(
        !readable_without_caps(pid),
        "the daemon is dumpable (PR_SET_DUMPABLE not 0)"
    );
}
