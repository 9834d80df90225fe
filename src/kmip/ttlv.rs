//! KMIP TTLV (tag, type, length, value) encoding: a total parser over untrusted bytes and an
//! encoder. Must NOT panic, allocate beyond the input's size, recurse without a depth cap, or
//! know what any tag means (messages.rs does).

use std::fmt;

/// Nesting deeper than this is refused (KMIP 1.4 messages nest about six levels).
pub const MAX_DEPTH: usize = 16;
/// Items in one message, all levels together.
pub const MAX_ITEMS: usize = 4096;
/// Largest message accepted or sent.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// TTLV header: tag (3) ‖ type (1) ‖ length (4), big-endian.
pub const HEADER_LEN: usize = 8;

const T_STRUCTURE: u8 = 0x01;
const T_INTEGER: u8 = 0x02;
const T_LONG: u8 = 0x03;
const T_BIG: u8 = 0x04;
const T_ENUM: u8 = 0x05;
const T_BOOL: u8 = 0x06;
const T_TEXT: u8 = 0x07;
const T_BYTES: u8 = 0x08;
const T_DATETIME: u8 = 0x09;
const T_INTERVAL: u8 = 0x0A;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlvError {
    Truncated,
    TooLarge,
    TooDeep,
    TooManyItems,
    BadType(u8),
    BadLength { ty: u8, len: u32 },
    NonZeroPadding,
    BadUtf8,
    BadBool,
    TrailingBytes,
}

impl fmt::Display for TtlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TtlvError::Truncated => f.write_str("truncated TTLV"),
            TtlvError::TooLarge => f.write_str("TTLV message too large"),
            TtlvError::TooDeep => f.write_str("TTLV nested too deeply"),
            TtlvError::TooManyItems => f.write_str("too many TTLV items"),
            TtlvError::BadType(t) => write!(f, "unknown TTLV type {t:#04x}"),
            TtlvError::BadLength { ty, len } => write!(f, "TTLV type {ty:#04x} with length {len}"),
            TtlvError::NonZeroPadding => f.write_str("TTLV padding not zero"),
            TtlvError::BadUtf8 => f.write_str("TTLV text string is not UTF-8"),
            TtlvError::BadBool => f.write_str("TTLV boolean is neither 0 nor 1"),
            TtlvError::TrailingBytes => f.write_str("bytes after the TTLV message"),
        }
    }
}

impl std::error::Error for TtlvError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Structure(Vec<Item<'a>>),
    Integer(i32),
    Long(i64),
    BigInteger(&'a [u8]),
    Enumeration(u32),
    Boolean(bool),
    Text(&'a str),
    Bytes(&'a [u8]),
    DateTime(i64),
    Interval(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// 24-bit tag (0x42xxxx for KMIP's own).
    pub tag: u32,
    pub value: Value<'a>,
}

impl<'a> Item<'a> {
    pub fn new(tag: u32, value: Value<'a>) -> Self {
        Item { tag, value }
    }

    pub fn structure(tag: u32, items: Vec<Item<'a>>) -> Self {
        Item::new(tag, Value::Structure(items))
    }

    /// The first direct child with `tag`.
    pub fn child(&self, tag: u32) -> Option<&Item<'a>> {
        self.children().iter().find(|i| i.tag == tag)
    }

    /// Direct children (none for a primitive).
    pub fn children(&self) -> &[Item<'a>] {
        match &self.value {
            Value::Structure(v) => v,
            _ => &[],
        }
    }

    pub fn as_enum(&self) -> Option<u32> {
        match self.value {
            Value::Enumeration(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i32> {
        match self.value {
            Value::Integer(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&'a str> {
        match self.value {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(v) => Some(v),
            _ => None,
        }
    }

    /// Bytes `encode` writes (a multiple of 8).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + padded(self.value_len())
    }

    fn value_len(&self) -> usize {
        match &self.value {
            Value::Structure(v) => v.iter().map(Item::encoded_len).sum(),
            Value::Integer(_) | Value::Enumeration(_) | Value::Interval(_) => 4,
            Value::Long(_) | Value::Boolean(_) | Value::DateTime(_) => 8,
            Value::BigInteger(b) | Value::Bytes(b) => b.len(),
            Value::Text(s) => s.len(),
        }
    }

    /// Appends the encoding to `out`. Callers that need the buffer never to move (secrets)
    /// reserve `encoded_len()` first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (ty, len) = (self.type_byte(), self.value_len());
        out.extend_from_slice(&self.tag.to_be_bytes()[1..]);
        out.push(ty);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        match &self.value {
            Value::Structure(v) => v.iter().for_each(|i| i.encode(out)),
            Value::Integer(x) => out.extend_from_slice(&x.to_be_bytes()),
            Value::Enumeration(x) | Value::Interval(x) => out.extend_from_slice(&x.to_be_bytes()),
            Value::Long(x) | Value::DateTime(x) => out.extend_from_slice(&x.to_be_bytes()),
            Value::Boolean(b) => out.extend_from_slice(&u64::from(*b).to_be_bytes()),
            Value::BigInteger(b) | Value::Bytes(b) => out.extend_from_slice(b),
            Value::Text(s) => out.extend_from_slice(s.as_bytes()),
        }
        out.resize(out.len() + padded(len) - len, 0);
    }

    fn type_byte(&self) -> u8 {
        match self.value {
            Value::Structure(_) => T_STRUCTURE,
            Value::Integer(_) => T_INTEGER,
            Value::Long(_) => T_LONG,
            Value::BigInteger(_) => T_BIG,
            Value::Enumeration(_) => T_ENUM,
            Value::Boolean(_) => T_BOOL,
            Value::Text(_) => T_TEXT,
            Value::Bytes(_) => T_BYTES,
            Value::DateTime(_) => T_DATETIME,
            Value::Interval(_) => T_INTERVAL,
        }
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Length of the whole message whose first 8 bytes are `header` (for reading off a stream).
pub fn message_len(header: &[u8; HEADER_LEN]) -> Result<usize, TtlvError> {
    if header[3] != T_STRUCTURE {
        return Err(TtlvError::BadType(header[3]));
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_MESSAGE - HEADER_LEN {
        return Err(TtlvError::TooLarge);
    }
    if len % 8 != 0 {
        return Err(TtlvError::BadLength {
            ty: T_STRUCTURE,
            len: len as u32,
        });
    }
    Ok(HEADER_LEN + len)
}

/// Parses exactly one item spanning all of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Item<'_>, TtlvError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(TtlvError::TooLarge);
    }
    let mut budget = MAX_ITEMS;
    let (item, rest) = parse_item(bytes, 0, &mut budget)?;
    if !rest.is_empty() {
        return Err(TtlvError::TrailingBytes);
    }
    Ok(item)
}

fn split(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), TtlvError> {
    if n > b.len() {
        return Err(TtlvError::Truncated);
    }
    Ok(b.split_at(n))
}

fn parse_item<'a>(
    b: &'a [u8],
    depth: usize,
    budget: &mut usize,
) -> Result<(Item<'a>, &'a [u8]), TtlvError> {
    if depth > MAX_DEPTH {
        return Err(TtlvError::TooDeep);
    }
    *budget = budget.checked_sub(1).ok_or(TtlvError::TooManyItems)?;
    let (h, rest) = split(b, HEADER_LEN)?;
    let tag = u32::from_be_bytes([0, h[0], h[1], h[2]]);
    let ty = h[3];
    let len32 = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let len = len32 as usize;
    let fixed = match ty {
        T_INTEGER | T_ENUM | T_INTERVAL => Some(4),
        T_LONG | T_BOOL | T_DATETIME => Some(8),
        T_STRUCTURE | T_TEXT | T_BYTES => None,
        // A big integer is sign-extended to a multiple of 8 bytes.
        T_BIG if len % 8 == 0 && len > 0 => None,
        T_BIG => return Err(TtlvError::BadLength { ty, len: len32 }),
        other => return Err(TtlvError::BadType(other)),
    };
    if fixed.is_some_and(|f| f != len) {
        return Err(TtlvError::BadLength { ty, len: len32 });
    }
    let (body, rest) = split(rest, padded(len))?;
    let (v, pad) = body.split_at(len.min(body.len()));
    if pad.iter().any(|&x| x != 0) {
        return Err(TtlvError::NonZeroPadding);
    }
    let value = match ty {
        T_STRUCTURE => {
            let mut items = Vec::new();
            let mut inner = v;
            while !inner.is_empty() {
                let (item, r) = parse_item(inner, depth + 1, budget)?;
                items.push(item);
                inner = r;
            }
            Value::Structure(items)
        }
        T_INTEGER => Value::Integer(i32::from_be_bytes(arr(v)?)),
        T_ENUM => Value::Enumeration(u32::from_be_bytes(arr(v)?)),
        T_INTERVAL => Value::Interval(u32::from_be_bytes(arr(v)?)),
        T_LONG => Value::Long(i64::from_be_bytes(arr(v)?)),
        T_DATETIME => Value::DateTime(i64::from_be_bytes(arr(v)?)),
        T_BOOL => match u64::from_be_bytes(arr(v)?) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(TtlvError::BadBool),
        },
        T_TEXT => Value::Text(std::str::from_utf8(v).map_err(|_| TtlvError::BadUtf8)?),
        T_BYTES => Value::Bytes(v),
        _ => Value::BigInteger(v),
    };
    Ok((Item { tag, value }, rest))
}

fn arr<const N: usize>(v: &[u8]) -> Result<[u8; N], TtlvError> {
    v.try_into().map_err(|_| TtlvError::Truncated)
}

#[cfg(test)]
#[path = "ttlv_tests.rs"]
mod tests;
