//! `--purge-backups` after a shred: rotate the KEK with the rekey machinery (config step,
//! rewrap walk, verify, destroy), re-seal every tpm2 protector to a fresh TPM NV key share,
//! and only once the old KEK is gone from the config erase the old records' shares, so that
//! neither today's config nor (for NV-bound TPM protectors) a pre-shred copy of dekfs.conf
//! opens anything in a pre-shred copy of the ciphertext. It must not start while the shred
//! journal is pending (the caller finishes the shred first), must not erase a share any
//! record still names, and never reports success while an old share may still be in the TPM.
//! Offline today (volume lock held by the caller); an online caller hands in its keys and a
//! core that writes under the new KEK from `begin` on.

use crate::crypto::VolumeKeys;
use crate::engine::rekey::{self, Stats};
use crate::engine::rotation::{self, Finished};
use crate::tpm::Tcti;
use crate::volume::rotate::{self, RotateOptions};
use crate::volume::{nv_shares, VolumeError};
use std::path::Path;
use std::sync::Arc;

/// What the purge did.
pub struct Purged {
    /// The rotation (old and new KEK, rewrap and verify reports).
    pub rotation: Finished,
    /// The keys after the purge (only the new KEK).
    pub keys: Arc<VolumeKeys>,
    /// NV key shares of the old KEK's records, erased from the TPM.
    pub erased: Vec<u32>,
    /// NV key shares the new KEK's tpm2 records are bound to.
    pub bound: Vec<u32>,
    /// A fresh recovery key (`new_recovery_key`), to be shown once.
    pub recovery_key: Option<crate::secret::RecoveryKey>,
}

/// The options a purge rotates with (TPM protectors re-sealed to fresh NV shares), checked
/// before anything changes: call it before the shred, so a missing credential is found while
/// nothing is destroyed yet.
pub fn prepare(
    cipherdir: &Path,
    keys: &VolumeKeys,
    opts: RotateOptions,
    tcti: Option<&Tcti>,
) -> Result<RotateOptions, VolumeError> {
    let opts = RotateOptions {
        tcti: tcti.cloned(),
        tpm_nv: tcti.is_some(),
        ..opts
    };
    if rotate::pending_rotation(cipherdir)?.is_none() {
        rotate::check_credentials(cipherdir, keys, &opts)?;
    }
    Ok(opts)
}

/// Rotates the KEK of an unlocked, unmounted volume and erases the retired NV key shares.
/// `tcti` is required when the volume has tpm2 protectors (they are re-sealed, NV-bound).
/// A rotation left pending by an earlier interrupted run is finished instead of a new one
/// being started (`keys` must then hold both KEKs, as an unlock during a rotation gives).
pub fn purge_backups(
    cipherdir: &Path,
    keys: Arc<VolumeKeys>,
    opts: RotateOptions,
    tcti: Option<&Tcti>,
    progress: &mut dyn FnMut(&Stats),
) -> Result<Purged, VolumeError> {
    let mut recovery_key = None;
    let (old, keys) = match rotate::pending_rotation(cipherdir)? {
        Some((old, new)) if keys.active_kek_version() == new => (old, keys),
        Some((old, new)) => {
            return Err(VolumeError::Refused(format!(
                "a rotation from KEK {old} to {new} is pending but the unlock gave KEK {}",
                keys.active_kek_version()
            )))
        }
        None => {
            let has_tpm = crate::volume::read_info(cipherdir)?
                .protectors
                .iter()
                .any(|p| p.tpm2.is_some());
            if has_tpm && tcti.is_none() {
                return Err(VolumeError::Refused(
                    "the volume has a TPM protector: select the TPM to re-seal it".into(),
                ));
            }
            let opts = RotateOptions {
                tcti: tcti.cloned(),
                tpm_nv: has_tpm,
                ..opts
            };
            let b = rotate::begin(cipherdir, &keys, &opts)?;
            log::info!("shred --purge-backups: KEK {} -> {}", b.old, b.new);
            recovery_key = b.recovery_key;
            (b.old, Arc::new(b.keys))
        }
    };
    // The old records' shares go while the config still names them, but only once no object
    // needs the old KEK: a crash after the erasure leaves a retiring KEK whose TPM records
    // cannot open, which an unlock then treats as "not held" (FORMAT.md, unlock step 5), and
    // the rerun only has the config to rewrite; a crash before it erases them on the rerun.
    let retired = nv_shares(cipherdir, Some(old))?;
    let bound = nv_shares(cipherdir, Some(keys.active_kek_version()))?;
    let mut erased = Vec::new();
    if !retired.is_empty() {
        let Some(tcti) = tcti else {
            return Err(VolumeError::Refused(
                "the retired TPM records' NV key shares need the TPM to be erased".into(),
            ));
        };
        rekey::rewrap_all(cipherdir, &keys, old, progress)?;
        let blockers = rekey::verify(cipherdir, &keys, old)?.blockers();
        if let Some(first) = blockers.first() {
            return Err(blocked(old, blockers.len(), first));
        }
        for i in retired.into_iter().filter(|i| !bound.contains(i)) {
            crate::tpm::nv::erase_share(tcti, i)?;
            erased.push(i);
        }
    }
    crate::failpoint::hit(FP_ERASED);
    let f = rotation::finish(cipherdir, &keys, old, false, progress)?;
    if let Some(first) = f.blockers.first().filter(|_| !f.destroyed) {
        return Err(blocked(old, f.blockers.len(), first));
    }
    // After a crash past the erasure the unlock held no copy of the old KEK to drop.
    let keys = if keys.kek_for(old).is_ok() {
        Arc::new(keys.without_kek(old)?)
    } else {
        keys
    };
    Ok(Purged {
        rotation: f,
        keys,
        erased,
        bound,
        recovery_key,
    })
}

/// Failpoint: the old KEK's NV key shares are erased; the config still holds the old KEK.
pub const FP_ERASED: &str = "purge.shares.erased";

fn blocked(old: u32, n: usize, first: &str) -> VolumeError {
    VolumeError::Refused(format!(
        "KEK {old} kept: {n} objects still need it (first: {first}); repair them (dekfs fsck \
         --repair) and run the purge again"
    ))
}
