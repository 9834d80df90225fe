//! Exported-KEK blob (`dekfs key export`): parse/serialise only. Must NOT unwrap, verify the
//! checksum or touch files; every length is checked before anything is sliced.

use super::reader::Reader;
use super::FormatError;

pub const EXPORT_MAGIC: [u8; 8] = *b"DEKFSKEX";
pub const EXPORT_VERSION: u16 = 1;
/// AES-256 key wrap, RFC 3394 (payload a multiple of 8 bytes).
pub const EXPORT_ALG_KW: u8 = 1;
/// AES-256 key wrap with padding, RFC 5649.
pub const EXPORT_ALG_KWP: u8 = 2;
pub const EXPORT_MAC_LEN: usize = 32;
const FIXED_LEN: usize = 44;
const MAX_WRAPPED: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekExport {
    pub alg: u8,
    pub volume_id: [u8; 16],
    pub kek_version: u32,
    pub created: u64,
    /// Opaque here: the transport-key wrap of KEK || volume_id || u64 kek_version.
    pub wrapped: Vec<u8>,
    /// HMAC-SHA256 over every byte before it; opaque here.
    pub mac: [u8; EXPORT_MAC_LEN],
}

impl KekExport {
    pub fn parse(bytes: &[u8]) -> Result<KekExport, FormatError> {
        if bytes.len() > FIXED_LEN + MAX_WRAPPED + EXPORT_MAC_LEN {
            return Err(FormatError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        if r.array::<8>()? != EXPORT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16()?;
        if version != EXPORT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let alg = r.u8()?;
        if alg != EXPORT_ALG_KW && alg != EXPORT_ALG_KWP {
            return Err(FormatError::Invalid("unknown key wrap algorithm"));
        }
        r.zeros(1, "export reserved byte not zero")?;
        let volume_id = r.array()?;
        let kek_version = r.u32()?;
        if kek_version == 0 {
            return Err(FormatError::Invalid("KEK version 0"));
        }
        let created = r.u64()?;
        let wrapped_len = usize::from(r.u16()?);
        r.zeros(2, "export reserved bytes not zero")?;
        if !(16..=MAX_WRAPPED).contains(&wrapped_len) || wrapped_len % 8 != 0 {
            return Err(FormatError::Invalid("wrapped key length"));
        }
        let wrapped = r.take(wrapped_len)?.to_vec();
        let mac = r.array()?;
        r.finish()?;
        Ok(KekExport {
            alg,
            volume_id,
            kek_version,
            created,
            wrapped,
            mac,
        })
    }

    /// Every byte before the MAC.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FIXED_LEN + self.wrapped.len() + EXPORT_MAC_LEN);
        v.extend_from_slice(&EXPORT_MAGIC);
        v.extend_from_slice(&EXPORT_VERSION.to_le_bytes());
        v.push(self.alg);
        v.push(0);
        v.extend_from_slice(&self.volume_id);
        v.extend_from_slice(&self.kek_version.to_le_bytes());
        v.extend_from_slice(&self.created.to_le_bytes());
        v.extend_from_slice(&(self.wrapped.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&self.wrapped);
        v
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.mac_input();
        v.extend_from_slice(&self.mac);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KekExport {
        KekExport {
            alg: EXPORT_ALG_KW,
            volume_id: [7; 16],
            kek_version: 2,
            created: 1_700_000_000,
            wrapped: vec![9; 64],
            mac: [3; 32],
        }
    }

    #[test]
    fn round_trip_and_every_truncation_refused() {
        let b = sample().to_bytes();
        assert_eq!(b.len(), 140);
        assert_eq!(KekExport::parse(&b).unwrap(), sample());
        for n in 0..b.len() {
            assert!(KekExport::parse(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(KekExport::parse(&long).is_err());
    }

    #[test]
    fn header_fields_checked() {
        let b = sample().to_bytes();
        for (at, why) in [
            (0, "magic"),
            (8, "version"),
            (10, "alg"),
            (11, "reserved"),
            (40, "len"),
        ] {
            let mut t = b.clone();
            t[at] ^= 0x40;
            assert!(KekExport::parse(&t).is_err(), "{why}");
        }
    }
}
