//! The audit files: the chained log, its seal (line count and last MAC, MAC'd) and the pending
//! file of lines written without the key. Every change happens under an exclusive flock on the
//! log, so processes (CLI commands, the daemon) append in one order. Must NOT rewrite committed
//! lines: the only truncation it does is of a torn last line, which was never committed.

use super::line::{self, hex, split, unhex32, Line};
use crate::crypto::mac::{hmac_sha256, verify_hmac_sha256};
use crate::secret::Key32;
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

const SEAL_DOMAIN: &[u8] = b"dekfs audit seal v1\0";
const TAIL_CHUNK: u64 = 64 * 1024;
/// Pending lines folded into the chain at once; more are dropped with a note (a flood from
/// an attacker without the key must not make the next keyed append unbounded).
const MAX_PENDING: usize = 1000;

/// The three files of one audit log.
#[derive(Debug, Clone)]
pub struct Paths {
    pub log: PathBuf,
    pub seal: PathBuf,
    pub pending: PathBuf,
}

impl Paths {
    pub fn new(log: PathBuf) -> Paths {
        let with = |ext: &str| {
            let mut s = log.clone().into_os_string();
            s.push(ext);
            PathBuf::from(s)
        };
        Paths {
            seal: with(".seal"),
            pending: with(".pending"),
            log,
        }
    }
}

/// The sealed state: how many lines were committed and the MAC of the last one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seal {
    pub count: u64,
    pub kek: u32,
    pub last_mac: String,
    pub mac: String,
}

fn seal_input(count: u64, kek: u32, last_mac: &[u8; 32]) -> Vec<u8> {
    let mut v = SEAL_DOMAIN.to_vec();
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(&kek.to_le_bytes());
    v.extend_from_slice(last_mac);
    v
}

impl Seal {
    pub fn verify(&self, key: &Key32) -> bool {
        let (Some(last), Some(mac)) = (unhex32(&self.last_mac), unhex32(&self.mac)) else {
            return false;
        };
        verify_hmac_sha256(key, &seal_input(self.count, self.kek, &last), &mac).is_ok()
    }
}

pub fn read_seal(p: &Paths) -> Option<Seal> {
    let text = std::fs::read_to_string(&p.seal).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn open_log(p: &Paths) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&p.log)
}

/// The log, opened for appending and locked exclusively until dropped.
pub struct Locked {
    file: File,
}

impl Locked {
    pub fn acquire(p: &Paths) -> std::io::Result<Locked> {
        let file = open_log(p)?;
        loop {
            match rustix::fs::flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(Locked { file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// (number of whole lines, MAC of the last one). A torn last line (no newline: the writer
    /// died mid-append) is cut off first; an unreadable last line restarts the chain from zero,
    /// which the verifier then reports at that line.
    fn tail(&mut self) -> std::io::Result<(u64, [u8; 32])> {
        let len = self.file.metadata()?.len();
        if len == 0 {
            return Ok((0, [0; 32]));
        }
        let start = len.saturating_sub(TAIL_CHUNK);
        self.file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        (&self.file).take(len - start).read_to_end(&mut buf)?;
        let whole = match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => return self.rescan(),
        };
        if whole < buf.len() {
            self.file.set_len(start + whole as u64)?;
            self.file.sync_data()?;
        }
        let body = &buf[..whole];
        let last = body
            .strip_suffix(b"\n")
            .and_then(|b| b.rsplit(|&c| c == b'\n').next());
        let Some(last) = last.filter(|l| !l.is_empty()) else {
            return Ok((0, [0; 32]));
        };
        let parsed = std::str::from_utf8(last).ok().and_then(|t| {
            let (_, mac) = split(t)?;
            let l: Line = serde_json::from_str(t).ok()?;
            Some((l.seq, mac))
        });
        match parsed {
            Some(x) => Ok(x),
            None => self.rescan(),
        }
    }

    fn rescan(&mut self) -> std::io::Result<(u64, [u8; 32])> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut all = Vec::new();
        (&self.file).read_to_end(&mut all)?;
        let n = all.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok((n, [0; 32]))
    }

    fn append_keyed(
        &mut self,
        key: &Key32,
        kek: u32,
        mut l: Line,
        state: &mut (u64, [u8; 32]),
    ) -> std::io::Result<()> {
        l.seq = state.0 + 1;
        l.kek = Some(kek);
        let (text, mac) = line::seal_line(key, &state.1, &l).map_err(std::io::Error::other)?;
        if crate::failpoint::armed_is(crate::failpoint::AUDIT_TORN_LINE) {
            self.file.write_all(&text.as_bytes()[..text.len() / 2])?;
            self.file.sync_data()?;
            crate::failpoint::hit(crate::failpoint::AUDIT_TORN_LINE);
        }
        self.file.write_all(text.as_bytes())?;
        *state = (l.seq, mac);
        Ok(())
    }

    /// Appends `lines` under the audit key of KEK `kek`, folding in pending lines first, then
    /// syncs and writes the seal. `link` turns the first line into a key link from `link.0`.
    pub fn append(
        &mut self,
        p: &Paths,
        key: &Key32,
        kek: u32,
        link: Option<(u32, &Key32)>,
        lines: Vec<Line>,
    ) -> std::io::Result<()> {
        let mut state = self.tail()?;
        if let Some(why) = seal_mismatch(p, key, kek, &state) {
            let l = Line {
                time: super::now(),
                event: why.0.into(),
                result: "failed".into(),
                detail: Some(why.1),
                uid: rustix::process::getuid().as_raw(),
                pid: std::process::id(),
                ..Line::default()
            };
            self.append_keyed(key, kek, l, &mut state)?;
        }
        let pending = take_pending(p)?;
        // A key link comes first: nothing may be MAC'd under the new key before it.
        let (first, then) = match link {
            Some(_) => (lines, pending),
            None => (pending, lines),
        };
        for (i, mut l) in first.into_iter().enumerate() {
            if let (0, Some((old_v, old_key))) = (i, link) {
                let tag = line::link_tag(old_key, kek, &state.1).map_err(std::io::Error::other)?;
                l.prev_kek = Some(old_v);
                l.link = Some(hex(&tag));
            }
            self.append_keyed(key, kek, l, &mut state)?;
        }
        for l in then {
            self.append_keyed(key, kek, l, &mut state)?;
        }
        self.file.sync_data()?;
        crate::failpoint::hit(crate::failpoint::AUDIT_BEFORE_SEAL);
        // The pending lines are in the chain now; a crash before this line repeats them once.
        if std::fs::metadata(&p.pending).is_ok_and(|m| m.len() > 0) {
            OpenOptions::new()
                .write(true)
                .open(&p.pending)?
                .set_len(0)?;
        }
        write_seal(p, key, kek, state)
    }

    /// Appends an unkeyed line to the pending file (the log lock serialises it with keyed appends).
    pub fn append_pending(&mut self, p: &Paths, l: &Line) -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p.pending)?;
        let mut text = serde_json::to_string(l).map_err(std::io::Error::other)?;
        text.push('\n');
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }
}

/// Whether the seal contradicts the log about to be extended (lines cut from its end, or the
/// seal edited or removed). Appending rewrites the seal, so the evidence goes into the chain as
/// a line of its own first.
fn seal_mismatch(
    p: &Paths,
    key: &Key32,
    kek: u32,
    state: &(u64, [u8; 32]),
) -> Option<(&'static str, String)> {
    let Some(seal) = read_seal(p) else {
        return (state.0 > 0).then(|| {
            (
                super::EVENT_SEAL_MISSING,
                format!("the seal was missing with {} lines in the log", state.0),
            )
        });
    };
    if seal.kek != kek {
        // Sealed under another KEK version (around a rotation): the verifier checks it.
        return None;
    }
    if !seal.verify(key) {
        return Some((super::EVENT_SEAL_INVALID, "the seal did not verify".into()));
    }
    if seal.count > state.0 || (seal.count == state.0 && seal.last_mac != hex(&state.1)) {
        return Some((
            super::EVENT_TRUNCATED,
            format!(
                "the seal recorded {} lines, the log had {}",
                seal.count, state.0
            ),
        ));
    }
    None
}

fn take_pending(p: &Paths) -> std::io::Result<Vec<Line>> {
    let text = match std::fs::read(&p.pending) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut dropped = 0usize;
    for raw in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let parsed = std::str::from_utf8(raw)
            .ok()
            .and_then(|t| serde_json::from_str::<Line>(t).ok());
        match parsed {
            Some(mut l) if out.len() < MAX_PENDING => {
                l.origin = Some("unkeyed".into());
                l.kek = None;
                l.prev_kek = None;
                l.link = None;
                out.push(l);
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        out.push(Line {
            time: super::now(),
            event: "pending-dropped".into(),
            result: "failed".into(),
            detail: Some(format!(
                "{dropped} unkeyed lines unreadable or over the limit"
            )),
            uid: rustix::process::getuid().as_raw(),
            pid: std::process::id(),
            ..Line::default()
        });
    }
    Ok(out)
}

fn write_seal(p: &Paths, key: &Key32, kek: u32, state: (u64, [u8; 32])) -> std::io::Result<()> {
    let mac =
        hmac_sha256(key, &seal_input(state.0, kek, &state.1)).map_err(std::io::Error::other)?;
    let seal = Seal {
        count: state.0,
        kek,
        last_mac: hex(&state.1),
        mac: hex(&mac),
    };
    let mut tmp = p.seal.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let mut text = serde_json::to_string(&seal).map_err(std::io::Error::other)?;
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, &p.seal)?;
    if let Some(dir) = p.seal.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether `path` is an audit file name (log, seal, pending, seal temp) inside a cipher dir.
pub fn is_audit_name(name: &str) -> bool {
    name == super::LOG_NAME
        || name
            .strip_prefix(super::LOG_NAME)
            .is_some_and(|r| r.starts_with('.'))
}
