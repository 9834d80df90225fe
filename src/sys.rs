//! The FFI module: the few libc calls no safe wrapper covers (fork). It must
//! stay tiny; every `unsafe` block states why it is sound.
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
