//! What a backing entry name is, from the name alone: an entry in short or
//! long form, a long-name record, dekfs's own metadata, or junk. It must not
//! look at the disk or at keys; whether an entry authenticates is decided
//! by `names::decode`.

use super::{
    CONFIG_NAME, CONFIG_TMP_NAME, DIR_META_NAME, LONGNAME_PREFIX, LONGNAME_SUFFIX, QUARANTINE_DIR,
    RESERVED_PREFIX,
};

/// The kind of one backing directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class<'a> {
    /// `.` or `..`.
    Dot,
    /// A short-form entry: the name is the encoded name itself (it may still
    /// fail to decode, which is damage, not junk).
    Short(&'a str),
    /// A long-form entry `dekfs.ln.<hash>`; `hash` is checked against the
    /// entry's record when it is decoded.
    Long { hash: &'a str },
    /// The record `dekfs.ln.<hash>.name` of a long-form entry.
    LongRecord { hash: &'a str },
    /// dekfs's own metadata, never an entry.
    Reserved(Reserved),
    /// Not dekfs's and not an entry: contains a `.`, which base64url never
    /// produces. Never shown; left alone.
    Junk,
}

/// The reserved names dekfs writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Config,
    ConfigTemp,
    DirMeta,
    /// `dekfs.dir.tmp`, left by a crash during an atomic rewrite.
    DirMetaTemp,
    /// `dekfs.ln.<hash>.name.tmp`, left by a crash while writing a record.
    RecordTemp,
    Quarantine,
    /// Any other `dekfs.` name (rename scratch names, future metadata).
    Other,
}

/// Classifies one backing name. Total: every string has exactly one class.
pub fn classify(name: &str) -> Class<'_> {
    if name == "." || name == ".." {
        return Class::Dot;
    }
    if let Some(rest) = name.strip_prefix(LONGNAME_PREFIX) {
        if !rest.is_empty() && !rest.contains('.') {
            return Class::Long { hash: rest };
        }
        if let Some(hash) = rest.strip_suffix(LONGNAME_SUFFIX) {
            if !hash.is_empty() && !hash.contains('.') {
                return Class::LongRecord { hash };
            }
        }
        if rest.ends_with(".name.tmp") {
            return Class::Reserved(Reserved::RecordTemp);
        }
        return Class::Reserved(Reserved::Other);
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Class::Reserved(match name {
            CONFIG_NAME => Reserved::Config,
            CONFIG_TMP_NAME => Reserved::ConfigTemp,
            DIR_META_NAME => Reserved::DirMeta,
            QUARANTINE_DIR => Reserved::Quarantine,
            n if n.strip_prefix(DIR_META_NAME) == Some(".tmp") => Reserved::DirMetaTemp,
            _ => Reserved::Other,
        });
    }
    if name.contains('.') || name.is_empty() {
        return Class::Junk;
    }
    Class::Short(name)
}

/// `dekfs.ln.<hash>`.
pub(super) fn long_entry_name(hash: &str) -> String {
    format!("{LONGNAME_PREFIX}{hash}")
}

/// `dekfs.ln.<hash>.name`.
pub(super) fn record_name(hash: &str) -> String {
    format!("{LONGNAME_PREFIX}{hash}{LONGNAME_SUFFIX}")
}
