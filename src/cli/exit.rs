//! Exit codes and user-facing errors of the CLI. It must not print secrets:
//! messages are built from typed errors that never carry key bytes.

use crate::volume::VolumeError;

pub const OK: i32 = 0;
pub const GENERIC: i32 = 1;
pub const USAGE: i32 = 2;
pub const WRONG_KEY: i32 = 10;
/// The TPM refused to unseal (PCRs changed, wrong PIN, lockout, no TPM) and no other
/// credential was available.
pub const TPM_POLICY: i32 = 11;
pub const NOT_A_VOLUME: i32 = 12;
pub const UNSUPPORTED: i32 = 13;
pub const CORRUPT: i32 = 14;
pub const MOUNT_FAILED: i32 = 15;
pub const IO: i32 = 16;
/// The volume's config is older than one this machine has seen (config rollback).
pub const ROLLBACK: i32 = 17;
/// The KMIP key manager did not release the KEK (unreachable, TLS, key revoked or destroyed,
/// permission denied) and no other credential was available.
pub const KEY_MANAGER: i32 = 18;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub msg: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        CliError {
            code,
            msg: msg.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    pub fn print(&self) {
        eprintln!("dekfs: {}", self.msg);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }
}

impl From<VolumeError> for CliError {
    fn from(e: VolumeError) -> Self {
        let msg = e.to_string();
        match e {
            VolumeError::WrongKey => CliError::new(WRONG_KEY, msg)
                .hint("check the passphrase, or unlock with --recovery-key-file"),
            VolumeError::WrongKeyWithinLimit { .. } => CliError::new(WRONG_KEY, msg).hint(format!(
                "check the passphrase; --allow-kdf-cost or {}=1 tries every record",
                crate::volume::ALLOW_KDF_COST_ENV
            )),
            VolumeError::NoSuchProtector(_) => CliError::new(WRONG_KEY, msg),
            VolumeError::NotAVolume(_) => {
                CliError::new(NOT_A_VOLUME, msg).hint("create one with `dekfs init CIPHERDIR`")
            }
            VolumeError::UnsupportedVersion(_) | VolumeError::UnsupportedFeature(_) => {
                CliError::new(UNSUPPORTED, msg).hint("this volume needs a newer dekfs")
            }
            VolumeError::Corrupt(_) => CliError::new(CORRUPT, msg)
                .hint("the volume config failed verification; restore dekfs.conf from a backup"),
            VolumeError::NotEmpty(_) => CliError::new(USAGE, msg),
            VolumeError::Tpm(r) => CliError::new(TPM_POLICY, msg).hint(r.hint()),
            VolumeError::Kmip(k) => CliError::new(KEY_MANAGER, msg).hint(k.hint()),
            VolumeError::Refused(_) => CliError::new(USAGE, msg),
            VolumeError::Rollback { ref record, .. } => CliError::new(ROLLBACK, msg).hint(format!(
                "if you restored this config from a backup on purpose, --allow-rollback (or {}=1) \
                 accepts it, and data written then is under the old key; `dekfs rekey \
                 --allow-rollback` moves the volume past it (record: {})",
                crate::volume::rollback::ALLOW_ROLLBACK_ENV,
                record
            )),
            VolumeError::Io(_) => CliError::new(IO, msg),
            VolumeError::Crypto(_) => CliError::new(GENERIC, msg),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(IO, e.to_string())
    }
}

pub type CliResult<T> = Result<T, CliError>;
