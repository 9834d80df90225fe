//! Syscall budget of the mount daemon: strace counts the backing syscalls it
//! makes per operation (create+write+close, cold stat, cold open+read+close,
//! unlink, mkdir, rmdir, rename) and each class must stay within `BUDGETS`.
//!
//! How it counts. The test mounts a fresh volume, prepares the files of one
//! operation class, attaches `strace -f -qq -y -s 0 -e signal=none -p DAEMON
//! -o FILE` (one strace session per class, so numbers never mix), waits until
//! every daemon thread shows strace as its tracer, runs N operations from
//! this process, waits for the kernel's asynchronous requests (RELEASE,
//! FORGET) to be answered, stops strace with SIGINT and waits for it to exit
//! (the trace file is then complete). Every syscall line in the trace counts
//! once (an `<unfinished ...>` line is the call, its `<... resumed>` line is
//! not counted again), except:
//!   - the FUSE channel: `read` and `writev` on a `/dev/fuse` fd (`-y`
//!     prints the fd's path; the daemon reads requests with read(2) and
//!     replies with writev(2)). `pread64`/`pwrite64`/`read`/`write` on any
//!     other fd are backing I/O and count;
//!   - thread plumbing: `futex`;
//!   - strace's own attach artefacts: `restart_syscall`.
//!
//! The FUSE requests and replies per operation are printed too (from the
//! excluded `read`/`writev` lines) so a change in what the kernel sends is
//! told apart from a change in what the daemon does per request.
//!
//! Every class runs with its names resolved relative to an open fd of its
//! directory (openat/fstatat/unlinkat/mkdirat/renameat), so the directory's
//! own dentry is pinned and never revalidated. dekfs answers entries with a
//! 1 s TTL (src/fuse_adapter.rs), so classes that act on existing entries
//! either drop the caches first (stat, read) or wait past the TTL (unlink,
//! rmdir, rename): each of their operations then includes exactly one kernel
//! LOOKUP, whatever the timing. create and mkdir always start with a negative
//! LOOKUP (dekfs does not cache negative entries).
//!
//! A cache shrink anywhere on the machine (another process's drop_caches,
//! reclaim) evicts FUSE inodes and adds FORGETs and fresh LOOKUPs that are
//! not the operation's cost: /proc/vmstat `drop_slab`/`slabs_scanned` are
//! compared around each attempt and a disturbed attempt is repeated (up to
//! MAX_ATTEMPTS, then the lowest count is used and the table says so).
//! `DEKFS_STRACE_DIR=/some/dir` keeps the raw traces.
//!
//! The measured table is printed (eprintln) on success too; on a failure the
//! full per-syscall breakdown of the failing class is printed. Needs root,
//! /dev/fuse and strace (skips with a message otherwise).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rustix::fs::{AtFlags, Mode, OFlags};

// ---------------------------------------------------------------------------
// BUDGETS: maximum backing syscalls per operation (everything the daemon
// calls except read/writev on /dev/fuse, futex and restart_syscall).
// Budget = highest value measured on the project machine (kernel 6.18,
// 2 cores), rounded up, plus about one syscall of slack. When the daemon
// gets cheaper, lower the number here: the test prints the measured values
// on every run. (Before the key-slot pool, create/read/mkdir also paid
// ~3-5 mlock/munlock pairs per operation and varied run to run.)
//
//  class       budget      measured   what the daemon does               FUSE requests per operation
const BUDGETS: &[(&str, f64)] = &[
    ("create", 10.0), //  8.2   openat x3 (neg lookup, O_CREAT, O_PATH), fstat, getrandom x2, pwrite, close  LOOKUP(neg) CREATE GETXATTR(security.capability) WRITE RELEASE
    ("stat", 3.0),    //  2.0   openat O_PATH, fstat                LOOKUP
    ("read", 8.0), //  7.0   O_PATH + fstat, reopen, statx, pread header, pread block, close  LOOKUP OPEN READ RELEASE
    ("unlink", 6.0), //  5.0   O_PATH + fstat, unlinkat, close x2  LOOKUP UNLINK FORGET
    ("mkdir", 11.0), // 10.3   mkdirat, openat x3, fchown, write, sync_file_range, close, fstat, getrandom  LOOKUP(neg) MKDIR
    ("rmdir", 16.0), // 15.0   lookup reads the key file; emptiness check, key-file copy, unlinkat x2  LOOKUP RMDIR FORGET
    ("rename", 8.0), //  7.0   O_PATH + fstat, newfstatat x2, renameat2, close  LOOKUP(src) LOOKUP(dst, neg) RENAME
];
// ---------------------------------------------------------------------------

/// Operations per class.
const N: usize = 200;
/// Entry/attribute TTL the daemon replies with (src/fuse_adapter.rs).
const DAEMON_TTL: Duration = Duration::from_secs(1);
/// Syscalls never counted (besides read/writev on /dev/fuse fds).
const EXCLUDED: &[&str] = &["futex", "restart_syscall"];

fn budget(class: &str) -> f64 {
    BUDGETS
        .iter()
        .find(|(c, _)| *c == class)
        .unwrap_or_else(|| panic!("no budget for class {class}"))
        .1
}

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Task ids of every thread of `pid`.
fn tasks(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn tracer_of(pid: u32, tid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A running strace attached to every thread of the daemon.
struct Strace {
    child: Child,
    out: PathBuf,
    errf: PathBuf,
}

impl Strace {
    fn attach(pid: u32, out: &Path) -> Strace {
        let errf = out.with_extension("stderr");
        let child = Command::new("strace")
            .args(["-f", "-qq", "-y", "-s", "0", "-e", "signal=none", "-o"])
            .arg(out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(&errf).unwrap()))
            .spawn()
            .expect("spawn strace");
        let me = child.id();
        let t0 = Instant::now();
        loop {
            let ts = tasks(pid);
            if !ts.is_empty() && ts.iter().all(|&t| tracer_of(pid, t) == Some(me)) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "strace did not attach to every thread of {pid} within 10 s: {}",
                fs::read_to_string(&errf).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Strace {
            child,
            out: out.to_owned(),
            errf,
        }
    }

    /// SIGINT (strace detaches and flushes), wait for it, return the trace.
    fn finish(mut self) -> String {
        // SAFETY: kill(2) of the strace child this struct spawned.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let t0 = Instant::now();
        loop {
            if self.child.try_wait().expect("wait strace").is_some() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("strace did not exit within 20 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = fs::read_to_string(&self.errf).unwrap_or_default();
        assert!(
            !err.contains("Operation not permitted"),
            "strace could not trace the daemon: {err}"
        );
        fs::read_to_string(&self.out).expect("read strace output")
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        // only reached with the child still running on a panic path
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) of the strace child this struct spawned.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

/// Counts from one trace.
#[derive(Default)]
struct Counts {
    /// Counted syscalls by name.
    counted: BTreeMap<String, u64>,
    /// Excluded syscalls by name ("read /dev/fuse", "futex", ...).
    excluded: BTreeMap<String, u64>,
    /// Requests read from /dev/fuse (read returning > 0).
    fuse_requests: u64,
    /// Replies written to /dev/fuse.
    fuse_replies: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.counted.values().sum()
    }
}

/// `read(4</dev/fuse>, ...` -> true (first argument is a /dev/fuse fd).
fn first_arg_is_fuse(args: &str) -> bool {
    let digits = args.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && args[digits..].starts_with("</dev/fuse>")
}

/// The return value of a finished syscall line (`... = 42 ...`).
fn retval(line: &str) -> Option<i64> {
    let (_, r) = line.rsplit_once(") = ")?;
    r.split_whitespace().next()?.parse().ok()
}

/// Parses `strace -f -y -o` output: "TID name(args) = ret", "TID name(args
/// <unfinished ...>", "TID <... name resumed>...) = ret".
fn parse_trace(trace: &str) -> Counts {
    let mut c = Counts::default();
    // tid -> (name, on /dev/fuse) of its unfinished syscall
    let mut pending: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<... ") {
            let name = r.split_whitespace().next().unwrap_or("");
            let fuse = pending.remove(tid).is_some_and(|(n, f)| n == name && f);
            if fuse && name == "read" && retval(rest).is_some_and(|v| v > 0) {
                c.fuse_requests += 1;
            }
            continue;
        }
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some(paren) = rest.find('(') else {
            continue;
        };
        let name = &rest[..paren];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let fuse = first_arg_is_fuse(&rest[paren + 1..]);
        if rest.ends_with("<unfinished ...>") {
            pending.insert(tid, (name, fuse));
        } else if fuse && name == "read" && retval(rest).is_some_and(|v| v > 0) {
            c.fuse_requests += 1;
        }
        if fuse && name == "writev" {
            c.fuse_replies += 1;
        }
        if fuse && (name == "read" || name == "writev") {
            *c.excluded.entry(format!("{name} /dev/fuse")).or_default() += 1;
        } else if EXCLUDED.contains(&name) {
            *c.excluded.entry(name.to_owned()).or_default() += 1;
        } else {
            *c.counted.entry(name.to_owned()).or_default() += 1;
        }
    }
    c
}

fn breakdown(c: &Counts, n: usize) -> String {
    let mut s = String::new();
    let mut v: Vec<(&String, &u64)> = c.counted.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (name, k) in v {
        s.push_str(&format!(
            "      {name:<18} {k:>6}  ({:.2}/op)\n",
            *k as f64 / n as f64
        ));
    }
    s.push_str("    not counted:\n");
    for (name, k) in &c.excluded {
        s.push_str(&format!(
            "      {name:<18} {k:>6}  ({:.2}/op)\n",
            *k as f64 / n as f64
        ));
    }
    s
}

/// `drop_slab` and `slabs_scanned` from /proc/vmstat: they move whenever the
/// kernel shrinks the dentry and inode caches (a drop_caches by any process,
/// kswapd or direct reclaim).
fn reclaim_counters() -> [u64; 2] {
    let s = fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    [get("drop_slab"), get("slabs_scanned")]
}

/// Tells whether the kernel shrank its caches behind our back. A FUSE inode
/// evicted during (or just before) a measurement costs FORGETs and fresh
/// LOOKUPs that are not the operation's own cost, so such an attempt is
/// repeated. Our own drop_caches calls go through here and reset the
/// baseline.
struct ReclaimWatch {
    base: [u64; 2],
}

impl ReclaimWatch {
    fn start() -> ReclaimWatch {
        ReclaimWatch {
            base: reclaim_counters(),
        }
    }

    /// `sync; echo 3 > /proc/sys/vm/drop_caches`, then let the daemon
    /// answer the FORGETs of the evicted inodes before tracing.
    fn drop_caches(&mut self) {
        // SAFETY: sync(2) has no preconditions.
        unsafe { libc::sync() };
        fs::write("/proc/sys/vm/drop_caches", "3").expect("echo 3 > /proc/sys/vm/drop_caches");
        std::thread::sleep(Duration::from_millis(300));
        self.base = reclaim_counters();
    }

    fn disturbed(&self) -> bool {
        reclaim_counters() != self.base
    }
}

fn open_dir(p: &Path) -> OwnedFd {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

/// One measured class: result per operation.
struct Measured {
    class: &'static str,
    counts: Counts,
    per_op: f64,
    secs: f64,
    attempts: usize,
    /// Every attempt was disturbed by a cache shrink: the best one is kept.
    disturbed: bool,
}

/// Attempts per class when the kernel keeps shrinking caches meanwhile.
const MAX_ATTEMPTS: usize = 4;

type Op<'a> = Box<dyn FnMut(usize) + 'a>;

/// For each attempt: `prepare(attempt, watch)` sets the class up (outside the
/// trace) and returns the operation; strace is attached, `op(i)` runs for i
/// in 0..N, asynchronous requests are let finish, strace is detached and the
/// trace counted. An attempt during which the kernel shrank its caches is
/// repeated (fresh names: `prepare` gets the attempt number).
fn measure<'a>(
    v: &TestVolume,
    pid: u32,
    class: &'static str,
    mut prepare: impl FnMut(usize, &mut ReclaimWatch) -> Op<'a>,
) -> Measured {
    let mut best: Option<Measured> = None;
    for attempt in 0..MAX_ATTEMPTS {
        let mut watch = ReclaimWatch::start();
        let mut op = prepare(attempt, &mut watch);
        let out = v.dir.path().join(format!("strace-{class}-{attempt}.txt"));
        let st = Strace::attach(pid, &out);
        let t0 = Instant::now();
        for i in 0..N {
            op(i);
        }
        let secs = t0.elapsed().as_secs_f64();
        // RELEASE is sent asynchronously after close(2), FORGET after an
        // unlink; give the daemon time to read and answer them while traced.
        std::thread::sleep(Duration::from_millis(500));
        let trace = st.finish();
        drop(op);
        let disturbed = watch.disturbed();
        if let Some(keep) = std::env::var_os("DEKFS_STRACE_DIR") {
            let _ = fs::create_dir_all(&keep);
            let _ = fs::write(
                Path::new(&keep).join(format!("{class}-{attempt}.txt")),
                &trace,
            );
        }
        let counts = parse_trace(&trace);
        assert!(
            counts.fuse_requests >= N as u64,
            "{class}: only {} FUSE requests seen for {N} operations: strace output unparsed?\n{}",
            counts.fuse_requests,
            trace.lines().take(20).collect::<Vec<_>>().join("\n")
        );
        let per_op = counts.total() as f64 / N as f64;
        let m = Measured {
            class,
            counts,
            per_op,
            secs,
            attempts: attempt + 1,
            disturbed,
        };
        if !disturbed {
            return m;
        }
        eprintln!(
            "{class}: attempt {} disturbed by a kernel cache shrink (drop_caches or reclaim \
             elsewhere), {per_op:.2}/op; retrying",
            attempt + 1
        );
        if best.as_ref().is_none_or(|b| m.per_op < b.per_op) {
            best = Some(m);
        }
    }
    let mut m = best.expect("at least one attempt");
    m.attempts = MAX_ATTEMPTS;
    m
}

const BLOCK: usize = 4096;

fn make_files(dir: &Path, prefix: &str, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let data = random_bytes(i as u64, BLOCK);
        fs::write(dir.join(format!("{prefix}{i}")), &data).unwrap();
    }
}

/// Lets entries created just now pass their TTL, so that every operation on
/// them starts with exactly one revalidating LOOKUP.
fn expire_entries() {
    std::thread::sleep(DAEMON_TTL + Duration::from_millis(200));
}

#[test]
fn backing_syscalls_per_operation_within_budget() {
    require_fuse!();
    if !strace_available() {
        eprintln!("SKIPPED (needs strace: apt-get install strace)");
        return;
    }
    let t_all = Instant::now();
    let v = TestVolume::new("sysbudget");
    v.mount();
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    let pid = pids[0];
    let data = random_bytes(7, BLOCK);
    let mut results: Vec<Measured> = Vec::new();

    // (a) create + write 4 KiB + close of a new file in an existing directory
    results.push(measure(&v, pid, "create", |attempt, _| {
        let d = v.p(&format!("a{attempt}"));
        fs::create_dir(&d).unwrap();
        // warm-up outside the trace: directory key loaded, the one-time
        // FLUSH -> ENOSYS exchange done
        make_files(&d, "warm", 3);
        let dfd = open_dir(&d);
        let data = &data;
        Box::new(move |i| {
            let fd = rustix::fs::openat(
                dfd.as_fd(),
                format!("new{i}"),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .unwrap_or_else(|e| panic!("create new{i}: {e}"));
            assert_eq!(rustix::io::write(&fd, data).unwrap(), BLOCK);
            drop(fd);
        })
    }));

    // (b) stat of an existing file after drop_caches (one LOOKUP each)
    // (c) open + read 4 KiB + close of existing files after drop_caches
    let s = v.p("s");
    make_files(&s, "f", N);
    results.push(measure(&v, pid, "stat", |_, watch| {
        let dfd = open_dir(&s);
        watch.drop_caches();
        Box::new(move |i| {
            let st = rustix::fs::statat(dfd.as_fd(), format!("f{i}"), AtFlags::empty())
                .unwrap_or_else(|e| panic!("stat f{i}: {e}"));
            assert_eq!(st.st_size, BLOCK as i64);
        })
    }));
    results.push(measure(&v, pid, "read", |_, watch| {
        let dfd = open_dir(&s);
        watch.drop_caches();
        let mut buf = vec![0u8; BLOCK];
        Box::new(move |i| {
            let fd = rustix::fs::openat(
                dfd.as_fd(),
                format!("f{i}"),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap_or_else(|e| panic!("open f{i}: {e}"));
            let got = rustix::io::read(&fd, &mut buf[..]).unwrap();
            assert_eq!(got, BLOCK, "read f{i}");
            assert!(buf == random_bytes(i as u64, BLOCK), "content of f{i}");
            drop(fd);
        })
    }));

    // (d) unlink of existing files (entries past their TTL: LOOKUP + UNLINK,
    // then the kernel's FORGET)
    results.push(measure(&v, pid, "unlink", |attempt, _| {
        let d = v.p(&format!("u{attempt}"));
        make_files(&d, "f", N);
        let dfd = open_dir(&d);
        expire_entries();
        Box::new(move |i| {
            rustix::fs::unlinkat(dfd.as_fd(), format!("f{i}"), AtFlags::empty())
                .unwrap_or_else(|e| panic!("unlink f{i}: {e}"));
        })
    }));

    // (e) mkdir of new directories in an existing directory
    results.push(measure(&v, pid, "mkdir", |attempt, _| {
        let d = v.p(&format!("m{attempt}"));
        fs::create_dir(&d).unwrap();
        fs::create_dir(d.join("warm")).unwrap();
        let dfd = open_dir(&d);
        Box::new(move |i| {
            rustix::fs::mkdirat(dfd.as_fd(), format!("d{i}"), Mode::from_raw_mode(0o755))
                .unwrap_or_else(|e| panic!("mkdir d{i}: {e}"));
        })
    }));

    // (f) rmdir of empty directories (entries past their TTL)
    results.push(measure(&v, pid, "rmdir", |attempt, _| {
        let d = v.p(&format!("r{attempt}"));
        fs::create_dir(&d).unwrap();
        for i in 0..N {
            fs::create_dir(d.join(format!("d{i}"))).unwrap();
        }
        let dfd = open_dir(&d);
        expire_entries();
        Box::new(move |i| {
            rustix::fs::unlinkat(dfd.as_fd(), format!("d{i}"), AtFlags::REMOVEDIR)
                .unwrap_or_else(|e| panic!("rmdir d{i}: {e}"));
        })
    }));

    // (g) rename within a directory to a new name (entries past their TTL)
    results.push(measure(&v, pid, "rename", |attempt, _| {
        let d = v.p(&format!("n{attempt}"));
        make_files(&d, "f", N);
        let dfd = open_dir(&d);
        expire_entries();
        Box::new(move |i| {
            rustix::fs::renameat(dfd.as_fd(), format!("f{i}"), dfd.as_fd(), format!("g{i}"))
                .unwrap_or_else(|e| panic!("rename f{i}: {e}"));
        })
    }));
    assert_eq!(
        fs::read(v.p("n0/g0")).unwrap(),
        random_bytes(0, BLOCK),
        "renamed file content"
    );

    // the table, always
    let mut table = format!(
        "backing syscalls per operation (N = {N}, daemon pid {pid}):\n  \
         {:<8} {:>8} {:>7} {:>9} {:>8} {:>9} {:>8}\n",
        "class", "per op", "budget", "fuse req", "replies", "traced s", "attempts"
    );
    for m in &results {
        table.push_str(&format!(
            "  {:<8} {:>8.2} {:>7.1} {:>9.2} {:>8.2} {:>9.2} {:>8}{}{}\n",
            m.class,
            m.per_op,
            budget(m.class),
            m.counts.fuse_requests as f64 / N as f64,
            m.counts.fuse_replies as f64 / N as f64,
            m.secs,
            m.attempts,
            if m.disturbed {
                "  (every attempt disturbed by reclaim)"
            } else {
                ""
            },
            if m.per_op > budget(m.class) {
                "  OVER BUDGET"
            } else {
                ""
            }
        ));
    }
    eprintln!("{table}");
    for m in &results {
        eprintln!("  {} breakdown:\n{}", m.class, breakdown(&m.counts, N));
    }
    let over: Vec<String> = results
        .iter()
        .filter(|m| m.per_op > budget(m.class))
        .map(|m| {
            format!(
                "{}: {:.2} backing syscalls per operation > budget {:.1}\n{}",
                m.class,
                m.per_op,
                budget(m.class),
                breakdown(&m.counts, N)
            )
        })
        .collect();
    v.umount();
    eprintln!(
        "syscall budget test took {:.1} s",
        t_all.elapsed().as_secs_f64()
    );
    assert!(
        over.is_empty(),
        "syscall budget exceeded (see the table above):\n{}",
        over.join("\n")
    );
}
