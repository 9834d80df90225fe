//! The 72-byte key slot shared by file headers and directory metadata. Parsing only: the wrapped
//! bytes are opaque here; unwrapping belongs to crypto.

use super::reader::Reader;
use super::FormatError;

pub const SLOT_LEN: usize = 72;
pub const WRAPPED_LEN: usize = 64;

/// One key slot. `None` in the containing struct means an empty (all-zero) slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// Never 0 (0 marks an empty slot on disk).
    pub kek_version: u32,
    pub wrapped: [u8; WRAPPED_LEN],
}

impl KeySlot {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Option<KeySlot>, FormatError> {
        let kek_version = r.u32()?;
        r.zeros(4, "slot reserved bytes not zero")?;
        let wrapped: [u8; WRAPPED_LEN] = r.array()?;
        if kek_version == 0 {
            if wrapped.iter().any(|&b| b != 0) {
                return Err(FormatError::Invalid("empty slot not all zero"));
            }
            return Ok(None);
        }
        // A real AES-KW output is all zero with negligible probability; rejecting it makes a
        // flipped version bit in an empty slot detectable instead of silently ignored.
        if wrapped.iter().all(|&b| b == 0) {
            return Err(FormatError::Invalid("non-empty slot with zero wrapped key"));
        }
        Ok(Some(KeySlot {
            kek_version,
            wrapped,
        }))
    }

    pub(crate) fn write(slot: &Option<KeySlot>, out: &mut Vec<u8>) {
        match slot {
            None => out.extend_from_slice(&[0u8; SLOT_LEN]),
            Some(s) => {
                out.extend_from_slice(&s.kek_version.to_le_bytes());
                out.extend_from_slice(&[0u8; 4]);
                out.extend_from_slice(&s.wrapped);
            }
        }
    }
}

/// At least one slot must hold a key, or the object can never be opened.
pub(crate) fn check_slots(slots: &[Option<KeySlot>; 2]) -> Result<(), FormatError> {
    if slots.iter().all(Option::is_none) {
        return Err(FormatError::Invalid("no key slot in use"));
    }
    Ok(())
}
