//! The volume layer's audit events (init, unlock success and failure), written to the volume's
//! own log through a local target so that several volumes in one process never mix. Must NOT
//! fail the operation it records, nor record for a directory that is not a volume.

use super::{UnlockedVolume, VolumeError};
use crate::audit::{Event, Target};
use crate::crypto::VolumeKeys;
use crate::format::{ProtectorBody, VolumeConfig, PROTECTOR_KIND_TPM2};
use std::path::Path;

fn append(t: Target, e: Event) {
    if let Err(err) = t.append(e) {
        log::warn!("audit: cannot append to {}: {err}", t.paths.log.display());
    }
}

pub(super) fn kind_name(b: &ProtectorBody) -> &'static str {
    match b {
        ProtectorBody::Passphrase(_) => "passphrase",
        ProtectorBody::Recovery(_) => "recovery-key",
        ProtectorBody::Unknown { kind, .. } if *kind == PROTECTOR_KIND_TPM2 => "tpm2",
        ProtectorBody::Unknown { .. } => "unknown",
    }
}

/// One `init` line naming the protectors created.
pub(super) fn created(cipherdir: &Path, keys: &VolumeKeys, config: &VolumeConfig) {
    let kinds: Vec<&str> = config
        .protectors
        .iter()
        .map(|p| kind_name(&p.body))
        .collect();
    let e = Event::new("init")
        .volume(keys.volume_id())
        .key_version(keys.active_kek_version())
        .detail(format!("protectors: {}", kinds.join(",")));
    append(Target::for_volume(cipherdir).with_keys(keys), e);
}

/// One `unlock` line: chained on success; on failure unkeyed (pending) since no key is held.
pub(super) fn unlock(cipherdir: &Path, kind: &str, r: &Result<UnlockedVolume, VolumeError>) {
    match r {
        Ok(u) => {
            let e = Event::new("unlock")
                .protector(kind)
                .volume(&u.info.volume_id)
                .key_version(u.keys.active_kek_version());
            append(Target::for_volume(cipherdir).with_keys(&u.keys), e);
        }
        Err(
            VolumeError::NotAVolume(_)
            | VolumeError::UnsupportedVersion(_)
            | VolumeError::UnsupportedFeature(_)
            | VolumeError::NotEmpty(_),
        ) => {}
        // The volume has no protector of this kind: nothing was tried.
        Err(VolumeError::NoSuchProtector(_)) => {}
        Err(e) => append(
            Target::for_volume(cipherdir),
            Event::new("unlock").protector(kind).failed(e.to_string()),
        ),
    }
}
