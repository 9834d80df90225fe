//! Volume config `dekfs.conf`: parse/serialise only. Must NOT verify the MAC, run KDFs or touch
//! files; it caps every count and length before allocating so hostile files cannot exhaust memory.

use super::period::{self, RotationPeriod, RECORD_KIND_ROTATION_PERIOD};
use super::reader::Reader;
use super::{check_required_features, FormatError, FORMAT_VERSION};

pub const CONFIG_MAGIC: [u8; 8] = *b"DEKFSVOL";
pub const CONFIG_MAX_LEN: usize = 64 * 1024;
pub const CONFIG_MAC_LEN: usize = 32;
pub const MAX_KEKS: usize = 16;
pub const MAX_PROTECTORS: usize = 64;

pub const PROTECTOR_KIND_PASSPHRASE: u8 = 1;
pub const PROTECTOR_KIND_RECOVERY: u8 = 2;
/// TPM 2.0 sealed KEK. Kept as `ProtectorBody::Unknown { kind: 3, .. }` by the config parser and
/// parsed on demand with `Tpm2Body::parse`, so a damaged TPM body never blocks other protectors.
pub const PROTECTOR_KIND_TPM2: u8 = 3;
/// KEK wrapped by a KMIP key manager. Kept as `ProtectorBody::Unknown { kind: 4, .. }` like
/// kind 3 and parsed on demand with `KmipBody::parse`.
pub const PROTECTOR_KIND_KMIP: u8 = 4;
/// A reader that does not understand a critical protector's kind must refuse the volume.
pub const PROTECTOR_FLAG_CRITICAL: u8 = 0x01;
pub const KDF_ARGON2ID_V13: u8 = 1;

/// Argon2id bounds. Checked by the volume layer before running the KDF (too low = downgrade,
/// too high = memory/CPU exhaustion from a hostile config).
pub const ARGON2_M_MIN_KIB: u32 = 8192;
pub const ARGON2_M_MAX_KIB: u32 = 4_194_304;
pub const ARGON2_T_MIN: u32 = 1;
pub const ARGON2_T_MAX: u32 = 64;
pub const ARGON2_P_MIN: u32 = 1;
pub const ARGON2_P_MAX: u32 = 16;

const FIXED_LEN: usize = 48;
const KEK_RECORD_LEN: usize = 16;
const PROTECTOR_FIXED_LEN: usize = 32;
const PASSPHRASE_BODY_LEN: u16 = 112;
const RECOVERY_BODY_LEN: u16 = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekState {
    Active,
    Retiring,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRecord {
    pub version: u32,
    pub state: KekState,
    pub created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseBody {
    /// Always `KDF_ARGON2ID_V13` after parsing.
    pub kdf_alg: u8,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_lanes: u32,
    pub salt: [u8; 32],
    pub wrapped_kek: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryBody {
    pub salt: [u8; 32],
    pub wrapped_kek: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtectorBody {
    Passphrase(PassphraseBody),
    Recovery(RecoveryBody),
    /// A kind this version does not understand (non-critical): kept verbatim so rewriting the
    /// config preserves it.
    Unknown {
        kind: u8,
        body: Vec<u8>,
    },
}

impl ProtectorBody {
    pub fn kind(&self) -> u8 {
        match self {
            ProtectorBody::Passphrase(_) => PROTECTOR_KIND_PASSPHRASE,
            ProtectorBody::Recovery(_) => PROTECTOR_KIND_RECOVERY,
            ProtectorBody::Unknown { kind, .. } => *kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectorRecord {
    pub flags: u8,
    pub kek_version: u32,
    pub created: u64,
    pub protector_id: [u8; 16],
    pub body: ProtectorBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    pub required_features: u32,
    pub optional_features: u32,
    pub volume_id: [u8; 16],
    pub created: u64,
    pub keks: Vec<KekRecord>,
    pub protectors: Vec<ProtectorRecord>,
    /// The kind-5 record, kept apart from the protectors (it protects nothing) but counted in
    /// n_protectors. None: the volume uses the default period.
    pub rotation_period: Option<RotationPeriod>,
    /// HMAC-SHA256(ConfigMacKey, every byte before it); opaque here.
    pub mac: [u8; CONFIG_MAC_LEN],
}

impl VolumeConfig {
    pub fn parse(bytes: &[u8]) -> Result<VolumeConfig, FormatError> {
        if bytes.len() > CONFIG_MAX_LEN {
            return Err(FormatError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        if r.array::<8>()? != CONFIG_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        r.zeros(2, "config reserved bytes not zero")?;
        let required_features = r.u32()?;
        check_required_features(required_features)?;
        let optional_features = r.u32()?;
        let volume_id = r.array()?;
        let created = r.u64()?;
        let n_keks = usize::from(r.u16()?);
        let n_protectors = usize::from(r.u16()?);
        if !(1..=MAX_KEKS).contains(&n_keks) {
            return Err(FormatError::Invalid("KEK count out of range"));
        }
        if !(1..=MAX_PROTECTORS).contains(&n_protectors) {
            return Err(FormatError::Invalid("protector count out of range"));
        }
        let mut keks = Vec::with_capacity(n_keks);
        for _ in 0..n_keks {
            let kek = parse_kek(&mut r)?;
            if keks.iter().any(|k: &KekRecord| k.version == kek.version) {
                return Err(FormatError::Invalid("duplicate KEK version"));
            }
            keks.push(kek);
        }
        if !keks.iter().any(|k| k.state == KekState::Active) {
            return Err(FormatError::Invalid("no active KEK"));
        }
        let mut protectors = Vec::with_capacity(n_protectors);
        let mut rotation_period = None;
        for i in 0..n_protectors {
            let p = match parse_protector(&mut r, i)? {
                Record::Protector(p) => p,
                Record::Period(p) => {
                    if !keks.iter().any(|k| k.version == p.kek_version) {
                        return Err(FormatError::Invalid("record for an unknown KEK version"));
                    }
                    if rotation_period.replace(p).is_some() {
                        return Err(FormatError::Invalid("two rotation period records"));
                    }
                    continue;
                }
            };
            if !keks.iter().any(|k| k.version == p.kek_version) {
                return Err(FormatError::Invalid("protector for an unknown KEK version"));
            }
            protectors.push(p);
        }
        if protectors.is_empty() {
            return Err(FormatError::Invalid("no protector record"));
        }
        if r.remaining() < CONFIG_MAC_LEN {
            return Err(FormatError::Truncated);
        }
        let mac = r.array()?;
        r.finish()?;
        Ok(VolumeConfig {
            required_features,
            optional_features,
            volume_id,
            created,
            keks,
            protectors,
            rotation_period,
            mac,
        })
    }

    /// Every byte before the MAC. Parsing is canonical (reserved bytes zero, no trailing data),
    /// so for a parsed config this equals the on-disk prefix byte for byte.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1024);
        v.extend_from_slice(&CONFIG_MAGIC);
        v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&self.required_features.to_le_bytes());
        v.extend_from_slice(&self.optional_features.to_le_bytes());
        v.extend_from_slice(&self.volume_id);
        v.extend_from_slice(&self.created.to_le_bytes());
        v.extend_from_slice(&(self.keks.len() as u16).to_le_bytes());
        v.extend_from_slice(&(self.record_count() as u16).to_le_bytes());
        for k in &self.keks {
            v.extend_from_slice(&k.version.to_le_bytes());
            v.push(match k.state {
                KekState::Active => 1,
                KekState::Retiring => 2,
            });
            v.extend_from_slice(&[0, 0, 0]);
            v.extend_from_slice(&k.created.to_le_bytes());
        }
        let period_at = self
            .rotation_period
            .as_ref()
            .map(|p| p.position.min(self.protectors.len()));
        for (i, p) in self.protectors.iter().enumerate() {
            if period_at == Some(i) {
                self.write_period(&mut v);
            }
            write_protector(p, &mut v);
        }
        if period_at == Some(self.protectors.len()) {
            self.write_period(&mut v);
        }
        v
    }

    /// Records in the list: the protectors and the rotation period (at most 64 in all).
    pub fn record_count(&self) -> usize {
        self.protectors.len() + usize::from(self.rotation_period.is_some())
    }

    fn write_period(&self, v: &mut Vec<u8>) {
        let Some(p) = &self.rotation_period else {
            return;
        };
        // A parsed record names a KEK of the config; one whose KEK was destroyed follows the
        // active KEK, so that the list never names a missing version.
        let named = if self.keks.iter().any(|k| k.version == p.kek_version) {
            p.kek_version
        } else {
            self.active_kek_version().unwrap_or(p.kek_version)
        };
        period::write(p, named, v);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.mac_input();
        v.extend_from_slice(&self.mac);
        v
    }

    /// Highest KEK version whose state is active (the parser guarantees one exists).
    pub fn active_kek_version(&self) -> Option<u32> {
        self.keks
            .iter()
            .filter(|k| k.state == KekState::Active)
            .map(|k| k.version)
            .max()
    }
}

fn parse_kek(r: &mut Reader<'_>) -> Result<KekRecord, FormatError> {
    let version = r.u32()?;
    if version == 0 {
        return Err(FormatError::Invalid("KEK version 0"));
    }
    let state = match r.u8()? {
        1 => KekState::Active,
        2 => KekState::Retiring,
        _ => return Err(FormatError::Invalid("unknown KEK state")),
    };
    r.zeros(3, "KEK record reserved bytes not zero")?;
    let created = r.u64()?;
    Ok(KekRecord {
        version,
        state,
        created,
    })
}

enum Record {
    Protector(ProtectorRecord),
    Period(RotationPeriod),
}

/// Record `index` of the list: a protector, or the rotation period.
fn parse_protector(r: &mut Reader<'_>, index: usize) -> Result<Record, FormatError> {
    let kind = r.u8()?;
    let flags = r.u8()?;
    // Reserved for meanings an older reader could not honour: refuse.
    if flags & !PROTECTOR_FLAG_CRITICAL != 0 {
        return Err(FormatError::Invalid("protector record flag bits 1..7 set"));
    }
    let body_len = r.u16()?;
    let kek_version = r.u32()?;
    let created = r.u64()?;
    let protector_id = r.array()?;
    if kind == RECORD_KIND_ROTATION_PERIOD {
        return period::parse_body(
            r,
            flags,
            body_len,
            kek_version,
            created,
            &protector_id,
            index,
        )
        .map(Record::Period);
    }
    let body = match kind {
        PROTECTOR_KIND_PASSPHRASE => {
            if body_len != PASSPHRASE_BODY_LEN {
                return Err(FormatError::Invalid("passphrase protector body length"));
            }
            let kdf_alg = r.u8()?;
            if kdf_alg != KDF_ARGON2ID_V13 {
                return Err(FormatError::Invalid("unknown KDF algorithm"));
            }
            r.zeros(3, "passphrase protector reserved bytes not zero")?;
            ProtectorBody::Passphrase(PassphraseBody {
                kdf_alg,
                m_cost_kib: r.u32()?,
                t_cost: r.u32()?,
                p_lanes: r.u32()?,
                salt: r.array()?,
                wrapped_kek: r.array()?,
            })
        }
        PROTECTOR_KIND_RECOVERY => {
            if body_len != RECOVERY_BODY_LEN {
                return Err(FormatError::Invalid("recovery protector body length"));
            }
            ProtectorBody::Recovery(RecoveryBody {
                salt: r.array()?,
                wrapped_kek: r.array()?,
            })
        }
        _ => {
            if flags & PROTECTOR_FLAG_CRITICAL != 0 {
                return Err(FormatError::Invalid("critical protector of unknown kind"));
            }
            // take() checks body_len against the remaining bytes before anything is copied.
            let body = r.take(usize::from(body_len))?.to_vec();
            ProtectorBody::Unknown { kind, body }
        }
    };
    Ok(Record::Protector(ProtectorRecord {
        flags,
        kek_version,
        created,
        protector_id,
        body,
    }))
}

fn write_protector(p: &ProtectorRecord, v: &mut Vec<u8>) {
    v.push(p.body.kind());
    v.push(p.flags);
    let body_len = match &p.body {
        ProtectorBody::Passphrase(_) => PASSPHRASE_BODY_LEN,
        ProtectorBody::Recovery(_) => RECOVERY_BODY_LEN,
        ProtectorBody::Unknown { body, .. } => body.len() as u16,
    };
    v.extend_from_slice(&body_len.to_le_bytes());
    v.extend_from_slice(&p.kek_version.to_le_bytes());
    v.extend_from_slice(&p.created.to_le_bytes());
    v.extend_from_slice(&p.protector_id);
    match &p.body {
        ProtectorBody::Passphrase(b) => {
            v.push(b.kdf_alg);
            v.extend_from_slice(&[0, 0, 0]);
            v.extend_from_slice(&b.m_cost_kib.to_le_bytes());
            v.extend_from_slice(&b.t_cost.to_le_bytes());
            v.extend_from_slice(&b.p_lanes.to_le_bytes());
            v.extend_from_slice(&b.salt);
            v.extend_from_slice(&b.wrapped_kek);
        }
        ProtectorBody::Recovery(b) => {
            v.extend_from_slice(&b.salt);
            v.extend_from_slice(&b.wrapped_kek);
        }
        ProtectorBody::Unknown { body, .. } => v.extend_from_slice(body),
    }
}

const _: () = assert!(FIXED_LEN + KEK_RECORD_LEN + PROTECTOR_FIXED_LEN < CONFIG_MAX_LEN);

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
