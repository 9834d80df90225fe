//! `idle=DURATION`: a timer thread that unmounts the mount once no request
//! has arrived for that long and no file or directory is open, the way
//! `dekfs umount` does (a plain unmount, which the kernel refuses while the
//! mount is busy); the session then ends and the daemon exits as usual. It
//! must not detach (lazy-unmount) a busy mount or signal any process.

use crate::fs::CoreFs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the timer looks: a fraction of the idle time, so the unmount
/// comes at most a quarter late, but never busier than 10 times a second
/// nor lazier than every 30 s.
fn poll_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Starts the timer for `mnt`. The thread ends when an unmount succeeds;
/// otherwise it lives as long as the daemon.
pub fn spawn(core: Arc<CoreFs>, mnt: PathBuf, idle: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("dekfs-idle".into())
        .spawn(move || watch(&core, &mnt, idle))
        .map(|_| ())
}

fn watch(core: &CoreFs, mnt: &Path, idle: Duration) {
    core.activity.watch();
    let tick = poll_interval(idle);
    loop {
        std::thread::sleep(tick);
        if core.activity.idle_for() < idle || core.open_handles() > 0 {
            continue;
        }
        // Said before: once the unmount succeeds the session ends and the
        // process may exit before this thread runs again.
        log::info!(
            "idle for {} s: unmounting {}",
            idle.as_secs(),
            mnt.display()
        );
        match unmount(mnt) {
            Ok(()) => return,
            Err(e) => {
                // Busy (a cwd inside, an mmap): wait for another idle
                // period rather than retrying at every tick.
                log::info!("idle unmount of {} refused: {e}", mnt.display());
                core.activity.touch();
            }
        }
    }
}

/// Root unmounts directly; a user mount goes through fusermount3, the only
/// way a normal user may unmount. Neither forces or detaches.
fn unmount(mnt: &Path) -> std::io::Result<()> {
    if rustix::process::geteuid().is_root() {
        return rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::empty())
            .map_err(std::io::Error::from);
    }
    let st = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-q")
        .arg(mnt)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("fusermount3 -u: {st}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_is_bounded() {
        assert_eq!(
            poll_interval(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        assert_eq!(
            poll_interval(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }
}
