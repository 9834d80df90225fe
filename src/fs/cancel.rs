//! Who asked for a request, so that a long zero fill can stop once the
//! caller has been killed. fuser 0.18 drops FUSE_INTERRUPT (its request
//! loop leaves it as a TODO), so the core looks at the caller itself. It
//! must not signal, wait for or otherwise touch that process: it only
//! reads its /proc status.

/// The thread behind a request (FUSE passes its id), if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requester(Option<u32>);

impl Requester {
    /// Nobody to watch: internal work, tests, requests without a pid.
    pub const NONE: Requester = Requester(None);

    pub fn pid(pid: u32) -> Requester {
        Requester((pid != 0).then_some(pid))
    }

    /// True once the caller has been killed. The kernel turns a fatal
    /// signal into a SIGKILL pending on every thread of the process, and
    /// a thread whose request we hold waits for our answer without dying,
    /// so the pending SIGKILL shows in its status. An unreadable status
    /// counts as alive: stopping a fill needs positive evidence.
    pub fn killed(&self) -> bool {
        let Some(pid) = self.0 else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| kill_pending(&s))
            .unwrap_or(false)
    }
}

/// Whether a /proc status text shows SIGKILL pending (thread or process).
fn kill_pending(status: &str) -> bool {
    let kill: u64 = 1 << (libc::SIGKILL - 1);
    status
        .lines()
        .filter_map(|l| l.strip_prefix("SigPnd:").or(l.strip_prefix("ShdPnd:")))
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|m| m & kill != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pending_kill_from_status() {
        let alive = "Name:\tdd\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n";
        assert!(!kill_pending(alive));
        assert!(kill_pending(
            "SigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\n"
        ));
        assert!(kill_pending(
            "SigPnd:\t0000000000000000\nShdPnd:\t0000000000004100\n"
        ));
        assert!(
            !kill_pending("SigPnd:\t0000000000000002\n"),
            "SIGINT handled"
        );
        assert!(!kill_pending("garbage"));
    }

    #[test]
    fn a_live_caller_is_not_killed() {
        assert!(!Requester::pid(std::process::id()).killed());
        assert!(!Requester::NONE.killed());
        assert_eq!(Requester::pid(0), Requester::NONE);
    }
}
