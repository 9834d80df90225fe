//! KMIP 1.4 request messages for the operations dekfs uses, and the checks on their responses.
//! Must NOT do I/O or accept a response that could silently weaken the wrap: an old protocol
//! version, another operation, a missing or short GCM tag, an IV other than ours.

use super::ttlv::{Item, Value};
use super::KmipError;

pub mod tag {
    pub const ATTRIBUTE: u32 = 0x420008;
    pub const ATTRIBUTE_NAME: u32 = 0x42000A;
    pub const ATTRIBUTE_VALUE: u32 = 0x42000B;
    pub const BATCH_COUNT: u32 = 0x42000D;
    pub const BATCH_ITEM: u32 = 0x42000F;
    pub const BLOCK_CIPHER_MODE: u32 = 0x420011;
    pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x420028;
    pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42002B;
    pub const IV_COUNTER_NONCE: u32 = 0x42003D;
    pub const NAME: u32 = 0x420053;
    pub const NAME_TYPE: u32 = 0x420054;
    pub const NAME_VALUE: u32 = 0x420055;
    pub const OBJECT_TYPE: u32 = 0x420057;
    pub const OPERATION: u32 = 0x42005C;
    pub const PROTOCOL_VERSION: u32 = 0x420069;
    pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42006A;
    pub const PROTOCOL_VERSION_MINOR: u32 = 0x42006B;
    pub const REQUEST_HEADER: u32 = 0x420077;
    pub const REQUEST_MESSAGE: u32 = 0x420078;
    pub const REQUEST_PAYLOAD: u32 = 0x420079;
    pub const RESPONSE_HEADER: u32 = 0x42007A;
    pub const RESPONSE_MESSAGE: u32 = 0x42007B;
    pub const RESPONSE_PAYLOAD: u32 = 0x42007C;
    pub const RESULT_MESSAGE: u32 = 0x42007D;
    pub const RESULT_REASON: u32 = 0x42007E;
    pub const RESULT_STATUS: u32 = 0x42007F;
    pub const REVOCATION_REASON: u32 = 0x420081;
    pub const REVOCATION_REASON_CODE: u32 = 0x420082;
    pub const TEMPLATE_ATTRIBUTE: u32 = 0x420091;
    pub const UNIQUE_IDENTIFIER: u32 = 0x420094;
    pub const DATA: u32 = 0x4200C2;
    pub const TAG_LENGTH: u32 = 0x4200CE;
    pub const AEAD_DATA: u32 = 0x4200FE;
    pub const AEAD_TAG: u32 = 0x4200FF;
}

pub mod op {
    pub const CREATE: u32 = 0x01;
    pub const LOCATE: u32 = 0x08;
    pub const GET_ATTRIBUTES: u32 = 0x0B;
    pub const ACTIVATE: u32 = 0x12;
    pub const REVOKE: u32 = 0x13;
    pub const DESTROY: u32 = 0x14;
    pub const ENCRYPT: u32 = 0x1F;
    pub const DECRYPT: u32 = 0x20;

    pub fn name(op: u32) -> &'static str {
        match op {
            CREATE => "Create",
            LOCATE => "Locate",
            GET_ATTRIBUTES => "GetAttributes",
            ACTIVATE => "Activate",
            REVOKE => "Revoke",
            DESTROY => "Destroy",
            ENCRYPT => "Encrypt",
            DECRYPT => "Decrypt",
            _ => "operation",
        }
    }
}

/// Result reasons dekfs tells apart (KMIP 1.4, 9.1.3.2.29).
pub mod reason {
    pub const ITEM_NOT_FOUND: u32 = 0x01;
    pub const CRYPTOGRAPHIC_FAILURE: u32 = 0x0A;
    pub const PERMISSION_DENIED: u32 = 0x0C;
    pub const WRONG_KEY_LIFECYCLE_STATE: u32 = 0x12;
}

/// The version sent in every request header. PyKMIP (and any 1.2 peer) reads a 1.2 request
/// without AAD and tag and would still answer, so 1.4 is sent and demanded back.
pub const PROTOCOL: (i32, i32) = (1, 4);
pub const GCM_TAG_LEN: usize = 16;
pub const GCM_IV_LEN: usize = 12;
const OBJECT_SYMMETRIC_KEY: u32 = 0x02;
const ALG_AES: u32 = 0x03;
const MODE_GCM: u32 = 0x09;
const USAGE_ENCRYPT_DECRYPT: i32 = 0x04 | 0x08;
const NAME_UNINTERPRETED_TEXT: u32 = 0x01;

fn e(tag: u32, v: u32) -> Item<'static> {
    Item::new(tag, Value::Enumeration(v))
}
fn int(tag: u32, v: i32) -> Item<'static> {
    Item::new(tag, Value::Integer(v))
}
fn text(tag: u32, v: &str) -> Item<'_> {
    Item::new(tag, Value::Text(v))
}
fn bytes(tag: u32, v: &[u8]) -> Item<'_> {
    Item::new(tag, Value::Bytes(v))
}
fn uid(v: &str) -> Item<'_> {
    text(tag::UNIQUE_IDENTIFIER, v)
}

fn attribute<'a>(name: &'static str, value: Value<'a>) -> Item<'a> {
    Item::structure(
        tag::ATTRIBUTE,
        vec![
            text(tag::ATTRIBUTE_NAME, name),
            Item::new(tag::ATTRIBUTE_VALUE, value),
        ],
    )
}

fn name_attribute(name: &str) -> Item<'_> {
    attribute(
        "Name",
        Value::Structure(vec![
            text(tag::NAME_VALUE, name),
            e(tag::NAME_TYPE, NAME_UNINTERPRETED_TEXT),
        ]),
    )
}

/// A one-item request message.
pub fn request(operation: u32, payload: Vec<Item<'_>>) -> Item<'_> {
    let header = Item::structure(
        tag::REQUEST_HEADER,
        vec![
            Item::structure(
                tag::PROTOCOL_VERSION,
                vec![
                    int(tag::PROTOCOL_VERSION_MAJOR, PROTOCOL.0),
                    int(tag::PROTOCOL_VERSION_MINOR, PROTOCOL.1),
                ],
            ),
            int(tag::BATCH_COUNT, 1),
        ],
    );
    let item = Item::structure(
        tag::BATCH_ITEM,
        vec![
            e(tag::OPERATION, operation),
            Item::structure(tag::REQUEST_PAYLOAD, payload),
        ],
    );
    Item::structure(tag::REQUEST_MESSAGE, vec![header, item])
}

pub fn create_aes256(name: &str) -> Vec<Item<'_>> {
    vec![
        e(tag::OBJECT_TYPE, OBJECT_SYMMETRIC_KEY),
        Item::structure(
            tag::TEMPLATE_ATTRIBUTE,
            vec![
                attribute("Cryptographic Algorithm", Value::Enumeration(ALG_AES)),
                attribute("Cryptographic Length", Value::Integer(256)),
                attribute(
                    "Cryptographic Usage Mask",
                    Value::Integer(USAGE_ENCRYPT_DECRYPT),
                ),
                name_attribute(name),
            ],
        ),
    ]
}

pub fn by_uid(id: &str) -> Vec<Item<'_>> {
    vec![uid(id)]
}

pub fn locate_by_name(name: &str) -> Vec<Item<'_>> {
    vec![name_attribute(name)]
}

pub fn get_state(id: &str) -> Vec<Item<'_>> {
    vec![uid(id), text(tag::ATTRIBUTE_NAME, "State")]
}

/// Revocation for a key that is retired, not compromised (reason: superseded or cessation).
pub fn revoke(id: &str, superseded: bool) -> Vec<Item<'_>> {
    let code = if superseded { 0x05 } else { 0x06 };
    vec![
        uid(id),
        Item::structure(
            tag::REVOCATION_REASON,
            vec![e(tag::REVOCATION_REASON_CODE, code)],
        ),
    ]
}

fn gcm_params() -> Item<'static> {
    Item::structure(
        tag::CRYPTOGRAPHIC_PARAMETERS,
        vec![
            e(tag::BLOCK_CIPHER_MODE, MODE_GCM),
            e(tag::CRYPTOGRAPHIC_ALGORITHM, ALG_AES),
            int(tag::TAG_LENGTH, GCM_TAG_LEN as i32),
        ],
    )
}

pub fn encrypt<'a>(id: &'a str, data: &'a [u8], iv: &'a [u8], aad: &'a [u8]) -> Vec<Item<'a>> {
    vec![
        uid(id),
        gcm_params(),
        bytes(tag::DATA, data),
        bytes(tag::IV_COUNTER_NONCE, iv),
        bytes(tag::AEAD_DATA, aad),
    ]
}

pub fn decrypt<'a>(
    id: &'a str,
    data: &'a [u8],
    iv: &'a [u8],
    aad: &'a [u8],
    gcm_tag: &'a [u8],
) -> Vec<Item<'a>> {
    vec![
        uid(id),
        gcm_params(),
        bytes(tag::DATA, data),
        bytes(tag::IV_COUNTER_NONCE, iv),
        bytes(tag::AEAD_DATA, aad),
        bytes(tag::AEAD_TAG, gcm_tag),
    ]
}

/// A refused operation, as the server words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Option<u32>,
    pub message: String,
}

fn protocol(what: &str) -> KmipError {
    KmipError::Protocol(what.to_string())
}

/// The response payload of a one-item response to `operation`, or the server's refusal.
/// A success without a payload reads as an empty structure.
pub fn response<'r, 'a>(
    msg: &'r Item<'a>,
    operation: u32,
) -> Result<Result<&'r [Item<'a>], Failure>, KmipError> {
    if msg.tag != tag::RESPONSE_MESSAGE {
        return Err(protocol("not a KMIP response message"));
    }
    let header = msg
        .child(tag::RESPONSE_HEADER)
        .ok_or_else(|| protocol("response without a header"))?;
    let version = header
        .child(tag::PROTOCOL_VERSION)
        .ok_or_else(|| protocol("response without a protocol version"))?;
    let major = version
        .child(tag::PROTOCOL_VERSION_MAJOR)
        .and_then(Item::as_int);
    let minor = version
        .child(tag::PROTOCOL_VERSION_MINOR)
        .and_then(Item::as_int);
    match (major, minor) {
        (Some(1), Some(m)) if m >= PROTOCOL.1 => {}
        (Some(a), Some(b)) => {
            return Err(KmipError::Protocol(format!(
                "the server answered with KMIP {a}.{b}; dekfs needs 1.4 (older versions drop the \
                 GCM associated data and tag)"
            )))
        }
        _ => return Err(protocol("malformed protocol version")),
    }
    let items: Vec<&Item<'a>> = msg
        .children()
        .iter()
        .filter(|i| i.tag == tag::BATCH_ITEM)
        .collect();
    let [item] = items.as_slice() else {
        return Err(protocol("response does not hold exactly one batch item"));
    };
    if let Some(op) = item.child(tag::OPERATION) {
        if op.as_enum() != Some(operation) {
            return Err(protocol("response to another operation"));
        }
    }
    let status = item
        .child(tag::RESULT_STATUS)
        .and_then(Item::as_enum)
        .ok_or_else(|| protocol("response without a result status"))?;
    if status != 0 {
        return Ok(Err(Failure {
            reason: item.child(tag::RESULT_REASON).and_then(Item::as_enum),
            message: item
                .child(tag::RESULT_MESSAGE)
                .and_then(Item::as_text)
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect(),
        }));
    }
    if item.child(tag::OPERATION).is_none() {
        return Err(protocol("successful response without its operation"));
    }
    Ok(Ok(item
        .child(tag::RESPONSE_PAYLOAD)
        .map_or(&[][..], Item::children)))
}

pub fn find<'r, 'a>(payload: &'r [Item<'a>], t: u32) -> Option<&'r Item<'a>> {
    payload.iter().find(|i| i.tag == t)
}

pub fn uid_of(payload: &[Item<'_>]) -> Result<String, KmipError> {
    let id = find(payload, tag::UNIQUE_IDENTIFIER)
        .and_then(Item::as_text)
        .ok_or_else(|| protocol("response without a unique identifier"))?;
    super::check_uid(id)?;
    Ok(id.to_string())
}

/// Ciphertext and tag of an Encrypt response; the IV, if echoed, must be ours.
pub fn encrypted<'r>(
    payload: &'r [Item<'_>],
    iv: &[u8],
    len: usize,
) -> Result<(&'r [u8], [u8; GCM_TAG_LEN]), KmipError> {
    let data = find(payload, tag::DATA)
        .and_then(Item::as_bytes)
        .ok_or_else(|| protocol("Encrypt response without data"))?;
    if data.len() != len {
        return Err(protocol("Encrypt response of the wrong length"));
    }
    if let Some(echo) = find(payload, tag::IV_COUNTER_NONCE) {
        if echo.as_bytes() != Some(iv) {
            return Err(protocol("Encrypt response with another IV"));
        }
    }
    let gcm_tag = find(payload, tag::AEAD_TAG)
        .and_then(Item::as_bytes)
        .ok_or_else(|| {
            protocol("Encrypt response without a GCM tag (the associated data was not bound)")
        })?;
    let gcm_tag = gcm_tag
        .try_into()
        .map_err(|_| protocol("Encrypt response with a GCM tag that is not 16 bytes"))?;
    Ok((data, gcm_tag))
}

/// The state enumeration of a GetAttributes("State") response.
pub fn state_of(payload: &[Item<'_>]) -> Option<u32> {
    payload
        .iter()
        .filter(|i| i.tag == tag::ATTRIBUTE)
        .find(|a| a.child(tag::ATTRIBUTE_NAME).and_then(Item::as_text) == Some("State"))
        .and_then(|a| a.child(tag::ATTRIBUTE_VALUE))
        .and_then(Item::as_enum)
}

/// KMIP object states (9.1.3.2.17).
pub fn state_name(s: u32) -> &'static str {
    match s {
        1 => "pre-active",
        2 => "active",
        3 => "deactivated (revoked)",
        4 => "compromised (revoked)",
        5 => "destroyed",
        6 => "destroyed (compromised)",
        _ => "in an unknown state",
    }
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
