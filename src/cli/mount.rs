//! `dekfs mount`: checks the arguments, parses `-o`, unlocks the volume and
//! hands it with the volume lock to the daemon, then maps the outcome to an exit code. It must
//! not put key material in argv, the environment or logs, and the process
//! life of the mount belongs to `crate::daemon`.

use super::exit::{CliError, CliResult, CORRUPT, GENERIC, IO, MOUNT_FAILED, USAGE};
use super::KeySource;
use crate::daemon::{self, DaemonConfig, DaemonError};
use crate::mount_opts::MountOptions;
use crate::volume::{self, LockError, VolumeLock};
use clap::Args;
use std::path::{Path, PathBuf};

// `status` and `umount` read the mount table through these.
pub use crate::daemon::{mount_source, mountpoint_of};

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
    /// Mount options, comma-separated (allow_other, default_permissions, ro,
    /// passfile=FILE, keysource=tpm|passphrase|ask|recovery, tpm_tcti=TCTI,
    /// idle=DURATION, noxattr, writeback_cache, ...)
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
    let options =
        MountOptions::parse(&a.options).map_err(|e| CliError::new(USAGE, e.to_string()))?;
    let mut key = a.key.clone();
    if let Some(p) = &options.passfile {
        if super::unlock::explicit_credential(&key) {
            return Err(CliError::new(
                USAGE,
                "-o passfile= conflicts with --passfile, --passphrase-fd and --recovery-key-file",
            ));
        }
        key.passfile = Some(p.clone());
    }
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
    let cipherdir = std::fs::canonicalize(&a.cipherdir)
        .map_err(|_| CliError::from(volume::VolumeError::NotAVolume(a.cipherdir.clone())))?;
    // Before any prompt: a volume that is already mounted is refused here,
    // naming where and by whom, even when that is this very mount point.
    let lock = volume_lock(&cipherdir, &mnt)?;
    if daemon::is_mountpoint(&mnt) {
        return Err(CliError::new(
            MOUNT_FAILED,
            format!("{} is already a mount point", mnt.display()),
        )
        .hint(format!("unmount it first: dekfs umount {}", mnt.display())));
    }
    // Unlock before the daemon forks: the TPM goes first, and a fallback
    // prompt needs the terminal.
    let mut unlocked =
        super::keysource::unlock_for_mount(&cipherdir, &mnt, &key, &a.tpm, &options)?;
    // An interrupted `rekey` is finished by the daemon in the background
    // once it serves (daemon/rotation.rs); a read-only mount writes nothing
    // and only warns.
    if options.read_only {
        crate::engine::rotation::finish_pending_for_mount(&cipherdir, &mut unlocked, true)?;
    } else if let Ok(Some((old, new))) = crate::volume::rotate::pending_rotation(&cipherdir) {
        eprintln!(
            "dekfs: an interrupted key rotation (KEK {old} -> {new}) is finished in the \
             background while the volume serves"
        );
    }
    super::shred_online::finish_pending_for_mount(&cipherdir, options.read_only);
    let cfg = DaemonConfig {
        cipherdir,
        mountpoint: mnt,
        foreground: a.foreground,
        log_file: a.log_file,
        threads: a.threads,
        options,
    };
    daemon::start(&cfg, unlocked, lock).map_err(exit_error)
}

/// Takes the volume lock for the daemon. A cipher directory another daemon
/// serves is refused with its mount point and pid; one whose filesystem
/// cannot lock (read-only medium without a lock file, no flock support)
/// mounts unlocked with a warning, since refusing would lock its owner out.
fn volume_lock(cipherdir: &Path, mnt: &Path) -> CliResult<Option<VolumeLock>> {
    // Never litter a directory that is not a volume this dekfs reads with a
    // lock file (the config is parsed, not yet authenticated, here).
    volume::read_info(cipherdir)?;
    match VolumeLock::try_acquire(cipherdir, "mount", Some(mnt)) {
        Ok(l) => Ok(Some(l)),
        Err(LockError::Held(h)) => {
            let mut e = CliError::new(
                MOUNT_FAILED,
                format!("{} is already {h}", cipherdir.display()),
            );
            if let Some(m) = h.mountpoint.filter(|_| h.role.as_deref() == Some("mount")) {
                e = e.hint(format!("unmount it first: dekfs umount {}", m.display()));
            }
            Err(e)
        }
        Err(LockError::Unsupported(why)) => {
            eprintln!(
                "warning: {}: cannot take the volume lock ({why}); nothing stops a second mount",
                cipherdir.display()
            );
            Ok(None)
        }
        Err(LockError::Io(why)) => Err(CliError::new(
            IO,
            format!("cannot lock {}: {why}", cipherdir.display()),
        )),
    }
}

fn exit_error(e: DaemonError) -> CliError {
    let code = match e {
        DaemonError::Volume(_) => CORRUPT,
        DaemonError::Mount(_) => MOUNT_FAILED,
        DaemonError::Session(_) => GENERIC,
        DaemonError::Setup(_) => IO,
    };
    CliError::new(code, e.to_string())
}
