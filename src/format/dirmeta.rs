//! Directory metadata `dekfs.dir` (224 bytes): parse/serialise only. Must NOT compute or verify
//! the MAC or unwrap slots.

use super::reader::Reader;
use super::slot::{check_slots, KeySlot};
use super::{check_required_features_of, FormatError, DIR_META_LEN, FORMAT_VERSION};

pub const DIR_META_MAGIC: [u8; 4] = *b"DKFD";
/// Bytes covered by the directory MAC: everything before the MAC field.
pub const DIR_META_MAC_INPUT_LEN: usize = 48;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub required_features: u32,
    pub optional_features: u32,
    pub dir_id: [u8; 16],
    pub mac: [u8; 32],
    pub slots: [Option<KeySlot>; 2],
}

impl DirMeta {
    /// Parses exactly `DIR_META_LEN` bytes; longer or shorter input is refused.
    pub fn parse(bytes: &[u8]) -> Result<DirMeta, FormatError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != DIR_META_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if bytes.len() > DIR_META_LEN {
            return Err(FormatError::TooLarge);
        }
        if r.u16()? != DIR_META_LEN as u16 {
            return Err(FormatError::Invalid("dir meta length field"));
        }
        let required_features = r.u32()?;
        check_required_features_of(required_features, 0)?;
        let optional_features = r.u32()?;
        let dir_id = r.array()?;
        r.zeros(16, "dir meta reserved bytes not zero")?;
        let mac = r.array()?;
        let slots = [KeySlot::parse(&mut r)?, KeySlot::parse(&mut r)?];
        r.finish()?;
        check_slots(&slots)?;
        Ok(DirMeta {
            required_features,
            optional_features,
            dir_id,
            mac,
            slots,
        })
    }

    /// The first 48 bytes, i.e. exactly what the directory MAC covers.
    pub fn mac_input(&self) -> [u8; DIR_META_MAC_INPUT_LEN] {
        let mut out = [0u8; DIR_META_MAC_INPUT_LEN];
        out[0..4].copy_from_slice(&DIR_META_MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(DIR_META_LEN as u16).to_le_bytes());
        out[8..12].copy_from_slice(&self.required_features.to_le_bytes());
        out[12..16].copy_from_slice(&self.optional_features.to_le_bytes());
        out[16..32].copy_from_slice(&self.dir_id);
        // 32..48 reserved zero
        out
    }

    pub fn to_bytes(&self) -> [u8; DIR_META_LEN] {
        let mut v = Vec::with_capacity(DIR_META_LEN);
        v.extend_from_slice(&self.mac_input());
        v.extend_from_slice(&self.mac);
        KeySlot::write(&self.slots[0], &mut v);
        KeySlot::write(&self.slots[1], &mut v);
        let mut out = [0u8; DIR_META_LEN];
        out.copy_from_slice(&v);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DirMeta {
        DirMeta {
            required_features: 0,
            optional_features: 0,
            dir_id: [4; 16],
            mac: [1; 32],
            slots: [
                None,
                Some(KeySlot {
                    kek_version: 7,
                    wrapped: [0x55; 64],
                }),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let d = sample();
        let b = d.to_bytes();
        assert_eq!(&b[0..4], b"DKFD");
        assert_eq!(DirMeta::parse(&b).unwrap(), d);
    }

    #[test]
    fn refusals() {
        let b = sample().to_bytes();
        assert_eq!(DirMeta::parse(&b[..223]), Err(FormatError::Truncated));
        assert_eq!(DirMeta::parse(&[]), Err(FormatError::Truncated));
        let mut v = b;
        v[40] = 1; // reserved
        assert!(DirMeta::parse(&v).is_err());
        let mut v = b;
        v[5] = 1;
        assert_eq!(
            DirMeta::parse(&v),
            Err(FormatError::UnsupportedVersion(0x101))
        );
        let mut v = b;
        v[11] = 0x80;
        assert_eq!(
            DirMeta::parse(&v),
            Err(FormatError::UnknownRequiredFeature(0x8000_0000))
        );
        let mut none = sample();
        none.slots = [None, None];
        assert!(DirMeta::parse(&none.to_bytes()).is_err());
    }
}
