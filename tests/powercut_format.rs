//! The paged layout through a real mount, and what fsck says after a power cut: a volume made
//! by `dekfs init` is paged; the state a cut leaves after an append into a fsynced partial
//! block (new size, old page) still reads the fsynced bytes through the mount; `fsck` calls
//! that a power cut but a bad tag in an old block not (text and --json); `fsck --salvage OUT`
//! copies every readable byte and names the unreadable ranges; `fsck --repair` cuts the torn
//! log back to its fsynced records. The loop-device harness lives elsewhere; these tests build
//! the torn states directly.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

const PAGE: usize = 4096;

fn fsck(v: &TestVolume, extra: &[&str]) -> Out {
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let mut a = vec!["fsck", c.as_str(), "--passfile", pf.as_str()];
    a.extend(extra);
    dekfs(&a)
}

fn backing_of(v: &TestVolume, rel: &str) -> std::path::PathBuf {
    let ino = fs::symlink_metadata(v.p(rel)).unwrap().ino();
    find_ino(&v.cipher, ino).unwrap_or_else(|| panic!("backing of {rel}"))
}

fn find_ino(root: &Path, ino: u64) -> Option<std::path::PathBuf> {
    for e in fs::read_dir(root).ok()?.flatten() {
        let md = fs::symlink_metadata(e.path()).ok()?;
        if md.ino() == ino {
            return Some(e.path());
        }
        if md.is_dir() {
            if let Some(p) = find_ino(&e.path(), ino) {
                return Some(p);
            }
        }
    }
    None
}

/// Sets a backing file's mtime `secs` into the past (an "old" file for fsck's verdict).
fn age(p: &Path, secs: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = rustix::fs::Timespec {
        tv_sec: now - secs,
        tv_nsec: 0,
    };
    let ts = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::empty()).unwrap();
}

fn append_sync(path: &Path, data: &[u8]) {
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn paged_volume_torn_append_reads_fsynced_bytes_and_fsck_salvages() {
    require_fuse!();
    let v = TestVolume::with_layout_args("pc-format", &[]);
    v.mount();
    fs::create_dir(v.p("d")).unwrap();
    // A log: 30 records of 100 bytes, fsynced, then one more record.
    let records: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    fs::write(v.p("d/log"), b"").unwrap();
    for r in records.chunks(100) {
        append_sync(&v.p("d/log"), r);
    }
    let old_tail = fs::read(backing_of(&v, "d/log")).unwrap();
    assert_eq!(
        old_tail.len(),
        2 * PAGE + 3000,
        "header page, one data page, size tail"
    );
    append_sync(&v.p("d/log"), &[0xEE; 2000]);
    // An old file whose middle block is then modified.
    let old: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
    fs::write(v.p("old"), &old).unwrap();
    let (log_b, old_b) = (backing_of(&v, "d/log"), backing_of(&v, "old"));
    assert_eq!(fs::metadata(&log_b).unwrap().len() as usize, 3 * PAGE + 936);
    v.umount();

    // The cut: the size grew to the new page, but the rewritten page 1 kept its old bytes.
    let f = fs::OpenOptions::new().write(true).open(&log_b).unwrap();
    f.write_all_at(&old_tail[PAGE..2 * PAGE], PAGE as u64)
        .unwrap();
    drop(f);
    // Tampering of an old file: one byte of block 2's ciphertext.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&old_b)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 3 * PAGE as u64 + 100).unwrap();
    f.write_all_at(&[b[0] ^ 1], 3 * PAGE as u64 + 100).unwrap();
    drop(f);
    age(&old_b, 3600);

    v.mount();
    let got = fs::read(v.p("d/log")).unwrap();
    assert_eq!(
        got, records,
        "the fsynced records read through the mount, nothing else"
    );
    v.umount();

    let out = fsck(&v, &[]);
    assert_eq!(out.code, Some(14), "{}{}", out.stdout, out.stderr);
    let line = |needle: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {}", out.stdout))
            .to_string()
    };
    assert!(line("corrupt: /d/log").contains("[explained by a power cut"));
    assert!(line("corrupt: /old").contains("[NOT explained by a power cut"));
    assert!(out
        .stdout
        .contains("2 problem(s), 1 explained by a power cut, 1 not"));

    let scratch = scratch_dir("dekfs-salvage-");
    let dest = scratch.path().join("out");
    let ds = dest.display().to_string();
    let out = fsck(&v, &["--salvage", &ds, "--json"]);
    assert_eq!(out.code, Some(14), "{}{}", out.stdout, out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(j["power_cut_problems"], 1);
    assert_eq!(j["other_problems"], 1);
    let probs = j["problems"].as_array().unwrap();
    let by = |p: &str| probs.iter().find(|x| x["path"] == p).unwrap().clone();
    assert_eq!(by("/d/log")["power_cut"], true);
    assert_eq!(by("/old")["power_cut"], false);
    let un = j["unreadable"].as_array().unwrap();
    let range = |p: &str| {
        let u = un.iter().find(|x| x["path"] == p).unwrap();
        (u["start"].as_u64().unwrap(), u["end"].as_u64().unwrap())
    };
    assert_eq!(range("/d/log"), (3000, 4064));
    assert_eq!(range("/old"), (2 * 4064, 3 * 4064));
    // Salvaged: every readable byte in place, the unreadable ranges as zeros.
    let log = fs::read(dest.join("d/log")).unwrap();
    assert_eq!(&log[..3000], &records[..]);
    assert!(log[3000..4064].iter().all(|&b| b == 0));
    assert_eq!(
        &log[4064..],
        &[0xEE; 936][..],
        "the new page itself authenticates"
    );
    let o = fs::read(dest.join("old")).unwrap();
    assert_eq!(o.len(), old.len());
    assert_eq!(&o[..8128], &old[..8128]);
    assert!(o[8128..12_192].iter().all(|&b| b == 0));
    assert_eq!(&o[12_192..], &old[12_192..]);
    assert_eq!(
        fs::metadata(dest.join("old")).unwrap().mode() & 0o777,
        0o600
    );
    // OUT must be new or empty: a second salvage into it is refused before anything is written.
    let again = fsck(&v, &["--salvage", &ds]);
    assert!(!again.ok());

    // --repair cuts the torn log back to its fsynced records and quarantines the tampered file.
    let out = fsck(&v, &["--repair"]);
    assert!(
        out.stdout.contains("repaired: cut") && out.stdout.contains("quarantined:"),
        "{}",
        out.stdout
    );
    assert_eq!(
        fs::metadata(&log_b).unwrap().len() as usize,
        2 * PAGE + 3000
    );
    let out = fsck(&v, &[]);
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    v.mount();
    assert_eq!(fs::read(v.p("d/log")).unwrap(), records);
    append_sync(&v.p("d/log"), b"after the repair");
    let mut want = records.clone();
    want.extend_from_slice(b"after the repair");
    assert_eq!(fs::read(v.p("d/log")).unwrap(), want);
    v.umount();
}

#[test]
fn fsck_calls_an_empty_directory_key_of_a_recent_directory_a_power_cut() {
    require_fuse!();
    let v = TestVolume::with_layout_args("pc-dirkey", &[]);
    v.mount();
    fs::create_dir(v.p("new")).unwrap();
    fs::write(v.p("new/f"), b"x").unwrap();
    fs::create_dir(v.p("older")).unwrap();
    fs::write(v.p("older/f"), b"y").unwrap();
    let (n, o) = (backing_of(&v, "new"), backing_of(&v, "older"));
    v.umount();
    fs::write(n.join("dekfs.dir"), b"").unwrap();
    fs::write(o.join("dekfs.dir"), b"").unwrap();
    age(&o, 3600);
    age(&o.join("dekfs.dir"), 3600);
    let out = fsck(&v, &["--json"]);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let probs = j["problems"].as_array().unwrap();
    let by = |p: &str| probs.iter().find(|x| x["path"] == p).unwrap().clone();
    assert_eq!(by("/new")["power_cut"], true, "{}", out.stdout);
    assert_eq!(by("/older")["power_cut"], false, "{}", out.stdout);
}
