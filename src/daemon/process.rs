//! Turning the mount command into a daemon: fork, a new session, the
//! readiness pipe that reports "live" or the startup error to the waiting
//! parent, and detaching from the caller's terminal. It must not fork once
//! any thread runs (see sys::fork), so it runs before the FUSE session.

use super::DaemonError;
use crate::volume::UnlockedVolume;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

/// The child's end of the readiness pipe, taken by `report_ready`.
pub type Ready = Option<OwnedFd>;

/// Forks; the child runs `serve` and exits, the parent drops its copy of
/// the keys and returns what the child reports through the pipe.
pub fn daemonise(
    unlocked: UnlockedVolume,
    serve: impl FnOnce(UnlockedVolume, &mut Ready) -> Result<(), DaemonError>,
) -> Result<(), DaemonError> {
    let (rd, wr) = rustix::pipe::pipe().map_err(std::io::Error::from)?;
    match crate::sys::fork()? {
        crate::sys::Forked::Parent => {
            drop(wr);
            drop(unlocked);
            wait_ready(rd)
        }
        crate::sys::Forked::Child => {
            drop(rd);
            crate::secret::relock_after_fork();
            let _ = rustix::process::setsid();
            let mut ready = Some(wr);
            let code = match serve(unlocked, &mut ready) {
                Ok(()) => 0,
                Err(e) => {
                    if let Some(w) = ready.take() {
                        let mut f = std::fs::File::from(w);
                        let _ = write!(f, "ERR {}\n{}\n", e.kind(), e.message());
                    }
                    // Nobody waits for this status: the parent has returned.
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

/// Tells the waiting parent the mount is live, then lets go of its
/// terminal and pipes. A no-op in the foreground.
pub fn report_ready(ready: &mut Ready) {
    if let Some(w) = ready.take() {
        let _ = std::fs::File::from(w).write_all(b"OK\n");
        detach_stdio();
    }
}

/// Parent side of the readiness pipe: the child reports "OK" once the
/// kernel has completed the FUSE handshake, or its error.
fn wait_ready(rd: OwnedFd) -> Result<(), DaemonError> {
    let mut s = String::new();
    let _ = std::fs::File::from(rd).read_to_string(&mut s);
    parse_report(&s)
}

fn parse_report(s: &str) -> Result<(), DaemonError> {
    if s.starts_with("OK") {
        return Ok(());
    }
    let mut lines = s.lines();
    let kind = lines
        .next()
        .and_then(|l| l.strip_prefix("ERR "))
        .unwrap_or("");
    let msg = lines
        .next()
        .unwrap_or("the mount daemon exited during startup")
        .to_owned();
    Err(DaemonError::from_kind(kind.trim(), msg))
}

/// A daemon must not hold the caller's terminal or pipes open.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        assert_eq!(parse_report("OK\n"), Ok(()));
        for e in [
            DaemonError::Volume("v".into()),
            DaemonError::Mount("cannot mount at /m: x".into()),
            DaemonError::Session("s".into()),
            DaemonError::Setup("p".into()),
        ] {
            let wire = format!("ERR {}\n{}\n", e.kind(), e.message());
            assert_eq!(parse_report(&wire), Err(e));
        }
        // A child that died without a word.
        assert_eq!(
            parse_report(""),
            Err(DaemonError::Setup(
                "the mount daemon exited during startup".into()
            ))
        );
    }
}
