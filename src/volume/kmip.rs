//! kmip protector records of a volume: wrap a KEK through a KMIP key manager into a kind-4
//! record, unlock through one (no prompt), rewrap for a new KEK (kmip_remote.rs retires manager
//! keys). Must NOT talk KMIP except through `crate::kmip`, write the config itself, or try other
//! protector kinds (the CLI decides the order).

use super::config_io::read_config_bytes;
use super::manage::hex;
use super::unlock::finish_unlock;
use super::{config_format_error, UnlockedVolume, VolumeError};
use crate::crypto::VolumeKeys;
use crate::format::{
    kmip_aad, KmipBody, ProtectorBody, ProtectorRecord, VolumeConfig, KMIP_BLOB_LEN,
    PROTECTOR_KIND_KMIP,
};
use crate::kmip::{Endpoint, KmipError, Session};
use crate::secret::{Key32, SecretBytes};
use std::path::{Path, PathBuf};

/// Which manager key wraps the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmipKeyChoice {
    /// A new AES-256 key, created and activated for this protector.
    Create,
    Uid(String),
    /// The one key the manager finds under this name.
    Name(String),
}

/// A new KMIP protector: where the manager is, and which key.
#[derive(Debug, Clone)]
pub struct KmipWrap {
    pub endpoint: Endpoint,
    pub key: KmipKeyChoice,
}

fn payload(kek: &Key32, volume_id: &[u8; 16], kek_version: u32) -> SecretBytes {
    let mut p = SecretBytes::zeroed(KMIP_BLOB_LEN);
    let b = p.expose_mut();
    b[..32].copy_from_slice(kek.expose());
    b[32..48].copy_from_slice(volume_id);
    b[48..].copy_from_slice(&u64::from(kek_version).to_le_bytes());
    p
}

/// The KEK from a decrypted payload, after checking its volume_id and version binding.
fn open_payload(p: &SecretBytes, vid: &[u8; 16], kek_version: u32) -> Result<Key32, VolumeError> {
    let b = p.expose();
    if b.len() != KMIP_BLOB_LEN
        || b.get(32..48) != Some(&vid[..])
        || b.get(48..) != Some(&u64::from(kek_version).to_le_bytes()[..])
    {
        return Err(VolumeError::Corrupt(
            "KMIP protector record belongs to another volume or KEK version".into(),
        ));
    }
    Key32::try_fill(|out| {
        out.copy_from_slice(&b[..32]);
        Ok::<(), VolumeError>(())
    })
}

pub(super) fn endpoint_of(b: &KmipBody) -> Endpoint {
    Endpoint {
        servers: b.servers.clone(),
        tls_name: b.tls_name.clone(),
        ca: PathBuf::from(&b.ca_path),
        cert: PathBuf::from(&b.cert_path),
        key: PathBuf::from(&b.key_path),
    }
}

fn path_text(p: &Path) -> Result<String, VolumeError> {
    p.to_str()
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .ok_or_else(|| {
            VolumeError::Refused(format!(
                "{}: KMIP file paths must be absolute and ASCII",
                p.display()
            ))
        })
}

/// An open session and the key every record it makes is wrapped under.
pub(crate) struct Sealer {
    session: Session,
    endpoint: Endpoint,
    uid: String,
}

impl Sealer {
    pub(crate) fn open(w: &KmipWrap, name: &str) -> Result<Sealer, VolumeError> {
        let mut session = Session::open(&w.endpoint)?;
        let uid = match &w.key {
            KmipKeyChoice::Create => session.create_key(name)?,
            KmipKeyChoice::Uid(u) => {
                crate::kmip::check_uid(u)?;
                u.clone()
            }
            KmipKeyChoice::Name(n) => match session.locate(n)?.as_slice() {
                [one] => one.clone(),
                [] => return Err(VolumeError::Refused(format!("no KMIP key named {n:?}"))),
                _ => {
                    return Err(VolumeError::Refused(format!(
                        "several KMIP keys are named {n:?}: give --kmip-key-uid"
                    )))
                }
            },
        };
        Ok(Sealer {
            session,
            endpoint: w.endpoint.clone(),
            uid,
        })
    }

    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }

    /// A kind-4 record of KEK `kek_version` (non-critical: older readers skip it). The wrap is
    /// decrypted back before it is kept, and must not open under other associated data, so a
    /// manager that ignores the binding is caught now rather than at the first unlock.
    pub(crate) fn record(
        &mut self,
        keys: &VolumeKeys,
        kek_version: u32,
        protector_id: [u8; 16],
        created: u64,
    ) -> Result<ProtectorRecord, VolumeError> {
        let vid = *keys.volume_id();
        let p = payload(keys.kek_for(kek_version)?, &vid, kek_version);
        let aad = kmip_aad(&vid, &protector_id, kek_version);
        let (iv, ct, tag) = self.session.encrypt(&self.uid, &p, &aad)?;
        let back = self.session.decrypt(&self.uid, &iv, &ct, &tag, &aad)?;
        if !back.ct_eq(p.expose()) {
            return Err(KmipError::Protocol(
                "the key manager does not decrypt its own wrap".into(),
            )
            .into());
        }
        let mut other = aad.clone();
        if let Some(last) = other.last_mut() {
            *last ^= 1;
        }
        if self
            .session
            .decrypt(&self.uid, &iv, &ct, &tag, &other)
            .is_ok()
        {
            return Err(KmipError::Protocol(
                "the key manager ignores the GCM associated data: refusing to use it".into(),
            )
            .into());
        }
        let blob: [u8; KMIP_BLOB_LEN] = ct
            .as_slice()
            .try_into()
            .map_err(|_| KmipError::Protocol("wrapped KEK of the wrong length".into()))?;
        let ep = &self.endpoint;
        let body = KmipBody {
            servers: ep.servers.clone(),
            tls_name: ep.tls_name.clone(),
            ca_path: path_text(&ep.ca)?,
            cert_path: path_text(&ep.cert)?,
            key_path: path_text(&ep.key)?,
            key_uid: self.uid.clone(),
            iv,
            tag,
            blob,
        };
        let body = body
            .to_bytes()
            .map_err(|e| VolumeError::Refused(format!("KMIP protector: {e}")))?;
        Ok(ProtectorRecord {
            flags: 0,
            kek_version,
            created,
            protector_id,
            body: ProtectorBody::Unknown {
                kind: PROTECTOR_KIND_KMIP,
                body,
            },
        })
    }
}

/// The name a created manager key carries: which volume and protector it serves.
pub(crate) fn key_name(vid: &[u8; 16], protector_id: &[u8; 16]) -> String {
    format!("dekfs {} {}", hex(vid), hex(protector_id))
}

pub(crate) fn kmip_body(rec: &ProtectorRecord) -> Option<Result<KmipBody, VolumeError>> {
    match &rec.body {
        ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_KMIP => Some(
            KmipBody::parse(body)
                .map_err(|e| VolumeError::Corrupt(format!("KMIP protector record: {e}"))),
        ),
        _ => None,
    }
}

fn unwrap_record(
    session: &mut Session,
    body: &KmipBody,
    rec: &ProtectorRecord,
    vid: &[u8; 16],
) -> Result<Key32, VolumeError> {
    let aad = kmip_aad(vid, &rec.protector_id, rec.kek_version);
    let p = session.decrypt(&body.key_uid, &body.iv, &body.blob, &body.tag, &aad)?;
    open_payload(&p, vid, rec.kek_version)
}

/// Unlocks through the volume's kmip protector(s), in config order, with no prompt. The first
/// refusal is returned if none opens.
pub fn unlock_kmip(cipherdir: &Path) -> Result<UnlockedVolume, VolumeError> {
    let r = unlock_inner(cipherdir);
    super::audit_hook::unlock(cipherdir, "kmip", &r);
    r
}

fn unlock_inner(cipherdir: &Path) -> Result<UnlockedVolume, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    let active = config
        .active_kek_version()
        .ok_or_else(|| VolumeError::Corrupt("no active KEK".into()))?;
    let vid = config.volume_id;
    let mut first_err = None;
    for rec in config.protectors.iter().filter(|r| r.kek_version == active) {
        let Some(body) = kmip_body(rec) else { continue };
        let r = body.and_then(|body| {
            let mut session = Session::open(&endpoint_of(&body))?;
            let kek = unwrap_record(&mut session, &body, rec, &vid)?;
            let mut keks = vec![(active, kek)];
            for k in config.keks.iter().filter(|k| k.version != active) {
                let older = config
                    .protectors
                    .iter()
                    .find(|r| r.protector_id == rec.protector_id && r.kek_version == k.version);
                if let Some(older) = older {
                    let b = kmip_body(older).ok_or_else(|| {
                        VolumeError::Corrupt("KMIP protector records of two kinds".into())
                    })??;
                    keks.push((k.version, unwrap_record(&mut session, &b, older, &vid)?));
                }
            }
            VolumeKeys::from_parts(vid, keks, active)
                .map_err(VolumeError::from)
                .and_then(|keys| finish_unlock(cipherdir, &raw, &config, keys))
        });
        match r {
            Ok(u) => return Ok(u),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(VolumeError::NoSuchProtector("kmip")))
}

/// The record of a kept kmip protector for KEK `new` (rotation): the same manager key and
/// endpoint, a fresh IV, no prompt.
pub fn rewrap_kmip_record(
    keys: &VolumeKeys,
    new: u32,
    rec: &ProtectorRecord,
    now: u64,
) -> Result<ProtectorRecord, VolumeError> {
    let body = kmip_body(rec).ok_or(VolumeError::NoSuchProtector("kmip"))??;
    let w = KmipWrap {
        endpoint: endpoint_of(&body),
        key: KmipKeyChoice::Uid(body.key_uid),
    };
    Sealer::open(&w, "")?.record(keys, new, rec.protector_id, now)
}
