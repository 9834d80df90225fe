//! `-o idle=DURATION`: the daemon unmounts itself after that long without a
//! request, exits and releases the volume; it never does while a file or
//! directory is open or a process has its working directory inside, and
//! steady use keeps the mount.

mod common;

use common::*;
use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

const IDLE: &str = "idle=1";
/// idle= plus its poll tick (a quarter) plus scheduling slack on a loaded
/// two-core machine.
const GONE_WITHIN: Duration = Duration::from_secs(6);

fn wait_unmounted(v: &TestVolume, within: Duration) -> bool {
    wait_until(within, || !is_mounted(&v.mnt))
}

#[test]
fn quiet_mount_unmounts_and_the_daemon_exits() {
    require_fuse!();
    let v = TestVolume::new("idle-quiet");
    v.mount_with(&["-o", IDLE]);
    let data = random_bytes(1, 100_000);
    fs::write(v.p("f"), &data).unwrap();
    let t0 = Instant::now();
    assert!(
        wait_unmounted(&v, GONE_WITHIN),
        "still mounted {GONE_WITHIN:?} after the last request; log:\n{}",
        v.log()
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "unmounted after {took:?}, before the idle time"
    );
    assert!(
        wait_until(Duration::from_secs(3), || pids_mentioning(&v.cipher)
            .is_empty()),
        "daemon still running after the idle unmount: {:?}",
        pids_mentioning(&v.cipher)
    );
    assert_eq!(
        v.wait_log_lines(&["idle for 1 s: unmounting"]).len(),
        1,
        "{}",
        v.log()
    );
    // The lock and the pidfile went with it: a new mount comes up and the
    // data written before is there.
    v.mount();
    assert_eq!(fs::read(v.p("f")).unwrap(), data);
    v.umount();
    v.assert_fsck_clean("after an idle unmount");
}

#[test]
fn open_file_keeps_the_mount_until_closed() {
    require_fuse!();
    let v = TestVolume::new("idle-open");
    v.mount_with(&["-o", IDLE]);
    fs::write(v.p("f"), b"hello").unwrap();
    let mut f = fs::File::open(v.p("f")).unwrap();
    let d = fs::File::open(v.p("")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(is_mounted(&v.mnt), "idle= unmounted with a file open");
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
    drop(f);
    std::thread::sleep(Duration::from_secs(3));
    assert!(is_mounted(&v.mnt), "idle= unmounted with a directory open");
    drop(d);
    assert!(
        wait_unmounted(&v, GONE_WITHIN),
        "not unmounted after the last close; log:\n{}",
        v.log()
    );
}

#[test]
fn working_directory_inside_is_busy_and_retried() {
    require_fuse!();
    let v = TestVolume::new("idle-cwd");
    v.mount_with(&["-o", IDLE]);
    fs::create_dir(v.p("d")).unwrap();
    // A shell sitting in the mount holds no open file the daemon knows of;
    // the kernel refuses the unmount, and the daemon tries again later.
    let mut child = std::process::Command::new("sleep")
        .arg("4")
        .current_dir(v.p("d"))
        .spawn()
        .unwrap();
    let refused = v.wait_log_lines(&["idle unmount of", "refused"]);
    assert!(!refused.is_empty(), "no refusal logged; log:\n{}", v.log());
    assert!(is_mounted(&v.mnt));
    child.wait().unwrap();
    assert!(
        wait_unmounted(&v, GONE_WITHIN + Duration::from_secs(1)),
        "not unmounted once the cwd left; log:\n{}",
        v.log()
    );
}

#[test]
fn steady_use_keeps_the_mount() {
    require_fuse!();
    let v = TestVolume::new("idle-busy");
    v.mount_with(&["-o", IDLE]);
    fs::write(v.p("f"), b"x").unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        // A fresh name each time: a cached lookup would not reach the daemon.
        let _ = fs::metadata(v.p(&format!("absent-{n}")));
        let _ = fs::read_dir(v.p("")).unwrap().count();
        std::thread::sleep(Duration::from_millis(300));
        assert!(is_mounted(&v.mnt), "unmounted while in use");
    }
    assert!(
        wait_unmounted(&v, GONE_WITHIN),
        "not unmounted after use stopped"
    );
}

#[test]
fn idle_value_is_checked() {
    require_fuse!();
    let v = TestVolume::new("idle-bad");
    for bad in ["idle=0", "idle=5y", "idle="] {
        let out = v.try_mount(&["-o", bad]);
        out.expect_code(exit::USAGE, bad);
        assert!(out.stderr.contains(bad), "{bad}: {}", out.stderr);
        assert!(!is_mounted(&v.mnt));
    }
}
