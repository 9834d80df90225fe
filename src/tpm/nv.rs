//! TPM NV key shares of template-3 tpm2 protectors: define an owner-hierarchy NV index holding
//! 32 random bytes, read them back over a salted session, and erase them (overwrite, then
//! undefine). Erasing the share is what makes every copy of the record (a pre-shred backup of
//! dekfs.conf included) useless on this TPM. Must NOT derive keys from the share (the volume
//! layer does), touch an index outside the dekfs handle range or one whose public area is not
//! the frozen share template, or leave a transient handle or session behind.

use super::esys::{failed, with_tpm, Tracked};
use super::srk::{create_srk, salted_session, Srk};
use super::TpmRefusal;
use crate::format::{TPM2_NV_FIRST, TPM2_NV_LAST};
use crate::secret::{Key32, SecretBytes};
use tss_esapi::attributes::{
    NvIndexAttributes, NvIndexAttributesBuilder, SessionAttributesBuilder,
};
use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Rc;
use tss_esapi::constants::{NvIndexType, SessionType};
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{MaxNvBuffer, NvPublic, NvPublicBuilder};
use tss_esapi::{Context, Error as TssError};

/// Size of a share: one 256-bit key.
pub const SHARE_LEN: usize = 32;
/// Handles tried before giving up on finding a free one.
const DEFINE_TRIES: usize = 16;

/// Share template version 1: an ordinary 32-byte index, nameAlg SHA-256, empty authPolicy and
/// empty authValue, AUTHREAD | AUTHWRITE | NO_DA. An empty auth needs no secret stored
/// anywhere; the share alone opens nothing (the sealed object still needs the PCR policy).
fn share_attributes(written: bool) -> Result<NvIndexAttributes, TssError> {
    NvIndexAttributesBuilder::new()
        .with_nv_index_type(NvIndexType::Ordinary)
        .with_auth_read(true)
        .with_auth_write(true)
        .with_no_da(true)
        .with_written(written)
        .build()
}

fn share_public(index: u32) -> Result<NvPublic, TssError> {
    NvPublicBuilder::new()
        .with_nv_index(NvIndexTpmHandle::new(index)?)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(share_attributes(false)?)
        .with_data_area_size(SHARE_LEN)
        .build()
}

fn rc(e: &TssError) -> Option<Rc> {
    match e {
        TssError::Tss2Error(rc) => rc.kind(),
        TssError::WrapperError(_) => None,
    }
}

fn in_range(index: u32) -> Result<(), TpmRefusal> {
    if (TPM2_NV_FIRST..=TPM2_NV_LAST).contains(&index) {
        Ok(())
    } else {
        Err(TpmRefusal::Corrupt(format!(
            "NV index {index:#010x} is outside the dekfs range"
        )))
    }
}

/// A salted HMAC session that authorises the share index (empty auth) and encrypts the first
/// command (`decrypt`) or response (`encrypt`) parameter: the share never crosses the bus in
/// the clear.
fn share_session(
    ctx: &mut Context,
    t: &mut Tracked,
    srk: &Srk,
    response: bool,
) -> Result<AuthSession, TpmRefusal> {
    let s = salted_session(ctx, t, srk, SessionType::Hmac)?;
    let b = SessionAttributesBuilder::new().with_continue_session(true);
    let (attrs, mask) = if response {
        b.with_encrypt(true).build()
    } else {
        b.with_decrypt(true).build()
    };
    ctx.tr_sess_set_attributes(s, attrs, mask)
        .map_err(|e| failed("session attributes", e))?;
    Ok(s)
}

/// The ESYS handle of `index` if it exists and is a dekfs share; `None` if no index is there.
fn open_share(ctx: &mut Context, index: u32) -> Result<Option<NvIndexHandle>, TpmRefusal> {
    in_range(index)?;
    let tpm = NvIndexTpmHandle::new(index).map_err(|e| failed("NV handle", e))?;
    let h = match ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm))) {
        Ok(h) => NvIndexHandle::from(h),
        Err(e) if matches!(rc(&e), Some(Rc::Handle)) => return Ok(None),
        Err(e) => return Err(failed("NV index lookup", e)),
    };
    let (public, _) = ctx
        .execute_without_session(|c| c.nv_read_public(h))
        .map_err(|e| failed("NV public area", e))?;
    let attrs = public.attributes();
    let expected = share_attributes(attrs.written()).map_err(|e| failed("NV", e))?;
    if attrs != expected
        || public.data_size() != SHARE_LEN
        || public.name_algorithm() != HashingAlgorithm::Sha256
        || !public.authorization_policy().value().is_empty()
    {
        return Err(TpmRefusal::Corrupt(format!(
            "NV index {index:#010x} is not a dekfs key share; refusing to use or erase it"
        )));
    }
    Ok(Some(h))
}

/// Defines a fresh share index at a random free handle of the dekfs range and writes `share`
/// into it. Returns the handle.
pub fn create_share(tcti: &super::Tcti, share: &Key32) -> Result<u32, TpmRefusal> {
    with_tpm(tcti, |ctx, t| {
        let srk = create_srk(ctx, t)?;
        for _ in 0..DEFINE_TRIES {
            let r: [u8; 4] =
                crate::crypto::random_array().map_err(|e| TpmRefusal::Failed(e.to_string()))?;
            let index = TPM2_NV_FIRST + u32::from_le_bytes(r) % (TPM2_NV_LAST - TPM2_NV_FIRST + 1);
            let public = share_public(index).map_err(|e| failed("NV template", e))?;
            let defined = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_define_space(Provision::Owner, None, public)
            });
            let h = match defined {
                Ok(h) => h,
                Err(e) if matches!(rc(&e), Some(Rc::NvDefined)) => continue,
                Err(e) => {
                    return Err(failed(
                        "defining the NV key share (owner authorisation must be empty)",
                        e,
                    ))
                }
            };
            let data =
                MaxNvBuffer::try_from(share.expose().to_vec()).map_err(|e| failed("NV data", e))?;
            let s = share_session(ctx, t, &srk, false)?;
            let w =
                ctx.execute_with_session(Some(s), |c| c.nv_write(NvAuth::NvIndex(h), h, data, 0));
            if let Err(e) = w {
                let _ = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                    c.nv_undefine_space(Provision::Owner, h)
                });
                return Err(failed("writing the NV key share", e));
            }
            return Ok(index);
        }
        Err(TpmRefusal::Failed(
            "no free NV index found in the dekfs range".into(),
        ))
    })
}

/// Reads the share at `index`. A missing index is `ShareGone`: erased by a purge or a destroy,
/// or the TPM was cleared.
pub fn read_share(tcti: &super::Tcti, index: u32) -> Result<SecretBytes, TpmRefusal> {
    with_tpm(tcti, |ctx, t| {
        let Some(h) = open_share(ctx, index)? else {
            return Err(TpmRefusal::ShareGone { index });
        };
        let srk = create_srk(ctx, t)?;
        let s = share_session(ctx, t, &srk, true)?;
        let data = ctx
            .execute_with_session(Some(s), |c| {
                c.nv_read(NvAuth::NvIndex(h), h, SHARE_LEN as u16, 0)
            })
            .map_err(|e| match rc(&e) {
                Some(Rc::NvUninitialized) => TpmRefusal::ShareGone { index },
                _ => failed("reading the NV key share", e),
            })?;
        Ok(SecretBytes::new(data.value().to_vec()))
    })
}

/// Overwrites the share at `index` with zeros, then undefines it. `Ok(false)`: nothing was
/// there. An index that is not a dekfs share is refused, never touched.
pub fn erase_share(tcti: &super::Tcti, index: u32) -> Result<bool, TpmRefusal> {
    with_tpm(tcti, |ctx, _| {
        let Some(h) = open_share(ctx, index)? else {
            return Ok(false);
        };
        let zeros = MaxNvBuffer::try_from(vec![0u8; SHARE_LEN]).map_err(|e| failed("NV", e))?;
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.nv_write(NvAuth::NvIndex(h), h, zeros, 0)
        })
        .map_err(|e| failed("overwriting the NV key share", e))?;
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.nv_undefine_space(Provision::Owner, h)
        })
        .map_err(|e| failed("undefining the NV key share (owner authorisation)", e))?;
        Ok(true)
    })
}

/// Whether a share index exists at `index` (for status and tests).
pub fn share_exists(tcti: &super::Tcti, index: u32) -> Result<bool, TpmRefusal> {
    with_tpm(tcti, |ctx, _| Ok(open_share(ctx, index)?.is_some()))
}
