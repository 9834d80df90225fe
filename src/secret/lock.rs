//! Page-lock accounting for secret memory: mlock/munlock with a per-page count (the kernel does
//! not count), the re-lock after fork, and the record of any failure so it is warned about once
//! and shown by `status`. Must NOT allocate or hold secrets itself (the parent module does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

// mlock is not reference counted by the kernel: munlock of one secret would unlock a page still
// holding another. We count locks per page ourselves and only munlock a page when its count
// drops to zero.
pub(super) static LOCKED_PAGES: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

pub(super) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions; it only reads a constant.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 {
            v as usize
        } else {
            4096
        }
    })
}

fn page_range(ptr: *const u8, len: usize) -> Option<(usize, usize)> {
    if len == 0 {
        return None;
    }
    let page = page_size();
    let start = (ptr as usize) & !(page - 1);
    let end = (ptr as usize).checked_add(len)?;
    Some((start, end))
}

// A failed mlock is not an error (see lock_region), but it must not be silent either.
static LOCK_FAILED: AtomicBool = AtomicBool::new(false);
static LOGGED: AtomicBool = AtomicBool::new(false);
static SHOWN: AtomicBool = AtomicBool::new(false);

const LOCK_WARNING: &str = "cannot lock memory (RLIMIT_MEMLOCK too low, or no CAP_IPC_LOCK): \
     secrets may be written to swap; raise the limit (e.g. LimitMEMLOCK= in a systemd unit)";

pub(super) fn note_lock_failure() {
    LOCK_FAILED.store(true, Ordering::Relaxed);
    log_lock_failure_once();
}

/// Logs the warning once, as soon as a logger is installed: the daemon's first failure (the
/// re-lock after fork) happens before its logger exists, so every new key also checks.
pub(super) fn log_lock_failure_once() {
    if LOCK_FAILED.load(Ordering::Relaxed)
        && !LOGGED.load(Ordering::Relaxed)
        && log::max_level() != log::LevelFilter::Off
        && !LOGGED.swap(true, Ordering::Relaxed)
    {
        log::warn!("{LOCK_WARNING}");
    }
}

/// False once any mlock of secret memory failed in this process.
pub fn memory_locked() -> bool {
    !LOCK_FAILED.load(Ordering::Relaxed)
}

/// The warning text, once per process, after a lock failure: for a front end to print (the log
/// gets its own copy).
pub fn lock_warning_once() -> Option<&'static str> {
    (!memory_locked() && !SHOWN.swap(true, Ordering::Relaxed)).then_some(LOCK_WARNING)
}

/// Best effort: failure (RLIMIT_MEMLOCK, no privilege) leaves the secret swappable but is not an
/// error, because refusing to run would be worse for users than the residual swap risk. The
/// failure is recorded for `memory_locked` and logged once.
pub(super) fn lock_region(ptr: *const u8, len: usize) {
    let Some((start, end)) = page_range(ptr, len) else {
        return;
    };
    let page = page_size();
    let Ok(mut pages) = LOCKED_PAGES.lock() else {
        return;
    };
    let mut p = start;
    while p < end {
        let count = pages.entry(p).or_insert(0);
        if *count == 0 {
            // SAFETY: p is page-aligned and lies within (or on the page of) a live allocation
            // owned by the caller; mlock only changes paging attributes, never memory contents.
            let rc = unsafe { libc::mlock(p as *const libc::c_void, page) };
            if rc != 0 {
                pages.remove(&p);
                note_lock_failure();
                p += page;
                continue;
            }
        }
        *count += 1;
        p += page;
    }
}

pub(super) fn unlock_region(ptr: *const u8, len: usize) {
    let Some((start, end)) = page_range(ptr, len) else {
        return;
    };
    let page = page_size();
    let Ok(mut pages) = LOCKED_PAGES.lock() else {
        return;
    };
    let mut p = start;
    while p < end {
        if let Some(count) = pages.get_mut(&p) {
            *count -= 1;
            if *count == 0 {
                pages.remove(&p);
                // SAFETY: p is a page-aligned address we mlocked earlier; munlock only changes
                // paging attributes. Called before the allocation is freed.
                unsafe { libc::munlock(p as *const libc::c_void, page) };
            }
        }
        p += page;
    }
}

/// Re-locks every counted page in a forked child (locks are not inherited).
pub(super) fn relock_counted_pages() {
    let page = page_size();
    let Ok(pages) = LOCKED_PAGES.lock() else {
        return;
    };
    for &p in pages.keys() {
        // SAFETY: p is a page-aligned address of a live allocation inherited from the parent
        // (entries are removed before their memory is freed); mlock only changes paging.
        if unsafe { libc::mlock(p as *const libc::c_void, page) } != 0 {
            note_lock_failure();
        }
    }
}
