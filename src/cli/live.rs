//! `dekfs lock` and `dekfs unlock`: talk to a mounted volume's daemon over
//! its control socket. Unlock reads the same credentials as mount, unwraps
//! the KEKs here (Argon2id and the TPM run at the caller's rights) and hands
//! them to the daemon, which checks them against the config. It must not
//! print or log key material, and never sends anything before the socket's
//! listener has been checked (control::Client does).

use super::exit::{CliError, CliResult, GENERIC, NOT_A_VOLUME, UNSUPPORTED, USAGE, WRONG_KEY};
use super::unlock::TpmOpts;
use super::KeySource;
use crate::control::{Client, ClientError, ErrorCode, Response};
use crate::mount_opts::MountOptions;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct LockArgs {
    /// Mount point of the volume to lock
    mountpoint: PathBuf,
}

#[derive(Args)]
pub struct UnlockArgs {
    /// Mount point of the locked volume
    mountpoint: PathBuf,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
    /// Credential options as for mount: passfile=FILE, keysource=..., tpm_tcti=TCTI
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
}

/// The mountpoint as the daemon named its socket: the parent canonicalised,
/// the last component kept, so a locked mount is never stat'ed.
pub(super) fn mountpoint(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|d| d.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// A client error as the user sees it, with the exit code scripts match on.
pub(super) fn client_error(e: ClientError, mnt: &Path) -> CliError {
    let msg = e.to_string();
    match e {
        ClientError::NoDaemon(_) => CliError::new(NOT_A_VOLUME, msg).hint(format!(
            "is a dekfs volume mounted at {}? see `dekfs status {}`",
            mnt.display(),
            mnt.display()
        )),
        ClientError::VersionMismatch(_) => CliError::new(UNSUPPORTED, msg),
        ClientError::Daemon {
            code: ErrorCode::WrongKey,
            ..
        } => CliError::new(WRONG_KEY, msg).hint(
            "check the passphrase, or unlock with --recovery-key-file; the volume stays locked",
        ),
        ClientError::NoRuntimeDir(_) => CliError::new(USAGE, msg),
        _ => CliError::new(GENERIC, msg),
    }
}

fn connect(mnt: &Path) -> CliResult<Client> {
    Client::connect(mnt).map_err(|e| client_error(e, mnt))
}

pub fn lock(a: LockArgs) -> CliResult<()> {
    let mnt = mountpoint(&a.mountpoint);
    let mut c = connect(&mnt)?;
    match c.call(&crate::control::Request::Lock, &mut |_| {}) {
        Ok(Response::Done { message }) => {
            eprintln!("dekfs: {}: {message}", mnt.display());
            Ok(())
        }
        Ok(other) => Err(CliError::new(
            GENERIC,
            format!("unexpected answer from the daemon: {other:?}"),
        )),
        Err(e) => Err(client_error(e, &mnt)),
    }
}

pub fn unlock(a: UnlockArgs) -> CliResult<()> {
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
    let mnt = mountpoint(&a.mountpoint);
    let mut c = connect(&mnt)?;
    let status = c.status().map_err(|e| client_error(e, &mnt))?;
    if !status.locked {
        eprintln!("dekfs: {}: not locked", mnt.display());
        return Ok(());
    }
    // The daemon names its own cipher directory: no need to stat the mount.
    let cipherdir = PathBuf::from(&status.cipherdir);
    let unlocked = super::keysource::unlock_for_mount(&cipherdir, &mnt, &key, &a.tpm, &options)
        .map_err(|e| match e.code {
            WRONG_KEY => e.hint(
                "check the passphrase, or unlock with --recovery-key-file; the volume stays locked",
            ),
            _ => e,
        })?;
    let keks = unlocked.keys.keks_for_handoff();
    match c.unlock(&keks) {
        Ok(_) => {
            eprintln!("dekfs: {}: unlocked", mnt.display());
            Ok(())
        }
        Err(ClientError::Daemon {
            code: ErrorCode::NotLocked,
            ..
        }) => {
            eprintln!("dekfs: {}: not locked", mnt.display());
            Ok(())
        }
        Err(e) => Err(client_error(e, &mnt)),
    }
}
