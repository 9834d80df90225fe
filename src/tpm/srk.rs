//! The storage root key (SRK) and the sessions salted with it: the frozen SRK template, its
//! name, the pin check against a protector record, and the salted sessions that keep the sealed
//! payload encrypted on the bus. Must NOT seal, load or unseal objects (esys does) or trust an
//! SRK whose name differs from a pinned one.

use super::esys::{failed, Tracked};
use super::TpmRefusal;
use crate::format::{TPM2_ALG_SHA256, TPM2_NAME_LEN};
use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    EccParameter, EccPoint, EccScheme, KeyDerivationFunctionScheme, Public, PublicBuilder,
    PublicEccParametersBuilder, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall;
use tss_esapi::{Context, Error as TssError};

/// The SRK of this TPM and its name (nameAlg ‖ SHA-256 of its TPMT_PUBLIC).
pub(super) struct Srk {
    pub handle: KeyHandle,
    pub name: [u8; TPM2_NAME_LEN],
}

/// SRK template version 1: the TCG provisioning-guidance ECC NIST P-256 storage key
/// (AES-128-CFB, restricted decrypt, fixedTPM/fixedParent, sensitiveDataOrigin, userWithAuth,
/// noDA, empty authPolicy, zero 32-byte unique x and y), created in the owner hierarchy.
fn srk_template_v1() -> Result<Public, TssError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
                .with_ecc_scheme(EccScheme::Null)
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                .with_is_decryption_key(true)
                .with_restricted(true)
                .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::new(
            EccParameter::try_from(vec![0u8; 32])?,
            EccParameter::try_from(vec![0u8; 32])?,
        ))
        .build()
}

/// Name of an object from the public area the TPM returned: this is the key ESAPI encrypts the
/// session salt to, so it is the one that must match the pin.
fn name_of(public: &Public) -> Result<[u8; TPM2_NAME_LEN], TpmRefusal> {
    let bytes = public
        .marshall()
        .map_err(|e| failed("SRK public area", e))?;
    let mut n = [0u8; TPM2_NAME_LEN];
    n[..2].copy_from_slice(&TPM2_ALG_SHA256.to_be_bytes());
    n[2..].copy_from_slice(&Sha256::digest(&bytes));
    Ok(n)
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates the SRK from the owner seed and computes its name, cross-checked with the name
/// ESAPI recorded for the handle.
pub(super) fn create_srk(ctx: &mut Context, t: &mut Tracked) -> Result<Srk, TpmRefusal> {
    let template = srk_template_v1().map_err(|e| failed("SRK template", e))?;
    let r = ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(|e| failed("creating the SRK", e))?;
    t.handles.push(r.key_handle.into());
    let name = name_of(&r.out_public)?;
    let esys = ctx
        .tr_get_name(r.key_handle.into())
        .map_err(|e| failed("SRK name", e))?;
    if esys.value() != name.as_slice() {
        return Err(TpmRefusal::Failed(
            "the TPM returned an SRK whose name does not match its public area".into(),
        ));
    }
    Ok(Srk {
        handle: r.key_handle,
        name,
    })
}

/// Refuses an SRK other than the one the record was sealed under, before any session is salted
/// to it: a swapped key would let whoever answers in the TPM's place read the payload.
pub(super) fn check_pin(srk: &Srk, pinned: Option<&[u8; TPM2_NAME_LEN]>) -> Result<(), TpmRefusal> {
    match pinned {
        Some(p) if *p != srk.name => Err(TpmRefusal::SrkMismatch {
            pinned: hex(p),
            found: hex(&srk.name),
        }),
        _ => Ok(()),
    }
}

pub(super) fn salted_session(
    ctx: &mut Context,
    t: &mut Tracked,
    srk: &Srk,
    kind: SessionType,
) -> Result<AuthSession, TpmRefusal> {
    let s = ctx
        .start_auth_session(
            Some(srk.handle),
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(|e| failed("starting a salted session", e))?
        .ok_or_else(|| TpmRefusal::Failed("TPM returned no session".into()))?;
    t.handles.push(SessionHandle::from(s).into());
    Ok(s)
}

/// A policy session salted with the SRK, with response encryption, so the unsealed KEK is
/// encrypted on the wire under a key only the SRK's holder can derive.
pub(super) fn policy_session(
    ctx: &mut Context,
    t: &mut Tracked,
    srk: &Srk,
    kind: SessionType,
) -> Result<(AuthSession, PolicySession), TpmRefusal> {
    let s = salted_session(ctx, t, srk, kind)?;
    let (attrs, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .with_encrypt(true)
        .build();
    ctx.tr_sess_set_attributes(s, attrs, mask)
        .map_err(|e| failed("session attributes", e))?;
    let p = PolicySession::try_from(s).map_err(|e| failed("policy session", e))?;
    Ok((s, p))
}

/// An HMAC session salted with the SRK with command encryption: authorises use of the SRK
/// (empty auth) while the first command parameter, the sensitive data being sealed, crosses the
/// bus encrypted.
pub(super) fn hmac_session(
    ctx: &mut Context,
    t: &mut Tracked,
    srk: &Srk,
) -> Result<AuthSession, TpmRefusal> {
    let s = salted_session(ctx, t, srk, SessionType::Hmac)?;
    let (attrs, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .with_decrypt(true)
        .build();
    ctx.tr_sess_set_attributes(s, attrs, mask)
        .map_err(|e| failed("session attributes", e))?;
    Ok(s)
}
