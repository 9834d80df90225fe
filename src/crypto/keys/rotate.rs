//! KEK-target rewraps: a file header or a dekfs.dir moved from whatever KEK
//! version opens it to the active KEK, under the same parent (the sibling of
//! `rewrap_file_move`/`rewrap_dir_move`, which keep the KEK and change the
//! parent). Must NOT do I/O, pick the write order (the caller writes `both`,
//! syncs, then writes `fin`), or change anything the MAC covers.

use super::{two_step, DirKey, DirParent, VolumeKeys};
use crate::crypto::CryptoError;
use crate::format::{DirMeta, FileHeader, KeySlot, DIR_META_LEN, HEADER_LEN};

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

fn plan(
    slots: &[Option<KeySlot>; 2],
    kept: usize,
    active: u32,
    new_slot: impl FnOnce() -> Result<KeySlot, CryptoError>,
) -> Result<Option<([Option<KeySlot>; 2], Option<[Option<KeySlot>; 2]>)>, CryptoError> {
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
    use crate::secret::Key32;

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
