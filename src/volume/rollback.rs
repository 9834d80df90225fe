//! Config rollback protection: this machine's record of the highest KEK version it has seen
//! active per volume id, kept outside the cipher directory (an attacker who can put an old
//! dekfs.conf back can also put back anything inside it). Every unlock refuses a config whose
//! active KEK is older than the record, unless the user allows it. Must NOT raise the record
//! from an unauthenticated config (a forged version would lock the owner out), nor fail an
//! unlock because the record cannot be written.

use super::VolumeError;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Environment override (any non-empty value other than `0`), like `--allow-rollback`.
pub const ALLOW_ROLLBACK_ENV: &str = "DEKFS_ALLOW_ROLLBACK";
/// Another place for dekfs's machine state (containers, test runs: the repository's
/// .cargo/config.toml points `cargo test` at one under target/).
pub const STATE_DIR_ENV: &str = "DEKFS_STATE_DIR";
/// Where root keeps the records.
pub const SYSTEM_SEEN_DIR: &str = "/var/lib/dekfs/seen";
const MAGIC_LINE: &str = "dekfs-seen v1";
/// More than any record we write; a bigger file is not ours.
const MAX_RECORD_LEN: u64 = 256;

static ALLOWED: AtomicBool = AtomicBool::new(false);

/// `--allow-rollback`: accept an older config for this process (and a daemon it forks).
pub fn allow_rollback(yes: bool) {
    ALLOWED.store(yes, Ordering::Relaxed);
}

fn allowed() -> bool {
    ALLOWED.load(Ordering::Relaxed)
        || std::env::var(ALLOW_ROLLBACK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The directory of the records for this user: `$DEKFS_STATE_DIR/seen` if set, else root's
/// under /var/lib, a user's under `$XDG_STATE_HOME/dekfs/seen` (default
/// `~/.local/state/dekfs/seen`). None without a home.
pub fn seen_dir() -> Option<PathBuf> {
    // Unit tests make throwaway volumes by the hundred; they keep no record on the machine.
    if cfg!(test) {
        return None;
    }
    let abs = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(state) = std::env::var_os(STATE_DIR_ENV).and_then(abs) {
        return Some(state.join("seen"));
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from(SYSTEM_SEEN_DIR));
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").and_then(abs) {
        return Some(state.join("dekfs/seen"));
    }
    std::env::var_os("HOME")
        .and_then(abs)
        // mount(8) runs a user's mount helper without $HOME: the passwd entry has it.
        .or_else(|| crate::sys::home_of_uid(rustix::process::geteuid().as_raw()))
        .map(|h| h.join(".local/state/dekfs/seen"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The record file of one volume.
pub fn record_path(volume_id: &[u8; 16]) -> Option<PathBuf> {
    seen_dir().map(|d| d.join(hex(volume_id)))
}

/// The highest KEK version recorded for the volume; None when there is no (readable) record.
pub fn seen(volume_id: &[u8; 16]) -> Option<u32> {
    let path = record_path(volume_id)?;
    let mut text = String::new();
    let f = File::open(&path).ok()?;
    f.take(MAX_RECORD_LEN).read_to_string(&mut text).ok()?;
    match parse(&text) {
        Some(v) => Some(v),
        None => {
            let msg = format!(
                "rollback record {} is damaged; ignored (it is rewritten at the next unlock)",
                path.display()
            );
            log::warn!("{msg}");
            eprintln!("dekfs: warning: {msg}");
            None
        }
    }
}

fn parse(text: &str) -> Option<u32> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC_LINE {
        return None;
    }
    let v: u32 = lines.next()?.strip_prefix("kek ")?.parse().ok()?;
    (lines.next().is_none() && v > 0).then_some(v)
}

/// Refuses a config whose active KEK `active` (MAC-verified) is older than this machine's
/// record, unless rollback is allowed (then it says what that risks).
pub fn check(volume_id: &[u8; 16], active: u32) -> Result<(), VolumeError> {
    let Some(seen) = seen(volume_id) else {
        return Ok(());
    };
    if active >= seen {
        return Ok(());
    }
    if allowed() {
        let msg = format!(
            "--allow-rollback: accepting dekfs.conf with KEK version {active}, older than \
             version {seen} seen on this machine; anything written now is under the old key, \
             which whoever held the newer config's predecessors may know"
        );
        log::warn!("{msg}");
        eprintln!("dekfs: warning: {msg}");
        return Ok(());
    }
    Err(VolumeError::Rollback {
        config: active,
        seen,
        record: record_path(volume_id).map_or(String::new(), |p| p.display().to_string()),
    })
}

/// For a volume just unlocked through the TPM `tcti`: the same check against the TPM's own copy
/// of the record (an NV index, which survives a wiped or restored disk), then raise it. A TPM
/// that cannot keep one is a warning.
pub fn check_and_raise_tpm(
    tcti: &crate::tpm::Tcti,
    volume_id: &[u8; 16],
    active: u32,
) -> Result<(), VolumeError> {
    if cfg!(test) {
        return Ok(());
    }
    match crate::tpm::nv_seen(tcti, volume_id) {
        Ok(Some(seen)) if active < seen => {
            if !allowed() {
                return Err(VolumeError::Rollback {
                    config: active,
                    seen,
                    record: format!("TPM NV index ({tcti})"),
                });
            }
            let msg = format!(
                "--allow-rollback: accepting dekfs.conf with KEK version {active}, older than \
                 version {seen} recorded in the TPM"
            );
            log::warn!("{msg}");
            eprintln!("dekfs: warning: {msg}");
        }
        Ok(_) => {}
        Err(e) => log::warn!("TPM rollback record not readable: {e}"),
    }
    raise_tpm(tcti, volume_id, active);
    Ok(())
}

/// Raises the TPM's copy of the record (after a rotation's config step); failures are warnings.
pub fn raise_tpm(tcti: &crate::tpm::Tcti, volume_id: &[u8; 16], version: u32) {
    if cfg!(test) {
        return;
    }
    if let Err(e) = crate::tpm::nv_raise(tcti, volume_id, version) {
        let msg = format!("cannot update the TPM's rollback record: {e}");
        log::warn!("{msg}");
        eprintln!("dekfs: warning: {msg}");
    }
}

/// After a successful unlock or a rotation: raise the record to `version` (never lower it).
/// A record that cannot be written is reported and the operation goes on.
pub fn raise_after_write(volume_id: &[u8; 16], version: u32) {
    if cfg!(test) {
        return;
    }
    if let Err(e) = raise(volume_id, version) {
        let dir = seen_dir().map_or("(none)".into(), |d| d.display().to_string());
        let msg = format!("cannot update the rollback record in {dir}: {e}");
        log::warn!("{msg}");
        eprintln!("dekfs: warning: {msg}");
    }
}

fn raise(volume_id: &[u8; 16], version: u32) -> std::io::Result<()> {
    let Some(dir) = seen_dir() else {
        return Err(std::io::Error::new(
            ErrorKind::NotFound,
            "no state directory (no $HOME)",
        ));
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    // Serialises raisers, so that a slower one never puts back a lower version.
    let lock = File::open(&dir)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    if seen(volume_id).is_some_and(|s| s >= version) {
        return Ok(());
    }
    let name = hex(volume_id);
    let suffix: [u8; 8] =
        crate::crypto::random_array().map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!("{name}.tmp.{}", hex(&suffix)));
    let r = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(format!("{MAGIC_LINE}\nkek {version}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(&name))?;
        lock.sync_all()
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_text_parses_strictly() {
        assert_eq!(super::parse("dekfs-seen v1\nkek 3\n"), Some(3));
        assert_eq!(super::parse("dekfs-seen v1\nkek 0\n"), None);
        assert_eq!(super::parse("dekfs-seen v1\nkek 3\nkek 4\n"), None);
        assert_eq!(super::parse("dekfs-seen v2\nkek 3\n"), None);
        assert_eq!(super::parse("dekfs-seen v1\nkek -1\n"), None);
        assert_eq!(super::parse(""), None);
    }
}
