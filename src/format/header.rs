//! File header (216 bytes at offset 0 of every non-empty regular file): parse/serialise only.
//! Must NOT compute or verify the MAC or unwrap slots (crypto does that with these fields).

use super::reader::Reader;
use super::slot::{check_slots, KeySlot};
use super::{check_required_features, FormatError, FORMAT_VERSION, HEADER_LEN};

pub const HEADER_MAGIC: [u8; 4] = *b"DKFH";
/// Bytes covered by the header MAC: everything before the MAC field.
pub const HEADER_MAC_INPUT_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub required_features: u32,
    pub optional_features: u32,
    pub file_id: [u8; 16],
    /// Block encryptions reserved under this DEK so far (nonce budget).
    pub nonce_reserved: u64,
    pub mac: [u8; 32],
    pub slots: [Option<KeySlot>; 2],
}

impl FileHeader {
    /// Parses exactly `HEADER_LEN` bytes; longer or shorter input is refused.
    pub fn parse(bytes: &[u8]) -> Result<FileHeader, FormatError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != HEADER_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if bytes.len() > HEADER_LEN {
            return Err(FormatError::TooLarge);
        }
        if r.u16()? != HEADER_LEN as u16 {
            return Err(FormatError::Invalid("header length field"));
        }
        let required_features = r.u32()?;
        check_required_features(required_features)?;
        let optional_features = r.u32()?;
        let file_id = r.array()?;
        let nonce_reserved = r.u64()?;
        let mac = r.array()?;
        let slots = [KeySlot::parse(&mut r)?, KeySlot::parse(&mut r)?];
        r.finish()?;
        check_slots(&slots)?;
        Ok(FileHeader {
            required_features,
            optional_features,
            file_id,
            nonce_reserved,
            mac,
            slots,
        })
    }

    /// Whether the content uses the paged layout (required feature `PAGED`).
    pub fn is_paged(&self) -> bool {
        self.required_features & super::FEATURE_PAGED != 0
    }

    /// The first 40 bytes, i.e. exactly what the header MAC covers.
    pub fn mac_input(&self) -> [u8; HEADER_MAC_INPUT_LEN] {
        let mut out = [0u8; HEADER_MAC_INPUT_LEN];
        out[0..4].copy_from_slice(&HEADER_MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        out[8..12].copy_from_slice(&self.required_features.to_le_bytes());
        out[12..16].copy_from_slice(&self.optional_features.to_le_bytes());
        out[16..32].copy_from_slice(&self.file_id);
        out[32..40].copy_from_slice(&self.nonce_reserved.to_le_bytes());
        out
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut v = Vec::with_capacity(HEADER_LEN);
        v.extend_from_slice(&self.mac_input());
        v.extend_from_slice(&self.mac);
        KeySlot::write(&self.slots[0], &mut v);
        KeySlot::write(&self.slots[1], &mut v);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&v);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileHeader {
        FileHeader {
            required_features: 0,
            optional_features: 5,
            file_id: [3; 16],
            nonce_reserved: 1024,
            mac: [9; 32],
            slots: [
                Some(KeySlot {
                    kek_version: 1,
                    wrapped: [0xEE; 64],
                }),
                None,
            ],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"DKFH");
        assert_eq!(u16::from_le_bytes([b[6], b[7]]), 216);
        assert_eq!(FileHeader::parse(&b).unwrap(), h);
    }

    #[test]
    fn refusals() {
        let b = sample().to_bytes();
        assert_eq!(FileHeader::parse(&b[..215]), Err(FormatError::Truncated));
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(FileHeader::parse(&long), Err(FormatError::TooLarge));
        let mut v = b;
        v[4] = 2;
        assert_eq!(
            FileHeader::parse(&v),
            Err(FormatError::UnsupportedVersion(2))
        );
        let mut v = b;
        v[8] = 2;
        assert_eq!(
            FileHeader::parse(&v),
            Err(FormatError::UnknownRequiredFeature(2))
        );
        let mut v = b;
        v[8] = 1; // PAGED is known
        assert!(FileHeader::parse(&v).unwrap().is_paged());
        let mut v = b;
        v[0] = b'X';
        assert_eq!(FileHeader::parse(&v), Err(FormatError::BadMagic));
        let mut v = b;
        v[76] = 1; // slot 0 reserved
        assert!(FileHeader::parse(&v).is_err());
        let mut v = b;
        v[160] = 1; // empty slot 1 wrapped byte
        assert!(FileHeader::parse(&v).is_err());
        let mut v = b;
        v[144] = 1; // empty slot 1 gains a version but no key
        assert!(FileHeader::parse(&v).is_err());
        let mut v = b;
        v[72] = 0; // slot 0 emptied -> non-zero wrapped in empty slot
        assert!(FileHeader::parse(&v).is_err());
    }
}
