//! TestVolume: a dekfs volume in its own temp dir, made, mounted, unmounted
//! and, on drop, unmounted and removed without leaving anything behind. It
//! must never touch a path outside its own temp dir.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

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
    /// A size-limited tmpfs at `cipher` (see `on_tmpfs`), unmounted by
    /// `Drop` after the FUSE volume above it and before `dir` is removed.
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
        let mut args = vec!["init", &c, "--passfile", &pf, "--v1-layout"];
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
        let mut all = vec!["--v1-layout"];
        all.extend_from_slice(extra);
        Self::with_layout_args(name, &all)
    }

    /// `dekfs init` with exactly `extra` after the fast-KDF arguments: without `--v1-layout`
    /// the volume gets the default (paged) layout.
    pub fn with_layout_args(name: &str, extra: &[&str]) -> TestVolume {
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

    /// Mounts with the daemon armed to kill itself at failpoint `point`
    /// (src/failpoint.rs).
    #[track_caller]
    pub fn mount_armed(&self, point: &str) {
        let out = Command::new(DEKFS)
            .arg("mount")
            .arg(&self.cipher)
            .arg(&self.mnt)
            .arg("--passfile")
            .arg(&self.passfile)
            .arg("--log-file")
            .arg(&self.logfile)
            .env("DEKFS_FAILPOINT", point)
            .output()
            .expect("dekfs mount");
        assert!(
            out.status.success() && is_mounted(&self.mnt),
            "armed mount: {}",
            String::from_utf8_lossy(&out.stderr)
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
            wait_until(Duration::from_secs(5), || {
                pids_mentioning(&self.cipher).is_empty()
            });
        }
        // Only now, with the FUSE mount and its daemon gone, the tmpfs under
        // `cipher` can go, and it must go before the directory: removing a
        // directory that holds a mount point fails (EBUSY) and leaves the
        // whole tree behind.
        forget_rollback_record(&self.cipher);
        drop(self.tmpfs.take());
        self.remove_dir();
    }
}

/// Removes this machine's rollback record of the volume in `cipher` (root's, under
/// /var/lib/dekfs/seen), so that test volumes leave nothing behind.
pub fn forget_rollback_record(cipher: &std::path::Path) {
    let Ok(conf) = fs::read(cipher.join("dekfs.conf")) else {
        return;
    };
    let Some(vid) = conf.get(20..36) else {
        return;
    };
    let name: String = vid.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = dekfs::volume::rollback::seen_dir() {
        let _ = fs::remove_file(dir.join(name));
    }
}

impl TestVolume {
    /// Removes the temp dir now (TempDir's own drop would ignore errors), and
    /// says so on stderr when something is left: a leaked /tmp/dekfs-* dir
    /// is a harness bug (scripts/check-tmp-clean.sh fails the run on it).
    fn remove_dir(&self) {
        let dir = self.dir.path();
        // mountinfo holds canonical paths, as `mnt` is.
        let root = self.mnt.parent().unwrap_or(dir);
        // Mounts a test made inside the dir itself (a second mountpoint):
        // ours alone, so detach them; never recurse into a live mount, that
        // would walk (or hang on) a volume.
        for m in mount_points().into_iter().filter(|m| m.starts_with(root)) {
            eprintln!("harness: {} still mounted; detaching it", m.display());
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&m)
                .stderr(Stdio::null())
                .status();
        }
        if let Some(m) = mount_points().into_iter().find(|m| m.starts_with(root)) {
            eprintln!(
                "harness: {} still mounted; leaving {}",
                m.display(),
                dir.display()
            );
            return;
        }
        if let Err(e) = fs::remove_dir_all(dir) {
            eprintln!("harness: could not remove {}: {e}", dir.display());
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
