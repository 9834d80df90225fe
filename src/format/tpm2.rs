//! Body of a kind-3 (TPM 2.0) protector record: parse/serialise only. Must NOT talk to a TPM,
//! interpret the TPM structures it carries (they stay opaque bytes here) or panic on any input;
//! every length is capped before anything is allocated.

use super::reader::Reader;
use super::FormatError;

/// Frozen SRK template, sealed-object template and policy layout, version 1 (docs/FORMAT.md).
pub const TPM2_TEMPLATE_V1: u8 = 1;
/// Version 1 plus the SRK's name pinned at seal time (a trailing `srk_name`): unseal refuses a
/// storage key with another name before the salted session is started.
pub const TPM2_TEMPLATE_V2: u8 = 2;
/// Version 2 plus a TPM NV index holding a key share (a trailing `nv_index`): the sealed data
/// is the KEK payload wrapped under a key derived from that share, so erasing the NV index
/// (`shred --purge-backups`) makes every copy of the record useless.
pub const TPM2_TEMPLATE_V3: u8 = 3;
/// Owner-hierarchy NV handles dekfs allocates share indexes from (TCG handle registry: the
/// owner range 0x01800000..=0x01BFFFFF).
pub const TPM2_NV_FIRST: u32 = 0x0180_0000;
pub const TPM2_NV_LAST: u32 = 0x01BF_FFFF;
/// TPM2B_NAME contents of a SHA-256 object: nameAlg (u16 BE 0x000B) ‖ SHA-256(TPMT_PUBLIC).
pub const TPM2_NAME_LEN: usize = 34;
/// Body flag: the policy includes PolicyAuthValue, so unsealing needs the PIN.
pub const TPM2_FLAG_PIN: u8 = 0x01;
/// TPM_ALG_SHA256: the only PCR bank (and policy hash) of template version 1.
pub const TPM2_ALG_SHA256: u16 = 0x000B;
/// PCRs 0..=23 (the PC Client platform's PCRs).
pub const TPM2_PCR_COUNT: u8 = 24;
/// Caps on the opaque TPM blobs (a TPMT_PUBLIC of a keyedhash object is about 80 bytes, its
/// TPM2B_PRIVATE about 160): anything larger is refused before allocation.
pub const TPM2_MAX_PUBLIC: usize = 512;
pub const TPM2_MAX_PRIVATE: usize = 1024;

const FIXED_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm2Body {
    pub template_version: u8,
    /// `TPM2_FLAG_PIN` or 0.
    pub flags: u8,
    pub pcr_bank: u16,
    /// Bit i set = PCR i is in the policy (i < 24, at least one).
    pub pcr_mask: u32,
    pub policy_digest: [u8; 32],
    /// PCR values at seal time, one per selected PCR, ascending PCR index.
    pub pcr_values: Vec<[u8; 32]>,
    /// Marshalled TPMT_PUBLIC of the sealed object (TPM byte order; opaque here).
    pub public: Vec<u8>,
    /// Buffer of the TPM2B_PRIVATE of the sealed object (opaque here).
    pub private: Vec<u8>,
    /// Templates 2 and 3: the name of the SRK the object was sealed under.
    pub srk_name: Option<[u8; TPM2_NAME_LEN]>,
    /// Template 3 only: the NV index (handle) holding the key share.
    pub nv_index: Option<u32>,
}

impl Tpm2Body {
    pub fn pin_required(&self) -> bool {
        self.flags & TPM2_FLAG_PIN != 0
    }

    /// The selected PCR indices, ascending.
    pub fn pcrs(&self) -> Vec<u8> {
        pcrs_of_mask(self.pcr_mask)
    }

    pub fn parse(body: &[u8]) -> Result<Tpm2Body, FormatError> {
        let mut r = Reader::new(body);
        let template_version = r.u8()?;
        if !(TPM2_TEMPLATE_V1..=TPM2_TEMPLATE_V3).contains(&template_version) {
            return Err(FormatError::Invalid("unknown TPM template version"));
        }
        let flags = r.u8()?;
        if flags & !TPM2_FLAG_PIN != 0 {
            return Err(FormatError::Invalid("unknown TPM protector flags"));
        }
        let pcr_bank = r.u16()?;
        if pcr_bank != TPM2_ALG_SHA256 {
            return Err(FormatError::Invalid("unsupported PCR bank"));
        }
        let pcr_mask = r.u32()?;
        check_mask(pcr_mask)?;
        let policy_digest = r.array()?;
        let n = pcr_mask.count_ones() as usize;
        let mut pcr_values = Vec::with_capacity(n);
        for _ in 0..n {
            pcr_values.push(r.array()?);
        }
        let public = blob(&mut r, TPM2_MAX_PUBLIC, "TPM public area length")?;
        let private = blob(&mut r, TPM2_MAX_PRIVATE, "TPM private area length")?;
        let srk_name = if template_version >= TPM2_TEMPLATE_V2 {
            let n: [u8; TPM2_NAME_LEN] = r.array()?;
            check_name(&n)?;
            Some(n)
        } else {
            None
        };
        let nv_index = if template_version == TPM2_TEMPLATE_V3 {
            let h = r.u32()?;
            check_nv(h)?;
            Some(h)
        } else {
            None
        };
        r.finish()?;
        Ok(Tpm2Body {
            template_version,
            flags,
            pcr_bank,
            pcr_mask,
            policy_digest,
            pcr_values,
            public,
            private,
            srk_name,
            nv_index,
        })
    }

    /// Serialises a body that `parse` accepts; refuses values it would not.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        check_mask(self.pcr_mask)?;
        if self.pcr_values.len() != self.pcr_mask.count_ones() as usize {
            return Err(FormatError::Invalid(
                "PCR value count does not match the mask",
            ));
        }
        if self.public.is_empty() || self.public.len() > TPM2_MAX_PUBLIC {
            return Err(FormatError::Invalid("TPM public area length"));
        }
        if self.private.is_empty() || self.private.len() > TPM2_MAX_PRIVATE {
            return Err(FormatError::Invalid("TPM private area length"));
        }
        match (self.template_version, &self.srk_name, self.nv_index) {
            (TPM2_TEMPLATE_V1, None, None) => {}
            (TPM2_TEMPLATE_V2, Some(n), None) => check_name(n)?,
            (TPM2_TEMPLATE_V3, Some(n), Some(h)) => {
                check_name(n)?;
                check_nv(h)?;
            }
            _ => {
                return Err(FormatError::Invalid(
                    "TPM template version, SRK name and NV index disagree",
                ))
            }
        }
        let mut v = Vec::with_capacity(self.encoded_len());
        v.push(self.template_version);
        v.push(self.flags);
        v.extend_from_slice(&self.pcr_bank.to_le_bytes());
        v.extend_from_slice(&self.pcr_mask.to_le_bytes());
        v.extend_from_slice(&self.policy_digest);
        for p in &self.pcr_values {
            v.extend_from_slice(p);
        }
        v.extend_from_slice(&(self.public.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.public);
        v.extend_from_slice(&(self.private.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.private);
        if let Some(n) = &self.srk_name {
            v.extend_from_slice(n);
        }
        if let Some(h) = self.nv_index {
            v.extend_from_slice(&h.to_le_bytes());
        }
        Ok(v)
    }

    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + 32 * self.pcr_values.len()
            + 4
            + self.public.len()
            + self.private.len()
            + self.srk_name.map_or(0, |n| n.len())
            + self.nv_index.map_or(0, |_| 4)
    }
}

/// A share index must lie in the owner range dekfs allocates from: a config naming any other
/// handle could otherwise make dekfs read or erase an index it does not own.
fn check_nv(h: u32) -> Result<(), FormatError> {
    if !(TPM2_NV_FIRST..=TPM2_NV_LAST).contains(&h) {
        return Err(FormatError::Invalid("TPM NV index outside the dekfs range"));
    }
    Ok(())
}

/// A pinned name must be a SHA-256 name (the SRK template's nameAlg).
fn check_name(n: &[u8; TPM2_NAME_LEN]) -> Result<(), FormatError> {
    if n[..2] != TPM2_ALG_SHA256.to_be_bytes() {
        return Err(FormatError::Invalid("SRK name is not a SHA-256 name"));
    }
    Ok(())
}

fn check_mask(mask: u32) -> Result<(), FormatError> {
    if mask == 0 {
        return Err(FormatError::Invalid("TPM protector selects no PCR"));
    }
    if mask >> TPM2_PCR_COUNT != 0 {
        return Err(FormatError::Invalid("PCR index above 23"));
    }
    Ok(())
}

fn blob(r: &mut Reader<'_>, cap: usize, what: &'static str) -> Result<Vec<u8>, FormatError> {
    let len = usize::from(r.u16()?);
    if len == 0 || len > cap {
        return Err(FormatError::Invalid(what));
    }
    Ok(r.take(len)?.to_vec())
}

/// PCR indices of a mask, ascending.
pub fn pcrs_of_mask(mask: u32) -> Vec<u8> {
    (0..TPM2_PCR_COUNT)
        .filter(|i| mask & (1u32 << i) != 0)
        .collect()
}

/// Mask of PCR indices; `None` if any index is ≥ 24.
pub fn mask_of_pcrs(pcrs: &[u8]) -> Option<u32> {
    pcrs.iter()
        .try_fold(0u32, |m, &i| (i < TPM2_PCR_COUNT).then(|| m | (1u32 << i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tpm2Body {
        Tpm2Body {
            template_version: 1,
            flags: TPM2_FLAG_PIN,
            pcr_bank: TPM2_ALG_SHA256,
            pcr_mask: (1 << 7) | (1 << 0),
            policy_digest: [9; 32],
            pcr_values: vec![[1; 32], [7; 32]],
            public: vec![0xAA; 80],
            private: vec![0xBB; 160],
            srk_name: None,
            nv_index: None,
        }
    }

    fn sample_v2() -> Tpm2Body {
        let mut name = [0x5A; TPM2_NAME_LEN];
        name[..2].copy_from_slice(&[0x00, 0x0B]);
        Tpm2Body {
            template_version: TPM2_TEMPLATE_V2,
            srk_name: Some(name),
            ..sample()
        }
    }

    #[test]
    fn v2_round_trip_and_refusals() {
        let b = sample_v2();
        let bytes = b.to_bytes().unwrap();
        assert_eq!(bytes.len(), 40 + 64 + 2 + 80 + 2 + 160 + 34);
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(&bytes[bytes.len() - 34..], &b.srk_name.unwrap()[..]);
        assert_eq!(Tpm2Body::parse(&bytes).unwrap(), b);
        let mut wrong_alg = bytes.clone();
        let at = bytes.len() - 34;
        wrong_alg[at + 1] = 0x0C;
        assert!(Tpm2Body::parse(&wrong_alg).is_err());
        // A v1 body relabelled v2 lacks the name; a v2 body relabelled v1 has 34 extra bytes.
        let mut v1 = sample().to_bytes().unwrap();
        v1[0] = TPM2_TEMPLATE_V2;
        assert!(Tpm2Body::parse(&v1).is_err());
        let mut v2 = bytes.clone();
        v2[0] = TPM2_TEMPLATE_V1;
        assert!(Tpm2Body::parse(&v2).is_err());
        for n in 0..bytes.len() {
            assert!(Tpm2Body::parse(&bytes[..n]).is_err());
        }
        let mismatched = Tpm2Body {
            srk_name: None,
            ..sample_v2()
        };
        assert!(mismatched.to_bytes().is_err());
        let mismatched = Tpm2Body {
            template_version: TPM2_TEMPLATE_V1,
            ..sample_v2()
        };
        assert!(mismatched.to_bytes().is_err());
    }

    #[test]
    fn v3_round_trip_and_refusals() {
        let b = Tpm2Body {
            template_version: TPM2_TEMPLATE_V3,
            nv_index: Some(0x0180_1234),
            ..sample_v2()
        };
        let bytes = b.to_bytes().unwrap();
        assert_eq!(bytes.len(), 40 + 64 + 2 + 80 + 2 + 160 + 34 + 4);
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(&bytes[bytes.len() - 4..], &[0x34, 0x12, 0x80, 0x01]);
        assert_eq!(Tpm2Body::parse(&bytes).unwrap(), b);
        for n in 0..bytes.len() {
            assert!(Tpm2Body::parse(&bytes[..n]).is_err());
        }
        // A v3 body relabelled v2 has 4 extra bytes; a v2 body relabelled v3 lacks them.
        let mut v2 = bytes.clone();
        v2[0] = TPM2_TEMPLATE_V2;
        assert!(Tpm2Body::parse(&v2).is_err());
        let mut short = sample_v2().to_bytes().unwrap();
        short[0] = TPM2_TEMPLATE_V3;
        assert!(Tpm2Body::parse(&short).is_err());
        for h in [0u32, 0x017F_FFFF, 0x01C0_0000, 0x8100_0001] {
            let mut v = bytes.clone();
            let at = v.len() - 4;
            v[at..].copy_from_slice(&h.to_le_bytes());
            assert!(Tpm2Body::parse(&v).is_err(), "{h:#x}");
        }
        let mismatched = Tpm2Body {
            nv_index: None,
            ..b.clone()
        };
        assert!(mismatched.to_bytes().is_err());
        let mismatched = Tpm2Body {
            template_version: TPM2_TEMPLATE_V2,
            ..b
        };
        assert!(mismatched.to_bytes().is_err());
    }

    #[test]
    fn round_trip_and_length() {
        let b = sample();
        let bytes = b.to_bytes().unwrap();
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(bytes.len(), 40 + 64 + 2 + 80 + 2 + 160);
        assert_eq!(Tpm2Body::parse(&bytes).unwrap(), b);
        assert_eq!(b.pcrs(), vec![0, 7]);
        assert!(b.pin_required());
    }

    #[test]
    fn refusals() {
        let good = sample().to_bytes().unwrap();
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.clone();
            f(&mut v);
            Tpm2Body::parse(&v).is_err()
        };
        assert!(bad(&|v| v[0] = 2));
        assert!(bad(&|v| v[0] = 3));
        assert!(bad(&|v| v[0] = 4));
        assert!(bad(&|v| v[0] = 0));
        assert!(bad(&|v| v[1] = 0x02));
        assert!(bad(&|v| v[2] = 4));
        assert!(bad(&|v| v[4..8].copy_from_slice(&0u32.to_le_bytes())));
        assert!(bad(
            &|v| v[4..8].copy_from_slice(&(1u32 << 24).to_le_bytes())
        ));
        assert!(bad(&|v| v.push(0)));
        assert!(bad(&|v| {
            v.pop();
        }));
        assert!(bad(&|v| v[104..106].copy_from_slice(&0u16.to_le_bytes())));
        assert!(bad(&|v| v[104..106].copy_from_slice(&513u16.to_le_bytes())));
        for n in 0..good.len() {
            assert!(Tpm2Body::parse(&good[..n]).is_err());
        }
    }

    #[test]
    fn masks() {
        assert_eq!(mask_of_pcrs(&[7]), Some(0x80));
        assert_eq!(mask_of_pcrs(&[0, 23]), Some(0x80_0001));
        assert_eq!(mask_of_pcrs(&[24]), None);
        assert_eq!(pcrs_of_mask(0x80_0081), vec![0, 7, 23]);
    }
}
