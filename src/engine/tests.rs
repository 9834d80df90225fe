//! The walker and fsck on cipher trees built by hand, without a mount.

use super::fsck::{check, Report};
use super::ProblemKind;
use crate::crypto::{DirKey, VolumeKeys};
use crate::layout::{self, BackingName, DIR_META_NAME};
use crate::secret::Key32;
use std::fs;
use std::path::Path;

struct Tree {
    dir: tempfile::TempDir,
    keys: VolumeKeys,
    root: DirKey,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let keys = VolumeKeys::from_parts([7; 16], vec![(1, Key32::random().unwrap())], 1).unwrap();
    let (root, meta) = keys.create_root_dir().unwrap();
    fs::write(dir.path().join(DIR_META_NAME), meta).unwrap();
    Tree { dir, keys, root }
}

impl Tree {
    fn p(&self) -> &Path {
        self.dir.path()
    }

    /// A header-only (empty) file named `plain` in the root.
    fn file(&self, plain: &[u8]) -> BackingName {
        let bn = BackingName::encode(&self.root, plain).unwrap();
        let fd = layout::open_dir(&rustix::fs::CWD, self.p().to_str().unwrap()).unwrap();
        bn.write_record(&fd).unwrap();
        let (_, header) = self.keys.create_file(&self.root).unwrap();
        fs::write(self.p().join(bn.name()), header).unwrap();
        bn
    }

    fn check(&self, repair: bool) -> Report {
        check(self.p(), &self.keys, repair).unwrap()
    }
}

fn only_problem(r: &Report) -> &super::Problem {
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    &r.problems[0]
}

#[test]
fn clean_tree_with_short_long_and_subdirectory() {
    let t = tree();
    t.file(b"short");
    t.file(&[b'L'; 200]);
    let (_, meta) = t.keys.create_dir(&t.root).unwrap();
    let sub = BackingName::encode(&t.root, b"sub").unwrap();
    fs::create_dir(t.p().join(sub.name())).unwrap();
    fs::write(t.p().join(sub.name()).join(DIR_META_NAME), meta).unwrap();
    fs::write(t.p().join("foreign.txt"), b"not dekfs's").unwrap();
    let r = t.check(false);
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!((r.dirs, r.files, r.symlinks), (2, 2, 0));
}

#[test]
fn orphan_record_is_reported_and_repair_deletes_only_it() {
    let t = tree();
    let keep = t.file(b"keep");
    let bn = t.file(&[b'O'; 220]);
    fs::remove_file(t.p().join(bn.name())).unwrap();
    let r = t.check(false);
    let p = only_problem(&r);
    assert_eq!(p.kind, ProblemKind::OrphanRecord);
    assert!(p.what.contains("orphan long-name record"), "{}", p.what);
    assert_eq!(p.backing, Path::new(&bn.record_name().unwrap()));
    let r = t.check(true);
    assert_eq!(r.removed.len(), 1);
    assert!(r.quarantined.is_empty());
    assert!(!t.p().join(bn.record_name().unwrap()).exists());
    assert!(t.p().join(keep.name()).exists());
    assert!(t.check(false).is_clean());
}

#[test]
fn long_entry_missing_its_record_is_damage() {
    let t = tree();
    let bn = t.file(&[b'M'; 230]);
    fs::remove_file(t.p().join(bn.record_name().unwrap())).unwrap();
    let r = t.check(false);
    let p = only_problem(&r);
    assert_eq!(p.kind, ProblemKind::Damaged);
    assert_eq!(p.what, "long-name record missing");
    assert!(p.path.starts_with("/dekfs.ln."), "{}", p.path);
    let r = t.check(true);
    assert_eq!(r.quarantined.len(), 1);
    assert!(t.check(false).is_clean());
}

#[test]
fn short_name_in_long_form_is_damage_and_quarantined_with_its_record() {
    let t = tree();
    let short = t.file(b"dup");
    let h = crate::crypto::names::long_name_hash(short.name());
    let (long, rec) = (format!("dekfs.ln.{h}"), format!("dekfs.ln.{h}.name"));
    fs::copy(t.p().join(short.name()), t.p().join(&long)).unwrap();
    fs::write(t.p().join(&rec), short.name()).unwrap();
    let r = t.check(false);
    let p = only_problem(&r);
    assert_eq!(p.backing, Path::new(&long));
    assert!(p.what.contains("fits the short form"), "{}", p.what);
    t.check(true);
    assert!(!t.p().join(&long).exists() && !t.p().join(&rec).exists());
    assert!(t.p().join(short.name()).exists());
    assert!(t.check(false).is_clean());
}
