//! Locked<T>: a key schedule of a cipher crate (ring's LessSafeKey, which never wipes itself) kept
//! in a pool slot, so it is mlocked, never copied by moves of its owner, and wiped on drop; and
//! the stack scrub that clears what such crates leave in dead stack frames. Must NOT hold
//! anything that owns heap memory of its own (that memory would escape the wipe).

use super::pool::{LARGE, LARGE_SLOT, SLOT_ALIGN};
use std::cell::Cell;
use std::ops::Deref;
use std::ptr::NonNull;

/// A value wiped (every byte of its slot) when dropped, after its own Drop ran.
pub struct Locked<T> {
    ptr: NonNull<T>,
}

// SAFETY: a Locked<T> owns its slot exclusively, like a Box<T>: sending or sharing it is as safe
// as sending or sharing the T.
unsafe impl<T: Send> Send for Locked<T> {}
// SAFETY: see Send; &Locked<T> only gives out &T.
unsafe impl<T: Sync> Sync for Locked<T> {}

impl<T> Locked<T> {
    /// Builds the value straight into its slot, then scrubs the stack the construction used (the
    /// crates build schedules on the stack and return them by value).
    pub fn try_new<E>(f: impl FnOnce() -> Result<T, E>) -> Result<Locked<T>, E> {
        const {
            assert!(std::mem::size_of::<T>() <= LARGE_SLOT);
            assert!(std::mem::align_of::<T>() <= SLOT_ALIGN);
        }
        let slot = LARGE.alloc().cast::<T>();
        let built = scrubbed(|| build(slot, f));
        match built {
            Ok(()) => Ok(Locked { ptr: slot }),
            Err(e) => {
                LARGE.free(slot.cast());
                Err(e)
            }
        }
    }
}

// The by-value temporaries of `f` live in this frame or below (scrubbed runs it in a frame of
// its own), where the scrub reaches.
fn build<T, E>(slot: NonNull<T>, f: impl FnOnce() -> Result<T, E>) -> Result<(), E> {
    let v = f()?;
    // SAFETY: slot is a fresh, exclusively owned pool slot, large and aligned enough for T
    // (checked at compile time in try_new); writing does not drop the previous (zeroed) bytes.
    unsafe { slot.as_ptr().write(v) };
    Ok(())
}

impl<T> Deref for Locked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: ptr holds an initialised T owned by self until drop; only shared access is
        // given out.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for Locked<T> {
    fn drop(&mut self) {
        // SAFETY: ptr holds an initialised T that nobody else refers to; it is dropped exactly
        // once, here, and its slot is not read as a T afterwards.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        LARGE.free(self.ptr.cast());
    }
}

/// Bytes of stack below the caller that `scrub_stack` wipes: well above the deepest call tree
/// of the cipher crates we use (key schedule setup, HKDF, AES-SIV, AES-KW, HMAC).
const SCRUB_BYTES: usize = 16 * 1024;

/// Wipes the stack below the caller's frame, where crates that copy keys and schedules into
/// locals (RustCrypto's HKDF buffers, AES-SIV, AES-KW; ring's construction) left them.
#[inline(never)]
pub fn scrub_stack() {
    let mut area = std::mem::MaybeUninit::<[u8; SCRUB_BYTES]>::uninit();
    // A plain memset (one `rep stos`) rather than a volatile loop: the area is handed to
    // black_box afterwards, so the compiler must assume it is read and cannot drop the writes.
    // SAFETY: writing SCRUB_BYTES zero bytes into our own local of exactly that size.
    unsafe { std::ptr::write_bytes(area.as_mut_ptr().cast::<u8>(), 0, SCRUB_BYTES) };
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    std::hint::black_box(&mut area);
}

/// Bytes of the stack a forked daemon wipes below its frame.
const INHERITED_SCRUB_BYTES: usize = 512 * 1024;

/// Wipes a deep stretch of the stack below the caller: a daemon forked from
/// the CLI inherits its stack and whatever the CLI's unlock left in dead
/// frames there.
#[inline(never)]
pub fn scrub_inherited_stack() {
    let mut area = std::mem::MaybeUninit::<[u8; INHERITED_SCRUB_BYTES]>::uninit();
    // SAFETY: writing INHERITED_SCRUB_BYTES zero bytes into our own local of exactly that size.
    unsafe { std::ptr::write_bytes(area.as_mut_ptr().cast::<u8>(), 0, INHERITED_SCRUB_BYTES) };
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    std::hint::black_box(&mut area);
}

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Leaves a `scrubbed` region, also when `f` unwinds: a depth left raised would silence every
/// later scrub of the thread.
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs `f` and then scrubs the stack it used. For every operation that hands key bytes to a
/// crate that does not wipe its own locals. Nested regions scrub once, when the outermost one
/// ends (it covers every frame of the inner ones), so a composite step like opening a file
/// header pays for one scrub, not one per primitive.
pub fn scrubbed<R>(f: impl FnOnce() -> R) -> R {
    let outermost = DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v == 0
    });
    let r = {
        let _leave = Leave;
        call(f)
    };
    if outermost {
        scrub_stack();
    }
    r
}

#[inline(never)]
fn call<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    struct Sched([u8; 500]);
    impl Drop for Sched {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn locked_drops_in_place_and_wipes_its_slot() {
        let l = Locked::try_new(|| Ok::<_, ()>(Sched([0xA5; 500]))).unwrap();
        assert!(l.0.iter().all(|&b| b == 0xA5));
        let addr = l.ptr.as_ptr() as *const u8;
        let before = DROPS.load(Ordering::Relaxed);
        drop(l);
        assert_eq!(DROPS.load(Ordering::Relaxed), before + 1);
        // The slot is back in the pool; the next owner gets it zeroed (allocation is LIFO per
        // thread unless another test raced us, so check via a fresh slot we own).
        let again = Locked::try_new(|| Ok::<_, ()>([0u8; 500])).unwrap();
        if again.ptr.as_ptr() as *const u8 == addr {
            assert!(again.iter().all(|&b| b == 0));
        }
        assert!(Locked::<[u8; 8]>::try_new(|| Err::<[u8; 8], _>("no")).is_err());
    }

    #[test]
    fn nested_regions_stay_balanced_even_when_unwinding() {
        let depth = || DEPTH.with(|d| d.get());
        assert_eq!(depth(), 0);
        scrubbed(|| {
            assert_eq!(depth(), 1);
            scrubbed(|| assert_eq!(depth(), 2));
            assert_eq!(depth(), 1);
        });
        assert_eq!(depth(), 0);
        let r = std::panic::catch_unwind(|| scrubbed(|| panic!("inside a scrubbed region")));
        assert!(r.is_err());
        assert_eq!(depth(), 0, "a panic must not silence later scrubs");
    }
}
