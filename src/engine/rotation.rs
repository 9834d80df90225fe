//! Finishing a KEK rotation whose config step is done (a fresh `rekey`, a
//! `--resume`, or a mount that finds one pending): rewrap every object,
//! verify that none still holds the retiring KEK, and only then destroy it.
//! It must not start a rotation (volume/rotate.rs `begin` does) and never
//! destroys the old KEK while an object may need it, unless forced.

use super::rekey::{self, Report, Stats};
use crate::crypto::VolumeKeys;
use crate::volume::rotate;
use crate::volume::{UnlockedVolume, VolumeError};
use std::path::Path;
use std::sync::Arc;

/// What finishing did.
pub struct Finished {
    pub old: u32,
    pub new: u32,
    pub rewrap: Report,
    /// Wall time of the rewrap walk (its final sync included).
    pub rewrap_time: std::time::Duration,
    pub verify: Report,
    /// KEK `old` is gone from the config.
    pub destroyed: bool,
    /// What kept (or, forced, did not keep) the old KEK alive.
    pub blockers: Vec<String>,
}

/// Rewraps, verifies and (when nothing blocks, or `force`) destroys KEK
/// `old`. `keys` must have the new KEK active; objects that only KEK `old`
/// opens are problems when `keys` lacks it.
pub fn finish(
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    force: bool,
    progress: &mut dyn FnMut(&Stats),
) -> Result<Finished, VolumeError> {
    let new = keys.active_kek_version();
    log::info!("rekey: rewrapping every object from KEK {old} to KEK {new}");
    crate::audit::record(
        crate::audit::Event::new("rotation-rewrap")
            .key_version(new)
            .detail(format!("from KEK {old}")),
    );
    let t0 = std::time::Instant::now();
    let rewrap = rekey::rewrap_all(cipherdir, keys, old, progress)?;
    let rewrap_time = t0.elapsed();
    let verify = rekey::verify(cipherdir, keys, old)?;
    let blockers = verify.blockers();
    let destroyed = blockers.is_empty() || force;
    if destroyed {
        if !blockers.is_empty() {
            log::warn!(
                "rekey: destroying KEK {old} although {} objects may need it (--force)",
                blockers.len()
            );
        }
        // The audit chain moves to the new KEK's key while both are known.
        crate::audit::link_rotation(keys, new);
        rotate::destroy(cipherdir, keys, old)?;
        log::info!("rekey: KEK {old} destroyed; KEK {new} is the only key");
        crate::audit::record(
            crate::audit::Event::new("kek-destroyed")
                .key_version(old)
                .detail(format!("KEK {new} is the only key")),
        );
    } else {
        log::warn!(
            "rekey: KEK {old} kept: {} objects could not be moved to KEK {new}",
            blockers.len()
        );
    }
    crate::audit::record(
        crate::audit::Event::new("rotation-finish")
            .key_version(new)
            .detail(if destroyed {
                format!("KEK {old} destroyed")
            } else {
                format!("KEK {old} kept: {} blockers", blockers.len())
            }),
    );
    Ok(Finished {
        old,
        new,
        rewrap,
        rewrap_time,
        verify,
        destroyed,
        blockers,
    })
}

/// The unlocked volume after a destruction: the old KEK's copy is dropped
/// (wiped) and the description no longer lists it.
pub fn forget_old(u: &mut UnlockedVolume, old: u32) -> Result<(), VolumeError> {
    u.keys = Arc::new(u.keys.without_kek(old)?);
    u.info.keks.retain(|k| k.0 != old);
    u.info.protectors.retain(|p| p.kek_version != old);
    Ok(())
}

/// For a mount: finishes a rotation an earlier `rekey` left pending, before
/// the volume is served (offline, under the mount's volume lock; not for a
/// read-only mount, which only warns). A rotation
/// that cannot finish is left pending with a warning; the volume still
/// mounts, reading both KEKs and writing under the new one.
pub fn finish_pending_for_mount(
    cipherdir: &Path,
    u: &mut UnlockedVolume,
    read_only: bool,
) -> Result<(), VolumeError> {
    let Some((old, new)) = rotate::pending_rotation(cipherdir)? else {
        return Ok(());
    };
    if u.keys.active_kek_version() != new {
        return Ok(());
    }
    if read_only {
        eprintln!(
            "dekfs: warning: a key rotation (KEK {old} -> {new}) is unfinished; a read-only \
             mount does not finish it: run `dekfs rekey --resume` or mount read-write"
        );
        return Ok(());
    }
    eprintln!("dekfs: finishing an interrupted key rotation (KEK {old} -> {new}) before mounting");
    let f = finish(cipherdir, &u.keys, old, false, &mut |_| {})?;
    if f.destroyed {
        forget_old(u, old)?;
        eprintln!(
            "dekfs: key rotation finished: {} objects rewrapped, KEK {old} destroyed",
            f.rewrap.stats.rewrapped
        );
    } else {
        eprintln!(
            "dekfs: warning: key rotation still unfinished: {} objects still need KEK {old} \
             (first: {}); run `dekfs fsck` and `dekfs rekey --resume`",
            f.blockers.len(),
            f.blockers.first().map_or("", String::as_str)
        );
    }
    Ok(())
}
