//! tpm2 protector records of a volume: seal a KEK into a kind-3 record, unlock through one, and
//! `init --tpm2`. Must NOT talk to the TPM except through `crate::tpm`, write the config except
//! through `init`, or try other protector kinds (the CLI decides the order).

use super::config_io::read_config_bytes;
use super::init::{check_new_kdf, create_volume, passphrase_record, recovery_record};
use super::protector::{unwrap_kek, wrap_kek, KekUnwrap};
use super::unlock::finish_unlock;
use super::{config_format_error, InitOutcome, KdfParams, UnlockedVolume, VolumeError};
use crate::crypto::kdf;
use crate::crypto::{random_array, VolumeKeys};
use crate::format::{
    mask_of_pcrs, ProtectorBody, ProtectorRecord, Tpm2Body, VolumeConfig, PROTECTOR_KIND_TPM2,
    TPM2_ALG_SHA256, TPM2_FLAG_PIN, TPM2_TEMPLATE_V2, TPM2_TEMPLATE_V3,
};
use crate::secret::{Key32, RecoveryKey, SecretBytes};
use crate::tpm::{self, Tcti, TpmRefusal};
use std::path::Path;

/// KEK payload length: KEK(32) ‖ volume_id(16) ‖ u64 LE kek_version, as in every wrap.
const PAYLOAD_LEN: usize = 56;

/// How to seal: which TPM, which PCRs (sha256 bank), an optional PIN, and whether to bind the
/// record to a fresh TPM NV key share (template 3, erasable by `shred --purge-backups`).
pub struct Tpm2Seal {
    pub tcti: Tcti,
    pub pcrs: Vec<u8>,
    pub pin: Option<SecretBytes>,
    pub nv: bool,
}

pub struct Tpm2InitOptions {
    /// None = TPM-only volume (the CLI demands explicit confirmation).
    pub passphrase: Option<SecretBytes>,
    pub kdf: KdfParams,
    pub recovery_key: bool,
    pub tpm: Tpm2Seal,
}

fn payload(kek: &Key32, volume_id: &[u8; 16], kek_version: u32) -> SecretBytes {
    let mut p = SecretBytes::zeroed(PAYLOAD_LEN);
    let b = p.expose_mut();
    b[..32].copy_from_slice(kek.expose());
    b[32..48].copy_from_slice(volume_id);
    b[48..].copy_from_slice(&u64::from(kek_version).to_le_bytes());
    p
}

/// The KEK from an unsealed payload, after checking its volume_id and version binding.
fn open_payload(
    p: &SecretBytes,
    volume_id: &[u8; 16],
    kek_version: u32,
) -> Result<Key32, VolumeError> {
    let b = p.expose();
    if b.len() != PAYLOAD_LEN {
        return Err(VolumeError::Corrupt(
            "TPM returned a payload of the wrong size".into(),
        ));
    }
    if b.get(32..48) != Some(&volume_id[..])
        || b.get(48..) != Some(&u64::from(kek_version).to_le_bytes()[..])
    {
        return Err(VolumeError::Corrupt(
            "TPM protector record belongs to another volume or KEK version".into(),
        ));
    }
    Key32::try_fill(|out| {
        out.copy_from_slice(&b[..32]);
        Ok::<(), VolumeError>(())
    })
}

/// A sealed kind-3 record of KEK `kek_version` (non-critical: older readers skip it).
pub(crate) fn seal_record(
    keys: &VolumeKeys,
    kek_version: u32,
    protector_id: [u8; 16],
    created: u64,
    req: &Tpm2Seal,
) -> Result<ProtectorRecord, VolumeError> {
    let mask = mask_of_pcrs(&req.pcrs)
        .filter(|m| *m != 0)
        .ok_or_else(|| VolumeError::Refused("PCR indices must be 0..=23, at least one".into()))?;
    let kek = keys.kek_for(kek_version)?;
    let vid = keys.volume_id();
    let (sealed, nv_index) = if req.nv {
        // The share goes into the TPM first; a failed seal erases it again.
        let share = Key32::random()?;
        let index = tpm::nv::create_share(&req.tcti, &share)?;
        let pk = kdf::tpm_nv_protector_key(&share, vid, &protector_id)?;
        let wrapped = SecretBytes::new(wrap_kek(&pk, kek, vid, kek_version)?.to_vec());
        match tpm::seal(&req.tcti, &wrapped, mask, req.pin.as_ref()) {
            Ok(s) => (s, Some(index)),
            Err(e) => {
                let _ = tpm::nv::erase_share(&req.tcti, index);
                return Err(e.into());
            }
        }
    } else {
        let p = payload(kek, vid, kek_version);
        (tpm::seal(&req.tcti, &p, mask, req.pin.as_ref())?, None)
    };
    let body = Tpm2Body {
        template_version: if nv_index.is_some() {
            TPM2_TEMPLATE_V3
        } else {
            TPM2_TEMPLATE_V2
        },
        flags: if req.pin.is_some() { TPM2_FLAG_PIN } else { 0 },
        pcr_bank: TPM2_ALG_SHA256,
        pcr_mask: mask,
        policy_digest: sealed.policy_digest,
        pcr_values: sealed.pcr_values,
        public: sealed.public,
        private: sealed.private,
        srk_name: Some(sealed.srk_name),
        nv_index,
    };
    let body = body
        .to_bytes()
        .map_err(|e| VolumeError::Corrupt(format!("sealed object: {e}")))?;
    Ok(ProtectorRecord {
        flags: 0,
        kek_version,
        created,
        protector_id,
        body: ProtectorBody::Unknown {
            kind: PROTECTOR_KIND_TPM2,
            body,
        },
    })
}

pub(crate) fn tpm2_body(rec: &ProtectorRecord) -> Option<Result<Tpm2Body, TpmRefusal>> {
    match &rec.body {
        ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_TPM2 => {
            Some(Tpm2Body::parse(body).map_err(|e| TpmRefusal::Corrupt(e.to_string())))
        }
        _ => None,
    }
}

fn unseal_record(
    rec: &ProtectorRecord,
    tcti: &Tcti,
    pin: Option<&SecretBytes>,
    vid: &[u8; 16],
) -> Result<Key32, VolumeError> {
    let body = tpm2_body(rec).ok_or(VolumeError::NoSuchProtector("tpm2"))??;
    let Some(index) = body.nv_index else {
        let p = tpm::unseal(tcti, &body, pin)?;
        return open_payload(&p, vid, rec.kek_version);
    };
    // The share first: an erased one is reported before any PIN try is spent.
    let share = tpm::nv::read_share(tcti, index)?;
    let share = Key32::try_fill(|out| {
        if share.expose().len() != out.len() {
            return Err(VolumeError::Corrupt(
                "TPM key share has the wrong size".into(),
            ));
        }
        out.copy_from_slice(share.expose());
        Ok(())
    })?;
    let pk = kdf::tpm_nv_protector_key(&share, vid, &rec.protector_id)?;
    let sealed = tpm::unseal(tcti, &body, pin)?;
    let wrapped: [u8; 64] = sealed
        .expose()
        .try_into()
        .map_err(|_| VolumeError::Corrupt("TPM returned a sealed KEK of the wrong size".into()))?;
    match unwrap_kek(&pk, &wrapped, vid, rec.kek_version)? {
        KekUnwrap::Kek(k) => Ok(k),
        KekUnwrap::WrongKey => Err(VolumeError::Corrupt(format!(
            "the TPM key share at NV index {index:#010x} does not open this record's sealed KEK \
             (the index was redefined since sealing)"
        ))),
    }
}

/// NV key-share indexes of the volume's tpm2 records of KEK `kek_version` (None: all), read
/// from dekfs.conf without a key (handles are public; the caller decides what to erase).
pub fn nv_shares(cipherdir: &Path, kek_version: Option<u32>) -> Result<Vec<u32>, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    Ok(nv_indexes(&config, kek_version))
}

/// NV key-share indexes named by the tpm2 records of KEK `kek_version` (all versions: None).
pub(crate) fn nv_indexes(config: &VolumeConfig, kek_version: Option<u32>) -> Vec<u32> {
    let mut v: Vec<u32> = config
        .protectors
        .iter()
        .filter(|r| kek_version.is_none_or(|k| r.kek_version == k))
        .filter_map(|r| tpm2_body(r)?.ok()?.nv_index)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Unlocks through the volume's tpm2 protector(s), in config order. The first refusal is
/// returned if none opens. No prompt, no other protector kind.
pub fn unlock_tpm2(
    cipherdir: &Path,
    tcti: &Tcti,
    pin: Option<&SecretBytes>,
) -> Result<UnlockedVolume, VolumeError> {
    let r = unlock_tpm2_inner(cipherdir, tcti, pin);
    super::audit_hook::unlock(cipherdir, "tpm2", &r);
    r
}

fn unlock_tpm2_inner(
    cipherdir: &Path,
    tcti: &Tcti,
    pin: Option<&SecretBytes>,
) -> Result<UnlockedVolume, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    let active = config
        .active_kek_version()
        .ok_or_else(|| VolumeError::Corrupt("no active KEK".into()))?;
    let vid = config.volume_id;
    let mut first_err = None;
    for rec in config
        .protectors
        .iter()
        .filter(|r| r.kek_version == active && tpm2_body(r).is_some())
    {
        match unseal_record(rec, tcti, pin, &vid) {
            Ok(kek) => {
                let mut keks = vec![(active, kek)];
                for k in config.keks.iter().filter(|k| k.version != active) {
                    let older = config
                        .protectors
                        .iter()
                        .find(|r| r.protector_id == rec.protector_id && r.kek_version == k.version);
                    let Some(older) = older else { continue };
                    match unseal_record(older, tcti, pin, &vid) {
                        Ok(kek) => keks.push((k.version, kek)),
                        // A purge erases the retiring KEK's shares only after verifying that
                        // no object needs that KEK; a crash before the config lost it leaves
                        // this state, in which the KEK is simply not held.
                        Err(VolumeError::Tpm(TpmRefusal::ShareGone { .. }))
                            if k.state == crate::format::KekState::Retiring => {}
                        Err(e) => return Err(e),
                    }
                }
                let keys = VolumeKeys::from_parts(vid, keks, active)?;
                let u = finish_unlock(cipherdir, &raw, &config, keys)?;
                super::rollback::check_and_raise_tpm(tcti, &vid, active)?;
                return Ok(u);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(VolumeError::NoSuchProtector("tpm2")))
}

/// `init --tpm2`: a new volume with a tpm2 protector, plus a passphrase (unless TPM-only) and a
/// recovery key (unless declined). The TPM seal happens before anything is written.
pub fn init_tpm2(cipherdir: &Path, opts: Tpm2InitOptions) -> Result<InitOutcome, VolumeError> {
    init_tpm2_with_period(cipherdir, opts, None)
}

/// `init_tpm2` with a rotation period record (see `init_with_period`).
pub fn init_tpm2_with_period(
    cipherdir: &Path,
    opts: Tpm2InitOptions,
    rotation_period_days: Option<u32>,
) -> Result<InitOutcome, VolumeError> {
    if let Some(p) = &opts.passphrase {
        if p.is_empty() {
            return Err(VolumeError::Refused("empty passphrase".into()));
        }
        check_new_kdf(&opts.kdf)?;
    }
    let mut recovery: Option<RecoveryKey> = None;
    let volume_id = create_volume(cipherdir, rotation_period_days, |keys, now| {
        let v = keys.active_kek_version();
        let mut out = vec![seal_record(keys, v, random_array()?, now, &opts.tpm)?];
        if let Some(p) = &opts.passphrase {
            out.push(passphrase_record(
                keys,
                v,
                random_array()?,
                now,
                p.expose(),
                &opts.kdf,
            )?);
        }
        if opts.recovery_key {
            let rk = RecoveryKey::generate()?;
            out.push(recovery_record(keys, v, random_array()?, now, &rk)?);
            recovery = Some(rk);
        }
        Ok(out)
    })?;
    Ok(InitOutcome {
        volume_id,
        recovery_key: recovery,
    })
}
