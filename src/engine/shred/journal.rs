//! The shred journal `dekfs.shred` in the cipher root: where an interrupted
//! shred lives once the target's name may already be gone. It names the
//! target by backing path (never by plaintext name), lists the ids of the
//! objects being destroyed and a fingerprint of every wrapped key being
//! destroyed, and ends with `end` so a torn write is never taken for a
//! whole one (it is also written to a temp file and renamed). It must never
//! hold wrapped-key bytes themselves: a wrapped slot that also wraps to a
//! directory outside the target would open again with that directory's key.

use super::verify::{Needle, Needles};
use crate::layout::{classify, Class};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// The journal's name in the cipher root (reserved: it contains a `.`).
pub const JOURNAL_NAME: &str = "dekfs.shred";
const JOURNAL_TMP: &str = "dekfs.shred.tmp";
const MAGIC: &str = "dekfs-shred v1";
/// Far above any real journal (about 200 bytes per object), far below
/// what would hurt to read.
const MAX_LEN: u64 = 1 << 28;

/// One shred in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Backing names from the cipher root down to the target's directory.
    pub parent: Vec<String>,
    /// The target's backing name in that directory.
    pub entry: String,
    /// Its long-name record, for a long-form name.
    pub record: Option<String>,
    /// The target's own id (its dekfs.dir's dir_id or its header's file_id;
    /// none for an empty file, a symlink, a special file): a rerun destroys
    /// nothing under a name that was recreated since.
    pub target: Option<[u8; 16]>,
    /// dir_id / file_id of every key object under the target.
    pub ids: Vec<[u8; 16]>,
    pub needles: Needles,
}

/// A backing name a journal may name as a directory or target: an entry
/// (short or long form), never dekfs's own metadata, so a forged journal
/// cannot aim a shred at the config or a dekfs.dir.
fn valid_name(n: &str) -> bool {
    n.len() <= 255 && matches!(classify(n), Class::Short(_) | Class::Long { .. })
}

/// The record of a long-form `entry`, and nothing else.
fn valid_record(entry: &str, rec: &str) -> bool {
    match (classify(entry), classify(rec)) {
        (Class::Long { hash: e }, Class::LongRecord { hash: r }) => e == r,
        _ => false,
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{JOURNAL_NAME}: {what}"),
    )
}

impl Journal {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{MAGIC}\nparent /{}\nentry {}\n",
            self.parent.join("/"),
            self.entry
        );
        let _ = writeln!(s, "record {}", self.record.as_deref().unwrap_or("-"));
        let _ = writeln!(
            s,
            "target {}",
            self.target.map_or("-".to_owned(), |t| hexs(&t))
        );
        for id in &self.ids {
            let _ = writeln!(s, "id {}", hexs(id));
        }
        for n in self.needles.iter() {
            let _ = writeln!(s, "key {} {}", hexs(&n.prefix), hexs(&n.digest));
        }
        s.push_str("end\n");
        s
    }

    /// Parses a whole journal; anything unexpected is refused (the journal
    /// decides what gets deleted, so a damaged one must stop the run).
    pub fn parse(text: &str) -> io::Result<Journal> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not a shred journal of this version"));
        }
        let field = |l: Option<&str>, k: &str| -> io::Result<String> {
            l.and_then(|l| l.strip_prefix(k))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("missing `{k}`")))
        };
        let parent = field(lines.next(), "parent")?;
        let parent = parent.strip_prefix('/').ok_or_else(|| bad("parent"))?;
        let parent: Vec<String> = parent
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let entry = field(lines.next(), "entry")?;
        let record = match field(lines.next(), "record")?.as_str() {
            "-" => None,
            r => Some(r.to_owned()),
        };
        let target = match field(lines.next(), "target")?.as_str() {
            "-" => None,
            t => Some(unhex::<16>(t)?),
        };
        if !parent.iter().all(|c| valid_name(c)) || !valid_name(&entry) {
            return Err(bad("invalid backing name"));
        }
        if record.as_deref().is_some_and(|r| !valid_record(&entry, r)) {
            return Err(bad("invalid record name"));
        }
        let (mut ids, mut needles, mut ended) = (Vec::new(), Needles::default(), false);
        for l in lines {
            if ended {
                return Err(bad("text after `end`"));
            }
            let mut w = l.split(' ');
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("id"), Some(h), None, None) => ids.push(unhex::<16>(h)?),
                (Some("key"), Some(p), Some(d), None) => needles.push(Needle {
                    prefix: unhex::<8>(p)?,
                    digest: unhex::<32>(d)?,
                }),
                (Some("end"), None, None, None) => ended = true,
                _ => return Err(bad("unknown line")),
            }
        }
        if !ended {
            return Err(bad("torn (no `end` line)"));
        }
        Ok(Journal {
            parent,
            entry,
            record,
            target,
            ids,
            needles,
        })
    }

    /// Writes the journal durably: temp file, fsync, rename, fsync root.
    pub fn write(&self, root: &OwnedFd) -> io::Result<()> {
        let _ = rustix::fs::unlinkat(root, JOURNAL_TMP, AtFlags::empty());
        let fd = rustix::fs::openat(
            root,
            JOURNAL_TMP,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut f = std::fs::File::from(fd);
        f.write_all(self.to_text().as_bytes())?;
        f.sync_all()?;
        rustix::fs::renameat(root, JOURNAL_TMP, root, JOURNAL_NAME)?;
        rustix::fs::fsync(root)?;
        Ok(())
    }

    /// The journal of an interrupted shred, if there is one.
    pub fn read(root: &impl AsFd) -> io::Result<Option<Journal>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(root, JOURNAL_NAME, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(MAX_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|_| bad("not text"))?;
        if text.len() as u64 > MAX_LEN {
            return Err(bad("too large"));
        }
        Journal::parse(&text).map(Some)
    }

    /// Deletes the journal (and a torn temp) once the shred is complete.
    pub fn remove(root: &OwnedFd) -> io::Result<()> {
        let _ = rustix::fs::unlinkat(root, JOURNAL_TMP, AtFlags::empty());
        match rustix::fs::unlinkat(root, JOURNAL_NAME, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        rustix::fs::fsync(root)?;
        Ok(())
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Lowercase hex of exactly N bytes.
fn unhex<const N: usize>(h: &str) -> io::Result<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let h = h.as_bytes();
    if h.len() != 2 * N {
        return Err(bad("bad hex"));
    }
    let mut out = [0u8; N];
    for (o, p) in out.iter_mut().zip(h.chunks(2)) {
        *o = digit(p[0])
            .zip(digit(p[1]))
            .map(|(a, b)| a << 4 | b)
            .ok_or_else(|| bad("bad hex"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        let mut needles = Needles::default();
        needles.push(Needle {
            prefix: [1; 8],
            digest: [2; 32],
        });
        Journal {
            parent: vec!["abc".into(), "dekfs.ln.x".into()],
            entry: "dekfs.ln.y".into(),
            record: Some("dekfs.ln.y.name".into()),
            target: Some([7; 16]),
            ids: vec![[7; 16]],
            needles,
        }
    }

    #[test]
    fn round_trip() {
        let j = sample();
        assert_eq!(Journal::parse(&j.to_text()).unwrap(), j);
        let root = Journal {
            parent: vec![],
            entry: "Zm9v".into(),
            record: None,
            target: None,
            ..sample()
        };
        assert_eq!(Journal::parse(&root.to_text()).unwrap(), root);
    }

    #[test]
    fn refusals() {
        let t = sample().to_text();
        assert!(Journal::parse(t.trim_end_matches("end\n")).is_err());
        for bad_entry in ["..", "dekfs.conf", "dekfs.dir", "a/b", ""] {
            let forged = t.replace("entry dekfs.ln.y", &format!("entry {bad_entry}"));
            assert!(Journal::parse(&forged).is_err(), "{bad_entry}");
        }
        assert!(
            Journal::parse(&t.replace("record dekfs.ln.y.name", "record dekfs.ln.z.name")).is_err()
        );
        assert!(Journal::parse(&t.replace("parent /abc", "parent /dekfs.quarantine")).is_err());
        assert!(Journal::parse(&t.replace("parent /abc", "parent /a/../b")).is_err());
        assert!(Journal::parse(&t.replace("id 07", "id zz")).is_err());
        assert!(Journal::parse(&format!("{t}id 00\n")).is_err());
        assert!(Journal::parse("").is_err());
    }
}
