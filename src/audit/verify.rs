//! Reading and checking an audit log: parse every line, check sequence numbers, the MAC chain,
//! key links and the seal, and name the first bad line. Must NOT modify anything; a log read
//! without the key is listed with its lines marked unverified.

use super::line::{split, unhex32, verify_link, verify_tag, Line};
use super::store::{read_seal, Paths};
use super::AuditKey;

/// One stored line as read back.
#[derive(Debug, Clone)]
pub struct StoredLine {
    /// 1-based line number in the file.
    pub number: usize,
    pub text: String,
    /// None if the line is not valid JSON of the audit shape.
    pub line: Option<Line>,
}

/// The lines of the log, the pending (unkeyed) lines, and whether the log ends in a torn line.
pub fn read_lines(p: &Paths) -> std::io::Result<(Vec<StoredLine>, Vec<StoredLine>, bool)> {
    let parse = |raw: &[u8]| -> Vec<StoredLine> {
        raw.split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, b)| {
                let text = String::from_utf8_lossy(b).into_owned();
                StoredLine {
                    number: i + 1,
                    line: serde_json::from_str(&text).ok(),
                    text,
                }
            })
            .collect()
    };
    let raw = match std::fs::read(&p.log) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let torn = !raw.is_empty() && !raw.ends_with(b"\n");
    let mut lines = parse(&raw);
    // split() yields one piece after the last newline: empty, or the torn line.
    lines.pop();
    let pending = match std::fs::read(&p.pending) {
        Ok(r) => {
            let mut v = parse(&r);
            v.retain(|l| !l.text.is_empty());
            v
        }
        Err(_) => Vec::new(),
    };
    Ok((lines, pending, torn))
}

/// The verdict of `verify`.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: usize,
    /// Lines checked against their MAC (up to the first bad or unverifiable one).
    pub verified: usize,
    /// The first bad line and why (line 0 = the log as a whole, e.g. a truncated tail).
    pub first_bad: Option<(usize, String)>,
    /// Why checking stopped early without finding damage (a KEK version not held).
    pub incomplete: Option<String>,
    pub torn_tail: bool,
    pub pending: usize,
    /// The seal's line count, if a seal was found and verified.
    pub sealed: Option<u64>,
}

/// Checks the chain with the audit keys in `keys` (one per KEK version held).
pub fn verify(p: &Paths, keys: &[AuditKey]) -> std::io::Result<Report> {
    // Held while reading so that a concurrent append (log line, then seal) is seen whole.
    let _held = match std::fs::symlink_metadata(&p.log) {
        Ok(_) => Some(super::store::Locked::acquire(p)?),
        Err(_) => None,
    };
    let (lines, pending, torn) = read_lines(p)?;
    let mut r = Report {
        lines: lines.len(),
        torn_tail: torn,
        pending: pending.len(),
        ..Report::default()
    };
    let key_of = |v: u32| keys.iter().find(|k| k.kek == v);
    let mut prev = [0u8; 32];
    for s in &lines {
        let n = s.number;
        let bad = |why: &str| Some((n, why.to_string()));
        let (Some(l), Some((body, mac))) = (&s.line, split(&s.text)) else {
            r.first_bad = bad("not a well-formed audit line (edited or damaged)");
            return Ok(r);
        };
        if l.seq != n as u64 {
            r.first_bad = Some((
                n,
                format!(
                    "sequence number {} where {n} belongs: a line was deleted, inserted or moved",
                    l.seq
                ),
            ));
            return Ok(r);
        }
        let Some(v) = l.kek else {
            r.first_bad = bad("line carries no KEK version");
            return Ok(r);
        };
        let Some(k) = key_of(v) else {
            r.incomplete = Some(format!(
                "line {n} is under KEK version {v}, which is not held: not verified from there"
            ));
            return Ok(r);
        };
        if !verify_tag(&k.key, &prev, body, &mac) {
            r.first_bad = bad("MAC does not verify: the line was edited, or a line before it was removed or reordered");
            return Ok(r);
        }
        if let (Some(old), Some(tag)) = (l.prev_kek, l.link.as_deref()) {
            match (key_of(old), unhex32(tag)) {
                (Some(ok), Some(t)) if verify_link(&ok.key, v, &prev, &t) => {}
                (None, Some(_)) => {}
                _ => {
                    r.first_bad = bad("key link does not verify under the previous audit key");
                    return Ok(r);
                }
            }
        }
        prev = mac;
        r.verified = n;
        if [
            super::EVENT_TRUNCATED,
            super::EVENT_SEAL_INVALID,
            super::EVENT_SEAL_MISSING,
        ]
        .contains(&l.event.as_str())
        {
            r.first_bad = Some((
                n,
                format!(
                    "an appender found the log damaged before this line: {}",
                    l.detail.as_deref().unwrap_or(&l.event)
                ),
            ));
            return Ok(r);
        }
    }
    if let Some(seal) = read_seal(p) {
        let Some(k) = key_of(seal.kek) else {
            r.incomplete = Some(format!(
                "the seal is under KEK version {}, which is not held",
                seal.kek
            ));
            return Ok(r);
        };
        if !seal.verify(&k.key) {
            r.first_bad = Some((0, "the seal's MAC does not verify (edited seal)".into()));
            return Ok(r);
        }
        if seal.count as usize > lines.len() {
            r.first_bad = Some((
                lines.len() + 1,
                format!(
                    "the log was truncated: the seal records {} lines, the log has {}",
                    seal.count,
                    lines.len()
                ),
            ));
            return Ok(r);
        }
        let at = seal.count as usize;
        let sealed_mac = lines
            .get(at.wrapping_sub(1))
            .and_then(|s| split(&s.text))
            .map(|(_, m)| super::line::hex(&m));
        if at > 0 && sealed_mac.as_deref() != Some(seal.last_mac.as_str()) {
            r.first_bad = Some((at, "differs from the line the seal records".into()));
            return Ok(r);
        }
        r.sealed = Some(seal.count);
    } else if !lines.is_empty() {
        r.first_bad = Some((0, "the seal file is missing".into()));
    }
    Ok(r)
}
