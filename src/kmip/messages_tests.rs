//! Request and response checks: the 1.4 header, and responses that must be refused (no or
//! short GCM tag, another IV, an old protocol version, another operation). No network.

use super::*;
use crate::kmip::ttlv::{self, Item, Value};

fn response_msg<'a>(minor: i32, operation: u32, status: u32, payload: Vec<Item<'a>>) -> Item<'a> {
    let header = Item::structure(
        tag::RESPONSE_HEADER,
        vec![
            Item::structure(
                tag::PROTOCOL_VERSION,
                vec![
                    Item::new(tag::PROTOCOL_VERSION_MAJOR, Value::Integer(1)),
                    Item::new(tag::PROTOCOL_VERSION_MINOR, Value::Integer(minor)),
                ],
            ),
            Item::new(0x420092, Value::DateTime(0)),
            Item::new(tag::BATCH_COUNT, Value::Integer(1)),
        ],
    );
    let mut item = vec![
        Item::new(tag::OPERATION, Value::Enumeration(operation)),
        Item::new(tag::RESULT_STATUS, Value::Enumeration(status)),
    ];
    if status != 0 {
        item.push(Item::new(
            tag::RESULT_REASON,
            Value::Enumeration(reason::PERMISSION_DENIED),
        ));
        item.push(Item::new(tag::RESULT_MESSAGE, Value::Text("no\nway")));
    } else {
        item.push(Item::structure(tag::RESPONSE_PAYLOAD, payload));
    }
    Item::structure(
        tag::RESPONSE_MESSAGE,
        vec![header, Item::structure(tag::BATCH_ITEM, item)],
    )
}

fn roundtrip(i: &Item<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    i.encode(&mut v);
    v
}

#[test]
fn request_header_says_1_4() {
    let bytes = roundtrip(&request(op::DECRYPT, by_uid("7")));
    let msg = ttlv::parse(&bytes).unwrap();
    let v = msg
        .child(tag::REQUEST_HEADER)
        .and_then(|h| h.child(tag::PROTOCOL_VERSION))
        .unwrap();
    assert_eq!(
        v.child(tag::PROTOCOL_VERSION_MAJOR).and_then(Item::as_int),
        Some(1)
    );
    assert_eq!(
        v.child(tag::PROTOCOL_VERSION_MINOR).and_then(Item::as_int),
        Some(4)
    );
}

#[test]
fn encrypt_response_needs_tag_and_our_iv() {
    let iv = [7u8; 12];
    let ct = [1u8; 56];
    let t = [2u8; 16];
    let ok = response_msg(
        4,
        op::ENCRYPT,
        0,
        vec![
            Item::new(tag::UNIQUE_IDENTIFIER, Value::Text("1")),
            Item::new(tag::DATA, Value::Bytes(&ct)),
            Item::new(tag::AEAD_TAG, Value::Bytes(&t)),
        ],
    );
    let bytes = roundtrip(&ok);
    let msg = ttlv::parse(&bytes).unwrap();
    let p = response(&msg, op::ENCRYPT).unwrap().unwrap();
    assert_eq!(encrypted(p, &iv, 56).unwrap(), (&ct[..], t));
    assert!(encrypted(p, &iv, 40).is_err());

    // What PyKMIP sends for a KMIP 1.2 request: no tag.
    let no_tag = response_msg(
        4,
        op::ENCRYPT,
        0,
        vec![Item::new(tag::DATA, Value::Bytes(&ct))],
    );
    let bytes = roundtrip(&no_tag);
    let msg = ttlv::parse(&bytes).unwrap();
    let p = response(&msg, op::ENCRYPT).unwrap().unwrap();
    let err = encrypted(p, &iv, 56).unwrap_err().to_string();
    assert!(err.contains("without a GCM tag"), "{err}");

    let short_tag = response_msg(
        4,
        op::ENCRYPT,
        0,
        vec![
            Item::new(tag::DATA, Value::Bytes(&ct)),
            Item::new(tag::AEAD_TAG, Value::Bytes(&t[..12])),
        ],
    );
    let bytes = roundtrip(&short_tag);
    let msg = ttlv::parse(&bytes).unwrap();
    assert!(encrypted(response(&msg, op::ENCRYPT).unwrap().unwrap(), &iv, 56).is_err());

    let other_iv = response_msg(
        4,
        op::ENCRYPT,
        0,
        vec![
            Item::new(tag::DATA, Value::Bytes(&ct)),
            Item::new(tag::IV_COUNTER_NONCE, Value::Bytes(&[0; 12])),
            Item::new(tag::AEAD_TAG, Value::Bytes(&t)),
        ],
    );
    let bytes = roundtrip(&other_iv);
    let msg = ttlv::parse(&bytes).unwrap();
    assert!(encrypted(response(&msg, op::ENCRYPT).unwrap().unwrap(), &iv, 56).is_err());
}

#[test]
fn old_versions_other_ops_and_failures() {
    let old = roundtrip(&response_msg(2, op::DECRYPT, 0, vec![]));
    let msg = ttlv::parse(&old).unwrap();
    let err = response(&msg, op::DECRYPT).unwrap_err().to_string();
    assert!(err.contains("1.2"), "{err}");

    let other = roundtrip(&response_msg(4, op::ENCRYPT, 0, vec![]));
    let msg = ttlv::parse(&other).unwrap();
    assert!(response(&msg, op::DECRYPT).is_err());

    let refused = roundtrip(&response_msg(4, op::DECRYPT, 1, vec![]));
    let msg = ttlv::parse(&refused).unwrap();
    let f = response(&msg, op::DECRYPT).unwrap().unwrap_err();
    assert_eq!(f.reason, Some(reason::PERMISSION_DENIED));
    assert_eq!(f.message, "noway");

    let req = roundtrip(&request(op::DECRYPT, vec![]));
    let msg = ttlv::parse(&req).unwrap();
    assert!(response(&msg, op::DECRYPT).is_err());
}

#[test]
fn state_attribute() {
    let p = vec![
        Item::new(tag::UNIQUE_IDENTIFIER, Value::Text("1")),
        Item::structure(
            tag::ATTRIBUTE,
            vec![
                Item::new(tag::ATTRIBUTE_NAME, Value::Text("State")),
                Item::new(tag::ATTRIBUTE_VALUE, Value::Enumeration(3)),
            ],
        ),
    ];
    assert_eq!(state_of(&p), Some(3));
    assert_eq!(state_of(&p[..1]), None);
}
