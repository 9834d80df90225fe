//! Full disk: the cipher directory lives on a 24 MiB tmpfs; writers fill it
//! to 100% while fsynced files exist. Writers must get ENOSPC (never EIO),
//! and after space is freed every fsynced file is intact, new writes work
//! and `dekfs fsck` is clean. Needs root. Must not touch other mounts.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `chunk`-sized pieces to `path` until an error; returns its errno.
fn fill(path: &Path, chunk: usize, seed: u64) -> i32 {
    let mut f = match fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return errno(&e),
    };
    let data = random_bytes(seed, chunk);
    loop {
        if let Err(e) = f.write_all(&data) {
            return errno(&e);
        }
    }
}

#[test]
fn fulldisk_writers_get_enospc_and_fsynced_files_survive() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("fulldisk", "24m");
    v.mount();
    fs::create_dir(v.p("keep")).unwrap();
    let kept: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("/keep/k{i}"),
                random_bytes(i, 700_000 + i as usize * 4099),
            )
        })
        .collect();
    for (rel, data) in &kept {
        v.create_file(rel, data);
    }
    // three writers with different request sizes, in parallel
    let handles: Vec<_> = [(1usize << 20, 1u64), (4096, 2), (1000, 3)]
        .into_iter()
        .map(|(chunk, seed)| {
            let p = v.p(&format!("fill{seed}"));
            std::thread::spawn(move || fill(&p, chunk, seed))
        })
        .collect();
    let errs: Vec<i32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, e) in errs.iter().enumerate() {
        assert_eq!(
            *e,
            libc::ENOSPC,
            "writer {i} got errno {e} instead of ENOSPC"
        );
    }
    // A writer that hits ENOSPC cuts its torn tail back, which frees a few
    // blocks: top the disk off in small steps so it is really full.
    assert_eq!(
        fill(&v.p("topoff"), 4096, 99),
        libc::ENOSPC,
        "top-off writer"
    );
    // more attempts on a full disk: create, small append, mkdir
    let e = fs::write(v.p("late"), vec![1u8; 100_000]).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "late write: {e}");
    for (rel, data) in &kept {
        assert!(
            read_file(&v.p(rel)).unwrap() == *data,
            "{rel} changed while the disk was full"
        );
    }
    // free space; the fsynced files are intact. (That the files whose
    // writes hit ENOSPC stay readable is the separate test below.)
    for s in 1..=3 {
        fs::remove_file(v.p(&format!("fill{s}"))).unwrap();
    }
    fs::remove_file(v.p("topoff")).unwrap();
    let _ = fs::remove_file(v.p("late"));
    fs::write(v.p("after"), b"space again").unwrap();
    v.remount();
    for (rel, data) in &kept {
        assert!(
            read_file(&v.p(rel)).unwrap() == *data,
            "{rel} damaged by the full disk"
        );
    }
    assert_eq!(read_file(&v.p("after")).unwrap(), b"space again");
    v.umount();
    v.assert_fsck_clean("after full disk");
}

/// A write that fails with ENOSPC must not leave the backing file cut
/// inside a block (the whole file would read as EIO, even blocks written
/// long before): the file keeps its last consistent size. Writes of 1000
/// bytes rewrite the old partial last block while growing past it.
#[test]
fn fulldisk_file_whose_write_hit_enospc_stays_readable() {
    require_fuse!();
    let v = TestVolume::on_tmpfs("fulldisk-torn", "8m");
    v.mount();
    let mut problems = Vec::new();
    for (i, chunk) in [1usize << 20, 4096, 1000].into_iter().enumerate() {
        let p = v.p(&format!("fill{i}"));
        let e = fill(&p, chunk, i as u64);
        assert_eq!(e, libc::ENOSPC);
        let backing = v.cipher_listing();
        if let Err(e) = read_file(&p) {
            problems.push(format!(
                "fill{i} ({chunk}-byte writes): {e}; backing sizes {:?}",
                backing.values().map(|x| x.1).collect::<Vec<_>>()
            ));
        }
        fs::remove_file(&p).unwrap();
    }
    assert!(
        problems.is_empty(),
        "{}\nlog:\n{}",
        problems.join("\n"),
        v.log()
    );
}
