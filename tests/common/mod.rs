//! Test harness for the integration tests that drive the real `dekfs` binary
//! and real FUSE mounts.
//!
//! Every test makes its own [`TestVolume`] in its own temporary directory, so
//! tests of one binary run in parallel. Dropping a `TestVolume` always
//! unmounts it (`dekfs umount`, then `fusermount3 -uz`, then `umount -l`), so
//! a failing test never leaves a mount behind.
//!
//! Tests that need FUSE start with `require_fuse!();`: it returns early (with
//! a printed message) only when `/dev/fuse` is missing or the test does not
//! run as root. On CI and on the project machine they run.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// The binary under test.
pub const DEKFS: &str = env!("CARGO_BIN_EXE_dekfs");

/// Fast KDF parameters for tests (the defaults cost 64 MiB and t=3).
pub const FAST_KDF: [&str; 6] = [
    "--kdf-memory",
    "8192",
    "--kdf-time",
    "1",
    "--kdf-lanes",
    "1",
];

/// Time limit for one CLI command (init, mount, umount, status...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(45);

/// On-disk format constants (docs/FORMAT.md).
pub const HEADER_LEN: u64 = 216;
pub const BLOCK_PLAIN: u64 = 4096;
pub const BLOCK_OVERHEAD: u64 = 12 + 16;
pub const BLOCK_CIPHER: u64 = BLOCK_PLAIN + BLOCK_OVERHEAD;
pub const DIR_META: &str = "dekfs.dir";
pub const DIR_META_LEN: u64 = 224;
pub const CONF: &str = "dekfs.conf";

/// Exit codes of the CLI contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const WRONG_KEY: i32 = 10;
    pub const TPM_POLICY: i32 = 11;
    pub const NOT_A_VOLUME: i32 = 12;
    pub const UNSUPPORTED: i32 = 13;
    pub const CORRUPT: i32 = 14;
    pub const MOUNT_FAILED: i32 = 15;
    pub const IO: i32 = 16;
}

/// `true` when real FUSE mounts can be made here (root and /dev/fuse).
pub fn fuse_available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    Ok(())
}

/// Return early from a test (with a message) when FUSE mounts are impossible.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Err(why) = $crate::common::fuse_available() {
            eprintln!("SKIPPED (needs root and /dev/fuse): {why}");
            return;
        }
    };
}

/// Result of one CLI run.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panics with the full output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: expected exit code {code}, got {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
    /// The error-output contract: one line starting "dekfs: ", optionally
    /// followed by one line starting "hint: ".
    #[track_caller]
    pub fn expect_one_line_error(&self, what: &str) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        let ok = match lines.as_slice() {
            [first] => first.starts_with("dekfs: "),
            [first, second] => first.starts_with("dekfs: ") && second.starts_with("hint: "),
            _ => false,
        };
        assert!(
            ok,
            "{what}: stderr must be one line \"dekfs: ...\" (+ optional \"hint: ...\"), got:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `dekfs ARGS...` with stdin from /dev/null (or `stdin` bytes), stdout
/// and stderr captured through files (a daemon that keeps them open cannot
/// block the test), killed after [`CMD_TIMEOUT`].
pub fn dekfs<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(DEKFS, args, None)
}

pub fn dekfs_stdin<I, S>(args: I, stdin: &[u8]) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(DEKFS, args, Some(stdin))
}

pub fn run_cmd<I, S>(prog: &str, args: I, stdin: Option<&[u8]>) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut outf = tempfile::tempfile().expect("tempfile");
    let mut errf = tempfile::tempfile().expect("tempfile");
    let mut cmd = Command::new(prog);
    cmd.args(&args)
        .stdout(Stdio::from(outf.try_clone().unwrap()))
        .stderr(Stdio::from(errf.try_clone().unwrap()))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    if let Some(data) = stdin {
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(data);
        drop(si);
    }
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if t0.elapsed() > CMD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::io::Seek;
    let read_all = |f: &mut fs::File| {
        let mut s = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s).into_owned()
    };
    let stdout = read_all(&mut outf);
    let mut stderr = read_all(&mut errf);
    let code = match status {
        Some(st) => st.code(),
        None => {
            stderr.push_str(&format!(
                "\n[harness: {prog} {args:?} killed after {CMD_TIMEOUT:?}]"
            ));
            None
        }
    };
    Out {
        code,
        stdout,
        stderr,
    }
}

/// Mount points currently in this process's mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = if b[i] == b'\\' && i + 4 <= b.len() {
            std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        } else {
            None
        };
        if let Some(v) = octal {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many times `path` is a mount point (stacked mounts count twice).
/// `path` must be absolute and canonical (no stat of a possibly hung mount).
pub fn mount_count(path: &Path) -> usize {
    mount_points().iter().filter(|p| **p == path).count()
}

pub fn is_mounted(path: &Path) -> bool {
    mount_count(path) > 0
}

/// The fstype of the topmost mount at `path` ("fuse.dekfs", "fuse", ...).
pub fn mount_fstype(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for l in info.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() > 4 && Path::new(&unescape_mountinfo(f[4])) == path {
            let sep = f.iter().position(|x| *x == "-")?;
            found = f.get(sep + 1).map(|s| s.to_string());
        }
    }
    found
}

/// PIDs of processes whose command line mentions `needle` (the volume's
/// unique temp path), i.e. the dekfs daemon(s) of a volume.
pub fn pids_mentioning(needle: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = needle.as_os_str().as_bytes();
    let mut pids = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
                if cmd.windows(needle.len()).any(|w| w == needle) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// Regular files that process `pid` holds descriptors of, by their /proc
/// link text (" (deleted)" once unlinked), with their link count;
/// `which(o_path)` picks O_PATH descriptors (dekfs nodes) or the others
/// (open handles).
pub fn held_files(pid: u32, which: impl Fn(bool) -> bool) -> Vec<(String, u64)> {
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
        .filter_map(|e| {
            let m = fs::metadata(e.path()).ok().filter(|m| m.is_file())?;
            let t = fs::read_link(e.path()).ok()?;
            Some((t.to_string_lossy().into_owned(), m.nlink()))
        })
        .collect()
}

/// Unlinked regular files (nlink 0) that process `pid` holds a descriptor
/// of (see `held_files`). Their space cannot be freed.
pub fn held_unlinked(pid: u32, which: impl Fn(bool) -> bool) -> Vec<String> {
    held_files(pid, which)
        .into_iter()
        .filter(|(_, nlink)| *nlink == 0)
        .map(|(t, _)| t)
        .collect()
}

/// Polls `f` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A dekfs volume in its own temp dir: `cipher/`, `mnt/`, `passfile`,
/// `daemon.log`.
pub struct TestVolume {
    pub dir: tempfile::TempDir,
    pub cipher: PathBuf,
    pub mnt: PathBuf,
    pub passfile: PathBuf,
    pub logfile: PathBuf,
    pub passphrase: String,
    /// The recovery key printed by `init` (None with --no-recovery-key).
    pub recovery_key: Option<String>,
    /// Output of `init`.
    pub init_out: Option<Out>,
    /// A size-limited tmpfs under `cipher` (see `on_tmpfs`); a field, so it
    /// is unmounted only after the FUSE volume above it.
    tmpfs: Option<Tmpfs>,
}

/// A tmpfs mounted at a path for the life of the value.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let base = std::env::var_os("DEKFS_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("tempdir")
}

impl TestVolume {
    /// A directory layout without `init` (for CLI error tests).
    pub fn uninitialised(name: &str) -> TestVolume {
        let dir = scratch_dir(&format!("dekfs-{name}-"));
        let root = dir.path().canonicalize().unwrap();
        let cipher = root.join("cipher");
        let mnt = root.join("mnt");
        fs::create_dir(&cipher).unwrap();
        fs::create_dir(&mnt).unwrap();
        let passphrase = format!("correct horse battery staple {name}");
        let passfile = root.join("passfile");
        fs::write(&passfile, format!("{passphrase}\n")).unwrap();
        TestVolume {
            dir,
            cipher,
            mnt,
            passfile,
            logfile: root.join("daemon.log"),
            passphrase,
            recovery_key: None,
            init_out: None,
            tmpfs: None,
        }
    }

    /// An initialised volume (fast KDF) whose cipher
    /// directory is a tmpfs of `size` (e.g. "8m"): a disk that fills up.
    pub fn on_tmpfs(name: &str, size: &str) -> TestVolume {
        let mut v = TestVolume::uninitialised(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&v.cipher)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", v.cipher.display());
        v.tmpfs = Some(Tmpfs(v.cipher.clone()));
        let (c, pf) = (
            v.cipher.display().to_string(),
            v.passfile.display().to_string(),
        );
        let mut args = vec!["init", &c, "--passfile", &pf];
        args.extend(FAST_KDF);
        dekfs(&args).expect_code(exit::OK, "init on tmpfs");
        v
    }

    /// `dekfs init` (fast KDF, passfile) with a recovery key; panics on failure.
    pub fn new(name: &str) -> TestVolume {
        Self::with_init_args(name, &[])
    }

    /// Like `new`, with extra `init` arguments (e.g. `--no-recovery-key`).
    pub fn with_init_args(name: &str, extra: &[&str]) -> TestVolume {
        let mut v = Self::uninitialised(name);
        let mut args: Vec<String> = vec![
            "init".into(),
            v.cipher.display().to_string(),
            "--passfile".into(),
            v.passfile.display().to_string(),
        ];
        args.extend(FAST_KDF.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = dekfs(&args);
        out.expect_code(exit::OK, "dekfs init");
        v.recovery_key = parse_recovery_key(&out.stdout);
        v.init_out = Some(out);
        v
    }

    /// `dekfs mount` with the passfile and the log file; returns the result
    /// without checking it.
    pub fn try_mount(&self, extra: &[&str]) -> Out {
        let mut args: Vec<String> = vec![
            "mount".into(),
            self.cipher.display().to_string(),
            self.mnt.display().to_string(),
            "--passfile".into(),
            self.passfile.display().to_string(),
            "--log-file".into(),
            self.logfile.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        dekfs(&args)
    }

    /// Mounts and checks that the mount is live when `dekfs mount` returns.
    #[track_caller]
    pub fn mount(&self) {
        self.mount_with(&[]);
    }

    #[track_caller]
    pub fn mount_with(&self, extra: &[&str]) {
        let out = self.try_mount(extra);
        out.expect_code(exit::OK, "dekfs mount");
        assert!(
            is_mounted(&self.mnt),
            "dekfs mount returned 0 but {} is not a mount point",
            self.mnt.display()
        );
    }

    /// `dekfs umount`; checks that the mount is gone and the daemon has exited
    /// when it returns.
    #[track_caller]
    pub fn umount(&self) {
        // Tests of one binary run in parallel threads; a child being spawned
        // by another thread holds copies of our fds until its exec, so the
        // mount can be briefly busy right after we closed a file: retry EBUSY.
        let mut out = dekfs([OsStr::new("umount"), self.mnt.as_os_str()]);
        for _ in 0..20 {
            if out.code != Some(exit::MOUNT_FAILED) || !out.stderr.contains("busy") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = dekfs([OsStr::new("umount"), self.mnt.as_os_str()]);
        }
        out.expect_code(exit::OK, "dekfs umount");
        assert!(
            !is_mounted(&self.mnt),
            "dekfs umount returned 0 but {} is still mounted",
            self.mnt.display()
        );
        // "unmounts and waits for the daemon to exit": give zombies a moment
        // to be reaped, but a live daemon after return is a bug.
        let gone = wait_until(Duration::from_millis(500), || {
            pids_mentioning(&self.cipher).is_empty()
        });
        assert!(
            gone,
            "dekfs umount returned but the daemon is still running: pids {:?}",
            pids_mentioning(&self.cipher)
        );
    }

    #[track_caller]
    pub fn remount(&self) {
        self.umount();
        self.mount();
    }

    /// Path inside the mount.
    /// `dekfs fsck` of the (unmounted) volume with its passfile.
    pub fn fsck(&self) -> Out {
        dekfs([
            OsStr::new("fsck"),
            self.cipher.as_os_str(),
            OsStr::new("--passfile"),
            self.passfile.as_os_str(),
        ])
    }

    /// Panics, with fsck's output, unless `dekfs fsck` finds the volume clean.
    #[track_caller]
    pub fn assert_fsck_clean(&self, when: &str) {
        let out = self.fsck();
        assert!(out.ok(), "fsck {when}:\n{}{}", out.stdout, out.stderr);
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel.trim_start_matches('/'))
    }

    /// The daemon log (empty if none yet).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.logfile).unwrap_or_default()
    }

    /// Waits (up to 5 s, log lines may be buffered) for a log line that
    /// contains every one of `needles`; returns all such lines.
    pub fn wait_log_lines(&self, needles: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        wait_until(Duration::from_secs(5), || {
            found = self
                .log()
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_owned)
                .collect();
            !found.is_empty()
        });
        found
    }

    /// Every entry under the cipher dir: relative path -> (is_file, size).
    pub fn cipher_listing(&self) -> BTreeMap<PathBuf, (bool, u64)> {
        list_tree(&self.cipher)
    }

    /// Writes `data` to `rel` through the mount (create, write, fsync, close)
    /// and returns the backing file that appeared in the cipher dir for it.
    #[track_caller]
    pub fn create_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        let before = self.cipher_listing();
        {
            let mut f = fs::File::create(self.p(rel))
                .unwrap_or_else(|e| panic!("create {rel} through the mount: {e}"));
            f.write_all(data).unwrap();
            f.sync_all().unwrap();
        }
        let after = self.cipher_listing();
        self.new_backing_file(&before, &after, rel)
    }

    /// The single new content file between two listings (ignores
    /// `dekfs.dir` and long-name `.name` companions).
    #[track_caller]
    pub fn new_backing_file(
        &self,
        before: &BTreeMap<PathBuf, (bool, u64)>,
        after: &BTreeMap<PathBuf, (bool, u64)>,
        what: &str,
    ) -> PathBuf {
        let new: Vec<&PathBuf> = after
            .iter()
            .filter(|(p, (is_file, _))| {
                *is_file
                    && !before.contains_key(*p)
                    && p.file_name() != Some(OsStr::new(DIR_META))
                    && !p.to_string_lossy().ends_with(".name")
            })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            new.len(),
            1,
            "expected exactly one new backing file for {what}, got {new:?}"
        );
        self.cipher.join(new[0])
    }
}

/// The FUSE connection id (minor device number) of the mount at `path`.
pub fn fuse_connection(path: &Path) -> Option<u32> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && Path::new(&unescape_mountinfo(f[4])) == path)
            .then(|| f[2].split(':').nth(1)?.parse().ok())
            .flatten()
    })
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        let conn = fuse_connection(&self.mnt);
        if is_mounted(&self.mnt) {
            let out = dekfs([OsStr::new("umount"), self.mnt.as_os_str()]);
            if !out.ok() || is_mounted(&self.mnt) {
                eprintln!(
                    "harness: dekfs umount {} failed ({:?}: {}); forcing",
                    self.mnt.display(),
                    out.code,
                    out.stderr.trim()
                );
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mnt)
                    .stderr(Stdio::null())
                    .status();
                if is_mounted(&self.mnt) {
                    let _ = Command::new("umount")
                        .arg("-l")
                        .arg(&self.mnt)
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        // A daemon left behind after a forced unmount gets ENODEV and exits;
        // wait a little so the temp dir can be removed.
        let gone = wait_until(Duration::from_secs(5), || {
            pids_mentioning(&self.cipher).is_empty()
        });
        if !gone {
            // a hung daemon: abort its FUSE connection, then end it (only
            // the processes of this volume, by pid)
            if let Some(c) = conn {
                let _ = fs::write(format!("/sys/fs/fuse/connections/{c}/abort"), "1");
            }
            for pid in pids_mentioning(&self.cipher) {
                eprintln!(
                    "harness: daemon {pid} of {} still running; killing it",
                    self.cipher.display()
                );
                // SAFETY: kill(2) of a process started for this volume.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Parses `Recovery key: xxxxxxxx-...` (8 groups of 8) from init's stdout.
pub fn parse_recovery_key(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Recovery key: "))
        .map(|k| k.trim().to_string())
}

/// Checks the documented shape of a recovery key.
pub fn recovery_key_well_formed(k: &str) -> bool {
    let groups: Vec<&str> = k.split('-').collect();
    groups.len() == 8
        && groups
            .iter()
            .all(|g| g.len() == 8 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Recursive listing: relative path -> (is regular file, size). Symlinks are
/// not followed.
pub fn list_tree(root: &Path) -> BTreeMap<PathBuf, (bool, u64)> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (bool, u64)>) {
        let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            out.insert(
                p.strip_prefix(root).unwrap().to_owned(),
                (md.is_file(), md.len()),
            );
            if md.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Deterministic random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Size of the backing file for a plaintext of `n` bytes with every block
/// present (the header-only form of an empty file is 216 or 0).
pub fn expected_backing_size(n: u64) -> u64 {
    if n == 0 {
        return HEADER_LEN;
    }
    let full = n / BLOCK_PLAIN;
    let rem = n % BLOCK_PLAIN;
    HEADER_LEN + full * BLOCK_CIPHER + if rem > 0 { rem + BLOCK_OVERHEAD } else { 0 }
}

#[track_caller]
pub fn assert_backing_size(backing: &Path, plain_len: u64) {
    let got = fs::metadata(backing)
        .unwrap_or_else(|e| panic!("stat {}: {e}", backing.display()))
        .len();
    if plain_len == 0 {
        assert!(
            got == 0 || got == HEADER_LEN,
            "backing file of an empty file must be 0 or {HEADER_LEN} bytes, got {got}"
        );
    } else {
        assert_eq!(
            got,
            expected_backing_size(plain_len),
            "backing size for {plain_len} plaintext bytes ({})",
            backing.display()
        );
    }
}

/// Flips bit `bit` of byte `offset` of `path` in place.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

/// errno of an io::Error (panics if none).
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("expected an OS error, got {e:?}"))
}

/// Opens and reads the whole file; Ok(bytes) or the error.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Names in a directory (not . and ..), sorted.
pub fn dir_names(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

// ---- xattr helpers (libc) ----

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a valid buffer of value.len().
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid strings; buf has buf.len() bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

pub fn list_xattr(path: &Path) -> std::io::Result<Vec<String>> {
    let p = cstr(path);
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid string; buf has buf.len() bytes.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    let mut v: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    Ok(v)
}

pub fn remove_xattr(path: &Path, name: &str) -> std::io::Result<()> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn mkfifo(path: &Path, mode: u32) -> std::io::Result<()> {
    let p = cstr(path);
    // SAFETY: valid NUL-terminated string.
    let r = unsafe { libc::mkfifo(p.as_ptr(), mode as libc::mode_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// utimensat with explicit atime/mtime (seconds, nanoseconds), not
/// following symlinks when `nofollow`.
pub fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> std::io::Result<()> {
    let p = cstr(path);
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid string and a 2-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    let p = cstr(path);
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid string and pointer.
    let r = unsafe { libc::statvfs(p.as_ptr(), &mut st) };
    if r == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Inode number, nlink, mode of a path (lstat).
pub fn lstat(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

pub fn nlink(path: &Path) -> u64 {
    lstat(path).nlink()
}
