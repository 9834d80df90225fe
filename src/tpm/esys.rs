//! The tss-esapi calls behind seal/unseal: the frozen sealed-object template, PCR reads and
//! policies (the SRK and its salted sessions are in `srk`). Every transient object and session
//! is recorded when created and flushed before returning, on success and on every error (a raw
//! swtpm socket has no resource manager). Must NOT interpret volume data or keep key bytes outside zeroizing buffers.

use super::policy::{self, changed_pcrs};
use super::srk::{check_pin, create_srk, hmac_session, policy_session};
use super::{Tcti, TpmRefusal};
use crate::format::{pcrs_of_mask, Tpm2Body, TPM2_MAX_PRIVATE, TPM2_MAX_PUBLIC, TPM2_NAME_LEN};
use crate::secret::SecretBytes;
use tss_esapi::attributes::{ObjectAttributes, ObjectAttributesBuilder};
use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Rc;
use tss_esapi::constants::{PropertyTag, SessionType};
use tss_esapi::handles::ObjectHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Digest, KeyedHashScheme, PcrSelectSize, PcrSelectionList, PcrSelectionListBuilder,
    PcrSlot, Private, Public, PublicBuilder, PublicKeyedHashParameters, SensitiveData,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, Error as TssError};

/// What sealing produced: everything the kind-3 body records.
pub struct Sealed {
    /// Name of the SRK the object was sealed under (pinned in template-2 records).
    pub srk_name: [u8; TPM2_NAME_LEN],
    pub pcr_values: Vec<[u8; 32]>,
    pub policy_digest: [u8; 32],
    pub public: Vec<u8>,
    pub private: Vec<u8>,
}

/// Handles to flush, in creation order; `finish` flushes them in reverse on every path.
pub(super) struct Tracked {
    pub(super) handles: Vec<ObjectHandle>,
}

impl Tracked {
    fn finish(self, ctx: &mut Context) {
        for h in self.handles.into_iter().rev() {
            if let Err(e) = ctx.flush_context(h) {
                log::warn!("TPM: flushing a transient handle failed: {e}");
            }
        }
    }
}

fn kind(e: &TssError) -> Option<Rc> {
    match e {
        TssError::Tss2Error(rc) => rc.kind(),
        TssError::WrapperError(_) => None,
    }
}

pub(super) fn failed(what: &str, e: TssError) -> TpmRefusal {
    TpmRefusal::Failed(format!("{what}: {e}"))
}

pub(super) fn connect(tcti: &Tcti) -> Result<Context, TpmRefusal> {
    // libtss2 prints its own ERROR lines to stderr; dekfs reports failures itself.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    if let Some(p) = tcti.device_path() {
        if !p.exists() {
            return Err(TpmRefusal::Unavailable {
                tcti: tcti.to_string(),
                detail: format!("{} does not exist (TPM absent?)", p.display()),
            });
        }
    }
    Context::new(tcti.conf()).map_err(|e| TpmRefusal::Unavailable {
        tcti: tcti.to_string(),
        detail: e.to_string(),
    })
}

/// Runs `f` on a fresh context and flushes whatever it tracked, whatever it returns.
pub(super) fn with_tpm<T>(
    tcti: &Tcti,
    f: impl FnOnce(&mut Context, &mut Tracked) -> Result<T, TpmRefusal>,
) -> Result<T, TpmRefusal> {
    let mut ctx = connect(tcti)?;
    let mut tracked = Tracked {
        handles: Vec::new(),
    };
    let r = f(&mut ctx, &mut tracked);
    tracked.finish(&mut ctx);
    r
}

fn selection(mask: u32) -> Result<PcrSelectionList, TpmRefusal> {
    let slots: Vec<PcrSlot> = pcrs_of_mask(mask)
        .into_iter()
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<Result<_, _>>()
        .map_err(|e| failed("PCR selection", e))?;
    PcrSelectionListBuilder::new()
        .with_size_of_select(PcrSelectSize::ThreeOctets)
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(|e| failed("PCR selection", e))
}

fn read_pcrs_ctx(ctx: &mut Context, mask: u32) -> Result<Vec<[u8; 32]>, TpmRefusal> {
    let mut out = Vec::new();
    for i in pcrs_of_mask(mask) {
        let (_, _, digests) = ctx.execute_without_session(|c| {
            c.pcr_read(selection(1 << i)?.clone())
                .map_err(|e| failed("PCR read", e))
        })?;
        let v: [u8; 32] = match digests.value() {
            [d] => d.value().try_into().ok(),
            _ => None,
        }
        .ok_or_else(|| TpmRefusal::Failed(format!("PCR {i} has no sha256 value")))?;
        out.push(v);
    }
    Ok(out)
}

/// Current sha256 values of the PCRs in `mask`, ascending.
pub fn read_pcrs(tcti: &Tcti, mask: u32) -> Result<Vec<[u8; 32]>, TpmRefusal> {
    with_tpm(tcti, |ctx, _| read_pcrs_ctx(ctx, mask))
}

/// Sealed-object attributes, template version 1: fixedTPM, fixedParent, adminWithPolicy,
/// userWithAuth clear (only the policy authorises), noDA exactly when there is no PIN.
fn sealed_attributes(pin: bool) -> Result<ObjectAttributes, TssError> {
    ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_admin_with_policy(true)
        .with_no_da(!pin)
        .build()
}

fn sealed_template_v1(policy_digest: &[u8; 32], pin: bool) -> Result<Public, TssError> {
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(sealed_attributes(pin)?)
        .with_auth_policy(Digest::try_from(policy_digest.to_vec())?)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

fn apply_policy(
    ctx: &mut Context,
    p: PolicySession,
    mask: u32,
    values: &[[u8; 32]],
    pin: bool,
) -> Result<(), TssError> {
    let composite = Digest::try_from(policy::pcr_composite(values).to_vec())?;
    let sel = selection(mask)
        .map_err(|_| TssError::WrapperError(tss_esapi::WrapperErrorKind::InvalidParam))?;
    ctx.policy_pcr(p, composite, sel)?;
    if pin {
        ctx.policy_auth_value(p)?;
    }
    Ok(())
}

fn pin_auth(pin: &SecretBytes) -> Result<Auth, TpmRefusal> {
    Auth::try_from(policy::pin_auth(pin).expose().to_vec()).map_err(|e| failed("PIN", e))
}

/// Seals `payload` under the SRK with PolicyPCR over the current values of `mask` (and
/// PolicyAuthValue with `pin`). The software policy digest is checked against a trial session.
pub fn seal(
    tcti: &Tcti,
    payload: &SecretBytes,
    mask: u32,
    pin: Option<&SecretBytes>,
) -> Result<Sealed, TpmRefusal> {
    with_tpm(tcti, |ctx, t| {
        let pcr_values = read_pcrs_ctx(ctx, mask)?;
        let digest = policy::policy_digest(mask, &pcr_values, pin.is_some());
        let srk = create_srk(ctx, t)?;
        let (_, trial) = policy_session(ctx, t, &srk, SessionType::Trial)?;
        apply_policy(ctx, trial, mask, &pcr_values, pin.is_some())
            .map_err(|e| failed("trial policy", e))?;
        let tpm_digest = ctx
            .policy_get_digest(trial)
            .map_err(|e| failed("trial policy digest", e))?;
        if tpm_digest.value() != digest.as_slice() {
            return Err(TpmRefusal::Failed(
                "the TPM computes a different policy digest than dekfs".into(),
            ));
        }
        let template =
            sealed_template_v1(&digest, pin.is_some()).map_err(|e| failed("template", e))?;
        let auth = pin.map(pin_auth).transpose()?;
        let data = SensitiveData::try_from(payload.expose().to_vec())
            .map_err(|e| failed("sealed data", e))?;
        let hmac = hmac_session(ctx, t, &srk)?;
        let r = ctx
            .execute_with_session(Some(hmac), |c| {
                c.create(srk.handle, template, auth, Some(data), None, None)
            })
            .map_err(|e| failed("sealing", e))?;
        let public = r
            .out_public
            .marshall()
            .map_err(|e| failed("public area", e))?;
        let private = r.out_private.value().to_vec();
        if public.len() > TPM2_MAX_PUBLIC || private.len() > TPM2_MAX_PRIVATE {
            return Err(TpmRefusal::Failed(
                "sealed object larger than the format allows".into(),
            ));
        }
        Ok(Sealed {
            srk_name: srk.name,
            pcr_values,
            policy_digest: digest,
            public,
            private,
        })
    })
}

/// Checks a body against template version 1 before the TPM sees it.
fn check_body(body: &Tpm2Body) -> Result<Public, TpmRefusal> {
    let corrupt = |s: &str| TpmRefusal::Corrupt(s.to_string());
    let want = policy::policy_digest(body.pcr_mask, &body.pcr_values, body.pin_required());
    if want != body.policy_digest {
        return Err(corrupt("policy digest does not match the recorded PCRs"));
    }
    let public =
        Public::unmarshall(&body.public).map_err(|_| corrupt("public area does not parse"))?;
    if public.marshall().ok().as_deref() != Some(body.public.as_slice()) {
        return Err(corrupt("public area is not canonical"));
    }
    let attrs = sealed_attributes(body.pin_required()).map_err(|e| failed("template", e))?;
    let ok = matches!(public, Public::KeyedHash { .. })
        && public.name_hashing_algorithm() == HashingAlgorithm::Sha256
        && public.object_attributes() == attrs
        && public.auth_policy().value() == body.policy_digest.as_slice();
    if !ok {
        return Err(corrupt("public area does not match template version 1"));
    }
    Ok(public)
}

fn pin_failure(ctx: &mut Context, e: &TssError) -> Option<TpmRefusal> {
    let prop = |ctx: &mut Context, p| ctx.get_tpm_property(p).ok().flatten();
    match kind(e)? {
        Rc::AuthFail | Rc::BadAuth => {
            let max = prop(ctx, PropertyTag::MaxAuthFail);
            let count = prop(ctx, PropertyTag::LockoutCounter);
            let retries_left = max.zip(count).map(|(m, c)| m.saturating_sub(c));
            Some(TpmRefusal::WrongPin { retries_left })
        }
        Rc::Lockout => Some(TpmRefusal::Lockout {
            interval_secs: prop(ctx, PropertyTag::LockoutInterval),
        }),
        _ => None,
    }
}

/// Unseals the payload of `body`. PCRs are compared first, so a changed PCR is reported by
/// number and never costs a PIN try.
pub fn unseal(
    tcti: &Tcti,
    body: &Tpm2Body,
    pin: Option<&SecretBytes>,
) -> Result<SecretBytes, TpmRefusal> {
    let public = check_body(body)?;
    let private = Private::try_from(body.private.clone())
        .map_err(|_| TpmRefusal::Corrupt("private area too large".into()))?;
    if body.pin_required() && pin.is_none() {
        return Err(TpmRefusal::PinNeeded);
    }
    with_tpm(tcti, |ctx, t| {
        let current = read_pcrs_ctx(ctx, body.pcr_mask)?;
        let changed = changed_pcrs(body.pcr_mask, &body.pcr_values, &current);
        if !changed.is_empty() {
            return Err(TpmRefusal::PcrChanged { pcrs: changed });
        }
        let srk = create_srk(ctx, t)?;
        check_pin(&srk, body.srk_name.as_ref())?;
        let obj = ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.load(srk.handle, private, public)
            })
            .map_err(|e| TpmRefusal::ObjectRejected(e.to_string()))?;
        t.handles.push(obj.into());
        let (session, p) = policy_session(ctx, t, &srk, SessionType::Policy)?;
        if let Err(e) = apply_policy(ctx, p, body.pcr_mask, &body.pcr_values, body.pin_required()) {
            // A PCR extended between the read above and PolicyPCR.
            let now = read_pcrs_ctx(ctx, body.pcr_mask)?;
            let changed = changed_pcrs(body.pcr_mask, &body.pcr_values, &now);
            return Err(if changed.is_empty() {
                failed("policy", e)
            } else {
                TpmRefusal::PcrChanged { pcrs: changed }
            });
        }
        if let Some(pin) = pin.filter(|_| body.pin_required()) {
            ctx.tr_set_auth(obj.into(), pin_auth(pin)?)
                .map_err(|e| failed("PIN", e))?;
        }
        match ctx.execute_with_session(Some(session), |c| c.unseal(obj.into())) {
            Ok(data) => Ok(SecretBytes::new(data.value().to_vec())),
            Err(e) => Err(pin_failure(ctx, &e).unwrap_or_else(|| match kind(&e) {
                Some(Rc::PolicyFail | Rc::Value) => {
                    TpmRefusal::Failed(format!("the TPM refused the policy: {e}"))
                }
                _ => failed("unseal", e),
            })),
        }
    })
}
