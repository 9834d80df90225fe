//! `read_info`: describe a volume from its config without any key (for `dekfs status`). Must NOT
//! present anything as authenticated: without the KEK the config MAC cannot be checked.

use super::config_io::read_config_bytes;
use super::protector::params_of;
use super::{config_format_error, KmipInfo, ProtectorInfo, Tpm2Info, VolumeError, VolumeInfo};
use crate::format::{
    KmipBody, ProtectorBody, Tpm2Body, VolumeConfig, FORMAT_VERSION, PROTECTOR_KIND_KMIP,
    PROTECTOR_KIND_TPM2,
};
use std::path::Path;

pub(crate) fn info_from_config(c: &VolumeConfig) -> VolumeInfo {
    let active = c.active_kek_version();
    VolumeInfo {
        volume_id: c.volume_id,
        format_version: FORMAT_VERSION,
        created: c.created,
        keks: c
            .keks
            .iter()
            .map(|k| (k.version, k.created, Some(k.version) == active))
            .collect(),
        protectors: c
            .protectors
            .iter()
            .map(|p| ProtectorInfo {
                kind: match &p.body {
                    ProtectorBody::Passphrase(_) => "passphrase",
                    ProtectorBody::Recovery(_) => "recovery-key",
                    ProtectorBody::Unknown { kind, .. } if *kind == PROTECTOR_KIND_TPM2 => "tpm2",
                    ProtectorBody::Unknown { kind, .. } if *kind == PROTECTOR_KIND_KMIP => "kmip",
                    ProtectorBody::Unknown { .. } => "unknown",
                },
                id: p.protector_id.iter().map(|b| format!("{b:02x}")).collect(),
                kek_version: p.kek_version,
                created: p.created,
                kdf: match &p.body {
                    ProtectorBody::Passphrase(b) => Some(params_of(b)),
                    _ => None,
                },
                tpm2: match &p.body {
                    ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_TPM2 => {
                        Some(tpm2_info(body))
                    }
                    _ => None,
                },
                kmip: match &p.body {
                    ProtectorBody::Unknown { kind, body } if *kind == PROTECTOR_KIND_KMIP => {
                        Some(kmip_info(body))
                    }
                    _ => None,
                },
            })
            .collect(),
        rotation_period_days: c.rotation_period.as_ref().map(|p| p.days),
    }
}

fn tpm2_info(body: &[u8]) -> Tpm2Info {
    match Tpm2Body::parse(body) {
        Ok(b) => Tpm2Info {
            pcrs: b.pcrs(),
            pin: b.pin_required(),
            template_version: b.template_version,
            error: None,
        },
        Err(e) => Tpm2Info {
            pcrs: Vec::new(),
            pin: false,
            template_version: body.first().copied().unwrap_or(0),
            error: Some(e.to_string()),
        },
    }
}

fn kmip_info(body: &[u8]) -> KmipInfo {
    match KmipBody::parse(body) {
        Ok(b) => KmipInfo {
            key_uid: b.key_uid,
            servers: b
                .servers
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            error: None,
        },
        Err(e) => KmipInfo {
            key_uid: String::new(),
            servers: String::new(),
            error: Some(e.to_string()),
        },
    }
}

/// Parses dekfs.conf (unauthenticated: no key needed).
pub fn read_info(cipherdir: &Path) -> Result<VolumeInfo, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    Ok(info_from_config(&config))
}
