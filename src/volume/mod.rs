//! Volume layer: config file I/O, protectors, init, unlock and status info; the only module of
//! this layer that touches the disk. Must NOT handle file contents or names (the filesystem core
//! does) or hold raw key bytes itself (they stay in `crate::secret` types).

mod audit_hook;
mod config_io;
mod export;
mod info;
mod init;
mod kmip;
mod kmip_remote;
pub mod lock;
mod manage;
mod period;
mod policy;
#[cfg(test)]
mod policy_tests;
mod protector;
pub mod rollback;
pub mod rotate;
#[cfg(test)]
mod rotate_tests;
#[cfg(test)]
mod tests;
mod tpm2;
mod unlock;

pub use config_io::{read_config_bytes, write_config_atomic};
pub use export::{
    export_blob, export_kek, import_kek, new_transport_key, parse_transport_key,
    TRANSPORT_KEY_PREFIX,
};
pub use info::read_info;
pub use init::{create_v1_layout, init, init_with_period};
pub use kmip::{rewrap_kmip_record, unlock_kmip, KmipKeyChoice, KmipWrap};
pub use kmip_remote::{destroy_remote_key, reseal_kmip, RemoteOutcome};
pub use lock::{ConfigLock, LockError, VolumeLock};
pub use manage::{
    add_protector, erase_nv_shares, nv_shares_of, remove_protector, reseal_tpm2, Added,
    NewProtector,
};
pub use period::{kek_age, set_rotation_period, KekAge};
pub use policy::{UnlockPolicy, ALLOW_KDF_COST_ENV};
pub use tpm2::{
    init_tpm2, init_tpm2_with_period, nv_shares, unlock_tpm2, Tpm2InitOptions, Tpm2Seal,
};
pub use unlock::{unlock, unlock_with, unlock_with_keks};

use crate::crypto::{CryptoError, VolumeKeys};
use crate::format::FormatError;
use crate::secret::{RecoveryKey, SecretBytes};
use std::path::{Path, PathBuf};

impl From<crate::tpm::TpmRefusal> for VolumeError {
    fn from(r: crate::tpm::TpmRefusal) -> Self {
        VolumeError::Tpm(r)
    }
}

/// What the user presents to unlock a volume.
#[derive(Debug)]
pub enum Credential {
    Passphrase(SecretBytes),
    RecoveryKey(RecoveryKey),
}

impl Credential {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Credential::Passphrase(_) => "passphrase",
            Credential::RecoveryKey(_) => "recovery key",
        }
    }
}

/// Argon2id cost. Default is RFC 9106's second recommended option (64 MiB, t=3, p=4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_lanes: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 65536,
            t_cost: 3,
            p_lanes: 4,
        }
    }
}

#[derive(Debug)]
pub struct InitOptions {
    pub passphrase: SecretBytes,
    pub kdf: KdfParams,
    /// Also create a recovery-key protector (the CLI defaults to true).
    pub recovery_key: bool,
}

#[derive(Debug)]
pub struct InitOutcome {
    pub volume_id: [u8; 16],
    /// Shown to the user exactly once; never stored unwrapped.
    pub recovery_key: Option<RecoveryKey>,
}

pub struct UnlockedVolume {
    pub keys: std::sync::Arc<VolumeKeys>,
    pub info: VolumeInfo,
}

/// Non-secret description of a volume (from the config; unauthenticated when produced by
/// `read_info`, MAC-verified when produced by `unlock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub volume_id: [u8; 16],
    pub format_version: u16,
    pub created: u64,
    /// (version, created unix seconds, is the active KEK)
    pub keks: Vec<(u32, u64, bool)>,
    pub protectors: Vec<ProtectorInfo>,
    /// The stored rotation period in days; None: the default (365).
    pub rotation_period_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectorInfo {
    /// "passphrase", "recovery-key", "tpm2", "kmip" or "unknown".
    pub kind: &'static str,
    /// protector_id as 32 lowercase hex digits.
    pub id: String,
    pub kek_version: u32,
    pub created: u64,
    pub kdf: Option<KdfParams>,
    /// For tpm2 protectors: what the record says (unauthenticated, like the rest).
    pub tpm2: Option<Tpm2Info>,
    /// For kmip protectors: what the record says (unauthenticated).
    pub kmip: Option<KmipInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmipInfo {
    /// The manager's identifier of the wrapping key; empty if the body does not parse.
    pub key_uid: String,
    /// `host:port,...` as recorded.
    pub servers: String,
    /// Why the body does not parse, if it does not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm2Info {
    /// PCR indices in the policy (sha256 bank); empty if the body does not parse.
    pub pcrs: Vec<u8>,
    pub pin: bool,
    pub template_version: u8,
    /// Why the body does not parse, if it does not.
    pub error: Option<String>,
}

#[derive(Debug)]
pub enum VolumeError {
    /// No dekfs.conf, or it is not a dekfs config (bad magic).
    NotAVolume(PathBuf),
    UnsupportedVersion(u16),
    UnsupportedFeature(u32),
    /// No protector of the credential's kind opened: wrong passphrase / recovery key.
    WrongKey,
    /// No record of the credential's kind opened among those the unlock
    /// limit let us try; the rest were not tried.
    WrongKeyWithinLimit {
        kind: &'static str,
        tried: usize,
        total: usize,
    },
    /// The volume has no protector of the credential's kind.
    NoSuchProtector(&'static str),
    /// MAC failure, malformed record, parameters out of bounds (the text says which).
    Corrupt(String),
    NotEmpty(PathBuf),
    /// The TPM did not release the KEK (the reason says why and what to do).
    Tpm(crate::tpm::TpmRefusal),
    /// The KMIP key manager did not unwrap (or wrap) the KEK; the reason says why.
    Kmip(crate::kmip::KmipError),
    /// A protector change that would endanger the volume (e.g. removing the last one).
    Refused(String),
    /// The config's active KEK is older than the one this machine has seen for the volume
    /// (an old dekfs.conf was put back); `record` is the local record's path.
    Rollback {
        config: u32,
        seen: u32,
        record: String,
    },
    Io(std::io::Error),
    Crypto(CryptoError),
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeError::NotAVolume(p) => {
                write!(f, "{}: not a dekfs volume (no valid dekfs.conf)", p.display())
            }
            VolumeError::UnsupportedVersion(v) => write!(
                f,
                "volume format version {v} is not supported by this dekfs (it reads version 1)"
            ),
            VolumeError::UnsupportedFeature(bits) => write!(
                f,
                "volume uses an unsupported feature (required feature bits {bits:#x}); upgrade dekfs"
            ),
            VolumeError::WrongKey => f.write_str("wrong passphrase or recovery key"),
            VolumeError::WrongKeyWithinLimit { kind, tried, total } => write!(
                f,
                "wrong {kind}: none of the first {tried} of {total} {kind} records opens; \
                 the others were not tried (unlock limit)"
            ),
            VolumeError::NoSuchProtector(kind) => write!(f, "this volume has no {kind} protector"),
            VolumeError::Corrupt(what) => {
                write!(f, "volume is corrupt or has been tampered with: {what}")
            }
            VolumeError::NotEmpty(p) => write!(
                f,
                "{}: directory is not empty (init needs an empty directory)",
                p.display()
            ),
            VolumeError::Tpm(r) => write!(f, "TPM protector refused: {r}"),
            VolumeError::Kmip(e) => write!(f, "KMIP protector: {e}"),
            VolumeError::Refused(why) => f.write_str(why),
            VolumeError::Rollback { config, seen, .. } => write!(
                f,
                "config rollback: dekfs.conf has KEK version {config}, but this machine has \
                 seen version {seen} of this volume (an older config was put back)"
            ),
            VolumeError::Io(e) => write!(f, "I/O error: {e}"),
            VolumeError::Crypto(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VolumeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VolumeError::Io(e) => Some(e),
            VolumeError::Crypto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::kmip::KmipError> for VolumeError {
    fn from(e: crate::kmip::KmipError) -> Self {
        VolumeError::Kmip(e)
    }
}

impl From<std::io::Error> for VolumeError {
    fn from(e: std::io::Error) -> Self {
        VolumeError::Io(e)
    }
}

impl From<CryptoError> for VolumeError {
    fn from(e: CryptoError) -> Self {
        VolumeError::Crypto(e)
    }
}

/// Maps a config parse failure to the user-facing error.
pub(crate) fn config_format_error(cipherdir: &Path, e: FormatError) -> VolumeError {
    match e {
        FormatError::BadMagic => VolumeError::NotAVolume(cipherdir.to_path_buf()),
        FormatError::UnsupportedVersion(v) => VolumeError::UnsupportedVersion(v),
        FormatError::UnknownRequiredFeature(b) => VolumeError::UnsupportedFeature(b),
        other => VolumeError::Corrupt(format!("dekfs.conf: {other}")),
    }
}
