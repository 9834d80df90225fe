//! `dekfs mount` of a volume whose root key metadata went missing after
//! unlock checked it: reported as a corrupt volume (exit 14) with a message
//! that names the missing file. (The unlock step itself already refuses a
//! root dekfs.dir of another volume.) Needs root. Must not touch other
//! mounts.

mod common;

use common::*;
use std::fs;

const DIR_META: &str = "dekfs.dir";

#[test]
fn missing_root_key_metadata_is_named_and_exits_corrupt() {
    require_fuse!();
    let v = TestVolume::new("openerr");
    let meta = v.cipher.join(DIR_META);
    let good = fs::read(&meta).unwrap();

    fs::remove_file(&meta).unwrap();
    let out = v.try_mount(&[]);
    out.expect_code(exit::CORRUPT, "mount without the root dekfs.dir");
    assert!(
        out.stderr.contains("root dekfs.dir is missing"),
        "{}",
        out.stderr
    );

    assert!(!is_mounted(&v.mnt));

    fs::write(&meta, &good).unwrap();
    v.mount();
    v.umount();
}
