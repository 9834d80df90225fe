//! One audit line: its JSON shape, the chained MAC over it, and the split of a stored line into
//! the MAC'd body and its tag. Must NOT do I/O or hold keys beyond the call; the fields it
//! writes are ids, versions, kinds and short reasons, never key bytes or file contents.

use crate::crypto::mac::{hmac_sha256, verify_hmac_sha256};
use crate::crypto::CryptoError;
use crate::secret::Key32;
use serde::{Deserialize, Serialize};

/// Domain separation inside the audit MAC key: a line tag can never pass as a seal or a link.
const LINE_DOMAIN: &[u8] = b"dekfs audit line v1\0";
const LINK_DOMAIN: &[u8] = b"dekfs audit link v1\0";
pub(super) const MAC_SUFFIX_START: &str = ",\"mac\":\"";

/// The fields of a stored line. Optional ones are left out when empty, so an event carries
/// only what applies to it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Line {
    /// 1 for the first line of the log, +1 for each next one.
    #[serde(default)]
    pub seq: u64,
    /// Unix seconds when the event happened.
    pub time: u64,
    pub event: String,
    /// "ok", "failed" or "refused".
    pub result: String,
    /// KEK version whose audit key MACs this line (absent in unkeyed, pending lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Protector kind used or changed (passphrase, recovery-key, tpm2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protector: Option<String>,
    /// Protector id or other key id the event concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// KEK version the event concerns (export/import, rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// The object by id (inode, file id); the plaintext path goes in `path` only on opt-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub uid: u32,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// "unkeyed": written without the key (e.g. a failed unlock) and chained later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// On a key-link line: the KEK version the chain continues from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_kek: Option<u32>,
    /// On a key-link line: HMAC under the previous audit key over the new version and the
    /// previous line's MAC, proving the holder of the old key made the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The JSON object without its closing brace: the bytes the MAC covers.
pub(super) fn body_of(line: &Line) -> String {
    let mut s = serde_json::to_string(line).unwrap_or_else(|_| "{".into());
    s.pop();
    s
}

fn tag_input(prev_mac: &[u8; 32], body: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(LINE_DOMAIN.len() + 32 + body.len());
    v.extend_from_slice(LINE_DOMAIN);
    v.extend_from_slice(prev_mac);
    v.extend_from_slice(body.as_bytes());
    v
}

/// The stored text of `line` (with its trailing newline) and its MAC.
pub(super) fn seal_line(
    key: &Key32,
    prev_mac: &[u8; 32],
    line: &Line,
) -> Result<(String, [u8; 32]), CryptoError> {
    let body = body_of(line);
    let mac = hmac_sha256(key, &tag_input(prev_mac, &body))?;
    Ok((format!("{body}{MAC_SUFFIX_START}{}\"}}\n", hex(&mac)), mac))
}

/// Splits a stored line (no newline) into its MAC'd body and tag.
pub(super) fn split(text: &str) -> Option<(&str, [u8; 32])> {
    let rest = text.strip_suffix("\"}")?;
    let at = rest.len().checked_sub(64 + MAC_SUFFIX_START.len())?;
    let (body, tail) = (rest.get(..at)?, rest.get(at..)?);
    let mac = unhex32(tail.strip_prefix(MAC_SUFFIX_START)?)?;
    Some((body, mac))
}

pub(super) fn verify_tag(key: &Key32, prev_mac: &[u8; 32], body: &str, mac: &[u8; 32]) -> bool {
    verify_hmac_sha256(key, &tag_input(prev_mac, body), mac).is_ok()
}

fn link_input(new_version: u32, prev_mac: &[u8; 32]) -> Vec<u8> {
    let mut v = LINK_DOMAIN.to_vec();
    v.extend_from_slice(&new_version.to_le_bytes());
    v.extend_from_slice(prev_mac);
    v
}

pub(super) fn link_tag(
    old_key: &Key32,
    new_version: u32,
    prev_mac: &[u8; 32],
) -> Result<[u8; 32], CryptoError> {
    hmac_sha256(old_key, &link_input(new_version, prev_mac))
}

pub(super) fn verify_link(
    old_key: &Key32,
    new_version: u32,
    prev: &[u8; 32],
    tag: &[u8; 32],
) -> bool {
    verify_hmac_sha256(old_key, &link_input(new_version, prev), tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_line_splits_back_and_verifies() {
        let k = Key32::from_array(&mut [4; 32]);
        let l = Line {
            seq: 1,
            time: 5,
            event: "init".into(),
            result: "ok".into(),
            kek: Some(1),
            uid: 0,
            pid: 9,
            detail: Some("quote \" and \\ and ,\"mac\":\"".into()),
            ..Line::default()
        };
        let (text, mac) = seal_line(&k, &[0; 32], &l).unwrap();
        let (body, got) = split(text.trim_end()).unwrap();
        assert_eq!(got, mac);
        assert!(verify_tag(&k, &[0; 32], body, &mac));
        assert!(!verify_tag(&k, &[1; 32], body, &mac));
        let back: Line = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(back, l);
    }
}
