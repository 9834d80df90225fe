//! `dekfs mount`: unlocks a volume and serves it over FUSE. Returns once the
//! mount is live, then the daemon runs detached (or in the foreground with
//! -f). It must not put key material in argv, the environment or logs.

use super::exit::{CliError, CliResult, GENERIC, MOUNT_FAILED};
use super::kmount::KernelOpts;
use super::KeySource;
use crate::fs::CoreFs;
use crate::fuse_adapter::DekFuse;
use crate::volume::{self, UnlockedVolume};
use clap::Args;
use fuser::{MountOption, SessionACL};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct MountArgs {
    cipherdir: PathBuf,
    mountpoint: PathBuf,
    /// Stay in the foreground (logs to stderr unless --log-file)
    #[arg(short = 'f', long)]
    foreground: bool,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: super::unlock::TpmOpts,
    /// Mount options, comma-separated (allow_other, default_permissions, ro, ...)
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
    /// Append daemon log lines to FILE (default: syslog, or stderr with -f)
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// FUSE worker threads (default: one per core, plus one)
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(a: MountArgs) -> CliResult<()> {
    let mnt = std::fs::canonicalize(&a.mountpoint).map_err(|e| {
        CliError::new(
            MOUNT_FAILED,
            format!("mountpoint {}: {e}", a.mountpoint.display()),
        )
    })?;
    if !mnt.is_dir() {
        return Err(CliError::new(
            MOUNT_FAILED,
            format!("mountpoint {} is not a directory", mnt.display()),
        ));
    }
    if is_mountpoint(&mnt) {
        return Err(CliError::new(
            MOUNT_FAILED,
            format!("{} is already a mount point", mnt.display()),
        )
        .hint(format!("unmount it first: dekfs umount {}", mnt.display())));
    }
    let cipherdir = std::fs::canonicalize(&a.cipherdir)
        .map_err(|_| CliError::from(volume::VolumeError::NotAVolume(a.cipherdir.clone())))?;
    // Unlock before forking: the TPM goes first, and a fallback prompt needs the terminal.
    let (tcti, _) = super::unlock::split_tpm_option(&a.options);
    let unlocked = super::unlock::unlock_volume(&cipherdir, &a.key, &a.tpm, tcti.as_deref(), true)?;
    if a.foreground {
        return serve(&a, &cipherdir, &mnt, unlocked, &mut None);
    }
    let (rd, wr) = rustix::pipe::pipe().map_err(std::io::Error::from)?;
    match crate::sys::fork()? {
        crate::sys::Forked::Parent => {
            drop(wr);
            drop(unlocked);
            wait_ready(rd)
        }
        crate::sys::Forked::Child => {
            drop(rd);
            crate::secret::relock_after_fork();
            let _ = rustix::process::setsid();
            let mut ready = Some(wr);
            let code = match serve(&a, &cipherdir, &mnt, unlocked, &mut ready) {
                Ok(()) => 0,
                Err(e) => {
                    if let Some(w) = ready.take() {
                        let mut f = std::fs::File::from(w);
                        let _ = write!(
                            f,
                            "ERR {}\n{}\n{}",
                            e.code,
                            e.msg,
                            e.hint.unwrap_or_default()
                        );
                    }
                    e.code
                }
            };
            std::process::exit(code);
        }
    }
}

/// Parent side of the readiness pipe: the child reports "OK" once the
/// kernel has completed the FUSE handshake, or its error.
fn wait_ready(rd: OwnedFd) -> CliResult<()> {
    let mut s = String::new();
    let _ = std::fs::File::from(rd).read_to_string(&mut s);
    if s.starts_with("OK") {
        return Ok(());
    }
    let mut lines = s.lines();
    let code = lines
        .next()
        .and_then(|l| l.strip_prefix("ERR "))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(GENERIC);
    let msg = lines
        .next()
        .unwrap_or("the mount daemon exited during startup")
        .to_owned();
    let mut e = CliError::new(code, msg);
    if let Some(h) = lines.next().filter(|h| !h.is_empty()) {
        e = e.hint(h.to_owned());
    }
    Err(e)
}

struct Opts {
    /// For fuser's own (fusermount3) mount when not root.
    fuser: Vec<MountOption>,
    /// For our mount(2) as root.
    kernel: KernelOpts,
    acl: SessionACL,
    read_only: bool,
    suid: bool,
    dev: bool,
    writeback_cache: bool,
    xattr: bool,
}

fn mount_options(cipherdir: &Path, given: &[String]) -> CliResult<Opts> {
    let mut o = Opts {
        fuser: vec![
            MountOption::FSName(cipherdir.display().to_string()),
            MountOption::Subtype("dekfs".into()),
        ],
        kernel: KernelOpts::default(),
        acl: SessionACL::Owner,
        read_only: false,
        suid: false,
        dev: false,
        writeback_cache: false,
        xattr: true,
    };
    let mut default_perms = false;
    for opt in given.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match opt {
            // With other users in, the kernel must check permissions: the
            // daemon itself runs as root and would otherwise allow anything.
            "allow_other" => {
                o.acl = SessionACL::All;
                default_perms = true;
            }
            "allow_root" => o.acl = SessionACL::RootAndOwner,
            "default_permissions" => default_perms = true,
            "ro" => {
                o.read_only = true;
                o.fuser.push(MountOption::RO);
                o.kernel.push(opt);
            }
            "suid" => o.suid = true,
            "writeback_cache" => o.writeback_cache = true,
            "noxattr" => o.xattr = false,
            "dev" => o.dev = true,
            // fstab/systemd bookkeeping, meaningless to the kernel.
            "defaults" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "users" => {}
            s if s.starts_with("x-") || s.starts_with("passfile=") => {}
            s => {
                if !o.kernel.push(s) {
                    return Err(CliError::new(
                        super::exit::USAGE,
                        format!("unknown mount option `{s}`"),
                    ));
                }
                o.fuser.push(MountOption::CUSTOM(s.to_owned()));
            }
        }
    }
    if o.acl != SessionACL::Owner {
        o.kernel.push("allow_other");
    }
    if default_perms {
        o.fuser.push(MountOption::DefaultPermissions);
        o.kernel.push("default_permissions");
    }
    if o.suid {
        o.fuser.push(MountOption::Suid);
    }
    if o.dev {
        o.fuser.push(MountOption::Dev);
    }
    Ok(o)
}

fn serve(
    a: &MountArgs,
    cipherdir: &Path,
    mnt: &Path,
    unlocked: UnlockedVolume,
    ready: &mut Option<OwnedFd>,
) -> CliResult<()> {
    crate::secret::disable_core_dumps();
    // Callers' umasks are applied per request; the daemon's own must not
    // mask the modes it creates on their behalf.
    rustix::process::umask(rustix::fs::Mode::empty());
    crate::logger::init(a.log_file.as_deref(), a.foreground)?;
    log::info!(
        "unlocked volume {}",
        super::init::hex(&unlocked.info.volume_id)
    );
    let opts = mount_options(cipherdir, &super::unlock::split_tpm_option(&a.options).1)?;
    let core = CoreFs::new(cipherdir, unlocked.keys.clone(), opts.read_only)?;
    drop(unlocked);
    let mut config = fuser::Config::default();
    config.acl = opts.acl;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // The kernel hands each request to the worker that has waited longest,
    // so surplus workers only make requests land on cache-cold threads:
    // on 2 cores, 3 workers beat 4 (untar +20%, rm +8%) and 2 (cold reads
    // -25%: the asynchronous RELEASE needs a worker of its own).
    config.n_threads = Some(a.threads.unwrap_or(cores + 1).clamp(1, 64));
    config.clone_fd = true;
    let fs = DekFuse {
        core,
        writeback_cache: opts.writeback_cache,
        xattr: opts.xattr,
    };
    let mount_err = |e: std::io::Error| {
        CliError::new(
            MOUNT_FAILED,
            format!("cannot mount at {}: {e}", mnt.display()),
        )
    };
    let session = if rustix::process::geteuid().is_root() {
        let fd = super::kmount::mount(cipherdir, mnt, &opts.kernel, opts.suid, opts.dev)
            .map_err(mount_err)?;
        fuser::Session::from_fd(fs, fd, opts.acl, config).map_err(mount_err)?
    } else {
        config.mount_options = opts.fuser;
        fuser::Session::new(fs, mnt, &config).map_err(mount_err)?
    };
    raise_readahead(mnt);
    let pidfile = pidfile_path(mnt);
    if let Some(dir) = pidfile.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&pidfile, format!("{}\n", std::process::id()));
    log::info!("mounted {} at {}", cipherdir.display(), mnt.display());
    if let Some(w) = ready.take() {
        let _ = std::fs::File::from(w).write_all(b"OK\n");
        detach_stdio();
    }
    let r = session.run();
    let _ = std::fs::remove_file(&pidfile);
    log::info!("unmounted {}", mnt.display());
    r.map_err(|e| CliError::new(GENERIC, format!("FUSE session ended with an error: {e}")))
}

/// The kernel caps a FUSE mount's readahead at the bdi default (128 KiB)
/// whatever max_readahead we negotiate; sequential reads then arrive as
/// 128 KiB requests. Raise it to the 1 MiB we accept (root only, best effort).
/// The device comes from mountinfo: stat() of the mount point would wait for
/// this very daemon, which is not serving requests yet.
fn raise_readahead(mnt: &Path) {
    let Some(dev) = mount_field(mnt, 2) else {
        return;
    };
    let kb = crate::fuse_adapter::MAX_WRITE / 1024;
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, format!("{kb}\n")) {
        log::info!("readahead left at the kernel default ({path}: {e})");
    }
}

/// A daemon must not hold the caller's terminal or pipes open.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

pub fn pidfile_path(mnt: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(mnt.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/run/dekfs/{}.pid", super::init::hex(&h[..12])))
}

/// True if `p` is the mount point of some mount (from /proc/self/mountinfo).
pub fn is_mountpoint(p: &Path) -> bool {
    mount_source(p).is_some()
}

/// The fstype and source (for dekfs: the cipher directory) of the mount at `p`.
pub fn mount_source(p: &Path) -> Option<(String, String)> {
    mountinfo_line(p, |f| {
        let sep = f.iter().position(|x| *x == "-")?;
        Some((f.get(sep + 1)?.to_string(), unescape(f.get(sep + 2)?)))
    })
}

/// Where the cipher directory `cipherdir` is mounted as dekfs, if anywhere.
pub fn mountpoint_of(cipherdir: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = cipherdir.to_string_lossy();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        let mp = PathBuf::from(unescape(f.get(4)?));
        (*f.get(sep + 1)? == "fuse.dekfs" && unescape(f.get(sep + 2)?) == want).then_some(mp)
    })
}

/// Field `i` of the mountinfo line of the mount at `p` (2 = major:minor).
fn mount_field(p: &Path, i: usize) -> Option<String> {
    mountinfo_line(p, |f| f.get(i).map(|s| s.to_string()))
}

/// Applies `pick` to the split fields of the last mountinfo line for `p`.
fn mountinfo_line<T>(p: &Path, pick: impl Fn(&[&str]) -> Option<T>) -> Option<T> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = p.to_string_lossy();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if unescape(f.get(4)?) != want {
            return None;
        }
        pick(&f)
    })
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
