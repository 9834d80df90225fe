//! VolumeKeys: the unlocked volume (volume_id + KEKs by version) and every create/open/rewrap of
//! directory metadata and file headers. Must NOT do I/O or parse bytes itself (it calls
//! `crate::format`), and never returns key bytes to callers.

mod dir;
mod file;
mod renew;
mod rotate;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
mod xattr;

pub use dir::DirKey;
pub use file::FileKey;
pub use renew::FEATURE_RENEWING;
pub use rotate::KekRewrap;
pub use xattr::{XattrCipher, MAX_XATTR_VALUE, XATTR_NAME_MAX, XATTR_PREFIX, XATTR_SIZE_MAX};

use super::kw::{unwrap_bound, wrap_bound};
use super::mac::{hmac_sha256, verify_hmac_sha256};
use super::{kdf, random_array, CryptoError};
use crate::format::{DirMeta, FileHeader, KeySlot, DIR_META_LEN, FEATURE_PAGED, HEADER_LEN};
use crate::secret::{scrubbed, Key32};

pub(crate) fn hex16(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which parent a directory slot is wrapped to: the volume root (KEK only) or a parent DirKey.
#[derive(Clone, Copy)]
enum DirParent<'a> {
    Root,
    Dir(&'a DirKey),
}

/// The unlocked volume. Send + Sync; deliberately neither Debug nor Clone.
pub struct VolumeKeys {
    volume_id: [u8; 16],
    /// Sorted by version, versions unique.
    keks: Vec<(u32, Key32)>,
    active: u32,
    /// New file headers carry the `PAGED` required feature (the config has it).
    paged_files: bool,
}

// Each step that opens or builds an object runs as one scrubbed region: it derives several
// keys, and one scrub at its end covers them all.
impl VolumeKeys {
    /// Assembles an unlocked volume from already-unwrapped KEKs. `active` must be among them.
    /// Used by `volume::unlock` and by known-answer tests.
    pub fn from_parts(
        volume_id: [u8; 16],
        mut keks: Vec<(u32, Key32)>,
        active: u32,
    ) -> Result<VolumeKeys, CryptoError> {
        keks.sort_by_key(|(v, _)| *v);
        if keks.windows(2).any(|w| w[0].0 == w[1].0) || keks.iter().any(|(v, _)| *v == 0) {
            return Err(CryptoError::InvalidLength(
                "KEK versions must be unique and non-zero",
            ));
        }
        if !keks.iter().any(|(v, _)| *v == active) {
            return Err(CryptoError::MissingKek(active));
        }
        Ok(VolumeKeys {
            volume_id,
            keks,
            active,
            paged_files: false,
        })
    }

    /// Makes new files paged (FORMAT.md, "Paged content"): set from the config's
    /// required_features at unlock and by init.
    pub fn set_paged_files(&mut self, on: bool) {
        self.paged_files = on;
    }

    pub fn paged_files(&self) -> bool {
        self.paged_files
    }

    pub fn volume_id(&self) -> &[u8; 16] {
        &self.volume_id
    }

    pub fn active_kek_version(&self) -> u32 {
        self.active
    }

    fn kek(&self, version: u32) -> Option<&Key32> {
        self.keks
            .binary_search_by_key(&version, |(v, _)| *v)
            .ok()
            .and_then(|i| self.keks.get(i))
            .map(|(_, k)| k)
    }

    /// Every KEK by version, borrowed, for handing an unlock to a mounted daemon over its
    /// control socket (`control::Client::unlock`); never copied out of locked memory.
    pub(crate) fn keks_for_handoff(&self) -> Vec<(u32, &Key32)> {
        self.keks.iter().map(|(v, k)| (*v, k)).collect()
    }

    /// KEK of `version` for the volume layer (protector wrapping, config MAC); never public.
    pub(crate) fn kek_for(&self, version: u32) -> Result<&Key32, CryptoError> {
        self.kek(version).ok_or(CryptoError::MissingKek(version))
    }

    fn active_kek(&self) -> Result<&Key32, CryptoError> {
        self.kek(self.active)
            .ok_or(CryptoError::MissingKek(self.active))
    }

    fn dir_wrap_key(
        &self,
        kek: &Key32,
        parent: DirParent<'_>,
        dir_id: &[u8; 16],
    ) -> Result<Key32, CryptoError> {
        match parent {
            DirParent::Root => kdf::root_wrap_key(kek, &self.volume_id, dir_id),
            DirParent::Dir(p) => kdf::dir_wrap_key(kek, p.key(), &self.volume_id, dir_id),
        }
    }

    fn file_wrap_key(
        &self,
        kek: &Key32,
        dir: &DirKey,
        file_id: &[u8; 16],
    ) -> Result<Key32, CryptoError> {
        kdf::file_wrap_key(kek, dir.key(), &self.volume_id, dir.dir_id(), file_id)
    }

    fn dir_slot(
        &self,
        parent: DirParent<'_>,
        dir_key: &Key32,
        dir_id: &[u8; 16],
    ) -> Result<KeySlot, CryptoError> {
        let wk = self.dir_wrap_key(self.active_kek()?, parent, dir_id)?;
        Ok(KeySlot {
            kek_version: self.active,
            wrapped: wrap_bound(&wk, dir_key, dir_id, self.active)?,
        })
    }

    fn build_dir(
        &self,
        parent: DirParent<'_>,
        dir_key: Key32,
        dir_id: [u8; 16],
    ) -> Result<(DirKey, [u8; DIR_META_LEN]), CryptoError> {
        scrubbed(|| {
            let mut meta = DirMeta {
                required_features: 0,
                optional_features: 0,
                dir_id,
                mac: [0; 32],
                slots: [Some(self.dir_slot(parent, &dir_key, &dir_id)?), None],
            };
            let mac_key = kdf::dir_mac_key(&dir_key, &self.volume_id, &dir_id)?;
            meta.mac = hmac_sha256(&mac_key, &meta.mac_input())?;
            Ok((
                DirKey::derive(&self.volume_id, dir_id, dir_key)?,
                meta.to_bytes(),
            ))
        })
    }

    /// Tries each non-empty slot whose KEK we hold, in slot order; the first that unwraps with
    /// matching inner dir_id/version gives the key, whose MAC must then verify. Returns the slot
    /// index used so rewraps know which slot to keep.
    fn open_dir_meta(
        &self,
        parent: DirParent<'_>,
        meta: &DirMeta,
    ) -> Result<(usize, Key32), CryptoError> {
        for (i, slot) in meta.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let Some(kek) = self.kek(slot.kek_version) else {
                continue;
            };
            let wk = self.dir_wrap_key(kek, parent, &meta.dir_id)?;
            if let Some(key) = unwrap_bound(&wk, &slot.wrapped, &meta.dir_id, slot.kek_version)? {
                let mac_key = kdf::dir_mac_key(&key, &self.volume_id, &meta.dir_id)?;
                verify_hmac_sha256(&mac_key, &meta.mac_input(), &meta.mac)?;
                return Ok((i, key));
            }
        }
        Err(CryptoError::UnwrapFailed)
    }

    pub fn create_root_dir(&self) -> Result<(DirKey, [u8; DIR_META_LEN]), CryptoError> {
        self.create_root_dir_from_parts(Key32::random()?, random_array()?)
    }

    /// Deterministic variant of `create_root_dir` for known-answer tests: the caller supplies
    /// the directory key and id (which must be fresh random values in real use).
    pub fn create_root_dir_from_parts(
        &self,
        dir_key: Key32,
        dir_id: [u8; 16],
    ) -> Result<(DirKey, [u8; DIR_META_LEN]), CryptoError> {
        self.build_dir(DirParent::Root, dir_key, dir_id)
    }

    pub fn open_root_dir(&self, meta: &[u8]) -> Result<DirKey, CryptoError> {
        scrubbed(|| {
            let m = DirMeta::parse(meta)?;
            let (_, key) = self.open_dir_meta(DirParent::Root, &m)?;
            DirKey::derive(&self.volume_id, m.dir_id, key)
        })
    }

    pub fn create_dir(&self, parent: &DirKey) -> Result<(DirKey, [u8; DIR_META_LEN]), CryptoError> {
        let (key, dir_id) = random_key_and_id()?;
        self.create_dir_from_parts(parent, key, dir_id)
    }

    /// Deterministic variant of `create_dir` for known-answer tests.
    pub fn create_dir_from_parts(
        &self,
        parent: &DirKey,
        dir_key: Key32,
        dir_id: [u8; 16],
    ) -> Result<(DirKey, [u8; DIR_META_LEN]), CryptoError> {
        self.build_dir(DirParent::Dir(parent), dir_key, dir_id)
    }

    pub fn open_dir(&self, parent: &DirKey, meta: &[u8]) -> Result<DirKey, CryptoError> {
        scrubbed(|| {
            let m = DirMeta::parse(meta)?;
            let (_, key) = self.open_dir_meta(DirParent::Dir(parent), &m)?;
            DirKey::derive(&self.volume_id, m.dir_id, key)
        })
    }

    /// Moving a directory under a new parent. Returns (both-slots meta: the slot that opens under
    /// `old_parent` kept + a new slot for `new_parent` under the active KEK, final meta: only the
    /// new slot). Write the first, rename, then write the second: every torn state opens.
    pub fn rewrap_dir_move(
        &self,
        dir: &DirKey,
        old_parent: &DirKey,
        new_parent: &DirKey,
        meta: &[u8],
    ) -> Result<([u8; DIR_META_LEN], [u8; DIR_META_LEN]), CryptoError> {
        scrubbed(|| {
            let m = DirMeta::parse(meta)?;
            if m.dir_id != *dir.dir_id() {
                return Err(CryptoError::WrongObject);
            }
            let (kept, key) = self.open_dir_meta(DirParent::Dir(old_parent), &m)?;
            if !key.ct_eq(dir.key().expose()) {
                return Err(CryptoError::WrongObject);
            }
            let new_slot = self.dir_slot(DirParent::Dir(new_parent), dir.key(), &m.dir_id)?;
            let (both, fin) = two_step(&m.slots, kept, new_slot);
            let mut both_meta = m.clone();
            both_meta.slots = both;
            let mut final_meta = m;
            final_meta.slots = fin;
            Ok((both_meta.to_bytes(), final_meta.to_bytes()))
        })
    }

    pub fn create_file(&self, dir: &DirKey) -> Result<(FileKey, [u8; HEADER_LEN]), CryptoError> {
        self.create_file_in(dir, self.paged_files)
    }

    /// `create_file` with the layout chosen by the caller (a migration to the paged layout).
    pub fn create_file_in(
        &self,
        dir: &DirKey,
        paged: bool,
    ) -> Result<(FileKey, [u8; HEADER_LEN]), CryptoError> {
        let (dek, file_id) = random_key_and_id()?;
        let features = if paged { FEATURE_PAGED } else { 0 };
        self.create_file_with(dir, dek, file_id, FileKey::INITIAL_RESERVATION, features)
    }

    /// Deterministic variant of `create_file` for known-answer tests (AES-KW is deterministic,
    /// so fixed inputs give a fixed header).
    pub fn create_file_from_parts(
        &self,
        dir: &DirKey,
        dek: Key32,
        file_id: [u8; 16],
        nonce_reserved: u64,
    ) -> Result<(FileKey, [u8; HEADER_LEN]), CryptoError> {
        self.create_file_with(dir, dek, file_id, nonce_reserved, 0)
    }

    /// `create_file_from_parts` with the header's required_features (`FEATURE_PAGED` or 0).
    pub fn create_file_with(
        &self,
        dir: &DirKey,
        dek: Key32,
        file_id: [u8; 16],
        nonce_reserved: u64,
        required_features: u32,
    ) -> Result<(FileKey, [u8; HEADER_LEN]), CryptoError> {
        scrubbed(|| {
            let slot = self.file_slot(dir, &dek, &file_id)?;
            let fk = FileKey::derive(&self.volume_id, file_id, dek, nonce_reserved)?;
            let mut h = FileHeader {
                required_features,
                optional_features: 0,
                file_id,
                nonce_reserved,
                mac: [0; 32],
                slots: [Some(slot), None],
            };
            h.mac = hmac_sha256(fk.header_mac_key(), &h.mac_input())?;
            Ok((fk, h.to_bytes()))
        })
    }

    fn file_slot(
        &self,
        dir: &DirKey,
        dek: &Key32,
        file_id: &[u8; 16],
    ) -> Result<KeySlot, CryptoError> {
        let fwk = self.file_wrap_key(self.active_kek()?, dir, file_id)?;
        Ok(KeySlot {
            kek_version: self.active,
            wrapped: wrap_bound(&fwk, dek, file_id, self.active)?,
        })
    }

    fn open_header(&self, dir: &DirKey, h: &FileHeader) -> Result<(usize, FileKey), CryptoError> {
        for (i, slot) in h.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let Some(kek) = self.kek(slot.kek_version) else {
                continue;
            };
            let fwk = self.file_wrap_key(kek, dir, &h.file_id)?;
            if let Some(dek) = unwrap_bound(&fwk, &slot.wrapped, &h.file_id, slot.kek_version)? {
                let fk = FileKey::derive(&self.volume_id, h.file_id, dek, h.nonce_reserved)?;
                verify_hmac_sha256(fk.header_mac_key(), &h.mac_input(), &h.mac)?;
                return Ok((i, fk));
            }
        }
        Err(CryptoError::UnwrapFailed)
    }

    /// Opens a header (exactly 216 bytes) of a file in `dir`.
    pub fn open_file(&self, dir: &DirKey, header: &[u8]) -> Result<FileKey, CryptoError> {
        scrubbed(|| {
            let h = FileHeader::parse(header)?;
            Ok(self.open_header(dir, &h)?.1)
        })
    }

    /// Same two-step protocol as `rewrap_dir_move`, for a file moving from `old_dir` to
    /// `new_dir`.
    pub fn rewrap_file_move(
        &self,
        file: &FileKey,
        old_dir: &DirKey,
        new_dir: &DirKey,
        header: &[u8],
    ) -> Result<([u8; HEADER_LEN], [u8; HEADER_LEN]), CryptoError> {
        scrubbed(|| {
            let h = FileHeader::parse(header)?;
            if h.file_id != *file.file_id() {
                return Err(CryptoError::WrongObject);
            }
            let (kept, opened) = self.open_header(old_dir, &h)?;
            if !opened.dek().ct_eq(file.dek().expose()) {
                return Err(CryptoError::WrongObject);
            }
            let new_slot = self.file_slot(new_dir, file.dek(), &h.file_id)?;
            let (both, fin) = two_step(&h.slots, kept, new_slot);
            let mut both_h = h.clone();
            both_h.slots = both;
            let mut final_h = h;
            final_h.slots = fin;
            Ok((both_h.to_bytes(), final_h.to_bytes()))
        })
    }
}

/// Slot layouts for a two-step rewrap: the new slot goes into the slot NOT used to open (any
/// stale content there is from an earlier torn rewrap and is superseded).
fn two_step(
    slots: &[Option<KeySlot>; 2],
    kept: usize,
    new_slot: KeySlot,
) -> ([Option<KeySlot>; 2], [Option<KeySlot>; 2]) {
    let old = slots.get(kept).cloned().flatten();
    if kept == 0 {
        ([old, Some(new_slot.clone())], [None, Some(new_slot)])
    } else {
        ([Some(new_slot.clone()), old], [Some(new_slot), None])
    }
}

/// A fresh key and id from one getrandom call (this runs for every file and
/// directory created); the key bytes never leave locked memory.
fn random_key_and_id() -> Result<(Key32, [u8; 16]), CryptoError> {
    let mut both = crate::secret::SecretBytes::zeroed(48);
    crate::crypto::fill_random(both.expose_mut())?;
    let (k, id) = both.expose().split_at(32);
    let key = Key32::try_fill(|out| {
        out.copy_from_slice(k);
        Ok::<(), CryptoError>(())
    })?;
    let mut file_id = [0u8; 16];
    file_id.copy_from_slice(id);
    Ok((key, file_id))
}
