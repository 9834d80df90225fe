//! Shared pieces of the shred tests: running `dekfs shred` (optionally with
//! a failpoint armed, expecting the kill), building trees through a mount,
//! and the attacker: a program holding the config, the passphrase and a
//! copy of the cipher directory, which derives every key it can and tries
//! each against every header and dekfs.dir whose id the shred destroyed.
//! It must never arm a failpoint outside the one child it runs.

#![allow(dead_code)]

pub mod keys;
pub mod online;

use super::common::*;
use dekfs::crypto::{DirKey, VolumeKeys};
use dekfs::engine::shred::Journal;
use dekfs::engine::source::{DirKeyState, Offline, Source};
use dekfs::engine::{Entry, Problem, Visitor, Walker};
use dekfs::secret::SecretBytes;
use dekfs::volume::{self, Credential};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// `dekfs shred CIPHER [PATH] --passfile .. --yes` with `extra` arguments.
pub fn shred(v: &TestVolume, path: Option<&str>, extra: &[&str]) -> Out {
    let mut args = vec!["shred".to_string(), v.cipher.display().to_string()];
    args.extend(path.map(str::to_owned));
    args.extend([
        "--passfile".into(),
        v.passfile.display().to_string(),
        "--yes".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    dekfs(&args)
}

/// Runs a shred with `point` armed; asserts it died by SIGKILL there.
pub fn shred_killed_at(v: &TestVolume, path: &str, point: &str) {
    let out = Command::new(DEKFS)
        .arg("shred")
        .arg(&v.cipher)
        .arg(path)
        .arg("--passfile")
        .arg(&v.passfile)
        .arg("--yes")
        .env("DEKFS_FAILPOINT", point)
        .output()
        .expect("dekfs shred");
    assert_eq!(
        out.status.signal(),
        Some(9),
        "shred with {point} armed should die by SIGKILL: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `files` files spread over `dirs` subdirectories of `top` through
/// the mount; returns plaintext path -> content.
pub fn fill(
    v: &TestVolume,
    top: &str,
    dirs: usize,
    files: usize,
    seed: u64,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fs::create_dir_all(v.p(top)).unwrap();
    for d in 0..dirs {
        fs::create_dir_all(v.p(&format!("{top}/d{d:03}"))).unwrap();
    }
    for i in 0..files {
        let rel = format!("{top}/d{:03}/f{i:05}", i % dirs.max(1));
        let data = random_bytes(seed + i as u64, 100 + (i * 37) % 5000);
        fs::write(v.p(&rel), &data).unwrap();
        out.insert(rel, data);
    }
    out
}

/// Collects every directory key the attacker can open by walking the tree.
struct Keys<'a, 'k> {
    inner: Offline<'a>,
    keys: &'k mut Vec<Arc<DirKey>>,
}

impl Keys<'_, '_> {
    fn keep(
        &mut self,
        r: std::io::Result<(OwnedFd, DirKeyState)>,
    ) -> std::io::Result<(OwnedFd, DirKeyState)> {
        let (fd, st) = r?;
        if let DirKeyState::Open(k) = &st {
            self.keys.push(k.clone());
        }
        Ok((fd, st))
    }
}

impl Source for Keys<'_, '_> {
    fn root(&mut self) -> std::io::Result<(OwnedFd, DirKeyState)> {
        let r = self.inner.root();
        self.keep(r)
    }
    fn child(
        &mut self,
        p: BorrowedFd<'_>,
        k: &DirKey,
        n: &str,
        plain: &[u8],
    ) -> std::io::Result<(OwnedFd, DirKeyState)> {
        let r = self.inner.child(p, k, n, plain);
        self.keep(r)
    }
}

struct Nothing;
impl Visitor for Nothing {
    fn file(&mut self, _: &Entry<'_>, _: &DirKey) -> std::io::Result<()> {
        Ok(())
    }
    fn symlink(&mut self, _: &Entry<'_>, _: &DirKey) -> std::io::Result<()> {
        Ok(())
    }
    fn problem(&mut self, _: Problem) {}
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            all_files(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// What the attacker got out of a copy.
#[derive(Debug, Default)]
pub struct Loot {
    /// Objects with a destroyed id that some key still opened.
    pub opened_destroyed: Vec<PathBuf>,
    /// Objects with a destroyed id that the attacker tried.
    pub tried_destroyed: usize,
    /// Other objects that opened (shows the attack works at all).
    pub opened_other: usize,
    pub keys: usize,
}

/// The attack on `copy` (a cipher directory copy with its config) with the
/// passphrase, against the ids in `destroyed`.
pub fn attack(copy: &Path, passphrase: &str, destroyed: &HashSet<[u8; 16]>) -> Loot {
    let cred = Credential::Passphrase(SecretBytes::new(passphrase.as_bytes().to_vec()));
    // The attacker uses the copy on a machine of their own, which keeps no rollback record
    // (this one refuses the older config: exit 17).
    volume::rollback::allow_rollback(true);
    let u = volume::unlock(copy, &cred).expect("the attacker holds the passphrase");
    attack_keys(copy, &u.keys, destroyed)
}

/// The attack on `copy` with KEKs obtained elsewhere (today's config, a TPM): every directory
/// key reachable from the copy's root under them, tried against every header and dekfs.dir.
pub fn attack_keys(copy: &Path, vk: &VolumeKeys, destroyed: &HashSet<[u8; 16]>) -> Loot {
    let mut keys = Vec::new();
    let src = Keys {
        inner: Offline::new(copy, vk),
        keys: &mut keys,
    };
    // A root these KEKs do not open ends the walk early: nothing reachable, which is the point.
    let _ = Walker::new(src, &mut Nothing).run();
    let mut loot = Loot {
        keys: keys.len(),
        ..Loot::default()
    };
    let mut files = Vec::new();
    all_files(copy, &mut files);
    for p in files {
        let bytes = fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let is_dir_meta = name.starts_with(DIR_META) || bytes.starts_with(b"DKFD");
        let is_header = bytes.starts_with(b"DKFH")
            || (!name.contains('.') && bytes.len() >= HEADER_LEN as usize);
        if !(is_dir_meta || is_header) || bytes.len() < 32 {
            continue;
        }
        let id: [u8; 16] = bytes[16..32].try_into().unwrap();
        let opened = if is_dir_meta {
            let m = &bytes[..bytes.len().min(DIR_META_LEN as usize)];
            vk.open_root_dir(m).is_ok() || keys.iter().any(|k| vk.open_dir(k, m).is_ok())
        } else {
            let h = &bytes[..HEADER_LEN as usize];
            keys.iter().any(|k| vk.open_file(k, h).is_ok())
        };
        if destroyed.contains(&id) {
            loot.tried_destroyed += 1;
            if opened {
                loot.opened_destroyed.push(p);
            }
        } else if opened {
            loot.opened_other += 1;
        }
    }
    loot
}

/// The ids a pending shred journal lists.
pub fn journal_ids(cipher: &Path) -> HashSet<[u8; 16]> {
    let text = fs::read_to_string(cipher.join("dekfs.shred")).expect("a shred journal");
    Journal::parse(&text).unwrap().ids.into_iter().collect()
}

/// `cp -a` of a cipher directory.
pub fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}
