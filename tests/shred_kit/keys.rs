//! The test hook of the online shred tests: every directory key and DEK of
//! a volume derived independently from its recovery key (FORMAT.md
//! formulas), by backing path, and scans of files and of a daemon's memory
//! for them. It must only read: the volume, its files and /proc/PID/mem.

use crate::common::*;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

fn hkdf(ikm: &[&[u8]], salt: &[u8], info: &[&[u8]]) -> Vec<u8> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm.concat());
    let mut okm = vec![0u8; 32];
    hk.expand(&info.concat(), &mut okm).unwrap();
    okm
}

/// Unwraps the first of two 72-byte slots whose wrapped key opens under `kek`.
fn unwrap_slots(kek: &[u8], slots: &[u8]) -> Option<Vec<u8>> {
    let kw = aes_kw::KekAes256::try_from(kek).unwrap();
    [8..72, 80..144]
        .into_iter()
        .find_map(|r| kw.unwrap_vec(slots.get(r)?).ok())
        .map(|k| k[..32].to_vec())
}

/// The test hook: every directory key and DEK of the volume, derived from
/// the recovery key by the documented formulas (FORMAT.md), by backing path.
pub struct KeyMap {
    pub keys: BTreeMap<PathBuf, Vec<u8>>,
}

impl KeyMap {
    pub fn capture(v: &TestVolume) -> KeyMap {
        let conf = fs::read(v.cipher.join(CONF)).unwrap();
        let vid = conf[20..36].to_vec();
        let rec = &conf[64 + 144..];
        assert_eq!(rec[0], 2, "second protector is the recovery key");
        let rk = hex::decode(v.recovery_key.as_ref().unwrap().replace('-', "")).unwrap();
        let pk = hkdf(&[&rk], &rec[32..64], &[b"dekfs v1 recovery"]);
        let kw = aes_kw::KekAes256::try_from(&pk[..]).unwrap();
        let kek = kw.unwrap_vec(&rec[64..128]).unwrap()[..32].to_vec();
        let meta = fs::read(v.cipher.join(DIR_META)).unwrap();
        let dir_id = meta[16..32].to_vec();
        let dwk = hkdf(&[&kek], &vid, &[b"dekfs v1 root-wrap", &dir_id]);
        let root_key = unwrap_slots(&dwk, &meta[80..224]).expect("root key");
        let mut m = KeyMap {
            keys: BTreeMap::new(),
        };
        m.walk(&v.cipher, &kek, &vid, &root_key, &dir_id);
        m.keys.insert(v.cipher.clone(), root_key);
        m
    }

    fn walk(&mut self, dir: &Path, kek: &[u8], vid: &[u8], key: &[u8], dir_id: &[u8]) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let (p, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            if name.starts_with("dekfs.") && !name.starts_with("dekfs.ln.")
                || name.ends_with(".name")
            {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                let Ok(meta) = fs::read(p.join(DIR_META)) else {
                    continue;
                };
                let id = meta[16..32].to_vec();
                let dwk = hkdf(&[kek, key], vid, &[b"dekfs v1 dir-wrap", &id]);
                let k = unwrap_slots(&dwk, &meta[80..224]).expect("dir key");
                self.walk(&p, kek, vid, &k, &id);
                self.keys.insert(p, k);
            } else if ft.is_file() {
                let h = fs::read(&p).unwrap();
                if h.len() < HEADER_LEN as usize {
                    continue;
                }
                let fwk = hkdf(
                    &[kek, key],
                    vid,
                    &[b"dekfs v1 file-wrap", dir_id, &h[16..32]],
                );
                let dek = unwrap_slots(&fwk, &h[72..216]).expect("DEK");
                self.keys.insert(p, dek);
            }
        }
    }

    /// Keys of the objects whose backing path is gone now.
    pub fn gone(&self) -> Vec<(PathBuf, Vec<u8>)> {
        self.keys
            .iter()
            .filter(|(p, _)| fs::symlink_metadata(p).is_err())
            .map(|(p, k)| (p.clone(), k.clone()))
            .collect()
    }
}

/// A set of 32-byte needles, found by their first 8 bytes.
pub struct Needles(HashMap<u64, Vec<Vec<u8>>>);

impl Needles {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a Vec<u8>>) -> Needles {
        let mut m: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for k in keys {
            m.entry(u64::from_le_bytes(k[..8].try_into().unwrap()))
                .or_default()
                .push(k.clone());
        }
        Needles(m)
    }

    /// Which needles `buf` holds.
    pub fn find(&self, buf: &[u8], hits: &mut Vec<Vec<u8>>) {
        if buf.len() < 32 {
            return;
        }
        for i in 0..=buf.len() - 32 {
            let p = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap());
            if let Some(ks) = self.0.get(&p) {
                for k in ks {
                    if &buf[i..i + 32] == k.as_slice() && !hits.contains(k) {
                        hits.push(k.clone());
                    }
                }
            }
        }
    }
}

pub fn scan_memory(pid: u32, n: &Needles) -> Vec<Vec<u8>> {
    let mut hits = Vec::new();
    for_each_region(pid, |_, _, buf| n.find(buf, &mut hits));
    hits
}

pub fn scan_files(dir: &Path, n: &Needles, hits: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            scan_files(&e.path(), n, hits);
        } else if ft.is_file() {
            let mut found = Vec::new();
            n.find(&fs::read(e.path()).unwrap(), &mut found);
            hits.extend(found.into_iter().map(|k| (e.path(), k)));
        }
    }
}

pub fn daemon_pid(v: &TestVolume) -> u32 {
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    pids[0]
}
