//! Integrity: one flipped bit in a file header, a content block or an
//! encrypted file name is detected after remount: EIO on that file (never
//! wrong bytes), one log line with "integrity" naming it, and every other
//! file of the volume still reads correctly.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;

struct Setup {
    v: TestVolume,
    /// plaintext rel path -> content, for every file but the victim
    others: BTreeMap<String, Vec<u8>>,
    victim: &'static str,
    victim_data: Vec<u8>,
    victim_backing: PathBuf,
}

const VICTIM: &str = "/sub/victim.bin";

fn setup(name: &str) -> Setup {
    let v = TestVolume::new(name);
    v.mount();
    fs::create_dir(v.p("sub")).unwrap();
    fs::create_dir(v.p("sub/deeper")).unwrap();
    fs::create_dir(v.p("elsewhere")).unwrap();
    let mut others = BTreeMap::new();
    for (i, (rel, len)) in [
        ("/top.txt", 100usize),
        ("/sub/neighbour.bin", 3 * 4096 + 10),
        ("/sub/deeper/x", 5000),
        ("/elsewhere/y", 4096),
        ("/sub/empty", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let data = random_bytes(500 + i as u64, len);
        v.create_file(rel, &data);
        others.insert(rel.to_string(), data);
    }
    let victim_data = random_bytes(42, 3 * 4096 + 100); // 4 blocks, last partial
    let victim_backing = v.create_file(VICTIM, &victim_data);
    v.umount();
    assert_backing_size(&victim_backing, victim_data.len() as u64);
    Setup {
        v,
        others,
        victim: VICTIM,
        victim_data,
        victim_backing,
    }
}

fn check_others(s: &Setup) {
    for (rel, data) in &s.others {
        let got =
            read_file(&s.v.p(rel)).unwrap_or_else(|e| panic!("{rel} must stay readable: {e}"));
        assert!(got == *data, "{rel}: content changed");
    }
    // and the volume is still writable
    fs::write(s.v.p("/sub/after-tamper"), b"still works").unwrap();
    assert_eq!(
        read_file(&s.v.p("/sub/after-tamper")).unwrap(),
        b"still works"
    );
}

/// No integrity line may name a file that was not tampered with.
fn check_no_false_alarms(s: &Setup, tampered_marker: &str) {
    for line in s.v.log().lines().filter(|l| l.contains("integrity")) {
        for rel in s.others.keys() {
            assert!(
                !line.contains(rel.as_str()) || line.contains(tampered_marker),
                "integrity error logged for an untouched file {rel}: {line}"
            );
        }
    }
}

#[track_caller]
fn expect_eio_on_read(path: &Path) {
    match read_file(path) {
        Ok(bytes) => panic!(
            "reading tampered {} returned {} bytes instead of EIO",
            path.display(),
            bytes.len()
        ),
        Err(e) => assert_eq!(errno(&e), libc::EIO, "tampered {}: {e}", path.display()),
    }
}

#[test]
fn flipped_bit_in_header() {
    require_fuse!();
    let s = setup("tamper-header");
    // a byte inside the wrapped-DEK / file-id region of the 216-byte header
    flip_bit(&s.victim_backing, 100, 3);
    s.v.mount();
    expect_eio_on_read(&s.v.p(s.victim));
    let lines = s.v.wait_log_lines(&["integrity", s.victim]);
    assert!(
        !lines.is_empty(),
        "no log line with 'integrity' and {}; log:\n{}",
        s.victim,
        s.v.log()
    );
    check_others(&s);
    check_no_false_alarms(&s, s.victim);
}

#[test]
fn flipped_bit_in_header_magic_and_last_byte() {
    require_fuse!();
    // first and last header byte, on two victims in one volume
    let s = setup("tamper-header-edges");
    s.v.mount();
    let data2 = random_bytes(43, 5000);
    let b2 = s.v.create_file("/sub/victim2", &data2);
    s.v.umount();
    flip_bit(&s.victim_backing, 0, 0);
    flip_bit(&b2, HEADER_LEN - 1, 7);
    s.v.mount();
    expect_eio_on_read(&s.v.p(s.victim));
    expect_eio_on_read(&s.v.p("/sub/victim2"));
    assert!(
        !s.v.wait_log_lines(&["integrity", s.victim]).is_empty(),
        "log:\n{}",
        s.v.log()
    );
    assert!(
        !s.v.wait_log_lines(&["integrity", "/sub/victim2"])
            .is_empty(),
        "log:\n{}",
        s.v.log()
    );
    check_others(&s);
}

#[test]
fn flipped_bit_in_content_block() {
    require_fuse!();
    let s = setup("tamper-block");
    // block 1 (second block), inside its ciphertext
    let off = HEADER_LEN + BLOCK_CIPHER + 12 + 777;
    flip_bit(&s.victim_backing, off, 5);
    s.v.mount();
    // block 0 alone is intact and may be read (never wrong bytes though)
    {
        let f = fs::File::open(s.v.p(s.victim));
        if let Ok(f) = f {
            let mut b = vec![0u8; 4096];
            if f.read_exact_at(&mut b, 0).is_ok() {
                assert_eq!(b, s.victim_data[..4096], "intact block 0 must be correct");
            }
            let mut b1 = vec![0u8; 4096];
            match f.read_exact_at(&mut b1, 4096) {
                Ok(()) => panic!("tampered block 1 was read without error"),
                Err(e) => assert_eq!(errno(&e), libc::EIO, "tampered block: {e}"),
            }
        }
    }
    expect_eio_on_read(&s.v.p(s.victim));
    let lines = s.v.wait_log_lines(&["integrity", s.victim]);
    assert!(
        !lines.is_empty(),
        "no integrity log line for {}; log:\n{}",
        s.victim,
        s.v.log()
    );
    check_others(&s);
    check_no_false_alarms(&s, s.victim);
}

#[test]
fn flipped_bit_in_last_partial_block_and_tag() {
    require_fuse!();
    let s = setup("tamper-tag");
    // the last byte of the file = last byte of the GCM tag of the last block
    let len = fs::metadata(&s.victim_backing).unwrap().len();
    flip_bit(&s.victim_backing, len - 1, 0);
    s.v.mount();
    expect_eio_on_read(&s.v.p(s.victim));
    assert!(
        !s.v.wait_log_lines(&["integrity", s.victim]).is_empty(),
        "log:\n{}",
        s.v.log()
    );
    check_others(&s);
}

#[test]
fn flipped_bit_in_encrypted_name() {
    require_fuse!();
    let s = setup("tamper-name");
    let old_name = s
        .victim_backing
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        !old_name.starts_with("dekfs."),
        "short name expected, got {old_name}"
    );
    // change the first base64url character to its neighbour: flips the
    // lowest bit of the first 6-bit group = a bit of the first cipher byte
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut nb = old_name.clone().into_bytes();
    let idx = ALPHABET
        .iter()
        .position(|c| *c == nb[0])
        .expect("base64url name");
    nb[0] = ALPHABET[idx ^ 1];
    let new_name = String::from_utf8(nb).unwrap();
    let new_backing = s.victim_backing.with_file_name(&new_name);
    fs::rename(&s.victim_backing, &new_backing).unwrap();
    s.v.mount();

    let names = dir_names(&s.v.p("sub"));
    let unreadable: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(".dekfs-unreadable-"))
        .collect();
    assert_eq!(
        unreadable.len(),
        1,
        "exactly one .dekfs-unreadable-* entry expected in /sub, got {names:?}"
    );
    let u = unreadable[0];
    let hexpart = &u[".dekfs-unreadable-".len()..];
    assert!(
        hexpart.len() == 16 && hexpart.bytes().all(|b| b.is_ascii_hexdigit()),
        "recovery entry must be .dekfs-unreadable-<16 hex>: {u}"
    );
    assert!(
        !names.contains(&"victim.bin".to_string()),
        "tampered name still decrypts: {names:?}"
    );
    // the rest of /sub is listed normally
    for want in ["deeper", "empty", "neighbour.bin"] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(names.len(), 4, "{names:?}");
    expect_eio_on_read(&s.v.p(&format!("sub/{u}")));
    let lines = s.v.wait_log_lines(&["integrity", &new_name]);
    assert!(
        !lines.is_empty(),
        "no log line with 'integrity' and the cipher name {new_name}; log:\n{}",
        s.v.log()
    );
    check_others(&s);
    // stable across remounts
    s.v.umount();
    s.v.mount();
    assert!(dir_names(&s.v.p("sub")).contains(u));
    // the original content is not reachable under any name
    for n in dir_names(&s.v.p("sub")) {
        let p = s.v.p(&format!("sub/{n}"));
        if p.is_file() {
            if let Ok(b) = read_file(&p) {
                assert!(b != s.victim_data, "tampered-name file readable as {n}");
            }
        }
    }
    check_others(&s);
    // the recovery entry can be deleted, which removes the backing file
    fs::remove_file(s.v.p(&format!("sub/{u}"))).unwrap();
    assert!(!dir_names(&s.v.p("sub"))
        .iter()
        .any(|n| n.starts_with(".dekfs-")));
    s.v.umount();
    assert!(
        !new_backing.exists(),
        "backing file of the deleted recovery entry remains"
    );
}

#[test]
fn swapped_blocks_and_header_swap_detected() {
    require_fuse!();
    let s = setup("tamper-swap");
    // swap block 0 and block 1 of the victim (same length, full blocks)
    let raw = fs::read(&s.victim_backing).unwrap();
    let h = HEADER_LEN as usize;
    let b = BLOCK_CIPHER as usize;
    let mut swapped = raw.clone();
    swapped[h..h + b].copy_from_slice(&raw[h + b..h + 2 * b]);
    swapped[h + b..h + 2 * b].copy_from_slice(&raw[h..h + b]);
    fs::write(&s.victim_backing, &swapped).unwrap();
    s.v.mount();
    expect_eio_on_read(&s.v.p(s.victim));
    assert!(
        !s.v.wait_log_lines(&["integrity", s.victim]).is_empty(),
        "log:\n{}",
        s.v.log()
    );
    check_others(&s);
}

/// "the daemon logs ONE line": a single read(2) loop over a tampered file
/// (which the kernel may split into readahead + retried page reads) must
/// produce exactly one integrity line for it, not one per FUSE request.
#[test]
fn integrity_error_logged_once_per_file() {
    require_fuse!();
    let s = setup("tamper-once");
    flip_bit(&s.victim_backing, HEADER_LEN + BLOCK_CIPHER + 12 + 5, 1);
    s.v.mount();
    expect_eio_on_read(&s.v.p(s.victim));
    assert!(!s.v.wait_log_lines(&["integrity", s.victim]).is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let n =
        s.v.log()
            .lines()
            .filter(|l| l.contains("integrity") && l.contains(s.victim))
            .count();
    assert_eq!(
        n,
        1,
        "one failed read of {} logged {n} integrity lines:\n{}",
        s.victim,
        s.v.log()
    );
}

/// A flipped bit in a directory's key metadata (dekfs.dir): the directory
/// and everything in it give EIO, the log names the directory, files
/// elsewhere still read correctly.
#[test]
fn flipped_bit_in_directory_key_metadata() {
    require_fuse!();
    let s = setup("tamper-dirmeta");
    let meta = s.victim_backing.parent().unwrap().join(DIR_META);
    flip_bit(&meta, DIR_META_LEN / 2, 4);
    s.v.mount();
    let e = fs::read_dir(s.v.p("sub"))
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        .expect_err("listing a directory with tampered key metadata must fail");
    assert_eq!(errno(&e), libc::EIO, "readdir of /sub: {e}");
    expect_eio_on_read(&s.v.p(s.victim));
    assert!(
        !s.v.wait_log_lines(&["integrity", "/sub"]).is_empty(),
        "no integrity line naming /sub; log:\n{}",
        s.v.log()
    );
    for (rel, data) in s.others.iter().filter(|(r, _)| !r.starts_with("/sub/")) {
        assert!(read_file(&s.v.p(rel)).unwrap() == *data, "{rel}");
    }
}

/// A whole backing file copied into another directory (under another
/// file's cipher name there) does not decrypt: file keys are bound to the
/// parent directory's key.
#[test]
fn whole_file_moved_to_other_directory_detected() {
    require_fuse!();
    let s = setup("tamper-move");
    s.v.mount();
    let target = s.v.create_file("/elsewhere/target", b"target content");
    s.v.umount();
    fs::copy(&s.victim_backing, &target).unwrap();
    s.v.mount();
    expect_eio_on_read(&s.v.p("/elsewhere/target"));
    assert!(
        !s.v.wait_log_lines(&["integrity", "/elsewhere/target"])
            .is_empty(),
        "log:\n{}",
        s.v.log()
    );
    assert!(read_file(&s.v.p(s.victim)).unwrap() == s.victim_data);
    check_others(&s);
}

/// A flipped bit in the stored name of a long-name entry
/// (`dekfs.ln.<hash>.name`): the entry shows as a recovery entry, opening
/// it gives EIO, ONE integrity log line names the cipher entry, and the
/// directory's other entries are fine.
#[test]
fn flipped_bit_in_long_name_file() {
    require_fuse!();
    let s = setup("tamper-longname");
    s.v.mount();
    let long = "L".repeat(250);
    let backing =
        s.v.create_file(&format!("/sub/{long}"), b"long-named content");
    s.v.umount();
    let bname = backing.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        bname.starts_with("dekfs.ln."),
        "long-name form expected: {bname}"
    );
    let name_file = backing.with_file_name(format!("{bname}.name"));
    flip_bit(&name_file, 5, 0);
    s.v.mount();
    let names = dir_names(&s.v.p("sub"));
    let unreadable: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(".dekfs-unreadable-"))
        .collect();
    assert_eq!(unreadable.len(), 1, "{names:?}");
    assert!(!names.contains(&long));
    expect_eio_on_read(&s.v.p(&format!("sub/{}", unreadable[0])));
    let lines = s.v.wait_log_lines(&["integrity", &bname]);
    assert!(
        !lines.is_empty(),
        "no integrity line naming {bname}; log:\n{}",
        s.v.log()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let n =
        s.v.log()
            .lines()
            .filter(|l| l.contains("integrity") && l.contains(&bname))
            .count();
    assert_eq!(
        n,
        1,
        "one listing logged {n} lines for {bname}:\n{}",
        s.v.log()
    );
    check_others(&s);
}
