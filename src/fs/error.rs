//! The core's error types and the one integrity reporter. It must not decide
//! policy (retry, repair) and its values never carry key material or file
//! contents: only errnos, inode numbers, plaintext paths and short texts.
//!
//! Layer rules (who may do what with an error):
//! - Detect: code that finds a problem returns a `CoreError` keeping the
//!   cause: `Sys` for a refused request or a backing-filesystem errno,
//!   `Damage` for stored bytes that fail authentication or parsing
//!   (tampering, corruption, a torn write), `Crypto` for a crypto operation
//!   failing on our own input (RNG failure, impossible length), `Io` for an
//!   I/O error that has no errno (a short read). Detecting code never logs
//!   the problem and never flattens it to an errno.
//! - Locate: only the core can name the file, so it attaches inode and
//!   plaintext path to a damage (`CoreFs::integrity`, `CoreFs::locate`).
//! - Report: `report` is the only place that logs an integrity problem:
//!   one line per damaged file per minute, with its plaintext path. It runs
//!   at the boundary (`user_errno`) and where the core carries on past a
//!   damage instead of failing (a listing shows an unreadable name, a
//!   directory is served without its key).
//! - Map: `user_errno` is the only function that turns a `CoreError` into
//!   the errno a user sees; the FUSE adapter calls it for every failed
//!   request. Damage, crypto and errno-less I/O failures become EIO.
//! - Reach the user: an errno only, never a description; the log names the
//!   damaged file. Tools that talk to the core directly (fsck, rekey, a
//!   control socket) get the `CoreError` itself and may print it.
//! - Other log lines in the core are operational (a re-keyed empty
//!   directory, reclaimed space), never about integrity.

use crate::crypto::CryptoError;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// An errno value, as the kernel would return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EIO: Errno = Errno(libc::EIO);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    /// Every access while the volume is locked (see docs/CONTROL.md).
    pub const EKEYREVOKED: Errno = Errno(libc::EKEYREVOKED);
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Stored bytes that did not authenticate or parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged object's inode; 0 until the core has located it.
    pub ino: u64,
    /// Plaintext path ("/a/b"), empty until located.
    pub path: String,
    /// What failed, e.g. "block 3 failed authentication".
    pub what: String,
}

#[derive(Debug)]
pub enum CoreError {
    Sys(Errno),
    Damage(Damage),
    Crypto(CryptoError),
    /// An I/O error without an errno (a read that found the file shorter).
    Io(std::io::ErrorKind),
}

pub type FsResult<T> = Result<T, CoreError>;

impl CoreError {
    /// A damage not yet tied to a file (found below the node layer).
    pub fn damage(what: impl Into<String>) -> CoreError {
        CoreError::Damage(Damage {
            ino: 0,
            path: String::new(),
            what: what.into(),
        })
    }

    /// The errno this error stands for, without reporting anything: for
    /// the core's own decisions (retry on ENOSPC, ignore ENODATA).
    pub fn errno(&self) -> Errno {
        match self {
            CoreError::Sys(e) => *e,
            CoreError::Damage(_) | CoreError::Crypto(_) | CoreError::Io(_) => Errno::EIO,
        }
    }

    /// True for a plain errno equal to `e` (never for a damage that maps
    /// to the same errno).
    pub fn is(&self, e: Errno) -> bool {
        matches!(self, CoreError::Sys(x) if *x == e)
    }
}

impl PartialEq<Errno> for CoreError {
    fn eq(&self, other: &Errno) -> bool {
        self.is(*other)
    }
}

impl From<Errno> for CoreError {
    fn from(e: Errno) -> Self {
        CoreError::Sys(e)
    }
}

impl From<rustix::io::Errno> for CoreError {
    fn from(e: rustix::io::Errno) -> Self {
        CoreError::Sys(e.into())
    }
}

impl From<std::io::Error> for CoreError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => CoreError::Sys(Errno(n)),
            None => CoreError::Io(e.kind()),
        }
    }
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreError::Sys(e) => write!(f, "{e}"),
            CoreError::Damage(d) if d.path.is_empty() => write!(f, "damaged: {}", d.what),
            CoreError::Damage(d) => write!(f, "{}: damaged: {}", d.path, d.what),
            CoreError::Crypto(e) => write!(f, "crypto: {e}"),
            CoreError::Io(k) => write!(f, "I/O: {k}"),
        }
    }
}

impl std::error::Error for CoreError {}

/// The kernel retries a failed read page by page, so one damaged file is
/// reported at most once per window.
const REPORT_WINDOW: Duration = Duration::from_secs(60);

/// Per-process, not per-`CoreFs`: `user_errno` runs in the adapter, which
/// has no core at hand, and a daemon serves one volume.
fn reported() -> &'static Mutex<HashMap<u64, Instant>> {
    static SEEN: OnceLock<Mutex<HashMap<u64, Instant>>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(HashMap::new()))
}

static DAMAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Damages reported in this process, logged or not (`dekfs status`).
pub fn integrity_errors() -> u64 {
    DAMAGES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The one integrity reporter: logs a damage with its plaintext path, at
/// most once per window per file. Returns whether it logged.
pub fn report(d: &Damage) -> bool {
    DAMAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if d.ino != 0 {
        let now = Instant::now();
        let mut seen = super::node::lock(reported());
        if seen.len() > 4096 {
            seen.clear();
        }
        match seen.get(&d.ino) {
            Some(t) if now.duration_since(*t) < REPORT_WINDOW => return false,
            _ => {
                seen.insert(d.ino, now);
            }
        }
    }
    let path = if d.path.is_empty() { "?" } else { &d.path };
    log::error!("integrity error: {path}: {}", d.what);
    crate::audit::record(
        crate::audit::Event::new("integrity-error")
            .failed(d.what.to_string())
            .object(format!("ino {}", d.ino))
            .path(path),
    );
    true
}

/// The boundary: reports a damage (once) and gives the errno the user
/// sees. Adapters call this for every failed request, and nothing else
/// turns a `CoreError` into a reply.
pub fn user_errno(e: CoreError) -> Errno {
    if let CoreError::Damage(d) = &e {
        report(d);
    }
    e.errno()
}

/// Why `CoreFs::new` could not serve a cipher directory.
#[derive(Debug)]
pub enum OpenError {
    /// The cipher directory cannot be opened (missing, not a directory, I/O).
    CipherDir(std::path::PathBuf, Errno),
    /// The root's key metadata is missing, unreadable or malformed.
    RootMeta(CoreError),
    /// The root key does not open: damaged metadata or another volume's.
    RootKey(CryptoError),
    /// /proc/self/fd is needed to reopen inodes by descriptor.
    ProcFd(Errno),
}

impl OpenError {
    /// The volume's own bytes are at fault (as opposed to the system).
    pub fn is_damage(&self) -> bool {
        match self {
            // Missing, or something other than a file in its place.
            OpenError::RootMeta(CoreError::Sys(e)) => {
                [Errno::ENOENT, Errno::EISDIR, Errno(libc::ELOOP)].contains(e)
            }
            OpenError::RootMeta(_) => true,
            OpenError::RootKey(_) => true,
            OpenError::CipherDir(..) | OpenError::ProcFd(_) => false,
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meta = crate::format::DIR_META_NAME;
        match self {
            OpenError::CipherDir(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            OpenError::RootMeta(CoreError::Sys(Errno::ENOENT)) => {
                write!(f, "the root {meta} is missing")
            }
            OpenError::RootMeta(e) => write!(f, "cannot read the root {meta}: {e}"),
            OpenError::RootKey(e) => write!(
                f,
                "the root directory key does not open ({e}): the root {meta} is damaged or \
                 belongs to another volume"
            ),
            OpenError::ProcFd(e) => write!(f, "/proc/self/fd is unavailable: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_survive_until_the_boundary() {
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short");
        assert!(matches!(
            CoreError::from(io),
            CoreError::Io(std::io::ErrorKind::UnexpectedEof)
        ));
        let e = CoreError::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(e == Errno::ENOSPC);
        assert_eq!(user_errno(e), Errno::ENOSPC);
        let d = CoreError::damage("block 1 failed authentication");
        assert!(d != Errno::EIO, "a damage is not a plain EIO");
        assert_eq!(user_errno(d), Errno::EIO);
        assert_eq!(
            user_errno(CoreError::Crypto(CryptoError::Random)),
            Errno::EIO
        );
    }

    #[test]
    fn one_report_per_file_and_window() {
        let d = Damage {
            ino: u64::MAX - 7,
            path: "/x".into(),
            what: "test".into(),
        };
        assert!(report(&d));
        assert!(!report(&d));
        let other = Damage {
            ino: u64::MAX - 8,
            ..d.clone()
        };
        assert!(report(&other));
    }

    #[test]
    fn open_errors_tell_damage_from_system() {
        let missing = OpenError::RootMeta(Errno::ENOENT.into());
        assert!(missing.is_damage());
        assert!(missing.to_string().contains("missing"));
        assert!(OpenError::RootMeta(CoreError::damage("too long")).is_damage());
        assert!(!OpenError::RootMeta(Errno::EIO.into()).is_damage());
        assert!(OpenError::RootKey(CryptoError::UnwrapFailed).is_damage());
        assert!(!OpenError::ProcFd(Errno::ENOENT).is_damage());
        assert!(!OpenError::CipherDir("/x".into(), Errno::ENOTDIR).is_damage());
    }
}
