//! The TPM NV copy of a volume's rollback record (highest KEK version seen), for volumes with a
//! TPM protector: an owner-hierarchy NV index per volume, `DKRB ‖ volume_id(16) ‖ u32 version`,
//! at a handle derived from the volume id (probing on until the id matches or a slot is free).
//! Must NOT lower a stored version, nor touch an index that does not carry the dekfs magic.

use super::{esys::failed, Tcti, TpmRefusal};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{MaxNvBuffer, NvPublicBuilder};
use tss_esapi::Context;

const MAGIC: [u8; 4] = *b"DKRB";
const LEN: usize = 24;
/// First handle of dekfs's block in the owner NV range (0x01000000..0x013FFFFF is the owner's).
const BASE: u32 = 0x0100_d000;
/// Handles derived from a volume id spread over this many slots; a volume probes this many.
const SPREAD: u32 = 0x400;
const PROBES: u32 = 8;

fn record(volume_id: &[u8; 16], version: u32) -> [u8; LEN] {
    let mut r = [0u8; LEN];
    r[..4].copy_from_slice(&MAGIC);
    r[4..20].copy_from_slice(volume_id);
    r[20..].copy_from_slice(&version.to_le_bytes());
    r
}

fn start(volume_id: &[u8; 16]) -> u32 {
    u32::from(u16::from_le_bytes([volume_id[0], volume_id[1]])) % SPREAD
}

enum Slot {
    /// The index holding this volume's record, and the version in it.
    Ours(NvIndexHandle, u32),
    /// No index at this handle.
    Free(NvIndexTpmHandle),
    /// Someone else's (another volume, or not dekfs's).
    Other,
}

fn probe(ctx: &mut Context, h: u32, volume_id: &[u8; 16]) -> Result<Slot, TpmRefusal> {
    let tpm_h = NvIndexTpmHandle::new(h).map_err(|e| failed("NV handle", e))?;
    let obj = match ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm_h)))
    {
        Ok(o) => o,
        // Not defined (TPM_RC_HANDLE): free.
        Err(_) => return Ok(Slot::Free(tpm_h)),
    };
    let nv = NvIndexHandle::from(obj);
    let data = ctx.execute_with_nullauth_session(|c| c.nv_read(NvAuth::Owner, nv, LEN as u16, 0));
    let ours = match data {
        Ok(d) => {
            let b = d.value();
            (b.len() == LEN && b[..4] == MAGIC && b[4..20] == volume_id[..])
                .then(|| u32::from_le_bytes([b[20], b[21], b[22], b[23]]))
        }
        Err(_) => None,
    };
    match ours {
        Some(v) => Ok(Slot::Ours(nv, v)),
        None => {
            let mut o = obj;
            let _ = ctx.tr_close(&mut o);
            Ok(Slot::Other)
        }
    }
}

/// This volume's index and version if found, and the first free handle on its probe path.
struct Found {
    ours: Option<(NvIndexHandle, u32)>,
    free: Option<NvIndexTpmHandle>,
}

fn find(ctx: &mut Context, volume_id: &[u8; 16]) -> Result<Found, TpmRefusal> {
    let s = start(volume_id);
    let mut free = None;
    for i in 0..PROBES {
        match probe(ctx, BASE + (s + i) % SPREAD, volume_id)? {
            Slot::Ours(h, v) => {
                return Ok(Found {
                    ours: Some((h, v)),
                    free,
                })
            }
            Slot::Free(h) => {
                free.get_or_insert(h);
            }
            Slot::Other => {}
        }
    }
    Ok(Found { ours: None, free })
}

fn close(ctx: &mut Context, h: NvIndexHandle) {
    let mut o = h.into();
    let _ = ctx.tr_close(&mut o);
}

/// The version the TPM holds for the volume; None when it holds none.
pub fn nv_seen(tcti: &Tcti, volume_id: &[u8; 16]) -> Result<Option<u32>, TpmRefusal> {
    let mut ctx = super::esys::connect(tcti)?;
    let found = find(&mut ctx, volume_id)?;
    Ok(found.ours.map(|(h, v)| {
        close(&mut ctx, h);
        v
    }))
}

/// Raises the TPM's record of the volume to `version` (defining its index on first use).
pub fn nv_raise(tcti: &Tcti, volume_id: &[u8; 16], version: u32) -> Result<(), TpmRefusal> {
    let mut ctx = super::esys::connect(tcti)?;
    let data = MaxNvBuffer::try_from(record(volume_id, version).to_vec())
        .map_err(|e| failed("NV data", e))?;
    let found = find(&mut ctx, volume_id)?;
    let handle = match (found.ours, found.free) {
        (Some((h, v)), _) if v >= version => {
            close(&mut ctx, h);
            return Ok(());
        }
        (Some((h, _)), _) => h,
        (None, Some(free)) => {
            let attrs = NvIndexAttributesBuilder::new()
                .with_owner_write(true)
                .with_owner_read(true)
                .with_no_da(true)
                .build()
                .map_err(|e| failed("NV attributes", e))?;
            let public = NvPublicBuilder::new()
                .with_nv_index(free)
                .with_index_name_algorithm(HashingAlgorithm::Sha256)
                .with_index_attributes(attrs)
                .with_data_area_size(LEN)
                .build()
                .map_err(|e| failed("NV public", e))?;
            ctx.execute_with_nullauth_session(|c| c.nv_define_space(Provision::Owner, None, public))
                .map_err(|e| failed("NV define", e))?
        }
        (None, None) => {
            return Err(TpmRefusal::Failed(
                "no free NV index for the rollback record".into(),
            ))
        }
    };
    let r = ctx
        .execute_with_nullauth_session(|c| c.nv_write(NvAuth::Owner, handle, data, 0))
        .map_err(|e| failed("NV write", e));
    close(&mut ctx, handle);
    r
}
