//! KEK-target rewraps: a file header or a dekfs.dir moved from whatever KEK
//! version opens it to the active KEK, under the same parent (the sibling of
//! `rewrap_file_move`/`rewrap_dir_move`, which keep the KEK and change the
//! parent). Must NOT do I/O, pick the write order (the caller writes `both`,
//! syncs, then writes `fin`), or change anything the MAC covers.

use super::{two_step, DirKey, DirParent, VolumeKeys};
use crate::crypto::CryptoError;
use crate::format::{DirMeta, FileHeader, KeySlot, DIR_META_LEN, HEADER_LEN};
use crate::secret::Key32;

/// The writes one object needs to reach the active KEK. `None` from the
/// rewrap functions means it already holds only an active-KEK slot.
///
/// Rule for an object whose two slots are both in use (a torn KEK rewrap, or
/// a cross-directory move cut short): the slot that opens under the object's
/// *current* parent is the one kept; the other slot can only be a leftover
/// (wrapped to the other parent, or a duplicate) and is overwritten. If the
/// slot that opens is already of the active version, only `fin` is needed:
/// it clears the other slot.
pub struct KekRewrap<const N: usize> {
    /// Step 1: the opening slot kept and the new active-KEK slot in the other
    /// slot. `None` when the opening slot already is of the active version.
    pub both: Option<[u8; N]>,
    /// Step 2: only the active-KEK slot.
    pub fin: [u8; N],
}

type Slots = [Option<KeySlot>; 2];

/// (final slots, both-slots step if one is needed), or `None` when done.
fn plan(
    slots: &[Option<KeySlot>; 2],
    kept: usize,
    active: u32,
    new_slot: impl FnOnce() -> Result<KeySlot, CryptoError>,
) -> Result<Option<(Slots, Option<Slots>)>, CryptoError> {
    let kept_slot = slots.get(kept).cloned().flatten();
    let other = 1 - kept.min(1);
    if kept_slot.as_ref().is_some_and(|s| s.kek_version == active) {
        if slots.get(other).is_some_and(Option::is_none) {
            return Ok(None);
        }
        let mut fin = slots.clone();
        fin[other] = None;
        return Ok(Some((fin, None)));
    }
    let (both, fin) = two_step(slots, kept, new_slot()?);
    Ok(Some((fin, Some(both))))
}

impl VolumeKeys {
    /// A copy of these keys plus a fresh KEK (OS CSPRNG) one version above
    /// the highest held, which becomes the active one. Returns its version.
    pub fn with_new_kek(&self) -> Result<(VolumeKeys, u32), CryptoError> {
        let top = self.keks.iter().map(|(v, _)| *v).max().unwrap_or(0);
        let next = top
            .checked_add(1)
            .ok_or(CryptoError::InvalidLength("KEK version overflow"))?;
        let mut keks = self.copy_keks(|_| true)?;
        keks.push((next, Key32::random()?));
        let mut keys = VolumeKeys::from_parts(self.volume_id, keks, next)?;
        keys.paged_files = self.paged_files;
        Ok((keys, next))
    }

    /// A copy of these keys without KEK `version` (which must not be the
    /// active one): what is left once that version is destroyed.
    pub fn without_kek(&self, version: u32) -> Result<VolumeKeys, CryptoError> {
        if version == self.active {
            return Err(CryptoError::InvalidLength("cannot drop the active KEK"));
        }
        let keks = self.copy_keks(|v| v != version)?;
        let mut keys = VolumeKeys::from_parts(self.volume_id, keks, self.active)?;
        keys.paged_files = self.paged_files;
        Ok(keys)
    }

    /// A copy of these keys with `version` (already held) as the active KEK.
    pub fn with_active(&self, version: u32) -> Result<VolumeKeys, CryptoError> {
        let mut keys = VolumeKeys::from_parts(self.volume_id, self.copy_keks(|_| true)?, version)?;
        keys.paged_files = self.paged_files;
        Ok(keys)
    }

    /// Versions of every KEK held, ascending.
    pub fn kek_versions(&self) -> Vec<u32> {
        self.keks.iter().map(|(v, _)| *v).collect()
    }

    fn copy_keks(&self, keep: impl Fn(u32) -> bool) -> Result<Vec<(u32, Key32)>, CryptoError> {
        let mut out = Vec::with_capacity(self.keks.len() + 1);
        for (v, k) in self.keks.iter().filter(|(v, _)| keep(*v)) {
            let copy = Key32::try_fill(|o| {
                o.copy_from_slice(k.expose());
                Ok::<(), CryptoError>(())
            })?;
            out.push((*v, copy));
        }
        Ok(out)
    }

    /// Rewraps the DEK of a header of a file in `dir` to the active KEK (same
    /// parent). The header must open with a KEK this volume holds.
    pub fn rewrap_file_kek(
        &self,
        dir: &DirKey,
        header: &[u8],
    ) -> Result<Option<KekRewrap<HEADER_LEN>>, CryptoError> {
        let h = FileHeader::parse(header)?;
        let (kept, fk) = self.open_header(dir, &h)?;
        let Some((fin, both)) = plan(&h.slots, kept, self.active, || {
            self.file_slot(dir, fk.dek(), &h.file_id)
        })?
        else {
            return Ok(None);
        };
        let with = |slots| {
            let mut x = h.clone();
            x.slots = slots;
            x.to_bytes()
        };
        Ok(Some(KekRewrap {
            both: both.map(with),
            fin: with(fin),
        }))
    }

    /// Rewraps a directory's key to the active KEK under the same parent:
    /// `parent` is `None` for the volume root (root-wrap, KEK only).
    pub fn rewrap_dir_kek(
        &self,
        parent: Option<&DirKey>,
        meta: &[u8],
    ) -> Result<Option<KekRewrap<DIR_META_LEN>>, CryptoError> {
        let m = DirMeta::parse(meta)?;
        let parent = parent.map_or(DirParent::Root, DirParent::Dir);
        let (kept, key) = self.open_dir_meta(parent, &m)?;
        let Some((fin, both)) = plan(&m.slots, kept, self.active, || {
            self.dir_slot(parent, &key, &m.dir_id)
        })?
        else {
            return Ok(None);
        };
        let with = |slots| {
            let mut x = m.clone();
            x.slots = slots;
            x.to_bytes()
        };
        Ok(Some(KekRewrap {
            both: both.map(with),
            fin: with(fin),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key32 {
        Key32::from_array(&mut [b; 32])
    }

    fn vol(keks: &[u32], active: u32) -> VolumeKeys {
        let ks = keks.iter().map(|&v| (v, key(v as u8))).collect();
        VolumeKeys::from_parts([9; 16], ks, active).unwrap()
    }

    fn versions(h: &[u8]) -> [u32; 2] {
        let s = FileHeader::parse(h).unwrap().slots;
        [0, 1].map(|i| s[i].as_ref().map_or(0, |x| x.kek_version))
    }

    #[test]
    fn file_rewrap_keeps_every_torn_state_openable() {
        let (v1, both, v2) = (vol(&[1], 1), vol(&[1, 2], 2), vol(&[2], 2));
        let (root, _) = v1.create_root_dir_from_parts(key(50), [3; 16]).unwrap();
        let (_, h) = v1.create_file(&root).unwrap();
        let r = both.rewrap_file_kek(&root, &h).unwrap().unwrap();
        let mid = r.both.unwrap();
        assert_eq!(versions(&mid), [1, 2]);
        assert!(v1.open_file(&root, &mid).is_ok() && v2.open_file(&root, &mid).is_ok());
        assert_eq!(versions(&r.fin), [0, 2]);
        assert!(v1.open_file(&root, &r.fin).is_err());
        assert!(v2.open_file(&root, &r.fin).is_ok());
        // resuming from the torn state: the old slot opens first, so the new
        // slot is written again (same bytes, AES-KW is deterministic)
        let again = both.rewrap_file_kek(&root, &mid).unwrap().unwrap();
        assert_eq!(versions(&again.fin), [0, 2]);
        assert!(both.rewrap_file_kek(&root, &r.fin).unwrap().is_none());
    }

    #[test]
    fn file_caught_mid_move_keeps_the_slot_of_its_current_parent() {
        let (v1, both, v2) = (vol(&[1], 1), vol(&[1, 2], 2), vol(&[2], 2));
        let (root, _) = v1.create_root_dir_from_parts(key(50), [3; 16]).unwrap();
        let (a, _) = v1.create_dir(&root).unwrap();
        let (b, _) = v1.create_dir(&root).unwrap();
        let (fk, h) = v1.create_file(&a).unwrap();
        let (torn, _) = v1.rewrap_file_move(&fk, &a, &b, &h).unwrap();
        assert_eq!(versions(&torn), [1, 1]);
        // found in b: slot 1 (wrapped to b) is kept, slot 0 (to a) overwritten
        let r = both.rewrap_file_kek(&b, &torn).unwrap().unwrap();
        assert_eq!(versions(&r.both.unwrap()), [2, 1]);
        assert_eq!(versions(&r.fin), [2, 0]);
        assert!(v2.open_file(&b, &r.fin).is_ok());
        assert!(both.rewrap_file_kek(&a, &r.fin).is_err());
    }

    #[test]
    fn new_kek_is_active_and_old_can_be_dropped() {
        let v1 = vol(&[1], 1);
        let (root, rmeta) = v1.create_root_dir_from_parts(key(50), [3; 16]).unwrap();
        let (both, next) = v1.with_new_kek().unwrap();
        assert_eq!((next, both.active_kek_version()), (2, 2));
        assert_eq!(both.kek_versions(), vec![1, 2]);
        assert!(both.open_root_dir(&rmeta).is_ok());
        let fin = both.rewrap_dir_kek(None, &rmeta).unwrap().unwrap().fin;
        let v2 = both.without_kek(1).unwrap();
        assert_eq!(v2.kek_versions(), vec![2]);
        assert!(v2.open_root_dir(&fin).is_ok() && v2.open_root_dir(&rmeta).is_err());
        assert!(both.without_kek(2).is_err());
        let _ = root;
    }

    #[test]
    fn root_and_child_dirs_rewrap() {
        let (v1, both, v2) = (vol(&[1], 1), vol(&[1, 2], 2), vol(&[2], 2));
        let (root, rmeta) = v1.create_root_dir_from_parts(key(50), [3; 16]).unwrap();
        let (_, cmeta) = v1.create_dir(&root).unwrap();
        let r = both.rewrap_dir_kek(None, &rmeta).unwrap().unwrap();
        assert!(v1.open_root_dir(&r.both.unwrap()).is_ok());
        assert!(v2.open_root_dir(&r.fin).is_ok() && v1.open_root_dir(&r.fin).is_err());
        let c = both.rewrap_dir_kek(Some(&root), &cmeta).unwrap().unwrap();
        assert!(v2.open_dir(&root, &c.fin).is_ok() && v1.open_dir(&root, &c.fin).is_err());
        assert!(both.rewrap_dir_kek(Some(&root), &c.fin).unwrap().is_none());
        let mid = c.both.unwrap();
        assert!(v1.open_dir(&root, &mid).is_ok() && v2.open_dir(&root, &mid).is_ok());
        // a header whose only slot is of a KEK we lack does not open
        assert!(v2.rewrap_dir_kek(Some(&root), &cmeta).is_err());
    }
}
