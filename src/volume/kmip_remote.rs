//! Retiring manager keys: `protector reseal --kmip` (rewrap under a new manager key, revoke
//! the old) and `protector remove --destroy-remote`. The config is replaced first, through
//! `manage::rewrite` with the usual guards; only then is a key revoked or destroyed, and only
//! one that no remaining record of this config uses. Must NOT retire a key before the config
//! that stops using it is durable.

use super::kmip::{endpoint_of, key_name, kmip_body, KmipKeyChoice, KmipWrap, Sealer};
use super::manage::{find_id, hex, rewrite};
use super::{UnlockedVolume, VolumeError};
use crate::format::{KmipBody, VolumeConfig, PROTECTOR_KIND_KMIP};
use crate::kmip::{Endpoint, KmipError, Session};
use std::path::Path;

/// What happened on the manager after the config was rewritten.
pub struct RemoteOutcome {
    /// The protector id (32 hex digits).
    pub id: String,
    /// The manager key now in use (reseal only).
    pub new_uid: Option<String>,
    /// Manager keys revoked (reseal) or revoked and destroyed (remove).
    pub retired: Vec<String>,
    /// Keys that should have been retired but were not, and why.
    pub failed: Vec<(String, KmipError)>,
}

/// Manager keys of `bodies` that no remaining kind-4 record of `config` uses.
fn unused_uids(config: &VolumeConfig, bodies: &[KmipBody]) -> Vec<String> {
    let used: Vec<String> = config
        .protectors
        .iter()
        .filter_map(|r| kmip_body(r).and_then(Result::ok))
        .map(|b| b.key_uid)
        .collect();
    let mut out: Vec<String> = bodies
        .iter()
        .map(|b| b.key_uid.clone())
        .filter(|u| !used.contains(u))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn kmip_records_of(
    config: &VolumeConfig,
    id: &[u8; 16],
) -> Result<Vec<(usize, KmipBody)>, VolumeError> {
    let mut out = Vec::new();
    for (i, r) in config.protectors.iter().enumerate() {
        if r.protector_id != *id {
            continue;
        }
        match kmip_body(r) {
            Some(b) => out.push((i, b?)),
            None => {
                return Err(VolumeError::Refused(format!(
                    "protector {} is not a KMIP protector",
                    hex(id)
                )))
            }
        }
    }
    Ok(out)
}

/// The only kmip protector's id when none is named.
fn pick(config: &VolumeConfig, id_prefix: Option<&str>) -> Result<[u8; 16], VolumeError> {
    if let Some(p) = id_prefix {
        return find_id(config, p);
    }
    let mut ids: Vec<[u8; 16]> = config
        .protectors
        .iter()
        .filter(|r| r.body.kind() == PROTECTOR_KIND_KMIP)
        .map(|r| r.protector_id)
        .collect();
    ids.dedup();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(VolumeError::NoSuchProtector("kmip")),
        _ => Err(VolumeError::Refused(
            "several KMIP protectors: name one with --id".into(),
        )),
    }
}

/// `protector reseal --kmip`: every record of one kmip protector rewrapped under a new manager
/// key (same servers and credentials); the old key is revoked (superseded) once no record uses
/// it. The config is replaced before anything is revoked.
pub fn reseal_kmip(
    cipherdir: &Path,
    u: &UnlockedVolume,
    id_prefix: Option<&str>,
) -> Result<RemoteOutcome, VolumeError> {
    let now = super::init::now_unix();
    let (id, new_uid, endpoint, old) = rewrite(cipherdir, u, |config| {
        let id = pick(config, id_prefix)?;
        let recs = kmip_records_of(config, &id)?;
        let first = recs
            .first()
            .map(|(_, b)| b.clone())
            .ok_or(VolumeError::NoSuchProtector("kmip"))?;
        let w = KmipWrap {
            endpoint: endpoint_of(&first),
            key: KmipKeyChoice::Create,
        };
        let mut sealer = Sealer::open(&w, &key_name(&config.volume_id, &id))?;
        for (i, _) in &recs {
            let v = config.protectors[*i].kek_version;
            config.protectors[*i] = sealer.record(&u.keys, v, id, now)?;
        }
        let bodies: Vec<KmipBody> = recs.into_iter().map(|(_, b)| b).collect();
        let old = unused_uids(config, &bodies);
        Ok((id, sealer.uid().to_string(), w.endpoint, old))
    })?;
    let mut out = RemoteOutcome {
        id: hex(&id),
        new_uid: Some(new_uid),
        retired: Vec::new(),
        failed: Vec::new(),
    };
    retire(&endpoint, old, &mut out, |s, uid| s.revoke(uid, true));
    Ok(out)
}

/// `protector remove --destroy-remote`: the protector leaves the config (with the same guards
/// as any removal), then its manager key is revoked and destroyed once no record uses it.
/// Every volume protected only by that key is locked for good.
pub fn destroy_remote_key(
    cipherdir: &Path,
    u: &UnlockedVolume,
    id_prefix: &str,
    force: bool,
) -> Result<RemoteOutcome, VolumeError> {
    let (id, endpoint, old) = rewrite(cipherdir, u, |config| {
        let id = find_id(config, id_prefix)?;
        let recs = kmip_records_of(config, &id)?;
        let first = recs
            .first()
            .map(|(_, b)| b.clone())
            .ok_or(VolumeError::NoSuchProtector("kmip"))?;
        config.protectors.retain(|p| p.protector_id != id);
        super::manage::check_removal(config, force)?;
        let bodies: Vec<KmipBody> = recs.into_iter().map(|(_, b)| b).collect();
        Ok((id, endpoint_of(&first), unused_uids(config, &bodies)))
    })?;
    let mut out = RemoteOutcome {
        id: hex(&id),
        new_uid: None,
        retired: Vec::new(),
        failed: Vec::new(),
    };
    retire(&endpoint, old, &mut out, Session::revoke_and_destroy);
    Ok(out)
}

fn retire(
    endpoint: &Endpoint,
    uids: Vec<String>,
    out: &mut RemoteOutcome,
    f: impl Fn(&mut Session, &str) -> Result<(), KmipError>,
) {
    if uids.is_empty() {
        return;
    }
    let mut session = match Session::open(endpoint) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            let mut uids = uids.into_iter();
            if let Some(first) = uids.next() {
                out.failed.push((first, e));
            }
            for u in uids {
                out.failed.push((u, KmipError::Setup(msg.clone())));
            }
            return;
        }
    };
    for uid in uids {
        match f(&mut session, &uid) {
            Ok(()) => out.retired.push(uid),
            Err(e) => out.failed.push((uid, e)),
        }
    }
}
