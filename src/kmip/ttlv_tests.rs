//! TTLV codec tests: the KMIP 1.4 specification's encoding examples, every refusal and the
//! caps. Must NOT need a network.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn enc(i: &Item<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    i.encode(&mut v);
    assert_eq!(v.len(), i.encoded_len());
    v
}

/// The encoding examples of the KMIP 1.4 specification, section 9.1.2.
#[test]
fn spec_examples() {
    let cases: Vec<(Item<'_>, &str)> = vec![
        (
            Item::new(0x420020, Value::Integer(8)),
            "420020 02 00000004 00000008 00000000",
        ),
        (
            Item::new(0x420020, Value::Long(123456789000000000)),
            "420020 03 00000008 01B69B4BA5749200",
        ),
        (
            Item::new(0x420020, Value::Enumeration(255)),
            "420020 05 00000004 000000FF 00000000",
        ),
        (
            Item::new(0x420020, Value::Boolean(true)),
            "420020 06 00000008 0000000000000001",
        ),
        (
            Item::new(0x420020, Value::Text("Hello World")),
            "420020 07 0000000B 48656C6C6F20576F726C64 0000000000",
        ),
        (
            Item::new(0x420020, Value::Bytes(&[1, 2, 3])),
            "420020 08 00000003 010203 0000000000",
        ),
        (
            Item::new(0x420020, Value::DateTime(0x47DA67F8)),
            "420020 09 00000008 0000000047DA67F8",
        ),
        (
            Item::new(0x420020, Value::Interval(864000)),
            "420020 0A 00000004 000D2F00 00000000",
        ),
        (
            Item::structure(
                0x420020,
                vec![
                    Item::new(0x420004, Value::Enumeration(254)),
                    Item::new(0x420005, Value::Integer(255)),
                ],
            ),
            "420020 01 00000020 420004 05 00000004 000000FE 00000000 \
             420005 02 00000004 000000FF 00000000",
        ),
    ];
    for (item, want) in cases {
        let want = hex(want);
        assert_eq!(enc(&item), want);
        assert_eq!(parse(&want).unwrap(), item);
    }
}

#[test]
fn refusals() {
    let good = hex("420020 07 0000000B 48656C6C6F20576F726C64 0000000000");
    for n in 0..good.len() {
        assert!(parse(&good[..n]).is_err(), "prefix {n}");
    }
    let mut pad = good.clone();
    pad[23] = 1;
    assert_eq!(parse(&pad), Err(TtlvError::NonZeroPadding));
    let mut utf = good.clone();
    utf[8] = 0xFF;
    assert_eq!(parse(&utf), Err(TtlvError::BadUtf8));
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 8]);
    assert_eq!(parse(&trailing), Err(TtlvError::TrailingBytes));
    assert_eq!(
        parse(&hex("420020 02 00000008 0000000000000000")),
        Err(TtlvError::BadLength { ty: 2, len: 8 })
    );
    assert_eq!(
        parse(&hex("420020 06 00000008 0000000000000002")),
        Err(TtlvError::BadBool)
    );
    assert_eq!(
        parse(&hex("420020 0B 00000000")),
        Err(TtlvError::BadType(0x0B))
    );
    // A length near u32::MAX must not be trusted for allocation or arithmetic.
    assert_eq!(
        parse(&hex("420020 08 FFFFFFFF 00")),
        Err(TtlvError::Truncated)
    );
}

#[test]
fn depth_and_item_caps() {
    // MAX_DEPTH + 2 nested empty structures.
    let mut item = Item::structure(0x420001, vec![]);
    for _ in 0..MAX_DEPTH + 1 {
        item = Item::structure(0x420001, vec![item]);
    }
    assert_eq!(parse(&enc(&item)), Err(TtlvError::TooDeep));
    let many: Vec<Item<'_>> = (0..MAX_ITEMS)
        .map(|_| Item::new(0x420002, Value::Integer(0)))
        .collect();
    let big = enc(&Item::structure(0x420001, many));
    assert!(matches!(
        parse(&big),
        Err(TtlvError::TooManyItems) | Err(TtlvError::TooLarge)
    ));
}

#[test]
fn message_len_checks_header() {
    assert_eq!(message_len(&[0x42, 0, 0x78, 1, 0, 0, 0, 16]), Ok(24));
    assert!(message_len(&[0x42, 0, 0x78, 2, 0, 0, 0, 16]).is_err());
    assert!(message_len(&[0x42, 0, 0x78, 1, 0, 0, 0, 15]).is_err());
    assert!(message_len(&[0x42, 0, 0x78, 1, 0xFF, 0, 0, 0]).is_err());
}
