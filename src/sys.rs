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

/// The home directory of `uid` from the passwd database (for a process started without $HOME,
/// as mount(8) starts a user's mount helper). None if there is no entry or it has no home.
pub fn home_of_uid(uid: u32) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of a plain C struct (null pointers, zero ids);
    // getpwuid_r overwrites it before we read it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right type, `buf.len()` is the real size
    // of `buf`, and the strings it fills point into `buf`, which outlives their use below.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir is non-null and getpwuid_r wrote a NUL-terminated string into `buf`.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    let p = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
    p.is_absolute().then_some(p)
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
