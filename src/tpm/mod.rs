//! TPM 2.0 access for the tpm2 protector: TCTI selection, seal/unseal of a KEK payload under a
//! PCR (+ PIN) policy, NV key shares (nv.rs), the NV copy of a volume's rollback record
//! (rollback_nv.rs), and refusal reasons users can act on. Must NOT read or write volume files,
//! decide which protector to try, or let key bytes leave `crate::secret` types (and TPM buffer
//! types that zeroize) — and it must flush every transient handle and session on every path.

mod esys;
pub mod nv;
pub mod policy;
mod rollback_nv;
mod srk;

pub use esys::{read_pcrs, seal, unseal, Sealed};
pub use rollback_nv::{nv_raise, nv_seen};

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tss_esapi::tcti_ldr::TctiNameConf;

/// The TCTI used when neither `--tpm-tcti`, `-o tpm_tcti=` nor `DEKFS_TPM_TCTI` names one.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// Environment fallback (never the only way: systemd units do not inherit the environment).
pub const TCTI_ENV: &str = "DEKFS_TPM_TCTI";

/// A validated TCTI name and configuration (`device:PATH`, `swtpm:host=H,port=N`,
/// `mssim:host=H,port=N` or `tabrmd[:...]`). Only these loaders are accepted: a free-form name
/// would let a string choose a shared library to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcti {
    text: String,
    conf: TctiNameConf,
}

impl Tcti {
    /// `explicit` (command line / mount option) wins, then `$DEKFS_TPM_TCTI`, then the default.
    pub fn select(explicit: Option<&str>) -> Result<Tcti, String> {
        match explicit {
            Some(t) => t.parse(),
            None => match std::env::var(TCTI_ENV) {
                Ok(t) if !t.trim().is_empty() => t.parse(),
                _ => DEFAULT_TCTI.parse(),
            },
        }
    }

    pub(crate) fn conf(&self) -> TctiNameConf {
        self.conf.clone()
    }

    /// The device node for `device:` TCTIs (to report "no TPM" without loading anything).
    pub(crate) fn device_path(&self) -> Option<&Path> {
        self.text.strip_prefix("device:").map(Path::new)
    }
}

impl FromStr for Tcti {
    type Err = String;

    fn from_str(s: &str) -> Result<Tcti, String> {
        let s = s.trim();
        let text = if s == "device" {
            DEFAULT_TCTI.to_string()
        } else {
            s.to_string()
        };
        let known = ["device:", "swtpm", "mssim", "tabrmd"]
            .iter()
            .any(|p| text.starts_with(p));
        if !known || text.bytes().any(|b| b.is_ascii_control()) {
            return Err(format!(
                "unsupported TCTI `{s}` (use device:/dev/tpmrmN or swtpm:host=127.0.0.1,port=N)"
            ));
        }
        if let Some(p) = text.strip_prefix("device:") {
            if !p.starts_with('/') {
                return Err(format!("TCTI `{s}`: the device path must be absolute"));
            }
        }
        let conf = TctiNameConf::from_str(&text).map_err(|e| format!("TCTI `{s}`: {e}"))?;
        Ok(Tcti { text, conf })
    }
}

impl fmt::Display for Tcti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why the TPM did not release the KEK. Every variant says what the user can do about it;
/// none carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmRefusal {
    /// No TPM at the device path, or the TCTI could not connect.
    Unavailable { tcti: String, detail: String },
    /// These PCRs differ from the values recorded at seal time.
    PcrChanged { pcrs: Vec<u8> },
    /// PolicyAuthValue failed; `retries_left` before dictionary-attack lockout, if known.
    WrongPin { retries_left: Option<u32> },
    /// The TPM is in dictionary-attack lockout; one try returns every `interval_secs`.
    Lockout { interval_secs: Option<u32> },
    /// The protector needs a PIN and there is no way to ask for one.
    PinNeeded,
    /// The TPM's storage key is not the one pinned in the record at seal time (names in hex).
    SrkMismatch { pinned: String, found: String },
    /// The TPM refused to load the sealed object: another TPM, a cleared TPM, or a damaged blob.
    ObjectRejected(String),
    /// The NV key share of a template-3 record is gone from the TPM (handle): erased by
    /// `shred --purge-backups`, `destroy` or `protector remove`, or the TPM was cleared.
    ShareGone { index: u32 },
    /// The protector record is malformed or inconsistent (checked before the TPM sees it).
    Corrupt(String),
    /// Any other TPM failure (the text names the TPM response).
    Failed(String),
}

fn list(pcrs: &[u8]) -> String {
    let v: Vec<String> = pcrs.iter().map(|p| p.to_string()).collect();
    v.join(", ")
}

impl fmt::Display for TpmRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmRefusal::Unavailable { tcti, detail } => {
                write!(f, "no TPM reachable through {tcti}: {detail}")
            }
            TpmRefusal::PcrChanged { pcrs } => write!(
                f,
                "PCR{} {} changed since sealing (sha256 bank)",
                if pcrs.len() == 1 { "" } else { "s" },
                list(pcrs)
            ),
            TpmRefusal::WrongPin { retries_left } => match retries_left {
                Some(n) => write!(f, "wrong TPM PIN ({n} tries left before lockout)"),
                None => f.write_str("wrong TPM PIN"),
            },
            TpmRefusal::Lockout { interval_secs } => match interval_secs {
                Some(s) => write!(
                    f,
                    "the TPM is in dictionary-attack lockout (one PIN try comes back every {s} s)"
                ),
                None => f.write_str("the TPM is in dictionary-attack lockout"),
            },
            TpmRefusal::PinNeeded => {
                f.write_str("the TPM protector needs a PIN and no terminal or --pin-file was given")
            }
            TpmRefusal::SrkMismatch { pinned, found } => write!(
                f,
                "SRK mismatch: the TPM's storage key (name {found}) is not the one this protector \
                 was sealed under (name {pinned}); a different or cleared TPM, or something \
                 between dekfs and the TPM; nothing was sent to it"
            ),
            TpmRefusal::ObjectRejected(d) => write!(
                f,
                "the TPM does not accept the sealed KEK (different or cleared TPM, or a damaged blob): {d}"
            ),
            TpmRefusal::ShareGone { index } => write!(
                f,
                "this TPM protector's key share (NV index {index:#010x}) is no longer in the TPM: \
                 it was erased (shred --purge-backups, destroy, protector remove) or the TPM was \
                 cleared; this record can never open again"
            ),
            TpmRefusal::Corrupt(d) => write!(f, "TPM protector record is corrupt: {d}"),
            TpmRefusal::Failed(d) => write!(f, "TPM error: {d}"),
        }
    }
}

impl TpmRefusal {
    /// One line telling the user what to do next.
    pub fn hint(&self) -> String {
        match self {
            TpmRefusal::PcrChanged { .. } => "unlock with the passphrase or recovery key, then `dekfs protector reseal --tpm2 CIPHERDIR`".into(),
            TpmRefusal::WrongPin { .. } => "retry with the right PIN (--pin-file FILE), or unlock with the passphrase or recovery key".into(),
            TpmRefusal::Lockout { .. } => "wait, unlock with the passphrase or recovery key, or reset with `tpm2_dictionarylockout --clear-lockout`".into(),
            TpmRefusal::PinNeeded => "pass --pin-file FILE, or unlock with the passphrase or recovery key".into(),
            TpmRefusal::SrkMismatch { .. } => "if the TPM was cleared or replaced on purpose, unlock with the passphrase or recovery key and `dekfs protector reseal --tpm2 CIPHERDIR`; otherwise suspect the TPM bus".into(),
            TpmRefusal::Unavailable { .. } => "select the TPM with --tpm-tcti / -o tpm_tcti=, or unlock with the passphrase or recovery key".into(),
            _ => "unlock with the passphrase or recovery key; `dekfs protector list` shows the protectors".into(),
        }
    }
}
