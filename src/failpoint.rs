//! Crash points for tests: a named point in the daemon where, if the
//! environment variable `DEKFS_FAILPOINT` names it, the process SIGKILLs
//! itself (as a power cut or `kill -9` would stop it there). It must stay
//! inert unless that variable is set, and must never change behaviour in any
//! other way.
//!
//! Points so far: `rename.cross_dir.renamed` (a cross-directory move after the
//! rename and the directory fsyncs, before the old key slot is cleared),
//! rekey's (`rekey.*`, constants in volume/rotate.rs and engine/rekey.rs),
//! audit's `audit.append.torn` and `audit.append.before_seal` (see their
//! constants), and offline shred's five (`shred.journal.written`, `shred.slots.half`,
//! `shred.slots.synced`, `shred.removal.contents`, `shred.removed`,
//! constants in engine/shred beside the steps they cut; the process killed
//! is the `dekfs shred` command offline, the daemon in an online shred), and
//! DEK renewal's (`renew.journal`, `renew.flagged`, `renew.run`, `renew.sealed`,
//! `renew.header` in fs/renew.rs, `renew.file.done` in engine/renew.rs).
//! `DEKFS_FAILPOINT=name@N` fires at the Nth hit of the point (1 = first),
//! so a test can stop a walk in the middle.

use std::sync::atomic::{AtomicU64, Ordering};
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

/// The armed point and the hit it fires at.
fn armed_at() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok().filter(|s| !s.is_empty())?;
            Some(match v.rsplit_once('@') {
                Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1).max(1)),
                None => (v, 1),
            })
        })
        .as_ref()
}

fn armed() -> Option<&'static str> {
    armed_at().map(|(n, _)| n.as_str())
}

/// Whether `point` is the armed one (for points that set up their crash
/// state first).
pub fn armed_is(point: &str) -> bool {
    armed() == Some(point)
}

/// Kills the process here if `point` is the armed one (at its Nth hit).
pub fn hit(point: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((name, at)) = armed_at() else {
        return;
    };
    if name == point && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *at {
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
