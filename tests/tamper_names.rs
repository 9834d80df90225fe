//! Tamper battery, names and directory metadata: encrypted names swapped
//! between directories, a long-name record swapped, directory metadata
//! copied from a sibling and from a directory under another parent. Each
//! must fail closed (no plaintext name or content reachable, EIO where the
//! entry is read, a log line naming the directory and the class) with the
//! rest of the volume working. Must not cover content or config tampering.

mod common;
mod tamper_kit;

use common::*;
use std::fs;
use tamper_kit::*;

fn unreadable(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| n.starts_with(".dekfs-unreadable-"))
        .collect()
}

#[test]
fn names_swapped_between_directories() {
    require_fuse!();
    let b = bench("names-swap");
    fs::create_dir(b.v.p("d1")).unwrap();
    fs::create_dir(b.v.p("d2")).unwrap();
    b.put("/d1/one", b"first");
    b.put("/d2/two", b"second");
    let (b1, b2) = (b.backing("/d1/one"), b.backing("/d2/two"));
    b.v.umount();
    // each entry keeps its content and directory, but takes the other
    // directory's encrypted name
    let (n1, n2) = (b1.file_name().unwrap(), b2.file_name().unwrap());
    fs::rename(&b1, b1.with_file_name(n2)).unwrap();
    fs::rename(&b2, b2.with_file_name(n1)).unwrap();
    b.v.mount();
    for (dir, gone) in [("/d1", "one"), ("/d2", "two")] {
        let names = dir_names(&b.v.p(dir));
        assert!(!names.contains(&gone.to_string()), "{dir}: {names:?}");
        let u = unreadable(&names);
        assert_eq!(u.len(), 1, "{dir}: one recovery entry expected: {names:?}");
        expect_eio(&b.v.p(&format!("{dir}/{}", u[0])));
        let lines =
            b.v.wait_log_lines(&["integrity error", &format!("{dir}:"), "name"]);
        assert!(
            !lines.is_empty(),
            "no name integrity line for {dir}:\n{}",
            b.v.log()
        );
    }
    b.check_rest_works();
}

#[test]
fn long_name_records_swapped() {
    require_fuse!();
    let b = bench("names-long");
    let (l1, l2) = ("L".repeat(200), "M".repeat(230));
    b.put(&format!("/a/{l1}"), b"long one");
    b.put(&format!("/a/{l2}"), b"long two");
    let adir = b.backing("/a");
    b.v.umount();
    let recs: Vec<std::path::PathBuf> = fs::read_dir(&adir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".name"))
        .collect();
    assert_eq!(recs.len(), 2, "two long-name records expected: {recs:?}");
    let (r0, r1) = (fs::read(&recs[0]).unwrap(), fs::read(&recs[1]).unwrap());
    fs::write(&recs[0], &r1).unwrap();
    fs::write(&recs[1], &r0).unwrap();
    b.v.mount();
    let names = dir_names(&b.v.p("/a"));
    assert!(!names.contains(&l1) && !names.contains(&l2), "{names:?}");
    assert_eq!(unreadable(&names).len(), 2, "{names:?}");
    for u in unreadable(&names) {
        expect_eio(&b.v.p(&format!("/a/{u}")));
    }
    assert!(
        !b.v.wait_log_lines(&["integrity error", "/a:", "name"])
            .is_empty(),
        "{}",
        b.v.log()
    );
    b.check_rest_works();
}

#[test]
fn dir_metadata_copied_from_sibling_directory() {
    require_fuse!();
    let b = bench("dirmeta-sibling");
    fs::create_dir(b.v.p("d1")).unwrap();
    fs::create_dir(b.v.p("d2")).unwrap();
    b.put("/d1/secret", b"d1 data");
    b.put("/d2/other", b"d2 data");
    let (m1, m2) = (
        b.backing("/d1").join(DIR_META),
        b.backing("/d2").join(DIR_META),
    );
    b.v.umount();
    fs::copy(&m2, &m1).unwrap();
    b.v.mount();
    // The copied metadata is a valid child-of-root record, so /d1 opens with
    // /d2's key; /d1's own names then fail to authenticate under it.
    let names = dir_names(&b.v.p("/d1"));
    assert!(!names.contains(&"secret".to_string()), "{names:?}");
    assert_eq!(unreadable(&names).len(), 1, "{names:?}");
    expect_eio(&b.v.p(&format!("/d1/{}", unreadable(&names)[0])));
    assert!(
        !b.v.wait_log_lines(&["integrity error", "/d1:", "name"])
            .is_empty(),
        "{}",
        b.v.log()
    );
    assert_eq!(read_file(&b.v.p("/d2/other")).unwrap(), b"d2 data");
    b.check_rest_works();
}

#[test]
fn dir_metadata_copied_from_directory_under_another_parent() {
    require_fuse!();
    let b = bench("dirmeta-parent");
    fs::create_dir(b.v.p("d1")).unwrap();
    fs::create_dir(b.v.p("d1/sub")).unwrap();
    fs::create_dir(b.v.p("d2")).unwrap();
    b.put("/d1/sub/secret", b"sub data");
    let (msub, m2) = (
        b.backing("/d1/sub").join(DIR_META),
        b.backing("/d2").join(DIR_META),
    );
    b.v.umount();
    fs::copy(&m2, &msub).unwrap();
    b.v.mount();
    match fs::read_dir(b.v.p("/d1/sub")).and_then(|mut rd| rd.next().transpose()) {
        Ok(e) => panic!("/d1/sub with foreign metadata listed: {e:?}"),
        Err(e) => assert_eq!(errno(&e), libc::EIO, "{e}"),
    }
    let lines =
        b.v.wait_log_lines(&["integrity error", "/d1/sub", "directory key"]);
    assert!(!lines.is_empty(), "{}", b.v.log());
    b.check_rest_works();
}
