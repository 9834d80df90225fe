//! Crash points for tests: a named point in the daemon where, if the
//! environment variable `DEKFS_FAILPOINT` names it, the process SIGKILLs
//! itself (as a power cut or `kill -9` would stop it there). It must stay
//! inert unless that variable is set, and must never change behaviour in any
//! other way.
//!
//! Points so far: `rename.cross_dir.renamed` (a cross-directory move after the
//! rename and the directory fsyncs, before the old key slot is cleared).
//! Later issues add theirs here (rekey: between rewrapping objects), one
//! constant each. Offline shred's five points (`shred.journal.written`,
//! `shred.slots.half`, `shred.slots.synced`, `shred.removal.contents`,
//! `shred.removed`) are constants in engine/shred beside the steps they cut;
//! there the process killed is the `dekfs shred` command itself.

use std::sync::OnceLock;

/// Cross-directory move: new slot written and synced, entry renamed, both
/// directories synced; the old slot is still there.
pub const CROSS_DIR_RENAMED: &str = "rename.cross_dir.renamed";

/// The environment variable naming the one armed point.
pub const ENV: &str = "DEKFS_FAILPOINT";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
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
