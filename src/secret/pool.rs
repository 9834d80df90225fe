//! Fixed-size slots in mlocked pages that are never handed back to the allocator, wiped when
//! freed: the storage behind Key32, small SecretBytes and Locked key schedules. Must NOT know
//! what a slot holds or hand a slot to two owners.

use super::lock::{self, log_lock_failure_once, page_size};
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};
use zeroize::Zeroize;

// Opening a file derives several keys; a mlock/munlock pair per key cost two syscalls each (and
// a VMA split and merge in the kernel), a slot from a pool costs none. A pool only grows to the
// peak number of live keys, which the daemon's bounded caches bound.
pub(super) struct Pool {
    slot: usize,
    state: Mutex<State>,
}

struct State {
    free: Vec<usize>,
    pages: Vec<usize>,
}

pub(super) const SMALL_SLOT: usize = 64;
/// Fits ring's AES-GCM key (its size is checked at compile time by `Locked`) with seven slots to
/// a page; every open file holds two.
pub(super) const LARGE_SLOT: usize = 576;
/// Every slot starts at a multiple of this (page base + multiple of a slot size that is one).
pub(super) const SLOT_ALIGN: usize = 64;
const _: () = assert!(SMALL_SLOT % SLOT_ALIGN == 0 && LARGE_SLOT % SLOT_ALIGN == 0);
/// Key32 and SecretBytes up to 64 bytes.
pub(super) static SMALL: Pool = Pool::new(SMALL_SLOT);
/// Key schedules of cipher crates (see `Locked`).
pub(super) static LARGE: Pool = Pool::new(LARGE_SLOT);

impl Pool {
    const fn new(slot: usize) -> Pool {
        Pool {
            slot,
            state: Mutex::new(State {
                free: Vec::new(),
                pages: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the free list inconsistent (push/pop only).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A zeroed slot of the pool's slot size, aligned to SLOT_ALIGN (slots sit at multiples of
    /// their size in page-aligned pages), owned by the caller until `free`.
    pub(super) fn alloc(&self) -> NonNull<u8> {
        log_lock_failure_once();
        let mut s = self.state();
        let addr = match s.free.pop() {
            Some(a) => a,
            None => {
                let page = page_size().max(self.slot);
                let layout = match Layout::from_size_align(page, page) {
                    Ok(l) => l,
                    Err(_) => Layout::new::<[u8; 4096]>(),
                };
                // SAFETY: the layout has a non-zero size; the memory is zeroed, so every slot
                // is initialised bytes from the start.
                let base = unsafe { std::alloc::alloc_zeroed(layout) };
                if base.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                // SAFETY: base..base+size is our own fresh allocation, never freed; mlock only
                // changes paging attributes. Best effort, like lock_region.
                if unsafe { libc::mlock(base as *const libc::c_void, layout.size()) } != 0 {
                    lock::note_lock_failure();
                }
                s.pages.push(base as usize);
                let base = base as usize;
                s.free.extend(
                    (1..layout.size() / self.slot)
                        .rev()
                        .map(|i| base + i * self.slot),
                );
                base
            }
        };
        // Never null (page base + offset); a dangling fallback would be unsound, so an
        // impossible null aborts instead.
        NonNull::new(addr as *mut u8).unwrap_or_else(|| std::process::abort())
    }

    /// Wipes a slot and gives it back; the caller must not use it afterwards and must have
    /// dropped whatever it held.
    pub(super) fn free(&self, slot: NonNull<u8>) {
        // Wiped by words: slots are aligned to SLOT_ALIGN, and a word loop is
        // several times cheaper than a byte loop for the large slots freed per closed file.
        // SAFETY: the slot is `self.slot` bytes (a multiple of 8, 8-aligned) of memory
        // exclusively owned by the caller, who gives it up here; any bit pattern is a valid
        // u64; the volatile wipe cannot be elided.
        unsafe {
            std::slice::from_raw_parts_mut(slot.as_ptr().cast::<u64>(), self.slot / 8).zeroize()
        };
        self.state().free.push(slot.as_ptr() as usize);
    }

    /// Memory locks are not inherited across fork(2): re-locks every page of the pool.
    pub(super) fn relock(&self) {
        let page = page_size().max(self.slot);
        for &p in self.state().pages.iter() {
            // SAFETY: p is the base of a live, never-freed pool page; mlock only changes paging.
            if unsafe { libc::mlock(p as *const libc::c_void, page) } != 0 {
                lock::note_lock_failure();
            }
        }
    }
}
