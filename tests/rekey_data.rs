//! DEK renewal through the binary: `dekfs rekey --data` gives every file a
//! new DEK and file_id with its contents (and user xattrs) unchanged, and a
//! pre-renewal copy of a DEK and header opens none of the new ciphertext;
//! killed at each persistence step, every file stays readable (old or new)
//! and a rerun finishes. A mounted file whose counter is forged near the
//! limit is renewed by the daemon and keeps working. Skips only without FUSE.

mod common;
mod rekey_support;

use common::*;
use dekfs::format::{FileHeader, DIR_META_NAME};
use dekfs::secret::SecretBytes;
use dekfs::volume::{self, Credential};
use rekey_support::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const JOURNAL: &str = "dekfs.renew";

/// file_id of every non-empty file header under `cipher`, by backing path.
fn file_ids(cipher: &Path) -> BTreeMap<PathBuf, [u8; 16]> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, [u8; 16]>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                if name != JOURNAL {
                    go(root, &p, out);
                }
            } else if ft.is_file()
                && (name.starts_with("dekfs.ln.") || !name.starts_with("dekfs."))
                && !name.ends_with(".name")
            {
                let b = fs::read(&p).unwrap();
                if b.len() >= 216 {
                    let h = FileHeader::parse(&b[..216]).unwrap();
                    out.insert(p.strip_prefix(root).unwrap().to_path_buf(), h.file_id);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    go(cipher, cipher, &mut out);
    out
}

fn skip() -> bool {
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return true;
    }
    false
}

fn unlocked(v: &TestVolume) -> volume::UnlockedVolume {
    let cred = Credential::Passphrase(SecretBytes::new(v.passphrase.as_bytes().to_vec()));
    volume::unlock(&v.cipher, &cred).expect("unlock")
}

fn backing_of(v: &TestVolume, rel: &str) -> PathBuf {
    let ino = lstat(&v.p(rel)).ino();
    fn find(dir: &Path, ino: u64) -> Option<PathBuf> {
        for e in fs::read_dir(dir).ok()?.flatten() {
            let md = fs::symlink_metadata(e.path()).ok()?;
            if md.ino() == ino && md.is_file() {
                return Some(e.path());
            }
            if md.is_dir() {
                if let Some(p) = find(&e.path(), ino) {
                    return Some(p);
                }
            }
        }
        None
    }
    find(&v.cipher, ino).expect("backing file")
}

#[test]
fn rekey_data_renews_every_file_and_old_deks_open_nothing() {
    if skip() {
        return;
    }
    let v = TestVolume::new("renew-data");
    v.mount();
    // More files than one batch (64) of the offline walk.
    let mut want = populate(&v, 150);
    let big = random_bytes(77, 300 * 4096 + 11);
    fs::write(v.p("big"), &big).unwrap();
    want.insert("big".into(), sha256(&big));
    set_xattr(&v.p("big"), "user.tag", b"still here").unwrap();
    let big_backing = backing_of(&v, "big");
    v.umount();
    let before = file_ids(&v.cipher);
    let old_copy = fs::read(&big_backing).unwrap();
    // A subtree first: only files under it change.
    rekey(&v, &["--data", "/a/b"], None).expect_code(exit::OK, "rekey --data /a/b");
    let mid = file_ids(&v.cipher);
    let changed = before
        .iter()
        .filter(|(p, id)| mid.get(*p) != Some(id))
        .count();
    let under = want.keys().filter(|k| k.starts_with("a/b/c/")).count();
    assert_eq!(changed, under, "only the files under /a/b");
    assert!(
        !v.cipher.join(JOURNAL).exists(),
        "journal left behind a subtree run"
    );
    let out = rekey(&v, &["--data"], None);
    out.expect_code(exit::OK, "rekey --data");
    assert!(out.stderr.contains("renewed"), "{}", out.stderr);
    let after = file_ids(&v.cipher);
    assert_eq!(after.len(), before.len(), "no header lost");
    for (p, id) in &before {
        assert_ne!(after.get(p), Some(id), "{}: file_id unchanged", p.display());
    }
    assert!(!v.cipher.join(JOURNAL).exists(), "journal left behind");
    v.mount();
    assert_eq!(hashes(&v, &want), want, "contents after renewal");
    assert_eq!(get_xattr(&v.p("big"), "user.tag").unwrap(), b"still here");
    v.umount();
    // The pre-renewal DEK (from the old header) opens no new block.
    let u = unlocked(&v);
    let root = u
        .keys
        .open_root_dir(&fs::read(v.cipher.join(DIR_META_NAME)).unwrap())
        .unwrap();
    let old_key = u
        .keys
        .open_file(&root, &old_copy[..216])
        .expect("old header opens");
    let now = fs::read(&big_backing).unwrap();
    let mut out_buf = vec![0u8; 4096];
    for i in 0..3u64 {
        let off = 216 + i as usize * 4124;
        assert!(
            old_key
                .open_block(i, &now[off..off + 4124], &mut out_buf)
                .is_err(),
            "old DEK opened renewed block {i}"
        );
    }
    // An old header put in front of the new ciphertext reads as damage.
    fs::File::options()
        .write(true)
        .open(&big_backing)
        .unwrap()
        .write_all_at(&old_copy[..216], 0)
        .unwrap();
    v.mount();
    assert!(
        fs::read(v.p("big")).is_err(),
        "old header + new data must not read"
    );
    v.umount();
}

#[test]
fn rekey_data_killed_at_each_step_stays_readable_and_resumes() {
    if skip() {
        return;
    }
    // (failpoint@hit, files): the last case dies in the second batch of 64.
    for (i, (fp, n)) in [
        ("renew.journal@2", 8),
        ("renew.flagged@3", 8),
        ("renew.run@2", 8),
        ("renew.sealed@1", 8),
        ("renew.header@4", 8),
        ("renew.file.done@5", 8),
        ("renew.flagged@70", 80),
    ]
    .iter()
    .enumerate()
    {
        let v = TestVolume::new(&format!("renew-crash{i}"));
        v.mount();
        let mut want = populate(&v, *n);
        let big = random_bytes(5, 600 * 4096);
        fs::write(v.p("a/big"), &big).unwrap();
        want.insert("a/big".into(), sha256(&big));
        v.umount();
        let before = file_ids(&v.cipher);
        let out = rekey(&v, &["--data"], Some(fp));
        assert_eq!(out.code, None, "{fp}: rekey --data must die there: {out:?}");
        // A file left mid-renewal is not damage to fsck.
        v.assert_fsck_clean(&format!("{fp}: after the kill"));
        // Every file reads as it was (a flagged one is restored on load).
        v.mount();
        assert_eq!(hashes(&v, &want), want, "{fp}: contents after the kill");
        v.umount();
        let out = rekey(&v, &["--data"], None);
        out.expect_code(exit::OK, &format!("{fp}: rerun"));
        let after = file_ids(&v.cipher);
        assert_eq!(after.len(), before.len(), "{fp}: no header lost");
        for (p, id) in &before {
            assert_ne!(after.get(p), Some(id), "{fp}: {} not renewed", p.display());
        }
        assert!(
            !v.cipher.join(JOURNAL).exists(),
            "{fp}: journal left behind"
        );
        v.mount();
        assert_eq!(hashes(&v, &want), want, "{fp}: contents after the rerun");
        v.umount();
        v.assert_fsck_clean(&format!("{fp}: after the rerun"));
    }
}

#[test]
fn a_mounted_file_near_its_nonce_limit_is_renewed_and_keeps_working() {
    if skip() {
        return;
    }
    let v = TestVolume::new("renew-auto");
    v.mount();
    let mut data = random_bytes(3, 5 * 4096 + 100);
    fs::write(v.p("log"), &data).unwrap();
    let backing = backing_of(&v, "log");
    v.umount();
    // Forge a counter 2^31 - 8 under a valid MAC (what years of appends
    // under the old 1,024-per-session reservation would have left).
    let u = unlocked(&v);
    let root = u
        .keys
        .open_root_dir(&fs::read(v.cipher.join(DIR_META_NAME)).unwrap())
        .unwrap();
    let b = fs::read(&backing).unwrap();
    let key = u.keys.open_file(&root, &b[..216]).unwrap();
    let forged = key
        .header_with_reservation(&b[..216], (1 << 31) - 8)
        .unwrap();
    let f = fs::File::options().write(true).open(&backing).unwrap();
    f.write_all_at(&forged, 0).unwrap();
    drop(f);
    let old_id = FileHeader::parse(&forged).unwrap().file_id;
    v.mount();
    for i in 0..20u64 {
        let line = random_bytes(100 + i, 3000);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(v.p("log"))
            .unwrap();
        std::io::Write::write_all(&mut f, &line).unwrap();
        data.extend_from_slice(&line);
    }
    assert_eq!(
        fs::read(v.p("log")).unwrap(),
        data,
        "contents through the mount"
    );
    v.umount();
    let h = FileHeader::parse(&fs::read(&backing).unwrap()[..216]).unwrap();
    assert_ne!(h.file_id, old_id, "a new file_id and DEK");
    assert!(h.nonce_reserved < 1000, "new counter: {}", h.nonce_reserved);
    v.mount();
    assert_eq!(fs::read(v.p("log")).unwrap(), data, "after a remount");
    v.umount();
}

#[test]
fn rekey_data_online_renews_under_open_handles() {
    if skip() {
        return;
    }
    let v = TestVolume::new("renew-online");
    v.mount();
    let mut want = populate(&v, 10);
    let mut held_data = random_bytes(9, 3 * 4096 + 5);
    fs::write(v.p("a/held"), &held_data).unwrap();
    let before = file_ids(&v.cipher);
    // A handle open across the renewal keeps reading and writing.
    let held = fs::File::options()
        .read(true)
        .write(true)
        .open(v.p("a/held"))
        .unwrap();
    let out = rekey_mounted(&v, &["--data", "/a"]);
    out.expect_code(exit::OK, "rekey MOUNTPOINT --data /a");
    assert!(out.stderr.contains("renewed"), "{}", out.stderr);
    let after = file_ids(&v.cipher);
    let renewed = before
        .iter()
        .filter(|(p, id)| after.get(*p) != Some(id))
        .count();
    // Everything under /a with a header: f1, f5, f9, the long name, held
    // (a/empty has none; a/b/c holds f2 and f6).
    assert_eq!(renewed, 7, "files renewed under /a");
    held.write_all_at(b"after", 10).unwrap();
    held_data[10..15].copy_from_slice(b"after");
    let mut back = vec![0u8; held_data.len()];
    held.read_exact_at(&mut back, 0).unwrap();
    assert!(back == held_data, "the open handle reads its own write");
    drop(held);
    want.insert("a/held".into(), sha256(&held_data));
    assert_eq!(hashes(&v, &want), want, "contents after online renewal");
    rekey_mounted(&v, &["--data"]).expect_code(exit::OK, "whole volume");
    let all = file_ids(&v.cipher);
    assert!(
        before.iter().all(|(p, id)| all.get(p) != Some(id)),
        "every file renewed"
    );
    assert_eq!(hashes(&v, &want), want, "contents after the second run");
    v.umount();
    v.assert_fsck_clean("after online renewal");
}

/// `dekfs rekey MOUNTPOINT extra...` (the daemon holds the keys).
fn rekey_mounted(v: &TestVolume, extra: &[&str]) -> Out {
    let mut args = vec!["rekey".to_string(), v.mnt.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    dekfs(&args)
}

#[test]
fn append_sessions_through_the_mount_cost_what_they_write() {
    if skip() {
        return;
    }
    let v = TestVolume::new("renew-append");
    v.mount();
    fs::write(v.p("log"), b"start\n").unwrap();
    let backing = backing_of(&v, "log");
    let counter = || {
        FileHeader::parse(&fs::read(&backing).unwrap()[..216])
            .unwrap()
            .nonce_reserved
    };
    let first = counter();
    const SESSIONS: u64 = 10_000;
    let mut len = 6u64;
    for i in 0..SESSIONS {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(v.p("log"))
            .unwrap();
        let line = format!("line {i}\n");
        std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
        len += line.len() as u64;
    }
    v.umount();
    let grew = counter() - first;
    eprintln!("{SESSIONS} append sessions through the mount: nonce counter +{grew}");
    // One block per session (two where a line crosses a block boundary,
    // and the kernel may merge sessions); 1,024 each before.
    assert!(
        grew <= SESSIONS + len / 4096 + 1,
        "{SESSIONS} append sessions used {grew} of the nonce budget"
    );
    v.mount();
    assert_eq!(fs::metadata(v.p("log")).unwrap().len(), len);
    v.umount();
}

/// The daemon killed in the middle of an automatic renewal: the next mount
/// puts the file back as it was, and the next write renews it for good.
#[test]
fn a_daemon_killed_mid_renewal_leaves_the_file_as_it_was() {
    if skip() {
        return;
    }
    let v = TestVolume::new("renew-daemon-kill");
    v.mount();
    let data = random_bytes(11, 600 * 4096 + 3);
    fs::write(v.p("big"), &data).unwrap();
    let backing = backing_of(&v, "big");
    v.umount();
    let u = unlocked(&v);
    let root = u
        .keys
        .open_root_dir(&fs::read(v.cipher.join(DIR_META_NAME)).unwrap())
        .unwrap();
    let b = fs::read(&backing).unwrap();
    let key = u.keys.open_file(&root, &b[..216]).unwrap();
    let forged = key
        .header_with_reservation(&b[..216], (1 << 31) - 8)
        .unwrap();
    fs::File::options()
        .write(true)
        .open(&backing)
        .unwrap()
        .write_all_at(&forged, 0)
        .unwrap();
    drop(u);
    // Killed after the first 256 blocks were re-sealed under the new DEK.
    v.mount_armed("renew.run@1");
    let f = fs::OpenOptions::new().write(true).open(v.p("big")).unwrap();
    // Synced: a writeback cache would otherwise hold the write in the kernel.
    let err = f
        .write_all_at(b"new", 0)
        .and_then(|()| f.sync_all())
        .expect_err("the daemon dies mid-renewal");
    drop(f);
    assert!(
        [libc::ENOTCONN, libc::ECONNABORTED, libc::EIO].contains(&errno(&err)),
        "{err}"
    );
    assert!(
        wait_until(std::time::Duration::from_secs(5), || pids_mentioning(
            &v.cipher
        )
        .is_empty()),
        "daemon still running after its failpoint"
    );
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(&v.mnt)
        .status();
    if is_mounted(&v.mnt) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&v.mnt)
            .status();
    }
    assert!(v.cipher.join(JOURNAL).exists(), "the kill left a journal");
    v.assert_fsck_clean("a file mid-renewal");
    v.mount();
    assert!(fs::read(v.p("big")).unwrap() == data, "restored as it was");
    let f = fs::OpenOptions::new().write(true).open(v.p("big")).unwrap();
    f.write_all_at(b"new", 0).unwrap();
    drop(f);
    let mut want = data.clone();
    want[..3].copy_from_slice(b"new");
    assert!(fs::read(v.p("big")).unwrap() == want, "renewed and written");
    v.umount();
    let h = FileHeader::parse(&fs::read(&backing).unwrap()[..216]).unwrap();
    assert_ne!(h.file_id, FileHeader::parse(&forged).unwrap().file_id);
    v.assert_fsck_clean("after the renewal");
}
