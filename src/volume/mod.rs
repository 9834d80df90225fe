//! Volume stub.
#![allow(unused)]
use crate::crypto::{CryptoError, VolumeKeys};
use crate::secret::{RecoveryKey, SecretBytes};
use std::path::{Path, PathBuf};

pub enum Credential {
    Passphrase(SecretBytes),
    RecoveryKey(RecoveryKey),
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_lanes: u32,
}
impl Default for KdfParams {
    fn default() -> Self {
        KdfParams { m_cost_kib: 65536, t_cost: 3, p_lanes: 4 }
    }
}
pub struct InitOptions {
    pub passphrase: SecretBytes,
    pub kdf: KdfParams,
    pub recovery_key: bool,
}
pub struct InitOutcome {
    pub volume_id: [u8; 16],
    pub recovery_key: Option<RecoveryKey>,
}
pub fn init(cipherdir: &Path, opts: InitOptions) -> Result<InitOutcome, VolumeError> {
    todo!()
}
pub fn unlock(cipherdir: &Path, cred: &Credential) -> Result<UnlockedVolume, VolumeError> {
    todo!()
}
pub struct UnlockedVolume {
    pub keys: std::sync::Arc<VolumeKeys>,
    pub info: VolumeInfo,
}
#[derive(Debug, Clone)]
pub struct VolumeInfo {
    pub volume_id: [u8; 16],
    pub format_version: u16,
    pub created: u64,
    pub keks: Vec<(u32, u64, bool)>,
    pub protectors: Vec<ProtectorInfo>,
}
#[derive(Debug, Clone)]
pub struct ProtectorInfo {
    pub kind: &'static str,
    pub id: String,
    pub kek_version: u32,
    pub created: u64,
    pub kdf: Option<KdfParams>,
}
pub fn read_info(cipherdir: &Path) -> Result<VolumeInfo, VolumeError> {
    todo!()
}
#[derive(Debug)]
pub enum VolumeError {
    NotAVolume(PathBuf),
    UnsupportedVersion(u16),
    UnsupportedFeature(u32),
    WrongKey,
    NoSuchProtector(&'static str),
    Corrupt(String),
    NotEmpty(PathBuf),
    Io(std::io::Error),
    Crypto(CryptoError),
}
impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for VolumeError {}
