//! `dekfs fsck`: clean on a healthy volume (and on the frozen example
//! volume), reports each corrupt object by plaintext path with its class,
//! writes nothing without --repair, and --repair quarantines so the volume
//! is clean afterwards. Must not test the daemon.

mod common;
mod tamper_kit;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use tamper_kit::*;

fn fsck(v: &TestVolume, extra: &[&str]) -> Out {
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let mut a = vec!["fsck", c.as_str(), "--passfile", pf.as_str()];
    a.extend(extra);
    dekfs(&a)
}

/// Every backing path with size, mode, mtime and content hash.
fn snapshot(root: &std::path::Path) -> Vec<String> {
    list_tree(root)
        .into_iter()
        .map(|(p, (is_file, _))| {
            let full = root.join(&p);
            let md = fs::symlink_metadata(&full).unwrap();
            let h = if is_file {
                sha256_file(&full)
            } else {
                String::new()
            };
            format!(
                "{} {} {} {} {} {h}",
                p.display(),
                md.len(),
                md.mode(),
                md.mtime(),
                md.mtime_nsec()
            )
        })
        .collect()
}

#[test]
fn fsck_clean_volume_and_example_volume() {
    let ex =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/example-volume-v1");
    let tmp = scratch_dir("dekfs-fsck-ex-");
    let pf = tmp.path().join("pass");
    fs::write(&pf, "dekfs example volume v1\n").unwrap();
    let out = dekfs([
        "fsck".as_ref(),
        ex.as_os_str(),
        "--passfile".as_ref(),
        pf.as_os_str(),
    ]);
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("0 problem(s)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2 directories, 5 files, 1 symlinks"),
        "{}",
        out.stdout
    );
}

#[test]
fn fsck_reports_by_plaintext_path_writes_nothing_then_repair_quarantines() {
    require_fuse!();
    let b = bench("fsck");
    b.put("/a/hdr", &random_bytes(1, 5000));
    b.put("/a/blk", &random_bytes(2, 9000));
    b.put("/b/cut", &random_bytes(3, 9000));
    b.put("/b/fine", &random_bytes(4, 9000));
    let (h, k, c) = (
        b.backing("/a/hdr"),
        b.backing("/a/blk"),
        b.backing("/b/cut"),
    );
    b.v.umount();
    let out = fsck(&b.v, &[]);
    assert!(
        out.ok() && out.stdout.contains("0 problem(s)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    flip_bit(&h, 50, 1);
    flip_bit(&k, block_off(1) + 100, 2);
    set_len(&c, block_off(1) + 10);
    let before = snapshot(&b.v.cipher);
    let out = fsck(&b.v, &[]);
    out.expect_code(exit::CORRUPT, "fsck of a tampered volume");
    for (path, class) in [
        ("/a/hdr", "header"),
        ("/a/blk", "block 1 failed"),
        ("/b/cut", "impossible ciphertext size"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("corrupt: {path}: ")) && l.contains(class)),
            "fsck must report {path} ({class}):\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("3 problem(s)"), "{}", out.stdout);
    assert_eq!(
        before,
        snapshot(&b.v.cipher),
        "fsck without --repair wrote to the cipher dir"
    );
    let out = fsck(&b.v, &["--repair"]);
    out.expect_code(exit::CORRUPT, "repair still reports what it found");
    assert_eq!(
        out.stdout.matches("quarantined: ").count(),
        3,
        "{}",
        out.stdout
    );
    let out = fsck(&b.v, &[]);
    assert!(out.ok(), "clean after repair: {}{}", out.stdout, out.stderr);
    b.v.mount();
    assert_eq!(dir_names(&b.v.p("/a")), vec!["control-a"]);
    assert_eq!(read_file(&b.v.p("/b/fine")).unwrap(), random_bytes(4, 9000));
    b.check_rest_works();
}

#[test]
fn empty_directory_with_cut_short_key_file_is_a_note_and_is_rekeyed() {
    require_fuse!();
    let v = TestVolume::new("fsck-cut-meta");
    v.mount();
    fs::create_dir(v.p("empty")).unwrap();
    v.umount();
    // What a power cut can leave: mkdir does not fsync the new key file.
    let dirs: Vec<_> = fs::read_dir(&v.cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    fs::write(dirs[0].join("dekfs.dir"), b"").unwrap();
    let out = fsck(&v, &[]);
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("0 problem(s)"), "{}", out.stdout);
    assert!(out.stdout.contains("cut-short metadata"), "{}", out.stdout);
    v.mount();
    fs::write(v.p("empty/f"), b"usable again").unwrap();
    v.umount();
    v.mount();
    assert_eq!(fs::read(v.p("empty/f")).unwrap(), b"usable again");
    v.umount();
    let out = fsck(&v, &[]);
    assert!(
        out.ok() && out.stdout.contains("0 problem(s)"),
        "{}",
        out.stdout
    );
}

/// The long-name records in a backing directory.
fn records(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".name"))
        .collect();
    v.sort();
    v
}

fn expect_reported(out: &Out, path_prefix: &str, class: &str) {
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&format!("corrupt: {path_prefix}")) && l.contains(class)),
        "fsck must report {path_prefix}... ({class}):\n{}",
        out.stdout
    );
}

#[test]
fn orphan_long_name_record_is_reported_and_repair_removes_it() {
    require_fuse!();
    let b = bench("fsck-orphan");
    fs::create_dir(b.v.p("c")).unwrap();
    b.put(&format!("/c/{}", "O".repeat(220)), b"soon an orphan");
    let cdir = b.backing("/c");
    b.v.umount();
    b.v.assert_fsck_clean("before the orphan");
    // What a refused rename used to leave: the record without its entry.
    let rec = records(&cdir).pop().expect("one record");
    let entry = rec.to_string_lossy().trim_end_matches(".name").to_string();
    fs::remove_file(&entry).unwrap();
    let before = snapshot(&b.v.cipher);
    let out = fsck(&b.v, &[]);
    out.expect_code(exit::CORRUPT, "fsck with an orphan record");
    expect_reported(&out, "/c/dekfs.ln.", "orphan long-name record");
    assert!(out.stdout.contains("1 problem(s)"), "{}", out.stdout);
    assert_eq!(before, snapshot(&b.v.cipher), "fsck wrote without --repair");
    let out = fsck(&b.v, &["--repair"]);
    out.expect_code(exit::CORRUPT, "repair still reports what it found");
    assert!(
        out.stdout.contains("removed orphan record: "),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("quarantined: ").count(), 0);
    assert!(!rec.exists(), "the orphan record is still there");
    b.v.assert_fsck_clean("after repair");
    b.v.mount();
    fs::remove_dir(b.v.p("c")).expect("rmdir of the emptied directory");
    b.check_rest_works();
}

#[test]
fn long_entry_without_record_and_short_name_in_long_form_are_refused() {
    require_fuse!();
    let b = bench("fsck-longform");
    let lost = "N".repeat(230);
    b.put(&format!("/a/{lost}"), b"loses its record");
    b.put("/b/dup", b"one name, one entry");
    let (adir, dup) = (b.backing("/a"), b.backing("/b/dup"));
    b.v.umount();
    b.v.assert_fsck_clean("before tampering");
    fs::remove_file(records(&adir).pop().expect("one record")).unwrap();
    // A short name stored in long form, built by hand (dekfs never writes
    // it): a copy of the entry under dekfs.ln.<H> with a record naming it.
    let short = dup.file_name().unwrap().to_str().unwrap().to_string();
    let h = dekfs::crypto::names::long_name_hash(&short);
    let bdir = dup.parent().unwrap();
    fs::copy(&dup, bdir.join(format!("dekfs.ln.{h}"))).unwrap();
    fs::write(bdir.join(format!("dekfs.ln.{h}.name")), &short).unwrap();
    let out = fsck(&b.v, &[]);
    out.expect_code(exit::CORRUPT, "fsck with long-form anomalies");
    expect_reported(&out, "/a/dekfs.ln.", "long-name record missing");
    expect_reported(&out, "/b/dekfs.ln.", "fits the short form");
    assert!(out.stdout.contains("2 problem(s)"), "{}", out.stdout);
    // The daemon refuses it too: one "dup", never two.
    b.v.mount();
    let names = dir_names(&b.v.p("/b"));
    assert_eq!(names.iter().filter(|n| *n == "dup").count(), 1, "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with(".dekfs-unreadable-"))
            .count(),
        1,
        "{names:?}"
    );
    b.v.umount();
    let out = fsck(&b.v, &["--repair"]);
    out.expect_code(exit::CORRUPT, "repair still reports what it found");
    assert_eq!(
        out.stdout.matches("quarantined: ").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(
        !bdir.join(format!("dekfs.ln.{h}.name")).exists(),
        "the record goes with its entry"
    );
    b.v.assert_fsck_clean("after repair");
    b.v.mount();
    assert_eq!(read_file(&b.v.p("/b/dup")).unwrap(), b"one name, one entry");
    assert!(!dir_names(&b.v.p("/a")).contains(&lost));
    b.check_rest_works();
}
