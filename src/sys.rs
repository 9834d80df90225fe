//! The FFI module: the few libc calls no safe wrapper covers (fork,
//! sync_file_range). It must stay tiny; every `unsafe` block states why it
//! is sound.
#![allow(unsafe_code)]

pub enum Forked {
    Parent,
    Child,
}

/// Forks the process. Only call while single-threaded: the child would
/// otherwise inherit locks held by threads that no longer exist.
pub fn fork() -> std::io::Result<Forked> {
    // SAFETY: fork(2) has no memory-safety preconditions of its own; the
    // documented hazard (other threads' locks) is excluded by the caller
    // contract above, and the daemon only forks before starting any thread.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

/// Starts writeback of a file's dirty pages without waiting for it
/// (sync_file_range(2) with SYNC_FILE_RANGE_WRITE over the whole file).
pub fn start_writeback(fd: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: sync_file_range(2) takes no pointers; a descriptor borrowed
    // for the call is open for its whole duration.
    let r = unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
