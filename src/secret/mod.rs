//! Secret containers: the only place raw key bytes and key schedules live (Key32, SecretBytes,
//! RecoveryKey, Locked) and the only module allowed to use `unsafe` (mlock/munlock/prctl/setrlimit,
//! the slot pools, the stack scrub). It must NOT derive keys,
//! parse on-disk data, or offer Clone/Serialize/byte-printing Debug for anything it holds.
#![allow(unsafe_code)]

mod lock;
mod locked;
mod pool;

pub use lock::{lock_warning_once, memory_locked};
pub use locked::{scrub_inherited_stack, scrub_stack, scrubbed, Locked};

use crate::crypto::CryptoError;
use lock::{lock_region, page_size, unlock_region};
use std::ptr::NonNull;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Memory locks are not inherited across fork(2): the child re-locks every page that holds a
/// secret the parent had locked. Best effort, like `lock_region`.
pub fn relock_after_fork() {
    lock::relock_counted_pages();
    pool::SMALL.relock();
    pool::LARGE.relock();
}

/// Tries to lock one page of secret memory now, so a process that holds no secret yet (e.g.
/// `dekfs status`) can report whether it could; returns `memory_locked()`.
pub fn probe_memory_lock() -> bool {
    drop(SecretBytes::zeroed(page_size()));
    memory_locked()
}

const SLOT: usize = pool::SMALL_SLOT;

/// Zeroizes a slot and gives it back; the caller must not use it afterwards.
fn slot_free(slot: NonNull<[u8; SLOT]>) {
    pool::SMALL.free(slot.cast());
}

fn slot_alloc() -> NonNull<[u8; SLOT]> {
    pool::SMALL.alloc().cast()
}

/// 32 secret bytes in a slot of an mlocked page (so moves never leave copies on the stack),
/// zeroized and returned to the pool on drop.
pub struct Key32 {
    slot: NonNull<[u8; 32]>,
}

// SAFETY: a Key32 owns its slot exclusively (no other Key32 or pool entry refers to it until
// drop), and shared references only read it, so moving or sharing it across threads is as safe
// as for a Box<[u8; 32]>.
unsafe impl Send for Key32 {}
// SAFETY: see Send; &Key32 gives out only shared reads of bytes nobody mutates meanwhile.
unsafe impl Sync for Key32 {}

impl Key32 {
    fn zeroed() -> Key32 {
        // A Key32 uses the first half of a slot; the cast keeps the address.
        let mut k = Key32 {
            slot: slot_alloc().cast::<[u8; 32]>(),
        };
        k.bytes_mut().zeroize();
        k
    }

    fn bytes_mut(&mut self) -> &mut [u8; 32] {
        // SAFETY: the slot is valid, aligned, initialised and exclusively ours; &mut self makes
        // this the only live reference.
        unsafe { self.slot.as_mut() }
    }

    pub fn random() -> Result<Key32, CryptoError> {
        let mut k = Key32::zeroed();
        getrandom::getrandom(&mut k.bytes_mut()[..]).map_err(|_| CryptoError::Random)?;
        Ok(k)
    }

    /// Copies `bytes` into locked memory and zeroizes the source.
    pub fn from_array(bytes: &mut [u8; 32]) -> Key32 {
        let mut k = Key32::zeroed();
        k.bytes_mut().copy_from_slice(bytes);
        bytes.zeroize();
        k
    }

    /// Builds a key in place so derived bytes never exist outside locked memory.
    pub(crate) fn try_fill<E>(f: impl FnOnce(&mut [u8; 32]) -> Result<(), E>) -> Result<Key32, E> {
        let mut k = Key32::zeroed();
        f(k.bytes_mut())?;
        Ok(k)
    }

    pub(crate) fn expose(&self) -> &[u8; 32] {
        // SAFETY: the slot is valid, aligned, initialised and owned by self; only &mut self
        // (bytes_mut) writes to it, which cannot coexist with this shared borrow.
        unsafe { self.slot.as_ref() }
    }

    /// Constant-time comparison, so tests and callers can check a key without ever seeing it.
    pub fn ct_eq(&self, other: &[u8; 32]) -> bool {
        self.expose()[..].ct_eq(&other[..]).into()
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        slot_free(self.slot.cast::<[u8; SLOT]>());
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// Variable-length secret (passphrases, 64-byte SIV keys, unwrapped payloads). Up to 64 bytes
/// it lives in a pool slot like Key32 (wraps and unwraps happen per file); larger ones in a Vec
/// that is never grown after construction, so the locked region (its whole capacity) stays
/// valid until drop.
pub struct SecretBytes {
    repr: Repr,
}

enum Repr {
    Slot {
        slot: NonNull<[u8; SLOT]>,
        len: usize,
    },
    Heap(Vec<u8>),
}

// SAFETY: as for Key32: the slot (or Vec) is owned exclusively and only read through &self.
unsafe impl Send for SecretBytes {}
// SAFETY: see Send.
unsafe impl Sync for SecretBytes {}

impl SecretBytes {
    /// Takes ownership without copying; any earlier copies the caller made are its own concern.
    pub fn new(v: Vec<u8>) -> SecretBytes {
        lock_region(v.as_ptr(), v.capacity());
        SecretBytes {
            repr: Repr::Heap(v),
        }
    }

    /// Drops the bytes from `len` on, wiping them first; the allocation (and its lock) is kept
    /// until drop, so no copy is made.
    pub(crate) fn truncate(&mut self, len: usize) {
        match &mut self.repr {
            Repr::Slot { len: l, .. } if len < *l => {
                let old = *l;
                self.expose_mut()[len..old].zeroize();
                if let Repr::Slot { len: l, .. } = &mut self.repr {
                    *l = len;
                }
            }
            Repr::Heap(v) if len < v.len() => {
                v[len..].zeroize();
                v.truncate(len);
            }
            _ => {}
        }
    }

    pub(crate) fn zeroed(len: usize) -> SecretBytes {
        if len > SLOT {
            return SecretBytes::new(vec![0u8; len]);
        }
        let mut s = SecretBytes {
            repr: Repr::Slot {
                slot: slot_alloc(),
                len,
            },
        };
        s.expose_mut().zeroize();
        s
    }

    pub fn expose(&self) -> &[u8] {
        match &self.repr {
            // SAFETY: the slot is valid, initialised and owned by self; writes need &mut self.
            Repr::Slot { slot, len } => unsafe { &slot.as_ref()[..*len] },
            Repr::Heap(v) => v,
        }
    }

    pub(crate) fn expose_mut(&mut self) -> &mut [u8] {
        match &mut self.repr {
            // SAFETY: the slot is valid, initialised and exclusively ours; &mut self makes this
            // the only live reference.
            Repr::Slot { slot, len } => unsafe { &mut slot.as_mut()[..*len] },
            Repr::Heap(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        self.expose().len()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// Constant-time comparison (length is not secret).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        let b = self.expose();
        b.len() == other.len() && bool::from(b.ct_eq(other))
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        match &mut self.repr {
            Repr::Slot { slot, .. } => slot_free(*slot),
            Repr::Heap(v) => {
                let (ptr, cap) = (v.as_ptr(), v.capacity());
                // Vec's Zeroize also wipes spare capacity, not just len.
                v.zeroize();
                unlock_region(ptr, cap);
            }
        }
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// Best effort: makes the process non-dumpable (also blocks ptrace by non-root) and sets the
/// core size limit to 0, so a crash cannot write keys to disk.
pub fn disable_core_dumps() {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes integer arguments only and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid, initialised rlimit that outlives the call; setrlimit only reads it.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
    }
}

/// A 32-byte recovery key, shown to the user once as 8 dash-separated groups of 8 hex digits.
pub struct RecoveryKey {
    key: Key32,
}

impl RecoveryKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(RecoveryKey {
            key: Key32::random()?,
        })
    }

    /// Accepts upper/lower case hex; dashes and whitespace anywhere are ignored.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let mut nibbles = 0usize;
        let key = Key32::try_fill(|out| {
            for c in s.bytes() {
                if c == b'-' || c.is_ascii_whitespace() {
                    continue;
                }
                let v = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    b'A'..=b'F' => c - b'A' + 10,
                    _ => return Err(CryptoError::InvalidRecoveryKey),
                };
                let slot = out
                    .get_mut(nibbles / 2)
                    .ok_or(CryptoError::InvalidRecoveryKey)?;
                *slot |= if nibbles % 2 == 0 { v << 4 } else { v };
                nibbles += 1;
            }
            Ok(())
        })?;
        if nibbles != 64 {
            return Err(CryptoError::InvalidRecoveryKey);
        }
        Ok(RecoveryKey { key })
    }

    /// The one place the recovery key becomes text; the caller prints it once and drops it.
    pub fn display(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(71);
        for (i, b) in self.key.expose().iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                s.push('-');
            }
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    pub(crate) fn key(&self) -> &Key32 {
        &self.key
    }
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key32_from_array_zeroizes_source() {
        let mut src = [7u8; 32];
        let k = Key32::from_array(&mut src);
        assert_eq!(src, [0u8; 32]);
        assert!(k.ct_eq(&[7u8; 32]));
        assert!(!k.ct_eq(&[8u8; 32]));
    }

    #[test]
    fn debug_is_redacted() {
        let k = Key32::from_array(&mut [0xAB; 32]);
        let d = format!("{k:?}");
        assert!(!d.to_lowercase().contains("ab"), "{d}");
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
        let r = RecoveryKey::generate().unwrap();
        assert!(!format!("{r:?}").contains(&r.display()[..8]));
    }

    #[test]
    fn recovery_key_round_trip_and_parse_rules() {
        let r = RecoveryKey::generate().unwrap();
        let text = r.display();
        assert_eq!(text.len(), 71);
        assert_eq!(text.split('-').count(), 8);
        assert!(text.split('-').all(|g| g.len() == 8));
        let back = RecoveryKey::parse(&text).unwrap();
        assert!(back.key().ct_eq(r.key().expose()));
        let messy = format!("  {} \n", text.to_uppercase().replace('-', " - "));
        assert!(RecoveryKey::parse(&messy)
            .unwrap()
            .key()
            .ct_eq(r.key().expose()));
        assert!(RecoveryKey::parse(&text[..70]).is_err());
        assert!(RecoveryKey::parse(&format!("{text}0")).is_err());
        assert!(RecoveryKey::parse(&text.replace('a', "g")).is_err() || !text.contains('a'));
        assert!(RecoveryKey::parse("").is_err());
        assert!(RecoveryKey::parse("zz").is_err());
    }

    #[test]
    fn page_lock_refcount_survives_neighbour_drop() {
        let v = SecretBytes::new(vec![1u8; 16]);
        let w = SecretBytes::new(vec![2u8; 16]);
        drop(v);
        // w's page count must still be >= 1 if it was locked at all.
        let page = w.expose().as_ptr() as usize & !(page_size() - 1);
        let pages = lock::LOCKED_PAGES.lock().unwrap();
        if let Some(c) = pages.get(&page) {
            assert!(*c >= 1);
        }
    }

    #[test]
    fn key_slots_are_private_zeroed_and_reused() {
        let mut keys: Vec<Key32> = (0..300u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_le_bytes());
                Key32::from_array(&mut b)
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&(i as u32).to_le_bytes());
            assert!(k.ct_eq(&b), "key {i} was overwritten by a neighbour");
        }
        let freed: Vec<usize> = keys
            .drain(100..)
            .map(|k| k.slot.as_ptr() as usize)
            .collect();
        // New keys reuse freed slots and start zeroed.
        let again: Vec<Key32> = (0..200).map(|_| Key32::zeroed()).collect();
        assert!(again.iter().all(|k| k.ct_eq(&[0u8; 32])));
        assert!(again
            .iter()
            .any(|k| freed.contains(&(k.slot.as_ptr() as usize))));
    }

    #[test]
    fn core_dumps_disabled() {
        disable_core_dumps();
        // SAFETY: PR_GET_DUMPABLE takes no pointer arguments and only returns a flag.
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(dumpable, 0);
        let mut lim = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
        assert_eq!((rc, lim.rlim_cur, lim.rlim_max), (0, 0, 0));
    }

    #[test]
    fn truncate_keeps_the_buffer_and_wipes_the_tail() {
        for cap in [16usize, 4097] {
            let mut s = SecretBytes::zeroed(cap);
            s.expose_mut()[..5].copy_from_slice(b"pw\r\nx");
            let before = s.expose().as_ptr();
            s.truncate(2);
            assert_eq!(s.expose(), b"pw");
            assert_eq!(s.expose().as_ptr(), before);
            s.truncate(9);
            assert_eq!(s.len(), 2);
            if let Repr::Heap(v) = &s.repr {
                // The wiped tail is still owned (and wiped again on drop).
                assert!(v.capacity() >= cap);
            }
        }
    }

    #[test]
    fn secret_bytes_basics() {
        let s = SecretBytes::new(Vec::with_capacity(100));
        assert!(s.is_empty());
        let t = SecretBytes::zeroed(64);
        assert_eq!(t.len(), 64);
        assert!(t.ct_eq(&[0u8; 64]));
        assert!(!t.ct_eq(&[0u8; 63]));
        let mut u = SecretBytes::zeroed(100);
        u.expose_mut()[99] = 1;
        assert_eq!(u.len(), 100);
        assert_eq!(u.expose()[99], 1);
        let mut small = SecretBytes::zeroed(5);
        small.expose_mut().copy_from_slice(b"hello");
        assert!(small.ct_eq(b"hello"));
        drop(small);
        assert!(
            SecretBytes::zeroed(5).ct_eq(&[0u8; 5]),
            "a reused slot starts zeroed"
        );
    }
}
