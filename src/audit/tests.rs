//! Chain, seal and concurrency tests of the audit log on real files (no mounts).

use super::*;
use crate::crypto::VolumeKeys;
use crate::secret::Key32;

fn keys(v: u32) -> VolumeKeys {
    let mut ks = vec![(1, Key32::from_array(&mut [1; 32]))];
    if v > 1 {
        ks.push((2, Key32::from_array(&mut [2; 32])));
    }
    VolumeKeys::from_parts([9; 16], ks, v).unwrap()
}

fn target(dir: &Path, k: &VolumeKeys) -> Target {
    enable_creation();
    Target {
        paths: Paths::new(dir.join(LOG_NAME)),
        key: None,
    }
    .with_keys(k)
}

fn held(k: &VolumeKeys, versions: &[u32]) -> Vec<AuditKey> {
    versions
        .iter()
        .map(|v| AuditKey::derive(k, *v).unwrap())
        .collect()
}

fn log_with(n: usize) -> (tempfile::TempDir, Paths, VolumeKeys) {
    let d = tempfile::tempdir().unwrap();
    let k = keys(1);
    let t = target(d.path(), &k);
    for i in 0..n {
        t.append(Event::new("test").detail(format!("event {i}")))
            .unwrap();
    }
    let p = t.paths.clone();
    (d, p, k)
}

fn lines(p: &Paths) -> Vec<String> {
    std::fs::read_to_string(&p.log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(p: &Paths, l: &[String]) {
    let mut s = l.join("\n");
    s.push('\n');
    std::fs::write(&p.log, s).unwrap();
}

fn first_bad(p: &Paths, k: &VolumeKeys) -> Option<usize> {
    verify(p, &held(k, &[1])).unwrap().first_bad.map(|b| b.0)
}

#[test]
fn intact_log_verifies_and_is_sealed() {
    let (_d, p, k) = log_with(8);
    let r = verify(&p, &held(&k, &[1])).unwrap();
    assert_eq!((r.lines, r.verified, r.sealed), (8, 8, Some(8)));
    assert!(r.first_bad.is_none() && r.incomplete.is_none());
    // Without the key nothing is verified.
    let r = verify(&p, &[]).unwrap();
    assert_eq!(r.verified, 0);
    assert!(r.incomplete.is_some());
}

#[test]
fn delete_edit_reorder_and_cut_name_the_right_line() {
    let (_d, p, k) = log_with(8);
    let orig = lines(&p);
    let mut del = orig.clone();
    del.remove(2);
    write_lines(&p, &del);
    assert_eq!(first_bad(&p, &k), Some(3), "deleted line 3");

    let mut edit = orig.clone();
    edit[4] = edit[4].replace("event 4", "event X");
    write_lines(&p, &edit);
    assert_eq!(first_bad(&p, &k), Some(5), "edited line 5");

    let mut swap = orig.clone();
    swap.swap(5, 6);
    write_lines(&p, &swap);
    assert_eq!(first_bad(&p, &k), Some(6), "lines 6 and 7 swapped");

    // Bytes cut out of the middle: line 4 loses its end and runs into line 5.
    let mut text = orig.join("\n");
    text.push('\n');
    let at = text.find("event 3").unwrap();
    let end = text.find("event 4").unwrap();
    text.replace_range(at..end, "");
    std::fs::write(&p.log, text).unwrap();
    assert_eq!(first_bad(&p, &k), Some(4), "middle of line 4 cut");

    // Lines cut from the start.
    write_lines(&p, &orig[2..]);
    assert_eq!(first_bad(&p, &k), Some(1), "first two lines removed");

    write_lines(&p, &orig);
    assert_eq!(first_bad(&p, &k), None);
}

#[test]
fn tail_truncation_is_caught_by_the_seal_and_by_the_next_appender() {
    let (d, p, k) = log_with(6);
    let orig = lines(&p);
    write_lines(&p, &orig[..4]);
    let r = verify(&p, &held(&k, &[1])).unwrap();
    assert_eq!(r.verified, 4);
    let (n, why) = r.first_bad.unwrap();
    assert_eq!(n, 5, "{why}");
    assert!(why.contains("truncated"), "{why}");
    let seal = read_seal(&p).unwrap();
    assert_eq!(seal.count, 6);
    // An appender keeps the evidence in the chain before it reseals.
    target(d.path(), &k).append(Event::new("after")).unwrap();
    let r = verify(&p, &held(&k, &[1])).unwrap();
    let (n, why) = r.first_bad.unwrap();
    assert_eq!(n, 5, "{why}");
    assert!(
        why.contains("seal recorded 6 lines, the log had 4"),
        "{why}"
    );
    // Removing the seal is evidence too.
    drop(d);
    let (_d, p, k) = log_with(3);
    std::fs::remove_file(&p.seal).unwrap();
    assert_eq!(first_bad(&p, &k), Some(0));
}

#[test]
fn torn_last_line_verifies_up_to_it_and_the_next_append_cuts_it() {
    let (d, p, k) = log_with(5);
    let mut text = std::fs::read(&p.log).unwrap();
    text.extend_from_slice(b"{\"seq\":6,\"time\":1,\"ev");
    std::fs::write(&p.log, &text).unwrap();
    let r = verify(&p, &held(&k, &[1])).unwrap();
    assert!(r.torn_tail);
    assert_eq!((r.verified, r.first_bad), (5, None));
    target(d.path(), &k).append(Event::new("after")).unwrap();
    let r = verify(&p, &held(&k, &[1])).unwrap();
    assert!(!r.torn_tail);
    assert_eq!((r.verified, r.first_bad, r.sealed), (6, None, Some(6)));
}

#[test]
fn unkeyed_lines_wait_in_pending_then_join_the_chain() {
    let (d, p, k) = log_with(2);
    let unkeyed = Target {
        paths: p.clone(),
        key: None,
    };
    unkeyed
        .append(Event::new("unlock").failed("wrong passphrase"))
        .unwrap();
    let (l, pending, _) = read_lines(&p).unwrap();
    assert_eq!((l.len(), pending.len()), (2, 1));
    target(d.path(), &k).append(Event::new("unlock")).unwrap();
    let (l, pending, _) = read_lines(&p).unwrap();
    assert_eq!((l.len(), pending.len()), (4, 0));
    let folded = l[2].line.as_ref().unwrap();
    assert_eq!(
        (folded.event.as_str(), folded.origin.as_deref()),
        ("unlock", Some("unkeyed"))
    );
    assert_eq!(first_bad(&p, &k), None);
}

#[test]
fn chain_continues_across_a_kek_rotation() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(2);
    let mut t = target(d.path(), &keys(1));
    t.append(Event::new("before")).unwrap();
    t.link(&k, 2).unwrap();
    t.append(Event::new("after")).unwrap();
    let r = verify(&t.paths, &held(&k, &[1, 2])).unwrap();
    assert_eq!((r.verified, r.first_bad, r.sealed), (3, None, Some(3)));
    // Once KEK 1 is gone, the lines under it cannot be verified, and say so.
    let r = verify(&t.paths, &held(&k, &[2])).unwrap();
    assert_eq!(r.verified, 0);
    assert!(r.incomplete.unwrap().contains("KEK version 1"));
    // A link tag that does not verify under the old key is damage.
    let mut l = lines(&t.paths);
    let at = l[1].find("\"link\":\"").unwrap() + 8;
    let c = if &l[1][at..at + 1] == "0" { "1" } else { "0" };
    l[1].replace_range(at..at + 1, c);
    write_lines(&t.paths, &l);
    assert_eq!(
        verify(&t.paths, &held(&k, &[1, 2]))
            .unwrap()
            .first_bad
            .map(|b| b.0),
        Some(2)
    );
}

#[test]
fn parallel_appenders_lose_no_line() {
    let d = tempfile::tempdir().unwrap();
    let k = std::sync::Arc::new(keys(1));
    let per = 25usize;
    let handles: Vec<_> = (0..16)
        .map(|w| {
            let (dir, k) = (d.path().to_path_buf(), k.clone());
            std::thread::spawn(move || {
                // Each worker opens the log itself: flock excludes across descriptions.
                let t = target(&dir, &k);
                for i in 0..per {
                    t.append(Event::new("test").detail(format!("w{w} i{i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let p = Paths::new(d.path().join(LOG_NAME));
    let r = verify(&p, &held(&k, &[1])).unwrap();
    assert_eq!(
        (r.lines, r.verified, r.first_bad),
        (16 * per, 16 * per, None)
    );
    let text = std::fs::read_to_string(&p.log).unwrap();
    for w in 0..16 {
        for i in 0..per {
            assert_eq!(text.matches(&format!("\"w{w} i{i}\"")).count(), 1);
        }
    }
}
