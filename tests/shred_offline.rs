//! Offline shred (issue 11): a directory of many files in many
//! subdirectories is destroyed while its siblings stay byte-identical; a
//! single file, the root (refused), a path outside the volume (refused), a
//! second shred of the same path and a shred of a mounted volume; `dekfs
//! destroy`; and the time to destroy and sync every key slot of a large
//! tree on tmpfs. Counts are CI-sized by default and settable by
//! environment (DEKFS_SHRED_FILES, DEKFS_SHRED_DIRS, DEKFS_SHRED_PERF_FILES,
//! DEKFS_SHRED_PERF_DIRS).

mod common;
mod shred_kit;

use common::*;
use shred_kit::*;
use std::collections::BTreeMap;
use std::fs;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn check_hashes(v: &TestVolume, files: &BTreeMap<String, Vec<u8>>) {
    for (p, data) in files {
        let got = fs::read(v.p(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(got == *data, "{p}: content changed");
    }
}

#[test]
fn shred_a_big_directory_keeps_its_siblings() {
    if let Err(why) = fuse_available() {
        println!("SKIPPED ({why})");
        return;
    }
    let (files, dirs) = (
        env_or("DEKFS_SHRED_FILES", 1000),
        env_or("DEKFS_SHRED_DIRS", 50),
    );
    let v = TestVolume::new("shred-big");
    v.mount();
    let victim = fill(&v, "/customers/acme", dirs, files, 1);
    let keep = fill(&v, "/customers/other", 5, 60, 90_000);
    fs::write(v.p("/customers/note"), b"sibling file").unwrap();
    v.umount();
    let before = list_tree(&v.cipher).len();
    let audit = v.dir.path().join("audit.log");
    let out = shred(
        &v,
        Some("/customers/acme"),
        &["--audit-file", audit.to_str().unwrap()],
    );
    out.expect_code(exit::OK, "shred");
    assert!(
        out.stdout
            .contains(&format!("{} directories, {files} files", dirs + 1)),
        "survey line: {}",
        out.stdout
    );
    assert!(out.stdout.contains(": clean"), "{}", out.stdout);
    assert!(out.stderr.contains("audit: shred"), "{}", out.stderr);
    let record = fs::read_to_string(&audit).unwrap();
    let ids = record.split(" ids=").nth(1).unwrap().trim_end();
    assert_eq!(ids.split(',').count(), 1 + dirs + files, "one id per key");
    assert!(record.contains("path=\"/customers/acme\""), "{record}");
    assert!(!v.cipher.join("dekfs.shred").exists(), "journal removed");
    // acme and its dekfs.dir, each subdir with its dekfs.dir, the files.
    assert_eq!(list_tree(&v.cipher).len(), before - (2 + dirs * 2 + files));
    v.assert_fsck_clean("after shred");
    v.mount();
    check_hashes(&v, &keep);
    assert_eq!(fs::read(v.p("/customers/note")).unwrap(), b"sibling file");
    assert_eq!(dir_names(&v.p("/customers")), vec!["note", "other"]);
    for p in victim.keys().take(50) {
        assert!(fs::symlink_metadata(v.p(p)).is_err(), "{p} still there");
    }
    v.umount();
}

#[test]
fn shred_a_file_refusals_and_twice() {
    let v = TestVolume::new("shred-refuse");
    v.mount();
    fs::create_dir(v.p("/d")).unwrap();
    fs::write(v.p("/d/secret"), b"destroy me").unwrap();
    fs::write(v.p("/d/keep"), b"keep me").unwrap();
    let long = "L".repeat(200);
    fs::write(v.p(&format!("/d/{long}")), b"long name").unwrap();
    // Mounted: refused, nothing touched.
    shred(&v, Some("/d/secret"), &[]).expect_code(exit::MOUNT_FAILED, "shred while mounted");
    v.umount();
    let out = shred(&v, Some("/"), &[]);
    out.expect_code(exit::USAGE, "shred of the root");
    assert!(out.stderr.contains("dekfs destroy"), "{}", out.stderr);
    shred(&v, Some("d/.."), &[]).expect_code(exit::USAGE, "root by ..");
    let out = shred(&v, Some("/d/../../etc"), &[]);
    out.expect_code(exit::USAGE, "outside");
    assert!(out.stderr.contains("outside the volume"), "{}", out.stderr);
    shred(&v, Some("/nope"), &[]).expect_code(exit::OTHER, "missing path");
    let before = list_tree(&v.cipher);
    shred(&v, Some("/d/secret"), &[]).expect_code(exit::OK, "shred a file");
    let after = list_tree(&v.cipher);
    assert_eq!(
        after.len(),
        before.len() - 1,
        "exactly the file's backing entry went"
    );
    let out = shred(&v, Some("/d/secret"), &[]);
    out.expect_code(exit::OTHER, "second shred");
    assert!(out.stderr.contains("no such file"), "{}", out.stderr);
    assert_eq!(
        list_tree(&v.cipher),
        after,
        "the second shred touched nothing"
    );
    shred(&v, Some(&format!("/d/{long}")), &["--verify"]).expect_code(exit::OK, "long name");
    assert_eq!(
        list_tree(&v.cipher).len(),
        after.len() - 2,
        "entry and its record"
    );
    v.assert_fsck_clean("after shreds");
    v.mount();
    assert_eq!(dir_names(&v.p("/d")), vec!["keep"]);
    assert_eq!(fs::read(v.p("/d/keep")).unwrap(), b"keep me");
    v.umount();
}

#[test]
fn the_final_check_finds_a_stray_copy_of_a_destroyed_key() {
    let v = TestVolume::new("shred-stray");
    v.mount();
    fs::create_dir(v.p("/d")).unwrap();
    fs::write(v.p("/d/f"), b"secret").unwrap();
    v.umount();
    // A crashed config writer's temp file that happens to hold the file's
    // header (any stray copy of a wrapped key would do).
    let backing_dir = fs::read_dir(&v.cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let header = fs::read_dir(&backing_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().contains('.'))
        .unwrap();
    let stray = v.cipher.join("dekfs.conf.tmp.deadbeefdeadbeef");
    fs::write(&stray, &fs::read(&header).unwrap()[..HEADER_LEN as usize]).unwrap();
    let out = shred(&v, Some("/d"), &[]);
    out.expect_code(exit::CORRUPT, "leftover found");
    assert!(
        out.stdout
            .contains("leftover: dekfs.conf.tmp.deadbeefdeadbeef: carries a destroyed id")
            && out
                .stdout
                .contains("holds a destroyed wrapped key at offset 80"),
        "{}",
        out.stdout
    );
    assert!(v.cipher.join("dekfs.shred").exists(), "journal kept");
    fs::remove_file(&stray).unwrap();
    let out = shred(&v, None, &[]);
    out.expect_code(exit::OK, "rerun after removing the stray copy");
    assert!(out.stdout.contains(": clean"), "{}", out.stdout);
    assert!(!v.cipher.join("dekfs.shred").exists());
}

/// `--verify` extends the byte scan into file contents; the default check
/// covers headers and every non-entry file.
#[test]
fn verify_scans_contents_too() {
    let v = TestVolume::new("shred-verify");
    v.mount();
    fs::create_dir(v.p("/d")).unwrap();
    fs::write(v.p("/d/f"), b"secret").unwrap();
    fs::write(v.p("/other"), vec![7u8; 10_000]).unwrap();
    v.umount();
    let entries = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().contains('.'))
            .collect()
    };
    let root = entries(&v.cipher);
    let d = root.iter().find(|p| p.is_dir()).unwrap();
    let other = root.iter().find(|p| p.is_file()).unwrap();
    let header = fs::read(&entries(d)[0]).unwrap();
    // Plant the victim's header inside the other file's ciphertext (that
    // file is damaged by it; what matters is whether the scan sees it).
    let mut o = fs::read(other).unwrap();
    o[5000..5000 + HEADER_LEN as usize].copy_from_slice(&header[..HEADER_LEN as usize]);
    fs::write(other, &o).unwrap();
    let c = v.cipher.display().to_string();
    let pf = v.passfile.display().to_string();
    // Default: headers and metadata only, so the planted copy is not seen.
    let out = dekfs(["shred", &c, "/d", "--passfile", &pf, "--yes"]);
    out.expect_code(exit::OK, "default check");
    assert!(out.stdout.contains(": clean"), "{}", out.stdout);
    // The same plant in a fresh victim, found with --verify.
    v.mount();
    fs::create_dir(v.p("/e")).unwrap();
    fs::write(v.p("/e/g"), b"secret too").unwrap();
    v.umount();
    let e = entries(&v.cipher).into_iter().find(|p| p.is_dir()).unwrap();
    let header = fs::read(&entries(&e)[0]).unwrap();
    let mut o = fs::read(other).unwrap();
    o[6000..6000 + HEADER_LEN as usize].copy_from_slice(&header[..HEADER_LEN as usize]);
    fs::write(other, &o).unwrap();
    let out = dekfs(["shred", &c, "/e", "--passfile", &pf, "--yes", "--verify"]);
    out.expect_code(exit::CORRUPT, "--verify finds the planted key");
    assert!(
        out.stdout
            .contains("holds a destroyed wrapped key at offset 6080"),
        "{}",
        out.stdout
    );
}

#[test]
fn shred_asks_unless_yes() {
    let v = TestVolume::new("shred-ask");
    v.mount();
    fs::write(v.p("/f"), b"x").unwrap();
    v.umount();
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let out = dekfs_stdin(["shred", &c, "/f", "--passfile", &pf], b"no\n");
    out.expect_code(exit::OTHER, "not confirmed");
    assert!(
        out.stdout.contains("will destroy /f (file)"),
        "{}",
        out.stdout
    );
    v.mount();
    assert_eq!(fs::read(v.p("/f")).unwrap(), b"x");
    v.umount();
    dekfs_stdin(["shred", &c, "/f", "--passfile", &pf], b"yes\n")
        .expect_code(exit::OK, "confirmed");
}

#[test]
fn destroy_leaves_nothing_that_unlocks() {
    let v = TestVolume::new("destroy");
    v.mount();
    fs::write(v.p("/f"), b"x").unwrap();
    v.umount();
    let c = v.cipher.display().to_string();
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    // A crashed config writer's temp copy holds the KEK too.
    fs::write(v.cipher.join("dekfs.conf.tmp.0011223344556677"), &conf).unwrap();
    let out = dekfs_stdin(["destroy", &c], b"destroy\nwrong\n");
    out.expect_code(exit::OTHER, "second confirmation wrong");
    assert!(v.cipher.join(CONF).exists());
    let out = dekfs(["destroy", &c, "--yes", "--yes-really"]);
    out.expect_code(exit::OK, "destroy");
    assert!(out.stdout.contains("none found"), "{}", out.stdout);
    assert!(!v.cipher.join(CONF).exists());
    assert!(!v.cipher.join("dekfs.conf.tmp.0011223344556677").exists());
    v.fsck()
        .expect_code(exit::NOT_A_VOLUME, "fsck after destroy");
    let rk = v.recovery_key.clone().unwrap();
    let rkf = v.dir.path().join("rk");
    fs::write(&rkf, rk).unwrap();
    dekfs(["fsck", &c, "--recovery-key-file", rkf.to_str().unwrap()])
        .expect_code(exit::NOT_A_VOLUME, "recovery key after destroy");
    // A window of the old config's key material appears nowhere.
    let needle = &conf[conf.len() - 96..conf.len() - 32];
    let mut files = Vec::new();
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out)
            } else {
                out.push(e.path())
            }
        }
    }
    walk(&v.cipher, &mut files);
    for f in files {
        let b = fs::read(&f).unwrap();
        assert!(
            !b.windows(needle.len()).any(|w| w == needle),
            "{}",
            f.display()
        );
    }
}

/// Fills a volume, shreds the tree, prints the time the key destruction
/// took (every slot overwritten and synced, before any removal).
fn perf(v: &TestVolume, what: &str, files: usize, dirs: usize) {
    v.mount();
    fill(v, "/big", dirs, files, 7);
    v.umount();
    let out = shred(v, Some("/big"), &[]);
    out.expect_code(exit::OK, "shred");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("destroyed "))
        .expect("timing line")
        .to_owned();
    println!("PERF {what} {files} files in {dirs} dirs: {line}");
    assert!(
        line.contains(&format!("destroyed {} key objects", files + dirs + 1)),
        "{line}"
    );
}

#[test]
fn perf_destroy_every_key_slot_on_tmpfs_and_disk() {
    if let Err(why) = fuse_available() {
        println!("SKIPPED ({why})");
        return;
    }
    let files = env_or("DEKFS_SHRED_PERF_FILES", 2000);
    let dirs = env_or("DEKFS_SHRED_PERF_DIRS", 100);
    perf(
        &TestVolume::on_tmpfs("shred-perf", "1g"),
        "tmpfs",
        files,
        dirs,
    );
    perf(&TestVolume::new("shred-perf-disk"), "disk", files, dirs);
}
