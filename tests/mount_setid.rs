//! Set-id bits under FUSE_HANDLE_KILLPRIV_V2: dekfs, not the kernel, drops
//! them on a write or truncate by a caller without CAP_FSETID, and the change
//! is visible at once (no stale attribute cache). Needs root, /dev/fuse and
//! the `nobody` user; the mount is allow_other so that user reaches it.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

fn as_nobody(script: &str) {
    let st = Command::new("su")
        .args(["-s", "/bin/sh", "nobody", "-c", script])
        .status()
        .expect("su");
    assert!(st.success(), "as nobody: {script}");
}

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).expect("stat").mode() & 0o7777
}

#[test]
fn setid_bits_drop_on_unprivileged_write_and_truncate_only() {
    require_fuse!();
    let v = TestVolume::new("setid");
    v.mount_with(&["-o", "allow_other"]);
    fs::set_permissions(&v.mnt, fs::Permissions::from_mode(0o755)).expect("chmod mnt");
    let mut p = v.dir.path().to_path_buf();
    while p != std::path::Path::new("/") {
        let m = mode(&p);
        fs::set_permissions(&p, fs::Permissions::from_mode(m | 0o011)).expect("traverse");
        p.pop();
    }
    for (name, m) in [("w", 0o4777), ("t", 0o6777), ("r", 0o4777)] {
        fs::write(v.p(name), b"data").expect("write");
        fs::set_permissions(v.p(name), fs::Permissions::from_mode(m)).expect("chmod");
    }
    as_nobody(&format!("echo more >> {}", v.p("w").display()));
    assert_eq!(
        mode(&v.p("w")),
        0o777,
        "write by another user drops set-uid at once"
    );
    as_nobody(&format!("truncate -s 1 {}", v.p("t").display()));
    assert_eq!(
        mode(&v.p("t")),
        0o777,
        "truncate by another user drops set-uid and set-gid"
    );
    fs::OpenOptions::new()
        .append(true)
        .open(v.p("r"))
        .expect("open")
        .sync_all()
        .expect("sync");
    std::io::Write::write_all(
        &mut fs::OpenOptions::new()
            .append(true)
            .open(v.p("r"))
            .expect("open"),
        b"root",
    )
    .expect("root write");
    assert_eq!(mode(&v.p("r")), 0o4777, "root (CAP_FSETID) keeps set-uid");
}
