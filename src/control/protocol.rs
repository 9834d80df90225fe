//! Control protocol messages (docs/CONTROL.md): the JSON shape of every request and response,
//! error codes, and total parsing of untrusted bytes. It must not do I/O, and no message type
//! here may carry key bytes: keys travel only in secret frames read into `secret` types.

use crate::secret::Key32;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Bumped only for incompatible changes; new optional
/// fields and new requests do not bump it (see "Versioning" in docs/CONTROL.md).
pub const VERSION: u32 = 1;

/// Most KEKs an unlock may carry (the active one plus retiring ones during a rekey).
pub const MAX_UNLOCK_KEYS: usize = 16;

/// Stable error codes: clients match on these, never on messages.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, not an object, wrong field types, or a missing field.
    BadRequest,
    /// A frame longer than the limit; the server closes the connection after it.
    TooLarge,
    /// The first message was not `hello`.
    HelloRequired,
    /// `hello` named a version this server does not speak.
    VersionMismatch,
    /// An `op` this server does not know (a newer client).
    UnknownRequest,
    /// The peer's uid is neither the mount's owner nor root.
    PermissionDenied,
    /// Too many connections at once; retry later.
    Busy,
    /// A message did not arrive in time; the server closes the connection after it.
    Timeout,
    /// The request needs unlocked keys and the volume is locked.
    Locked,
    /// `unlock` on a volume that is not locked.
    NotLocked,
    /// `unlock` keys that do not open the volume.
    WrongKey,
    /// A request this daemon knows but does not implement.
    NotImplemented,
    /// A request refused as asked (a shred of the root or of a path outside the volume).
    Refused,
    /// The path a request names does not exist.
    NotFound,
    /// A shred's final check found leftovers of the destroyed keys.
    CheckFailed,
    /// The daemon failed; the message says what, the log says more.
    Internal,
    /// A code added by a newer server; the message still explains it.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Locked => "locked",
            ErrorCode::NotLocked => "not_locked",
            ErrorCode::WrongKey => "wrong_key",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Refused => "refused",
            ErrorCode::NotFound => "not_found",
            ErrorCode::CheckFailed => "check_failed",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// Live figures of a mounted volume (`dekfs status`). Every field defaults, so an older client
/// reads a newer server's status and the other way round.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Status {
    pub pid: u32,
    pub uptime_secs: u64,
    pub mountpoint: String,
    pub cipherdir: String,
    pub locked: bool,
    /// The active KEK version; absent while locked.
    pub kek_version: Option<u32>,
    pub open_files: u64,
    pub cached_dir_keys: u64,
    pub cached_file_keys: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub integrity_errors: u64,
}

/// What an online rotation did (`rekey`'s final answer).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RekeyResult {
    pub old_kek: u32,
    pub new_kek: u32,
    pub dirs: u64,
    pub files: u64,
    pub rewrapped: u64,
    pub already_current: u64,
    /// Rewrap walks run (more than one when the workload moved objects
    /// behind the first).
    pub passes: u32,
    pub rewrap_ms: u64,
    /// Objects that still need the old KEK (paths and why).
    pub blockers: Vec<String>,
    /// KEK `old_kek` is gone from the config and the daemon's memory.
    pub destroyed: bool,
}

/// One message from the server. A request is answered by any number of `progress` messages
/// followed by exactly one final message (anything but `progress`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello {
        version: u32,
        server: String,
        pid: u32,
    },
    Status(Status),
    Progress {
        step: String,
        done: u64,
        total: u64,
    },
    Done {
        #[serde(default)]
        message: String,
    },
    /// The final answer to `rekey`.
    Rekeyed(RekeyResult),
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }

    pub fn done(message: impl Into<String>) -> Response {
        Response::Done {
            message: message.into(),
        }
    }

    /// Whether this message ends the answer to a request.
    pub fn is_final(&self) -> bool {
        !matches!(self, Response::Progress { .. })
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain types cannot fail; the fallback keeps the path panic-free.
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"type":"error","code":"internal","message":"unserialisable response"}"#.to_vec()
        })
    }

    /// Total: any bytes give a response or an error text, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Response, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("malformed response: {e}"))
    }
}

/// A request as the daemon's handler sees it, secrets already in locked memory.
pub enum Request {
    Status,
    Lock,
    /// Unwrapped KEKs by version, as `volume::unlock` produces them; the handler must verify
    /// them against the config before it accepts them.
    Unlock(Vec<(u32, Key32)>),
    /// Finish the KEK rotation the config holds (see docs/CONTROL.md).
    Rekey(RekeyRequest),
    /// Crypto-erasure of a path relative to the mountpoint (docs/CONTROL.md); `dry_run` only
    /// reports what it would destroy, `verify` extends the final check to every byte.
    Shred {
        path: String,
        dry_run: bool,
        verify: bool,
    },
    /// DEK renewal (`rekey --data`) of every file under `path`, a path inside the volume
    /// ("/" for all).
    Renew {
        path: String,
    },
}

/// An online rotation request. `keys`: every KEK of the pending rotation
/// (retiring and active), or none when the daemon already holds both.
pub struct RekeyRequest {
    pub keys: Vec<(u32, Key32)>,
    /// Destroy the old KEK even with blockers.
    pub force: bool,
    /// The client has just written the config step (for the audit line).
    pub started: bool,
}

impl Request {
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Lock => "lock",
            Request::Unlock(_) => "unlock",
            Request::Rekey(_) => "rekey",
            Request::Shred { .. } => "shred",
            Request::Renew { .. } => "renew",
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Unlock(keys) => {
                let versions: Vec<u32> = keys.iter().map(|(v, _)| *v).collect();
                write!(f, "Unlock(versions {versions:?}, <redacted>)")
            }
            Request::Shred { path, .. } => write!(f, "Shred({path:?})"),
            Request::Rekey(r) => {
                let versions: Vec<u32> = r.keys.iter().map(|(v, _)| *v).collect();
                write!(f, "Rekey(versions {versions:?}, <redacted>)")
            }
            other => f.write_str(other.op()),
        }
    }
}

/// The JSON part of a client message. `unlock` names the KEK versions; the keys follow as one
/// 32-byte secret frame each, in the same order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Wire {
    Hello {
        version: u32,
        #[serde(default)]
        client: String,
    },
    Status,
    Lock,
    Unlock {
        kek_versions: Vec<u32>,
    },
    /// The keys follow as key frames, as for `unlock` (none: the daemon
    /// uses its own).
    Rekey {
        #[serde(default)]
        kek_versions: Vec<u32>,
        #[serde(default)]
        force: bool,
        #[serde(default)]
        started: bool,
    },
    Shred {
        path: String,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        verify: bool,
    },
    Renew {
        path: String,
    },
}

const KNOWN_OPS: [&str; 7] = [
    "hello", "status", "lock", "unlock", "rekey", "shred", "renew",
];

impl Wire {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Total parse of one client frame; the error is the response to send.
    pub fn parse(bytes: &[u8]) -> Result<Wire, Response> {
        #[derive(Deserialize)]
        struct Op {
            op: String,
        }
        let op: Op = serde_json::from_slice(bytes).map_err(|e| {
            Response::error(ErrorCode::BadRequest, format!("not a request object: {e}"))
        })?;
        if !KNOWN_OPS.contains(&op.op.as_str()) {
            let shown: String = op.op.chars().take(64).collect();
            return Err(Response::error(
                ErrorCode::UnknownRequest,
                format!("unknown request {shown:?}"),
            ));
        }
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| {
            Response::error(ErrorCode::BadRequest, format!("malformed {}: {e}", op.op))
        })?;
        if let Wire::Rekey { kek_versions, .. } = &wire {
            if kek_versions.len() > MAX_UNLOCK_KEYS {
                return Err(Response::error(
                    ErrorCode::BadRequest,
                    format!("rekey takes at most {MAX_UNLOCK_KEYS} KEK versions"),
                ));
            }
        }
        if let Wire::Unlock { kek_versions } = &wire {
            if kek_versions.is_empty() || kek_versions.len() > MAX_UNLOCK_KEYS {
                return Err(Response::error(
                    ErrorCode::BadRequest,
                    format!("unlock needs 1 to {MAX_UNLOCK_KEYS} KEK versions"),
                ));
            }
        }
        Ok(wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_shapes() {
        assert_eq!(
            Wire::parse(br#"{"op":"hello","version":1}"#).unwrap(),
            Wire::Hello {
                version: 1,
                client: String::new()
            }
        );
        assert_eq!(
            Wire::parse(br#"{"op":"status","extra":3}"#).unwrap(),
            Wire::Status
        );
        let code = |b: &[u8]| match Wire::parse(b) {
            Err(Response::Error { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(br#"{"op":"fly"}"#), ErrorCode::UnknownRequest);
        assert_eq!(code(br#"{"op":"shred"}"#), ErrorCode::BadRequest);
        assert_eq!(code(br#"{"op":"renew"}"#), ErrorCode::BadRequest);
        assert_eq!(
            Wire::parse(br#"{"op":"renew","path":"/a"}"#).unwrap(),
            Wire::Renew { path: "/a".into() }
        );
        assert_eq!(code(br#"[1,2]"#), ErrorCode::BadRequest);
        assert_eq!(code(b"\xff\xfe"), ErrorCode::BadRequest);
        assert_eq!(
            code(br#"{"op":"unlock","kek_versions":[]}"#),
            ErrorCode::BadRequest
        );
        let many = format!(r#"{{"op":"unlock","kek_versions":{:?}}}"#, vec![1; 17]);
        assert_eq!(code(many.as_bytes()), ErrorCode::BadRequest);
        let r = Response::parse(br#"{"type":"error","code":"from_the_future","message":"m"}"#);
        assert_eq!(r, Ok(Response::error(ErrorCode::Unknown, "m")));
    }

    #[test]
    fn responses_round_trip() {
        let all = [
            Response::Hello {
                version: 1,
                server: "dekfs".into(),
                pid: 7,
            },
            Response::Status(Status {
                kek_version: Some(2),
                ..Status::default()
            }),
            Response::Progress {
                step: "rewrap".into(),
                done: 1,
                total: 2,
            },
            Response::done("locked"),
            Response::error(ErrorCode::WrongKey, "no"),
        ];
        for r in all {
            assert_eq!(Response::parse(&r.to_json()), Ok(r));
        }
        // Status fields an older server does not send default.
        assert_eq!(
            Response::parse(br#"{"type":"status","pid":5}"#),
            Ok(Response::Status(Status {
                pid: 5,
                ..Status::default()
            }))
        );
    }

    #[test]
    fn debug_never_shows_keys() {
        let r = Request::Unlock(vec![(3, Key32::from_array(&mut [0x5a; 32]))]);
        let d = format!("{r:?}");
        assert!(d.contains("[3]") && !d.to_lowercase().contains("5a"), "{d}");
    }

    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let frag = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"op\"",
            "\"hello\"",
            "\"unlock\"",
            "\"shred\"",
            "\"kek_versions\"",
            "\"version\"",
            "\"path\"",
            "1",
            "-1",
            "4294967296",
            "null",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "1e999",
            "true",
        ]);
        prop::collection::vec(frag, 0..40).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parsing_is_total(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Wire::parse(&bytes);
            let _ = Response::parse(&bytes);
        }

        #[test]
        fn parsing_structured_garbage_is_total(bytes in jsonish()) {
            match Wire::parse(&bytes) {
                Ok(w) => prop_assert_eq!(Wire::parse(&w.to_json()), Ok(w)),
                Err(r) => prop_assert!(matches!(r, Response::Error { .. }), "not an error: {:?}", r),
            }
            let _ = Response::parse(&bytes);
        }
    }
}
