//! Reads passphrases and recovery keys from a file, a descriptor or the TTY.
//! It must not echo, log or keep copies: bytes are read straight into `SecretBytes`.

use super::exit::{CliError, CliResult, USAGE};
use crate::secret::{RecoveryKey, SecretBytes};
use std::io::{Read, Write};
use std::path::Path;

/// Longest accepted passphrase line, in bytes (without its line ending).
const MAX_LINE: usize = 4096;

/// First line of `r`, without its line ending (one LF, then one CR before it). Bytes go straight
/// into a locked `SecretBytes` sized for the longest line, one read at a time so nothing past
/// the newline is consumed from a shared descriptor; no other buffer ever holds them.
pub(super) fn first_line(mut r: impl Read) -> CliResult<SecretBytes> {
    let mut buf = SecretBytes::zeroed(MAX_LINE + 1);
    let mut len = 0usize;
    loop {
        let Some(cell) = buf.expose_mut().get_mut(len..len + 1) else {
            return Err(CliError::new(USAGE, "passphrase longer than 4096 bytes"));
        };
        match r.read(cell) {
            Ok(0) => break,
            Ok(_) if cell[0] == b'\n' => {
                cell[0] = 0;
                break;
            }
            Ok(_) => len += 1,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if len > MAX_LINE {
        return Err(CliError::new(USAGE, "passphrase longer than 4096 bytes"));
    }
    if len > 0 && buf.expose()[len - 1] == b'\r' {
        len -= 1;
    }
    buf.truncate(len);
    warn_if_unlocked();
    Ok(buf)
}

/// Says once per process, on stderr, that secrets could not be kept out of swap.
pub fn warn_if_unlocked() {
    if let Some(w) = crate::secret::lock_warning_once() {
        eprintln!("dekfs: warning: {w}");
    }
}

pub fn from_file(p: &Path) -> CliResult<SecretBytes> {
    let f = std::fs::File::open(p)
        .map_err(|e| CliError::new(USAGE, format!("cannot read {}: {e}", p.display())))?;
    first_line(f)
}

/// Reads from an inherited descriptor through /proc, so ours is a separate
/// open that never closes the caller's.
pub fn from_fd(fd: i32) -> CliResult<SecretBytes> {
    if fd < 0 {
        return Err(CliError::new(USAGE, "invalid --passphrase-fd"));
    }
    let f = std::fs::File::open(format!("/proc/self/fd/{fd}"))
        .map_err(|_| CliError::new(USAGE, format!("descriptor {fd} is not open")))?;
    first_line(f)
}

pub fn prompt(label: &str, confirm: bool) -> CliResult<SecretBytes> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            CliError::new(USAGE, "no terminal to ask for the passphrase")
                .hint("use --passfile FILE or --passphrase-fd N")
        })?;
    let first = read_hidden(&tty, label)?;
    if confirm {
        let again = read_hidden(&tty, "Repeat passphrase: ")?;
        if !first.ct_eq(again.expose()) {
            return Err(CliError::new(USAGE, "passphrases do not match"));
        }
    }
    if first.is_empty() {
        return Err(CliError::new(USAGE, "empty passphrase"));
    }
    Ok(first)
}

fn read_hidden(tty: &std::fs::File, label: &str) -> CliResult<SecretBytes> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let mut w = tty;
    w.write_all(label.as_bytes())?;
    w.flush()?;
    let old = tcgetattr(tty).map_err(std::io::Error::from)?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(tty, OptionalActions::Flush, &quiet).map_err(std::io::Error::from)?;
    let r = first_line(tty);
    let _ = tcsetattr(tty, OptionalActions::Flush, &old);
    let _ = w.write_all(b"\n");
    r
}

pub fn recovery_from_file(p: &Path) -> CliResult<RecoveryKey> {
    let s = from_file(p)?;
    let text = std::str::from_utf8(s.expose())
        .map_err(|_| CliError::new(USAGE, "recovery key file is not text"))?;
    RecoveryKey::parse(text).map_err(|_| {
        CliError::new(USAGE, "malformed recovery key")
            .hint("expected 64 hex digits, dashes and spaces allowed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &[u8]) -> Vec<u8> {
        first_line(input)
            .map(|s| s.expose().to_vec())
            .unwrap_or_else(|e| panic!("{}", e.msg))
    }

    #[test]
    fn strips_one_lf_and_one_cr() {
        assert_eq!(line(b"secret\n"), b"secret");
        assert_eq!(line(b"secret\r\n"), b"secret");
        assert_eq!(line(b"secret"), b"secret");
        assert_eq!(line(b"secret\r"), b"secret");
        assert_eq!(line(b"secret\r\r\n"), b"secret\r");
        assert_eq!(line(b"a b\tc\nsecond line\n"), b"a b\tc");
        assert_eq!(line(b"\n"), b"");
        assert_eq!(line(b""), b"");
        // Not text: bytes are taken as they are, no UTF-8 check or normalisation.
        assert_eq!(line(b"\xff\xc3\xa9\n"), b"\xff\xc3\xa9");
    }

    #[test]
    fn reads_nothing_past_the_newline() {
        let mut r: &[u8] = b"one\ntwo\n";
        assert_eq!(first_line(&mut r).unwrap().expose(), b"one");
        assert_eq!(r, b"two\n");
    }

    #[test]
    fn length_limit() {
        let ok = vec![b'x'; MAX_LINE];
        assert_eq!(line(&ok).len(), MAX_LINE);
        let mut with_nl = ok.clone();
        with_nl.push(b'\n');
        assert_eq!(line(&with_nl).len(), MAX_LINE);
        let long = vec![b'x'; MAX_LINE + 1];
        assert!(first_line(&long[..]).is_err());
        let longer = vec![b'x'; 3 * MAX_LINE];
        assert!(first_line(&longer[..]).is_err());
    }

    /// The reader has no String or Vec of its own: the returned secret is the one locked buffer
    /// it allocated, so no unwiped copy can be left on the heap.
    #[test]
    fn reader_has_no_string_or_vec_intermediate() {
        let s = first_line(&b"pw\n"[..]).unwrap();
        assert_eq!(s.len(), 2);
        let src = include_str!("secret_input.rs");
        let body =
            &src[src.find("fn first_line").unwrap()..src.find("pub fn warn_if_unlocked").unwrap()];
        for banned in ["Vec", "String", "to_vec", "push(", "collect"] {
            assert!(!body.contains(banned), "first_line uses {banned}");
        }
    }
}
