//! Software computation of the tpm2 protector's policy digest (PolicyPCR [+ PolicyAuthValue],
//! TPM 2.0 Part 3 §23) and of the PIN's authValue. Pure functions: must NOT talk to a TPM; the
//! seal path cross-checks this computation against a TPM trial session.

use crate::format::{pcrs_of_mask, TPM2_ALG_SHA256};
use crate::secret::SecretBytes;
use sha2::{Digest, Sha256};

pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;
pub const TPM_CC_POLICY_AUTH_VALUE: u32 = 0x0000_016B;

/// Marshalled TPML_PCR_SELECTION (one sha256 selection, 3-octet bitmap) for `mask`.
pub fn pcr_selection_bytes(mask: u32) -> [u8; 10] {
    let m = mask.to_le_bytes();
    let alg = TPM2_ALG_SHA256.to_be_bytes();
    [0, 0, 0, 1, alg[0], alg[1], 3, m[0], m[1], m[2]]
}

/// digestTPM of PolicyPCR: SHA-256 over the selected PCR values in ascending PCR order.
pub fn pcr_composite(values: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

/// policyDigest = H(H(0³² ‖ CC_PolicyPCR ‖ pcrs ‖ digestTPM) [‖ CC_PolicyAuthValue]).
pub fn policy_digest(mask: u32, values: &[[u8; 32]], pin: bool) -> [u8; 32] {
    let mut d: [u8; 32] = Sha256::new()
        .chain_update([0u8; 32])
        .chain_update(TPM_CC_POLICY_PCR.to_be_bytes())
        .chain_update(pcr_selection_bytes(mask))
        .chain_update(pcr_composite(values))
        .finalize()
        .into();
    if pin {
        d = Sha256::new()
            .chain_update(d)
            .chain_update(TPM_CC_POLICY_AUTH_VALUE.to_be_bytes())
            .finalize()
            .into();
    }
    d
}

/// The sealed object's authValue for a PIN: SHA-256(PIN), so PINs of any length fit the
/// 32-byte authValue of a SHA-256 object. Kept in `SecretBytes`.
pub fn pin_auth(pin: &SecretBytes) -> SecretBytes {
    let mut out = SecretBytes::zeroed(32);
    let mut d = Sha256::digest(pin.expose());
    out.expose_mut().copy_from_slice(&d);
    zeroize::Zeroize::zeroize(d.as_mut_slice());
    out
}

/// The PCRs, in order, whose current value differs from the recorded one.
pub fn changed_pcrs(mask: u32, recorded: &[[u8; 32]], current: &[[u8; 32]]) -> Vec<u8> {
    pcrs_of_mask(mask)
        .into_iter()
        .zip(recorded.iter().zip(current.iter()))
        .filter(|(_, (r, c))| r != c)
        .map(|(p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Frozen: the policy of a PCR-7 seal over an all-zero PCR 7 (swtpm right after startup),
    /// as `tpm2_createpolicy --policy-pcr -l sha256:7` computes it.
    #[test]
    fn pcr7_zero_policy_is_frozen() {
        let d = policy_digest(1 << 7, &[[0u8; 32]], false);
        assert_eq!(
            hex(&d),
            "8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b"
        );
        let p = policy_digest(1 << 7, &[[0u8; 32]], true);
        assert_ne!(p, d);
    }

    #[test]
    fn selection_bytes() {
        assert_eq!(
            pcr_selection_bytes(1 << 7),
            [0, 0, 0, 1, 0, 0x0B, 3, 0x80, 0, 0]
        );
        assert_eq!(pcr_selection_bytes(1 << 23)[9], 0x80);
    }

    #[test]
    fn changed() {
        let mask = (1 << 0) | (1 << 7);
        assert_eq!(
            changed_pcrs(mask, &[[0; 32], [1; 32]], &[[0; 32], [2; 32]]),
            vec![7]
        );
        assert!(changed_pcrs(mask, &[[0; 32], [1; 32]], &[[0; 32], [1; 32]]).is_empty());
    }

    #[test]
    fn pin_auth_is_sha256() {
        let a = pin_auth(&SecretBytes::new(b"1234".to_vec()));
        assert_eq!(
            hex(a.expose()),
            "03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4"
        );
    }
}
