//! Online shred of the core without a mount: EIO for handles under the
//! path from the revocation on, the siblings untouched, refusals, and a
//! journal-free cipher directory afterwards.

use super::tests::{errno, test_keys, volume, ME};
use super::*;
use crate::engine::shred::ResolveError;

#[test]
fn handles_under_the_path_fail_with_eio_and_the_rest_keeps_working() {
    let (dir, core) = volume();
    let v = core.mkdir(ROOT_INO, b"v", 0o755, ME).expect("mkdir v");
    let sub = core.mkdir(v.ino, b"sub", 0o755, ME).expect("mkdir sub");
    let (_, fh) = core
        .create(sub.ino, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create f");
    core.write(fh, 0, b"victim data").expect("write");
    let dh = core.opendir(sub.ino).expect("opendir");
    assert!(!core
        .readdir_entries(sub.ino, dh, 0)
        .expect("list")
        .entries
        .is_empty());
    let k = core.mkdir(ROOT_INO, b"k", 0o755, ME).expect("mkdir k");
    let (_, kh) = core
        .create(k.ino, b"g", 0o644, libc::O_RDWR, ME)
        .expect("create g");
    core.write(kh, 0, b"keep").expect("write keep");

    let (plain, kind, s) = core.shred_survey("/v").expect("survey");
    assert_eq!(
        (plain.as_str(), kind, s.dirs, s.files),
        ("/v", "directory", 2, 1)
    );
    assert!(dir
        .path()
        .join(&core.node(v.ino).unwrap().location().cipher_name)
        .exists());

    let mut steps = Vec::new();
    let out = core
        .shred_path("v/./sub/..", false, &mut |s| steps.push(format!("{s:?}")))
        .expect("shred");
    assert_eq!((out.dir_keys, out.file_keys), (2, 1));
    assert_eq!(out.outcome.objects, 3);
    assert!(out.outcome.report.is_clean());
    assert_eq!(steps.len(), 3, "{steps:?}");
    let eio = Some(Errno::EIO);
    assert_eq!(errno(core.read(fh, 0, 4)), eio);
    assert_eq!(errno(core.write(fh, 0, b"x")), eio);
    assert_eq!(errno(core.readdir_entries(sub.ino, dh, 1)), eio);
    assert_eq!(errno(core.opendir(v.ino)), eio);
    assert_eq!(errno(core.lookup(v.ino, b"sub")), eio);
    assert_eq!(errno(core.lookup(ROOT_INO, b"v")), Some(Errno::ENOENT));
    // A lock and unlock cannot bring the shredded keys back.
    core.lock_keys();
    core.install_keys(Arc::new(test_keys())).expect("unlock");
    assert_eq!(errno(core.read(fh, 0, 4)), eio);
    assert_eq!(core.read(kh, 0, 4).expect("sibling"), b"keep");
    assert!(!dir.path().join(crate::engine::shred::JOURNAL_NAME).exists());

    let refused = |p: &str| core.shred_path(p, false, &mut |_| {}).err();
    assert!(matches!(
        refused("/"),
        Some(ShredError::Resolve(ResolveError::Root))
    ));
    assert!(matches!(
        refused("/../x"),
        Some(ShredError::Resolve(ResolveError::Outside))
    ));
    assert!(matches!(
        refused("/v"),
        Some(ShredError::Resolve(ResolveError::NotFound(_)))
    ));
    assert!(matches!(
        refused("/k/g/x"),
        Some(ShredError::Resolve(ResolveError::NotADirectory(_)))
    ));
    core.release(fh);
    core.releasedir(dh);
}

#[test]
fn a_revoked_target_cannot_be_renamed_or_replaced() {
    let (_dir, core) = volume();
    let m = core.mkdir(ROOT_INO, b"m", 0o755, ME).expect("mkdir m");
    let (f, fh) = core
        .create(ROOT_INO, b"f", 0o644, libc::O_RDWR, ME)
        .expect("create f");
    core.write(fh, 0, b"data").expect("write");
    core.mkdir(ROOT_INO, b"other", 0o755, ME)
        .expect("mkdir other");
    assert_eq!(core.shred_revoke(m.ino), (1, 0));
    assert_eq!(core.shred_revoke(f.ino), (0, 1));
    let eio = Some(Errno::EIO);
    // Not away from its name, not onto it: the shred removes it by name.
    assert_eq!(errno(core.rename(ROOT_INO, b"m", ROOT_INO, b"n", 0)), eio);
    assert_eq!(errno(core.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)), eio);
    assert_eq!(
        errno(core.rename(ROOT_INO, b"other", ROOT_INO, b"m", 0)),
        eio
    );
    assert_eq!(errno(core.read(fh, 0, 4)), eio);
    // A new handle cannot load the key again either.
    assert_eq!(errno(core.open(f.ino, libc::O_RDONLY)), eio);
    core.rename(ROOT_INO, b"other", ROOT_INO, b"moved", 0)
        .expect("the rest still renames");
    core.release(fh);
}
