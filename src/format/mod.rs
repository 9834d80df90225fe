//! dekfs v1 on-disk format: constants, the error type and total parsers/serialisers for every
//! on-disk structure. Pure data: must NOT do crypto (MACs are carried as opaque bytes), I/O, or
//! anything that can panic on untrusted input.

mod config;
mod dirmeta;
mod geometry;
mod header;
mod kek_export;
mod kmip;
mod paged;
mod period;
mod reader;
mod slot;
mod tpm2;

pub use config::{
    KekRecord, KekState, PassphraseBody, ProtectorBody, ProtectorRecord, RecoveryBody,
    VolumeConfig, ARGON2_M_MAX_KIB, ARGON2_M_MIN_KIB, ARGON2_P_MAX, ARGON2_P_MIN, ARGON2_T_MAX,
    ARGON2_T_MIN, CONFIG_MAC_LEN, CONFIG_MAGIC, CONFIG_MAX_LEN, KDF_ARGON2ID_V13, MAX_KEKS,
    MAX_PROTECTORS, PROTECTOR_FLAG_CRITICAL, PROTECTOR_KIND_KMIP, PROTECTOR_KIND_PASSPHRASE,
    PROTECTOR_KIND_RECOVERY, PROTECTOR_KIND_TPM2,
};
pub use dirmeta::{DirMeta, DIR_META_MAGIC};
pub use geometry::{block_count, block_offset, cipher_size, plain_size, stored_block_len};
pub use header::{FileHeader, HEADER_MAGIC};
pub use kek_export::{
    KekExport, EXPORT_ALG_KW, EXPORT_ALG_KWP, EXPORT_MAC_LEN, EXPORT_MAGIC, EXPORT_VERSION,
};
pub use kmip::{
    kmip_aad, KmipBody, KMIP_AAD_PREFIX, KMIP_BLOB_LEN, KMIP_BODY_V1, KMIP_IV_LEN,
    KMIP_MAX_SERVERS, KMIP_TAG_LEN,
};
pub use paged::{
    frame_page, page_len, page_sealed, paged_block_len, paged_block_offset, paged_cipher_size,
    paged_page_count, paged_plain_of, FEATURE_PAGED, PAGE, PAGED_BLOCK, PAGE_OVERHEAD, PAGE_PREFIX,
};
pub use period::{
    RotationPeriod, DEFAULT_ROTATION_PERIOD_DAYS, RECORD_KIND_ROTATION_PERIOD,
    ROTATION_PERIOD_MAX_DAYS, ROTATION_PERIOD_MIN_DAYS,
};
pub use slot::{KeySlot, SLOT_LEN, WRAPPED_LEN};
pub use tpm2::{
    mask_of_pcrs, pcrs_of_mask, Tpm2Body, TPM2_ALG_SHA256, TPM2_FLAG_PIN, TPM2_MAX_PRIVATE,
    TPM2_MAX_PUBLIC, TPM2_NAME_LEN, TPM2_NV_FIRST, TPM2_NV_LAST, TPM2_PCR_COUNT, TPM2_TEMPLATE_V1,
    TPM2_TEMPLATE_V2, TPM2_TEMPLATE_V3,
};

pub const HEADER_LEN: usize = 216;
pub const DIR_META_LEN: usize = 224;
pub const CONFIG_NAME: &str = "dekfs.conf";
/// Temporary name used by the atomic config rewrite.
pub const CONFIG_TMP_NAME: &str = "dekfs.conf.tmp";
pub const DIR_META_NAME: &str = "dekfs.dir";
pub const LONGNAME_PREFIX: &str = "dekfs.ln.";
pub const LONGNAME_SUFFIX: &str = ".name";
/// Names longer than this (in encoded form) use the long-name pair.
pub const MAX_SHORT_NAME: usize = 255;
pub const FORMAT_VERSION: u16 = 1;
/// Required-feature bits this reader implements in the config and in file headers (`PAGED`);
/// any other set bit is refused. Directory metadata knows none.
pub const KNOWN_REQUIRED_FEATURES: u32 = FEATURE_PAGED;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    BadMagic,
    UnsupportedVersion(u16),
    UnknownRequiredFeature(u32),
    Truncated,
    TooLarge,
    Invalid(&'static str),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::BadMagic => f.write_str("bad magic"),
            FormatError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            FormatError::UnknownRequiredFeature(b) => {
                write!(f, "unsupported feature (required feature bits {b:#x})")
            }
            FormatError::Truncated => f.write_str("truncated"),
            FormatError::TooLarge => f.write_str("too large"),
            FormatError::Invalid(what) => write!(f, "invalid: {what}"),
        }
    }
}

impl std::error::Error for FormatError {}

pub(crate) fn check_required_features(bits: u32) -> Result<(), FormatError> {
    check_required_features_of(bits, KNOWN_REQUIRED_FEATURES)
}

/// Like `check_required_features` for a structure that knows only the bits of `known`.
pub(crate) fn check_required_features_of(bits: u32, known: u32) -> Result<(), FormatError> {
    let unknown = bits & !known;
    if unknown != 0 {
        return Err(FormatError::UnknownRequiredFeature(unknown));
    }
    Ok(())
}
