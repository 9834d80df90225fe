//! The rekey walks on cipher trees built by hand, without a mount: every
//! object (root, subdirectory, plain, torn and mid-move headers) ends with
//! only an active-KEK slot and opens without the old KEK; an object no key
//! opens is a blocker, never skipped in silence.

use super::fsck::check;
use super::rekey::{rewrap_all, verify};
use crate::crypto::VolumeKeys;
use crate::layout::{self, BackingName, DIR_META_NAME};
use crate::secret::Key32;
use std::fs;

fn key(b: u8) -> Key32 {
    Key32::from_array(&mut [b; 32])
}

fn keys(versions: &[u32], active: u32) -> VolumeKeys {
    let ks = versions.iter().map(|&v| (v, key(v as u8))).collect();
    VolumeKeys::from_parts([5; 16], ks, active).unwrap()
}

fn put_file(dir: &std::path::Path, parent: &crate::crypto::DirKey, plain: &[u8], header: &[u8]) {
    let bn = BackingName::encode(parent, plain).unwrap();
    let fd = layout::open_dir(&rustix::fs::CWD, dir.to_str().unwrap()).unwrap();
    bn.write_record(&fd).unwrap();
    fs::write(dir.join(bn.name()), header).unwrap();
}

#[test]
fn every_object_moves_to_the_new_kek_and_opens_without_the_old() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let (v1, both, v2) = (keys(&[1], 1), keys(&[1, 2], 2), keys(&[2], 2));
    let (root, meta) = v1.create_root_dir().unwrap();
    fs::write(p.join(DIR_META_NAME), meta).unwrap();
    let (sub, smeta) = v1.create_dir(&root).unwrap();
    let sname = BackingName::encode(&root, b"sub").unwrap();
    fs::create_dir(p.join(sname.name())).unwrap();
    fs::write(p.join(sname.name()).join(DIR_META_NAME), smeta).unwrap();
    // plain, long-named, torn mid-rekey, and caught mid-move into `sub`
    let (_, h) = v1.create_file(&root).unwrap();
    put_file(p, &root, b"plain", &h);
    let (_, h) = v1.create_file(&root).unwrap();
    put_file(p, &root, &[b'L'; 200], &h);
    let (_, h) = v1.create_file(&root).unwrap();
    let torn = both
        .rewrap_file_kek(&root, &h)
        .unwrap()
        .unwrap()
        .both
        .unwrap();
    put_file(p, &root, b"torn", &torn);
    let (fk, h) = v1.create_file(&root).unwrap();
    let (moving, _) = v1.rewrap_file_move(&fk, &root, &sub, &h).unwrap();
    put_file(&p.join(sname.name()), &sub, b"moved", &moving);

    let r = rewrap_all(p, &both, 1, &mut |_| {}).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!((r.stats.dirs, r.stats.files, r.stats.rewrapped), (2, 4, 6));
    let again = rewrap_all(p, &both, 1, &mut |_| {}).unwrap();
    assert_eq!((again.stats.rewrapped, again.stats.current), (0, 6));
    let vr = verify(p, &both, 1).unwrap();
    assert!(vr.blockers().is_empty(), "{:?}", vr.blockers());
    let f = check(p, &v2, false).unwrap();
    assert!(f.is_clean(), "{:?}", f.problems);
    assert_eq!(f.files, 4);
    // and the old KEK alone opens nothing any more
    assert!(!check(p, &v1, false).unwrap().is_clean());
}

#[test]
fn an_object_no_key_opens_blocks_and_stays() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let (v1, both) = (keys(&[1], 1), keys(&[1, 2], 2));
    let (root, meta) = v1.create_root_dir().unwrap();
    fs::write(p.join(DIR_META_NAME), meta).unwrap();
    let (_, mut h) = v1.create_file(&root).unwrap();
    h[100] ^= 1;
    put_file(p, &root, b"bad", &h);
    let (_, h) = v1.create_file(&root).unwrap();
    put_file(p, &root, b"good", &h);
    let r = rewrap_all(p, &both, 1, &mut |_| {}).unwrap();
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].path, "/bad");
    let vr = verify(p, &both, 1).unwrap();
    let b = vr.blockers();
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].starts_with("/bad"), "{b:?}");
}
