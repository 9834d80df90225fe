//! Reads passphrases and recovery keys from a file, a descriptor or the TTY.
//! It must not echo, log or keep copies: everything lands in `SecretBytes`.

use super::exit::{CliError, CliResult, USAGE};
use crate::secret::{RecoveryKey, SecretBytes};
use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroize;

/// First line of `r`, without its line ending.
pub(super) fn first_line(mut r: impl Read) -> CliResult<SecretBytes> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => buf.push(byte[0]),
            Err(e) => {
                buf.zeroize();
                return Err(e.into());
            }
        }
        if buf.len() > 4096 {
            buf.zeroize();
            return Err(CliError::new(USAGE, "passphrase longer than 4096 bytes"));
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(SecretBytes::new(buf))
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
