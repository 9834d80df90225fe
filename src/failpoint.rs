//! Crash points for tests: a named point in the daemon where, if the
//! environment variable `DEKFS_FAILPOINT` names it, the process SIGKILLs
//! itself (as a power cut or `kill -9` would stop it there). It must stay
//! inert unless that variable is set, and must never change behaviour in any
//! other way.
//!
//! Points so far: `rename.cross_dir.renamed` (a cross-directory move after the
//! rename and the directory fsyncs, before the old key slot is cleared),
//! `audit.append.torn` and `audit.append.before_seal` (see their constants).
//! Later issues add theirs here (rekey: between rewrapping objects; shred:
//! between destroying a key and removing the ciphertext), one constant each.

use std::sync::OnceLock;

/// Cross-directory move: new slot written and synced, entry renamed, both
/// directories synced; the old slot is still there.
pub const CROSS_DIR_RENAMED: &str = "rename.cross_dir.renamed";

/// Audit append: half of a line written, before its newline (a torn line).
pub const AUDIT_TORN_LINE: &str = "audit.append.torn";

/// Audit append: lines written and synced, the seal not yet rewritten.
pub const AUDIT_BEFORE_SEAL: &str = "audit.append.before_seal";

/// The environment variable naming the one armed point.
pub const ENV: &str = "DEKFS_FAILPOINT";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Whether `point` is the armed one (for points that set up their crash state first).
pub fn armed_is(point: &str) -> bool {
    armed() == Some(point)
}

/// Kills the process here if `point` is the armed one.
pub fn hit(point: &str) {
    if armed() == Some(point) {
        log::warn!("failpoint {point}: killing the daemon");
        log::logger().flush();
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unarmed_point_returns() {
        // The test process never arms a point; reaching the assert proves it.
        super::hit("no.such.point");
        assert_ne!(super::armed(), Some("no.such.point"));
    }
}
