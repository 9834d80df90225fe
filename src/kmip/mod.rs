//! A small KMIP 1.4 client: the TTLV codec, the few operations a KMIP protector needs (create,
//! activate, locate, AES-256-GCM encrypt/decrypt with associated data, state, revoke, destroy)
//! over mutually authenticated TLS. Must NOT know about volumes, configs or protector records
//! (volume/kmip.rs does), nor ever log key material or hand it out outside `crate::secret`.

mod client;
pub mod messages;
pub mod ttlv;

pub use client::{parse_servers, Endpoint, Session, DEFAULT_PORT, TIMEOUT_ENV};

use std::fmt;

/// Unique identifiers longer than this are refused (PyKMIP's are short decimals, other
/// managers' UUIDs 36 characters).
pub const MAX_UID_LEN: usize = 255;

#[derive(Debug)]
pub enum KmipError {
    /// The CA, certificate or key file could not be used, or the server list is malformed.
    Setup(String),
    /// No server answered at the TCP level: one line per server tried.
    Unreachable(Vec<String>),
    /// A server answered but the TLS handshake (or session) failed: one line per server.
    Tls(Vec<String>),
    /// A malformed or unsafe response (old protocol version, missing GCM tag, ...).
    Protocol(String),
    KeyRevoked {
        uid: String,
        state: &'static str,
    },
    KeyDestroyed {
        uid: String,
    },
    PermissionDenied {
        uid: String,
        message: String,
    },
    /// Decrypt did not authenticate: the record was altered or belongs elsewhere.
    DecryptFailed {
        uid: String,
        message: String,
    },
    /// Any other refusal, as the server words it.
    Refused {
        op: &'static str,
        reason: Option<u32>,
        message: String,
    },
}

impl fmt::Display for KmipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmipError::Setup(m) => write!(f, "KMIP setup: {m}"),
            KmipError::Unreachable(l) => {
                write!(f, "no KMIP server reachable ({})", l.join("; "))
            }
            KmipError::Tls(l) => write!(f, "TLS with the KMIP server failed ({})", l.join("; ")),
            KmipError::Protocol(m) => write!(f, "KMIP protocol error: {m}"),
            KmipError::KeyRevoked { uid, state } => {
                write!(
                    f,
                    "the key manager's key {uid} is {state}: the KMIP protector is locked"
                )
            }
            KmipError::KeyDestroyed { uid } => write!(
                f,
                "the key manager's key {uid} is destroyed or unknown: the KMIP protector can \
                 never open again"
            ),
            KmipError::PermissionDenied { uid, message } => write!(
                f,
                "the key manager denies this client the use of key {uid} ({message})"
            ),
            KmipError::DecryptFailed { uid, message } => write!(
                f,
                "the key manager could not open the wrapped KEK with key {uid} (the record was \
                 altered or belongs to another volume, protector or KEK version; {message})"
            ),
            KmipError::Refused {
                op,
                reason,
                message,
            } => match reason {
                Some(r) => write!(f, "KMIP {op} refused (reason {r:#x}): {message}"),
                None => write!(f, "KMIP {op} refused: {message}"),
            },
        }
    }
}

impl std::error::Error for KmipError {}

impl KmipError {
    /// What a person can do about it.
    pub fn hint(&self) -> String {
        match self {
            KmipError::Setup(_) => "check the --kmip-ca/--kmip-cert/--kmip-key files".into(),
            KmipError::Unreachable(_) => format!(
                "check the network and the key manager; {TIMEOUT_ENV}=MS changes the timeout; \
                 unlock with a passphrase or recovery key meanwhile"
            ),
            KmipError::Tls(_) => {
                "check the CA, the client certificate and key, and the server's name".into()
            }
            KmipError::KeyRevoked { .. } | KmipError::KeyDestroyed { .. } => {
                "the key was retired centrally; unlock with another protector".into()
            }
            KmipError::PermissionDenied { .. } => {
                "the client certificate must belong to the key's owner on the manager".into()
            }
            _ => "unlock with another protector".into(),
        }
    }
}

/// Identifiers end up in the config and in messages: printable ASCII only.
pub fn check_uid(id: &str) -> Result<(), KmipError> {
    if id.is_empty() || id.len() > MAX_UID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KmipError::Protocol(
            "key identifier empty, too long or not printable ASCII".into(),
        ));
    }
    Ok(())
}
