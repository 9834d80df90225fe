//! The rotation-period record of `dekfs.conf` (record kind 5, a non-critical record in the
//! protector list that protects nothing): parse/serialise only. Must NOT interpret dates or
//! decide whether a rotation is due (the volume and CLI layers do), nor accept a byte string
//! with two meanings.

use super::reader::Reader;
use super::FormatError;

/// Record kind of the rotation period (kinds 1..=3 are protectors, 4 is reserved for KMIP).
pub const RECORD_KIND_ROTATION_PERIOD: u8 = 5;
/// Body: u32 days, u32 reserved.
pub const ROTATION_PERIOD_BODY_LEN: u16 = 8;
pub const ROTATION_PERIOD_MIN_DAYS: u32 = 1;
/// A hundred years: beyond it a period means "never", which is not a period.
pub const ROTATION_PERIOD_MAX_DAYS: u32 = 36_500;
/// What a volume without the record uses.
pub const DEFAULT_ROTATION_PERIOD_DAYS: u32 = 365;

/// How often the volume's KEK should be rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPeriod {
    pub days: u32,
    /// Record flags as read (0 when written by dekfs; the critical bit is allowed, since this
    /// reader understands the kind).
    pub flags: u8,
    /// A KEK version of the config (the active one when written). It binds nothing; it is there
    /// because every record of the list must name a KEK record. Serialising re-points it to the
    /// active KEK when that version has left the config.
    pub kek_version: u32,
    /// When the period was set (unix seconds).
    pub created: u64,
    /// Records of the list before this one, so that a parsed config serialises to the same
    /// bytes (the MAC is over the bytes as read).
    pub position: usize,
}

impl RotationPeriod {
    /// A new record at the end of the list.
    pub fn new(days: u32, kek_version: u32, created: u64) -> Result<RotationPeriod, FormatError> {
        check_days(days)?;
        Ok(RotationPeriod {
            days,
            flags: 0,
            kek_version,
            created,
            position: usize::MAX,
        })
    }
}

fn check_days(days: u32) -> Result<(), FormatError> {
    if (ROTATION_PERIOD_MIN_DAYS..=ROTATION_PERIOD_MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(FormatError::Invalid(
            "rotation period outside 1..=36500 days",
        ))
    }
}

/// The rest of a kind-5 record, after the 32-byte fixed part the caller has read.
pub(super) fn parse_body(
    r: &mut Reader<'_>,
    flags: u8,
    body_len: u16,
    kek_version: u32,
    created: u64,
    protector_id: &[u8; 16],
    position: usize,
) -> Result<RotationPeriod, FormatError> {
    if body_len != ROTATION_PERIOD_BODY_LEN {
        return Err(FormatError::Invalid("rotation period record body length"));
    }
    if protector_id.iter().any(|&b| b != 0) {
        return Err(FormatError::Invalid("rotation period record id not zero"));
    }
    let days = r.u32()?;
    r.zeros(4, "rotation period reserved bytes not zero")?;
    check_days(days)?;
    Ok(RotationPeriod {
        days,
        flags,
        kek_version,
        created,
        position,
    })
}

/// Appends the whole record, naming KEK `kek_version`.
pub(super) fn write(p: &RotationPeriod, kek_version: u32, v: &mut Vec<u8>) {
    v.push(RECORD_KIND_ROTATION_PERIOD);
    v.push(p.flags);
    v.extend_from_slice(&ROTATION_PERIOD_BODY_LEN.to_le_bytes());
    v.extend_from_slice(&kek_version.to_le_bytes());
    v.extend_from_slice(&p.created.to_le_bytes());
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(&p.days.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
}

#[cfg(test)]
#[path = "period_tests.rs"]
mod tests;
