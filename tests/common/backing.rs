//! The cipher (backing) tree of a volume as tests see it: listings, the
//! backing file of a plaintext file, expected sizes, bit flips. Must not
//! decrypt: tests compare what dekfs shows with these raw views.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

impl TestVolume {
    /// Every entry under the cipher dir: relative path -> (is_file, size).
    pub fn cipher_listing(&self) -> BTreeMap<PathBuf, (bool, u64)> {
        list_tree(&self.cipher)
    }

    /// Writes `data` to `rel` through the mount (create, write, fsync, close)
    /// and returns the backing file that appeared in the cipher dir for it.
    #[track_caller]
    pub fn create_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        let before = self.cipher_listing();
        {
            let mut f = fs::File::create(self.p(rel))
                .unwrap_or_else(|e| panic!("create {rel} through the mount: {e}"));
            f.write_all(data).unwrap();
            f.sync_all().unwrap();
        }
        let after = self.cipher_listing();
        self.new_backing_file(&before, &after, rel)
    }

    /// The single new content file between two listings (ignores
    /// `dekfs.dir` and long-name `.name` companions).
    #[track_caller]
    pub fn new_backing_file(
        &self,
        before: &BTreeMap<PathBuf, (bool, u64)>,
        after: &BTreeMap<PathBuf, (bool, u64)>,
        what: &str,
    ) -> PathBuf {
        let new: Vec<&PathBuf> = after
            .iter()
            .filter(|(p, (is_file, _))| {
                *is_file
                    && !before.contains_key(*p)
                    && p.file_name() != Some(OsStr::new(DIR_META))
                    && !p.to_string_lossy().ends_with(".name")
            })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            new.len(),
            1,
            "expected exactly one new backing file for {what}, got {new:?}"
        );
        self.cipher.join(new[0])
    }
}

/// Recursive listing: relative path -> (is regular file, size). Symlinks are
/// not followed.
pub fn list_tree(root: &Path) -> BTreeMap<PathBuf, (bool, u64)> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (bool, u64)>) {
        let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            out.insert(
                p.strip_prefix(root).unwrap().to_owned(),
                (md.is_file(), md.len()),
            );
            if md.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Size of the backing file for a plaintext of `n` bytes with every block
/// present (the header-only form of an empty file is 216 or 0).
pub fn expected_backing_size(n: u64) -> u64 {
    if n == 0 {
        return HEADER_LEN;
    }
    let full = n / BLOCK_PLAIN;
    let rem = n % BLOCK_PLAIN;
    HEADER_LEN + full * BLOCK_CIPHER + if rem > 0 { rem + BLOCK_OVERHEAD } else { 0 }
}

#[track_caller]
pub fn assert_backing_size(backing: &Path, plain_len: u64) {
    let got = fs::metadata(backing)
        .unwrap_or_else(|e| panic!("stat {}: {e}", backing.display()))
        .len();
    if plain_len == 0 {
        assert!(
            got == 0 || got == HEADER_LEN,
            "backing file of an empty file must be 0 or {HEADER_LEN} bytes, got {got}"
        );
    } else {
        assert_eq!(
            got,
            expected_backing_size(plain_len),
            "backing size for {plain_len} plaintext bytes ({})",
            backing.display()
        );
    }
}

/// Flips bit `bit` of byte `offset` of `path` in place.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}
