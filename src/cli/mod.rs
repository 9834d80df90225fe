//! Command-line front end: argument parsing and dispatch to the commands.
//! It must not implement filesystem or key logic itself.

mod ask_password;
mod audit;
mod destroy;
mod exit;
mod fsck;
mod fsck_report;
mod init;
mod key;
mod keysource;
mod kmip;
mod live;
mod mount;
mod period;
mod protector;
mod rekey;
mod rekey_data;
mod rekey_online;
mod secret_input;
mod shred;
mod shred_online;
mod shred_purge;
mod status;
mod umount;
mod unlock;

use clap::{Args, Parser, Subcommand};
pub use exit::{CliError, CliResult};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "dekfs",
    version,
    about = "Encrypting filesystem with per-file DEKs, directory keys and a rotatable KEK"
)]
struct Cli {
    /// Audit log file (default: dekfs.audit inside CIPHERDIR; also $DEKFS_AUDIT_LOG)
    #[arg(long, global = true, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// Record plaintext paths in the audit log (default: ids only; also $DEKFS_AUDIT_NAMES=1)
    #[arg(long, global = true)]
    audit_names: bool,
    /// Accept a dekfs.conf older than one this machine has seen (a restored backup, or an
    /// attacker's rollback: data written then is under the old key; also $DEKFS_ALLOW_ROLLBACK=1)
    #[arg(long, global = true)]
    allow_rollback: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the passphrase (or recovery key) comes from; TTY prompt by default.
#[derive(Args, Clone, Default)]
pub struct KeySource {
    /// Read the passphrase from the first line of FILE
    #[arg(long, value_name = "FILE", conflicts_with_all = ["passphrase_fd", "recovery_key_file"])]
    pub passfile: Option<PathBuf>,
    /// Read the passphrase from file descriptor N
    #[arg(long, value_name = "N", conflicts_with = "recovery_key_file")]
    pub passphrase_fd: Option<i32>,
    /// Unlock with the recovery key stored in FILE instead of a passphrase
    #[arg(long, value_name = "FILE")]
    pub recovery_key_file: Option<PathBuf>,
    /// Run the passphrase KDF even above this machine's unlock limit (also $DEKFS_ALLOW_KDF_COST=1)
    #[arg(long)]
    pub allow_kdf_cost: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new volume in an empty CIPHERDIR
    Init(init::InitArgs),
    /// Mount CIPHERDIR at MOUNTPOINT; returns once the mount is live
    Mount(mount::MountArgs),
    /// Unmount a dekfs mount and wait for its daemon to exit
    Umount(umount::UmountArgs),
    /// Show a volume's identity, KEKs and protectors, and a mounted daemon's live figures
    Status(status::StatusArgs),
    /// Wipe a mounted volume's keys from memory; the mount stays, access fails until unlock
    Lock(live::LockArgs),
    /// Give a locked mounted volume its keys back (same credentials as mount)
    Unlock(live::UnlockArgs),
    /// Verify every config record, directory key, name, header and block of a volume
    Fsck(fsck::FsckArgs),
    /// Add, remove, list or reseal protectors (passphrase, recovery key, TPM2)
    #[command(subcommand)]
    Protector(protector::ProtectorCmd),
    /// Rotate the volume key (KEK) and destroy the old one
    ///
    /// A new KEK for every protector kept, every header and directory key
    /// rewrapped, then the old KEK destroyed. Online on a mounted volume
    /// (give its mount point: the daemon rewraps while it serves), offline
    /// on an unmounted one; crash-safe: --resume (or the next mount) finishes.
    /// Protects against a leaked old passphrase, recovery key or TPM blob
    /// together with today's ciphertext; not against a pre-rotation copy of
    /// the whole cipher directory (file keys are unchanged).
    Rekey(rekey::RekeyArgs),
    /// Show or set the volume's KEK rotation period (days; default 365)
    Period(period::PeriodArgs),
    /// Cryptographically erase a file or directory tree (of a mounted volume through its daemon)
    Shred(shred::ShredArgs),
    /// Erase a whole volume by destroying every copy of its key
    Destroy(destroy::DestroyArgs),
    /// Escrow and migration: transport keys, KEK export and import
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// List or verify the volume's audit log
    Audit(audit::AuditArgs),
}

/// The CLI definition, for generating man pages and completions at build time.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    // Before any credential is read: no core dump may ever hold one.
    crate::secret::disable_core_dumps();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    crate::audit::configure(cli.audit_log.clone(), cli.audit_names);
    crate::volume::rollback::allow_rollback(cli.allow_rollback);
    let r = match cli.cmd {
        Cmd::Init(a) => init::run(a),
        Cmd::Mount(a) => mount::run(a),
        Cmd::Umount(a) => umount::run(a),
        Cmd::Status(a) => status::run(a),
        Cmd::Lock(a) => live::lock(a),
        Cmd::Unlock(a) => live::unlock(a),
        Cmd::Fsck(a) => fsck::run(a),
        Cmd::Protector(c) => protector::run(c),
        Cmd::Rekey(a) => rekey::run(a),
        Cmd::Period(a) => period::run(a),
        Cmd::Shred(a) => shred::run(a),
        Cmd::Destroy(a) => destroy::run(a),
        Cmd::Key(c) => key::run(c),
        Cmd::Audit(a) => audit::run(a),
    };
    match r {
        Ok(()) => exit::OK,
        Err(e) => {
            e.print();
            e.code
        }
    }
}
