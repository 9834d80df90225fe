//! tpm2 protector records of a volume: seal a KEK into a kind-3 record, unlock through one, and
//! `init --tpm2`. Must NOT talk to the TPM except through `crate::tpm`, write the config except
//! through `init`, or try other protector kinds (the CLI decides the order).

use super::config_io::read_config_bytes;
use super::init::{check_new_kdf, create_volume, passphrase_record, recovery_record};
use super::unlock::finish_unlock;
use super::{config_format_error, InitOutcome, KdfParams, UnlockedVolume, VolumeError};
use crate::crypto::{random_array, VolumeKeys};
use crate::format::{
    mask_of_pcrs, ProtectorBody, ProtectorRecord, Tpm2Body, VolumeConfig, PROTECTOR_KIND_TPM2,
    TPM2_ALG_SHA256, TPM2_FLAG_PIN, TPM2_TEMPLATE_V2,
};
use crate::secret::{Key32, RecoveryKey, SecretBytes};
use crate::tpm::{self, Tcti, TpmRefusal};
use std::path::Path;

/// KEK payload length: KEK(32) ‖ volume_id(16) ‖ u64 LE kek_version, as in every wrap.
const PAYLOAD_LEN: usize = 56;

/// How to seal: which TPM, which PCRs (sha256 bank), and an optional PIN.
pub struct Tpm2Seal {
    pub tcti: Tcti,
    pub pcrs: Vec<u8>,
    pub pin: Option<SecretBytes>,
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
    let p = payload(keys.kek_for(kek_version)?, keys.volume_id(), kek_version);
    let sealed = tpm::seal(&req.tcti, &p, mask, req.pin.as_ref())?;
    let body = Tpm2Body {
        template_version: TPM2_TEMPLATE_V2,
        flags: if req.pin.is_some() { TPM2_FLAG_PIN } else { 0 },
        pcr_bank: TPM2_ALG_SHA256,
        pcr_mask: mask,
        policy_digest: sealed.policy_digest,
        pcr_values: sealed.pcr_values,
        public: sealed.public,
        private: sealed.private,
        srk_name: Some(sealed.srk_name),
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

fn tpm2_body(rec: &ProtectorRecord) -> Option<Result<Tpm2Body, TpmRefusal>> {
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
    let p = tpm::unseal(tcti, &body, pin)?;
    open_payload(&p, vid, rec.kek_version)
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
                    if let Some(older) = older {
                        keks.push((k.version, unseal_record(older, tcti, pin, &vid)?));
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
