//! Core tests of `CoreFs::new`'s errors: each way a cipher directory can
//! fail to open is its own `OpenError`, so the CLI can tell a corrupt volume
//! from a system problem. They must not need root.

use super::*;

fn open_err(dir: &Path) -> OpenError {
    match CoreFs::new(dir, Arc::new(test_keys()), false) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn open_errors_name_their_cause() {
    let (d, core) = volume();
    drop(core);
    let missing = d.path().join("nope");
    assert!(matches!(open_err(&missing), OpenError::CipherDir(p, Errno::ENOENT) if p == missing));
    let file = d.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let e = open_err(&file);
    assert!(matches!(e, OpenError::CipherDir(_, Errno::ENOTDIR)), "{e}");
    assert!(!e.is_damage());

    let meta = d.path().join(DIR_META_NAME);
    let good = std::fs::read(&meta).expect("meta");
    std::fs::write(&meta, vec![0u8; crate::format::DIR_META_LEN + 1]).expect("long");
    let e = open_err(d.path());
    assert!(
        matches!(e, OpenError::RootMeta(CoreError::Damage(_))),
        "{e}"
    );
    assert!(e.is_damage());

    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&meta, &bad).expect("flip");
    let e = open_err(d.path());
    assert!(matches!(e, OpenError::RootKey(_)), "{e}");
    assert!(e.is_damage() && e.to_string().contains("damaged"));

    std::fs::remove_file(&meta).expect("rm");
    let e = open_err(d.path());
    assert!(
        matches!(e, OpenError::RootMeta(ref c) if *c == Errno::ENOENT),
        "{e}"
    );
    assert!(e.is_damage() && e.to_string().contains("missing"));

    std::fs::write(&meta, &good).expect("restore");
    reopen(d.path());
}
