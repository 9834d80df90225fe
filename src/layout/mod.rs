//! The one meaning of a cipher directory's entries: plaintext name <-> backing
//! name (short form, long form `dekfs.ln.<H>` with its `.name` record),
//! classification of every backing entry (reserved, long-name record, junk),
//! recovery names, and the small metadata files (dekfs.dir, long-name
//! records) read and written through directory descriptors only. The daemon,
//! fsck and every tree walker use it. It must not open anything by path (a
//! concurrent rename online would redirect it), hold keys beyond a borrow,
//! log, or touch file contents.

mod classify;
mod io;
mod names;
mod recovery;
#[cfg(test)]
mod tests;

pub use classify::{classify, Class, Reserved};
pub use io::{
    list, only_dir_meta, open_dir, read_dir_meta, read_record, read_small, write_small_atomic,
    RawEntry,
};
pub use names::{decode, decode_with, parse_record, BackingName, Damage, Decoded};
pub use recovery::{find_recovery, is_recovery_name, recovery_name, RECOVERY_PREFIX};

pub use crate::format::{
    CONFIG_NAME, CONFIG_TMP_NAME, DIR_META_LEN, DIR_META_NAME, LONGNAME_PREFIX, LONGNAME_SUFFIX,
    MAX_SHORT_NAME,
};

/// Every backing name dekfs itself creates besides entries starts with this.
pub const RESERVED_PREFIX: &str = "dekfs.";
/// Where `fsck --repair` moves corrupt entries.
pub const QUARANTINE_DIR: &str = "dekfs.quarantine";
/// Largest long-name record: the encoded form of a 255-byte name (16-byte
/// SIV tag + 255 bytes in base64url without padding). Anything larger cannot
/// be a name dekfs wrote.
pub const MAX_LONG_RECORD: usize = (4 * (16 + crate::crypto::names::MAX_NAME_LEN)).div_ceil(3);
/// Length of H in `dekfs.ln.<H>` (base64url of a SHA-256).
pub const LONG_HASH_LEN: usize = 43;
