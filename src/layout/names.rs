//! Plaintext name <-> backing name: the short/long decision on the way in and
//! the checks a reader makes on the way out (record hash, a short name in
//! long form refused, AES-SIV authentication). It must not decide what a
//! caller does with damage (the daemon shows a recovery name, fsck reports).

use super::classify::{classify, long_entry_name, record_name, Class};
use super::io::{read_record, write_small_atomic};
use super::{MAX_LONG_RECORD, MAX_SHORT_NAME};
use crate::crypto::names::{long_name_hash, MAX_NAME_LEN};
use crate::crypto::DirKey;
use rustix::io::Errno;
use std::os::fd::AsFd;

/// The backing form of one plaintext name in one directory.
pub enum BackingName {
    Short(String),
    /// `hashed` is the on-disk entry; `full` goes into the `.name` record.
    Long {
        hashed: String,
        full: String,
    },
}

impl BackingName {
    /// The entry's name in the backing directory.
    pub fn name(&self) -> &str {
        match self {
            BackingName::Short(s) => s,
            BackingName::Long { hashed, .. } => hashed,
        }
    }

    /// Encrypts `plain` under the directory key and picks the form.
    pub fn encode(dir: &DirKey, plain: &[u8]) -> rustix::io::Result<BackingName> {
        if plain.len() > MAX_NAME_LEN {
            return Err(Errno::NAMETOOLONG);
        }
        if plain.is_empty() || plain.contains(&b'/') || plain.contains(&0) {
            return Err(Errno::INVAL);
        }
        let enc = dir.encrypt_name(plain).map_err(|_| Errno::IO)?;
        Ok(Self::from_encoded(enc))
    }

    /// The one short/long rule: the encoded name itself if it fits in a
    /// backing name, else `dekfs.ln.<H>` with the encoded name in a record.
    pub fn from_encoded(enc: String) -> BackingName {
        if enc.len() <= MAX_SHORT_NAME {
            return BackingName::Short(enc);
        }
        BackingName::Long {
            hashed: long_entry_name(&long_name_hash(&enc)),
            full: enc,
        }
    }

    /// `dekfs.ln.<H>.name` for the long form.
    pub fn record_name(&self) -> Option<String> {
        match self {
            BackingName::Short(_) => None,
            BackingName::Long { full, .. } => Some(record_name(&long_name_hash(full))),
        }
    }

    /// Long names need their record on disk before the entry itself, so a
    /// crash never leaves an entry without a name.
    pub fn write_record(&self, dir: &impl AsFd) -> rustix::io::Result<()> {
        if let (BackingName::Long { full, .. }, Some(rec)) = (self, self.record_name()) {
            write_small_atomic(dir, &rec, full.as_bytes())?;
        }
        Ok(())
    }

    /// Removes the long-name record once its entry is gone.
    pub fn remove_record(&self, dir: &impl AsFd) {
        if let Some(rec) = self.record_name() {
            let _ = rustix::fs::unlinkat(dir, rec.as_str(), rustix::fs::AtFlags::empty());
        }
    }
}

/// Why an entry's name cannot be read: damage or tampering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    RecordMissing,
    RecordTooLarge,
    RecordNotAscii,
    RecordHashMismatch,
    /// The record holds a name short enough for the short form: dekfs never
    /// writes that, and accepting it would let one name appear twice.
    ShortNameInLongForm,
    RecordUnreadable(Errno),
    NameFailedAuthentication,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::RecordMissing => f.write_str("long-name record missing"),
            Damage::RecordTooLarge => f.write_str("long-name record too large"),
            Damage::RecordNotAscii => f.write_str("long-name record is not ASCII"),
            Damage::RecordHashMismatch => f.write_str("long-name record does not match its hash"),
            Damage::ShortNameInLongForm => {
                f.write_str("long-form entry holds a name that fits the short form")
            }
            Damage::RecordUnreadable(e) => write!(f, "long-name record unreadable: {e}"),
            Damage::NameFailedAuthentication => f.write_str("entry name failed authentication"),
        }
    }
}

/// One backing name, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Name(Vec<u8>),
    /// Not an entry (metadata, a record, junk): never shown.
    Internal,
    Unreadable(Damage),
}

/// Decodes one backing entry name of the directory open at `dirfd`.
pub fn decode(dir: &DirKey, dirfd: &impl AsFd, cipher: &str) -> Decoded {
    decode_with(dir, cipher, |hash| read_record(dirfd, hash))
}

/// `decode` with the record of a long-form entry supplied by `record`
/// (called only for long-form names): the whole decoder without I/O, which
/// is what the fuzz targets drive.
pub fn decode_with(
    dir: &DirKey,
    cipher: &str,
    record: impl FnOnce(&str) -> Result<String, Damage>,
) -> Decoded {
    let encoded = match classify(cipher) {
        Class::Short(s) => s.to_owned(),
        Class::Long { hash } => match record(hash) {
            Ok(full) => full,
            Err(d) => return Decoded::Unreadable(d),
        },
        Class::Dot | Class::LongRecord { .. } | Class::Reserved(_) | Class::Junk => {
            return Decoded::Internal
        }
    };
    match dir.decrypt_name(&encoded) {
        Ok(p) => Decoded::Name(p),
        Err(_) => Decoded::Unreadable(Damage::NameFailedAuthentication),
    }
}

/// Checks a long-name record's bytes against the hash in its entry's name:
/// the encoded name it holds, or why a reader must refuse it.
pub fn parse_record(hash: &str, bytes: Vec<u8>) -> Result<String, Damage> {
    if bytes.len() > MAX_LONG_RECORD {
        return Err(Damage::RecordTooLarge);
    }
    let full = String::from_utf8(bytes).map_err(|_| Damage::RecordNotAscii)?;
    if !full.is_ascii() {
        return Err(Damage::RecordNotAscii);
    }
    if long_name_hash(&full) != hash {
        return Err(Damage::RecordHashMismatch);
    }
    if full.len() <= MAX_SHORT_NAME {
        return Err(Damage::ShortNameInLongForm);
    }
    Ok(full)
}
