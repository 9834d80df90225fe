//! POSIX behaviour through a real mount: contents, sizes on disk, sparse
//! files, truncate, rename, links, special files, metadata, xattrs, statfs,
//! long names, readdir. Every test has its own volume and checks again after
//! unmount + remount where the data must persist.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::*;

const SIZES: [usize; 6] = [0, 1, 4095, 4096, 4097, 1024 * 1024 + 1];

#[test]
fn sizes_roundtrip_and_backing_layout() {
    require_fuse!();
    let v = TestVolume::new("sizes");
    v.mount();
    let mut files = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        let data = random_bytes(1000 + i as u64, n);
        let name = format!("f{n}.bin");
        let backing = v.create_file(&name, &data);
        let got = read_file(&v.p(&name)).unwrap();
        assert_eq!(got.len(), n, "{name}: length read back");
        assert_eq!(sha256(&got), sha256(&data), "{name}: content read back");
        assert_eq!(
            fs::metadata(v.p(&name)).unwrap().len(),
            n as u64,
            "{name}: st_size"
        );
        files.push((name, data, backing));
    }
    v.umount();
    for (name, data, backing) in &files {
        assert_backing_size(backing, data.len() as u64);
        // the ciphertext is not the plaintext
        if data.len() >= 16 {
            let raw = fs::read(backing).unwrap();
            assert!(
                !raw.windows(16).any(|w| w == &data[..16]),
                "{name}: plaintext visible in backing file"
            );
        }
    }
    v.mount();
    for (name, data, _) in &files {
        assert_eq!(
            sha256_file(&v.p(name)),
            sha256(data),
            "{name} after remount"
        );
        assert_eq!(fs::metadata(v.p(name)).unwrap().len(), data.len() as u64);
    }
    // a directory has its key metadata file of the documented size
    fs::create_dir(v.p("d")).unwrap();
    v.umount();
    let dirs: Vec<PathBuf> = v
        .cipher_listing()
        .into_iter()
        .filter(|(p, (is_file, _))| !is_file && !p.as_os_str().is_empty())
        .map(|(p, _)| p)
        .collect();
    assert_eq!(dirs.len(), 1, "one backing directory: {dirs:?}");
    for d in [v.cipher.clone(), v.cipher.join(&dirs[0])] {
        let meta = d.join(DIR_META);
        assert_eq!(
            fs::metadata(&meta)
                .unwrap_or_else(|e| panic!("{}: {e}", meta.display()))
                .len(),
            DIR_META_LEN,
            "{}",
            meta.display()
        );
    }
    assert!(v.cipher.join(CONF).is_file());
}

#[test]
fn sparse_file() {
    require_fuse!();
    let v = TestVolume::new("sparse");
    v.mount();
    let off: u64 = 10 * 1024 * 1024;
    let data = random_bytes(7, 5000);
    {
        let f = fs::File::create(v.p("sparse")).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(&data, off).unwrap();
        f.sync_all().unwrap();
    }
    let check = || {
        let got = read_file(&v.p("sparse")).unwrap();
        assert_eq!(got.len() as u64, off + data.len() as u64, "sparse length");
        assert_eq!(&got[..4], b"head");
        assert!(
            got[4..off as usize].iter().all(|&b| b == 0),
            "hole reads as zeros"
        );
        assert_eq!(&got[off as usize..], &data[..], "data after the hole");
        // a read in the middle of the hole
        let f = fs::File::open(v.p("sparse")).unwrap();
        let mut buf = vec![0xAAu8; 10000];
        f.read_exact_at(&mut buf, 5 * 1024 * 1024 + 77).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    };
    check();
    v.remount();
    check();
    // extend by write far beyond EOF on a second file, small
    {
        let f = fs::File::create(v.p("sparse2")).unwrap();
        f.write_all_at(b"x", 3 * 4096 + 5).unwrap();
    }
    let got = read_file(&v.p("sparse2")).unwrap();
    let mut want = vec![0u8; 3 * 4096 + 6];
    want[3 * 4096 + 5] = b'x';
    assert_eq!(got, want);
}

#[test]
fn truncate_append_overwrite() {
    require_fuse!();
    let v = TestVolume::new("trunc");
    v.mount();
    let mut model = random_bytes(11, 10000);
    let path = v.p("t.bin");
    fs::write(&path, &model).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for (step, len) in [4096u64, 4095, 8193, 1, 0, 20000, 12288, 12289, 4097]
        .into_iter()
        .enumerate()
    {
        f.set_len(len).unwrap();
        model.resize(len as usize, 0);
        // write a few bytes just before the end so later growth must zero
        // the tail of a partial block correctly
        if len > 10 {
            let patch = random_bytes(100 + step as u64, 5);
            f.write_all_at(&patch, len - 7).unwrap();
            model[len as usize - 7..len as usize - 2].copy_from_slice(&patch);
        }
        f.sync_all().unwrap();
        let got = read_file(&path).unwrap();
        assert_eq!(got.len(), model.len(), "length after truncate to {len}");
        assert!(got == model, "content after truncate to {len}");
    }
    drop(f);
    // append
    {
        let mut a = fs::OpenOptions::new().append(true).open(&path).unwrap();
        for i in 0..5u64 {
            let chunk = random_bytes(200 + i, 3000);
            a.write_all(&chunk).unwrap();
            model.extend_from_slice(&chunk);
        }
    }
    assert!(read_file(&path).unwrap() == model, "after appends");
    // overwrite in the middle of a block, and across a block boundary
    {
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let p1 = random_bytes(300, 100);
        f.write_all_at(&p1, 4096 + 1000).unwrap();
        model[4096 + 1000..4096 + 1100].copy_from_slice(&p1);
        let p2 = random_bytes(301, 200);
        f.write_all_at(&p2, 2 * 4096 - 100).unwrap();
        model[2 * 4096 - 100..2 * 4096 + 100].copy_from_slice(&p2);
    }
    assert!(read_file(&path).unwrap() == model, "after overwrites");
    // seek + write through the std File cursor
    {
        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        f.write_all(b"HELLO").unwrap();
        model[5..10].copy_from_slice(b"HELLO");
    }
    // truncate through open(O_TRUNC)
    fs::write(v.p("t2.bin"), b"0123456789").unwrap();
    fs::write(v.p("t2.bin"), b"ab").unwrap();
    v.remount();
    assert!(read_file(&path).unwrap() == model, "after remount");
    assert_eq!(read_file(&v.p("t2.bin")).unwrap(), b"ab");
}

#[test]
fn directories_and_rename() {
    require_fuse!();
    let v = TestVolume::new("rename");
    v.mount();
    fs::create_dir_all(v.p("a/b/c/d")).unwrap();
    fs::create_dir(v.p("x")).unwrap();
    let d1 = random_bytes(21, 9000);
    let d2 = random_bytes(22, 100);
    let d3 = random_bytes(23, 4096 * 3);
    fs::write(v.p("a/b/c/d/f1"), &d1).unwrap();
    fs::write(v.p("a/f2"), &d2).unwrap();
    fs::write(v.p("x/f3"), &d3).unwrap();
    // rmdir of a non-empty dir fails, of an empty one works
    let e = fs::remove_dir(v.p("a/b")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTEMPTY, "rmdir non-empty: {e}");
    fs::create_dir(v.p("a/empty")).unwrap();
    fs::remove_dir(v.p("a/empty")).unwrap();
    assert!(!v.p("a/empty").exists());
    // rename within a directory
    fs::rename(v.p("a/f2"), v.p("a/f2-renamed")).unwrap();
    // rename across directories (file moves to a dir with another key)
    fs::rename(v.p("a/b/c/d/f1"), v.p("x/f1-moved")).unwrap();
    // rename over an existing file replaces it
    fs::write(v.p("x/victim"), b"old").unwrap();
    fs::rename(v.p("x/f3"), v.p("x/victim")).unwrap();
    // rename a whole directory tree
    fs::rename(v.p("a/b"), v.p("x/b-moved")).unwrap();
    let check = || {
        assert!(!v.p("a/f2").exists());
        assert!(!v.p("a/b").exists());
        assert!(!v.p("x/f3").exists());
        assert_eq!(read_file(&v.p("a/f2-renamed")).unwrap(), d2);
        assert_eq!(sha256_file(&v.p("x/f1-moved")), sha256(&d1));
        assert_eq!(sha256_file(&v.p("x/victim")), sha256(&d3));
        assert!(v.p("x/b-moved/c/d").is_dir());
        assert_eq!(dir_names(&v.p("x/b-moved/c/d")), Vec::<String>::new());
        assert_eq!(dir_names(&v.p("a")), vec!["f2-renamed"]);
        assert_eq!(dir_names(&v.p("x")), vec!["b-moved", "f1-moved", "victim"]);
    };
    check();
    v.remount();
    check();
    // new files in a moved directory still work
    fs::write(v.p("x/b-moved/c/new"), b"new").unwrap();
    v.remount();
    assert_eq!(read_file(&v.p("x/b-moved/c/new")).unwrap(), b"new");
    // rmdir nested, bottom up
    fs::remove_file(v.p("x/b-moved/c/new")).unwrap();
    fs::remove_dir(v.p("x/b-moved/c/d")).unwrap();
    fs::remove_dir(v.p("x/b-moved/c")).unwrap();
    fs::remove_dir(v.p("x/b-moved")).unwrap();
    assert_eq!(dir_names(&v.p("x")), vec!["f1-moved", "victim"]);
}

#[test]
fn hardlink_symlink_fifo() {
    require_fuse!();
    let v = TestVolume::new("links");
    v.mount();
    fs::create_dir(v.p("dir")).unwrap();
    let data = random_bytes(31, 6000);
    fs::write(v.p("dir/orig"), &data).unwrap();
    fs::hard_link(v.p("dir/orig"), v.p("dir/link")).unwrap();
    assert_eq!(nlink(&v.p("dir/orig")), 2);
    assert_eq!(lstat(&v.p("dir/orig")).ino(), lstat(&v.p("dir/link")).ino());
    // a write through one name is visible through the other
    fs::OpenOptions::new()
        .write(true)
        .open(v.p("dir/link"))
        .unwrap()
        .write_all_at(b"VIA-LINK", 100)
        .unwrap();
    let mut model = data.clone();
    model[100..108].copy_from_slice(b"VIA-LINK");
    assert_eq!(read_file(&v.p("dir/orig")).unwrap(), model);

    std::os::unix::fs::symlink("orig", v.p("dir/sym")).unwrap();
    std::os::unix::fs::symlink("/some/absolute/target/ünïcode", v.p("abs")).unwrap();
    assert_eq!(
        fs::read_link(v.p("dir/sym")).unwrap(),
        PathBuf::from("orig")
    );
    assert!(lstat(&v.p("dir/sym")).file_type().is_symlink());
    assert_eq!(
        read_file(&v.p("dir/sym")).unwrap(),
        model,
        "read through symlink"
    );

    mkfifo(&v.p("dir/fifo"), 0o640).unwrap();
    let ft = lstat(&v.p("dir/fifo")).file_type();
    assert!(ft.is_fifo(), "mkfifo gives a FIFO: {ft:?}");

    let check = || {
        assert_eq!(read_file(&v.p("dir/orig")).unwrap(), model);
        assert_eq!(read_file(&v.p("dir/link")).unwrap(), model);
        assert_eq!(nlink(&v.p("dir/link")), 2);
        assert_eq!(
            fs::read_link(v.p("dir/sym")).unwrap(),
            PathBuf::from("orig")
        );
        assert_eq!(
            fs::read_link(v.p("abs")).unwrap(),
            PathBuf::from("/some/absolute/target/ünïcode")
        );
        assert!(lstat(&v.p("dir/fifo")).file_type().is_fifo());
        assert_eq!(lstat(&v.p("dir/fifo")).mode() & 0o7777, 0o640);
        assert_eq!(dir_names(&v.p("dir")), vec!["fifo", "link", "orig", "sym"]);
    };
    check();
    v.remount();
    check();
    fs::remove_file(v.p("dir/orig")).unwrap();
    assert_eq!(nlink(&v.p("dir/link")), 1);
    assert_eq!(read_file(&v.p("dir/link")).unwrap(), model);
    assert!(fs::metadata(v.p("dir/sym")).is_err(), "dangling symlink");
}

#[test]
fn chmod_and_utimens_persist() {
    require_fuse!();
    let v = TestVolume::new("meta");
    v.mount();
    fs::write(v.p("m"), b"meta").unwrap();
    fs::create_dir(v.p("md")).unwrap();
    fs::set_permissions(v.p("m"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(v.p("md"), fs::Permissions::from_mode(0o711)).unwrap();
    set_times(
        &v.p("m"),
        (1_000_000_000, 123_456_789),
        (1_234_567_890, 987_654_321),
    )
    .unwrap();
    set_times(&v.p("md"), (1_100_000_000, 5), (1_200_000_000, 6)).unwrap();
    let check_meta = |when: &str| {
        let m = lstat(&v.p("m"));
        assert_eq!(m.mode() & 0o7777, 0o640, "chmod file ({when})");
        assert_eq!(
            lstat(&v.p("md")).mode() & 0o7777,
            0o711,
            "chmod dir ({when})"
        );
        assert_eq!(
            (m.atime(), m.atime_nsec()),
            (1_000_000_000, 123_456_789),
            "atime ({when})"
        );
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            (1_234_567_890, 987_654_321),
            "mtime ({when})"
        );
        let d = lstat(&v.p("md"));
        assert_eq!(
            (d.atime(), d.atime_nsec()),
            (1_100_000_000, 5),
            "dir atime ({when})"
        );
        assert_eq!(
            (d.mtime(), d.mtime_nsec()),
            (1_200_000_000, 6),
            "dir mtime ({when})"
        );
    };
    check_meta("mounted");
    v.remount();
    check_meta("after remount");
    // a write updates mtime
    fs::OpenOptions::new()
        .write(true)
        .open(v.p("m"))
        .unwrap()
        .write_all_at(b"X", 0)
        .unwrap();
    assert!(
        lstat(&v.p("m")).mtime() > 1_234_567_890,
        "write must update mtime"
    );
}

#[test]
fn xattrs() {
    require_fuse!();
    let v = TestVolume::new("xattr");
    v.mount();
    fs::write(v.p("m"), b"meta").unwrap();
    fs::create_dir(v.p("md")).unwrap();
    let big = random_bytes(41, 3000);
    set_xattr(&v.p("m"), "user.small", b"value-1").unwrap();
    set_xattr(&v.p("m"), "user.big", &big).unwrap();
    set_xattr(&v.p("m"), "user.empty", b"").unwrap();
    set_xattr(&v.p("md"), "user.ondir", b"dir-value").unwrap();
    assert_eq!(get_xattr(&v.p("m"), "user.small").unwrap(), b"value-1");
    assert_eq!(get_xattr(&v.p("m"), "user.big").unwrap(), big);
    assert_eq!(get_xattr(&v.p("m"), "user.empty").unwrap(), b"");
    let user_list = |p: &std::path::Path| -> Vec<String> {
        list_xattr(p)
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("user."))
            .collect()
    };
    assert_eq!(
        user_list(&v.p("m")),
        vec!["user.big", "user.empty", "user.small"]
    );
    // overwrite
    set_xattr(&v.p("m"), "user.small", b"value-2").unwrap();
    assert_eq!(get_xattr(&v.p("m"), "user.small").unwrap(), b"value-2");
    // remove
    remove_xattr(&v.p("m"), "user.empty").unwrap();
    let e = get_xattr(&v.p("m"), "user.empty").unwrap_err();
    assert_eq!(errno(&e), libc::ENODATA, "getxattr of a removed name: {e}");
    let e = remove_xattr(&v.p("m"), "user.never").unwrap_err();
    assert_eq!(
        errno(&e),
        libc::ENODATA,
        "removexattr of a missing name: {e}"
    );
    v.remount();
    assert_eq!(get_xattr(&v.p("m"), "user.small").unwrap(), b"value-2");
    assert_eq!(get_xattr(&v.p("m"), "user.big").unwrap(), big);
    assert_eq!(get_xattr(&v.p("md"), "user.ondir").unwrap(), b"dir-value");
    assert_eq!(user_list(&v.p("m")), vec!["user.big", "user.small"]);
    assert_eq!(get_xattr(&v.p("m"), "user.big").unwrap(), big);
    // xattrs survive a rename across directories
    fs::rename(v.p("m"), v.p("md/m-moved")).unwrap();
    v.remount();
    assert_eq!(
        get_xattr(&v.p("md/m-moved"), "user.small").unwrap(),
        b"value-2"
    );
}

#[test]
fn xattr_changes_do_not_touch_atime_mtime() {
    require_fuse!();
    let v = TestVolume::new("xattr-times");
    v.mount();
    fs::write(v.p("f"), b"data").unwrap();
    let times = ((1_000_000_000, 1), (1_234_567_890, 2));
    set_times(&v.p("f"), times.0, times.1).unwrap();
    let t = |p: &std::path::Path| {
        let m = lstat(p);
        ((m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()))
    };
    set_xattr(&v.p("f"), "user.a", b"v").unwrap();
    assert_eq!(t(&v.p("f")), times, "setxattr changed atime/mtime");
    let _ = get_xattr(&v.p("f"), "user.a").unwrap();
    let _ = list_xattr(&v.p("f")).unwrap();
    assert_eq!(
        t(&v.p("f")),
        times,
        "getxattr/listxattr changed atime/mtime"
    );
    remove_xattr(&v.p("f"), "user.a").unwrap();
    assert_eq!(t(&v.p("f")), times, "removexattr changed atime/mtime");
}

#[test]
fn statfs() {
    require_fuse!();
    let v = TestVolume::new("statfs");
    v.mount();
    let st = statvfs(&v.mnt).unwrap();
    assert!(st.f_bsize > 0, "f_bsize");
    assert!(st.f_blocks > 0, "f_blocks");
    assert!(st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_blocks);
    assert!(st.f_namemax >= 255, "f_namemax {} < 255", st.f_namemax);
    // free space shrinks when a large file is written (same backing fs)
    let back = statvfs(&v.cipher).unwrap();
    let free_mnt = st.f_bavail as u128 * st.f_frsize as u128;
    let free_back = back.f_bavail as u128 * back.f_frsize as u128;
    let diff = free_mnt.abs_diff(free_back);
    assert!(
        diff < 64 << 20,
        "statfs of the mount ({free_mnt} B free) should match the backing fs ({free_back} B)"
    );
}

fn long_name(tag: char, len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push(tag);
        s.push_str("-long-name-");
    }
    s.truncate(len);
    s
}

#[test]
fn long_names_at_depth_5() {
    require_fuse!();
    let v = TestVolume::new("longnames");
    v.mount();
    let mut rel = String::new();
    for (i, tag) in ['a', 'b', 'c', 'd', 'e'].into_iter().enumerate() {
        let comp = long_name(tag, 255 - i); // 255..251 bytes
        rel.push('/');
        rel.push_str(&comp);
        fs::create_dir(v.p(&rel)).unwrap_or_else(|e| panic!("mkdir depth {}: {e}", i + 1));
    }
    let fname = long_name('F', 255);
    let fname2 = long_name('G', 255);
    // a 255-byte name of multi-byte UTF-8
    let uname: String = "ä".repeat(127) + "x"; // 255 bytes
    assert_eq!(uname.len(), 255);
    let data = random_bytes(51, 10000);
    let frel = format!("{rel}/{fname}");
    let backing = v.create_file(&frel, &data);
    fs::write(v.p(&format!("{rel}/{uname}")), b"utf8").unwrap();
    fs::write(v.p(&format!("{rel}/short")), b"short").unwrap();
    // the long-name form in the cipher dir
    let bname = backing.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        bname.starts_with("dekfs.ln."),
        "a 255-byte name must use the long-name form, backing is {bname}"
    );
    let companion = backing.with_file_name(format!("{bname}.name"));
    assert!(companion.is_file(), "{} missing", companion.display());

    let mut want = vec![fname.clone(), uname.clone(), "short".to_string()];
    want.sort();
    assert_eq!(dir_names(&v.p(&rel)), want);
    assert_eq!(read_file(&v.p(&frel)).unwrap(), data);
    assert_eq!(fs::metadata(v.p(&frel)).unwrap().len(), data.len() as u64);
    v.remount();
    assert_eq!(dir_names(&v.p(&rel)), want);
    assert_eq!(read_file(&v.p(&frel)).unwrap(), data);
    assert_eq!(read_file(&v.p(&format!("{rel}/{uname}"))).unwrap(), b"utf8");
    // rename long -> long, long -> short, short -> long
    let frel2 = format!("{rel}/{fname2}");
    fs::rename(v.p(&frel), v.p(&frel2)).unwrap();
    assert!(!v.p(&frel).exists());
    fs::rename(v.p(&format!("{rel}/short")), v.p(&format!("{rel}/{fname}"))).unwrap();
    fs::rename(v.p(&format!("{rel}/{uname}")), v.p(&format!("{rel}/s2"))).unwrap();
    let mut want2 = vec![fname.clone(), fname2.clone(), "s2".to_string()];
    want2.sort();
    assert_eq!(dir_names(&v.p(&rel)), want2);
    v.remount();
    assert_eq!(dir_names(&v.p(&rel)), want2);
    assert_eq!(read_file(&v.p(&frel2)).unwrap(), data);
    assert_eq!(
        read_file(&v.p(&format!("{rel}/{fname}"))).unwrap(),
        b"short"
    );
    // unlink: the long-name pair disappears from the cipher dir
    for n in [&fname, &fname2, &"s2".to_string()] {
        fs::remove_file(v.p(&format!("{rel}/{n}"))).unwrap();
    }
    assert!(dir_names(&v.p(&rel)).is_empty());
    // the deepest backing dir now only holds its dekfs.dir
    v.umount();
    let leftovers: Vec<PathBuf> = v
        .cipher_listing()
        .into_iter()
        .filter(|(p, (is_file, _))| {
            *is_file
                && p.file_name() != Some(std::ffi::OsStr::new(DIR_META))
                && p.file_name() != Some(std::ffi::OsStr::new(CONF))
                && p.file_name() != Some(std::ffi::OsStr::new("dekfs.lock"))
                && !p.to_string_lossy().ends_with(".name")
        })
        .map(|(p, _)| p)
        .collect();
    // directories with long names keep their dekfs.ln.X.name companion; no
    // content file may be left
    assert!(
        leftovers.is_empty(),
        "files left after unlink: {leftovers:?}"
    );
    let names: Vec<String> = v
        .cipher_listing()
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".name"))
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names.len(),
        5,
        "only the 5 long directory names remain: {names:?}"
    );
}

#[test]
fn readdir_lists_exactly_what_was_created() {
    require_fuse!();
    let v = TestVolume::new("readdir");
    v.mount();
    let mut want = BTreeSet::new();
    let specials = [
        "a",
        "B",
        "with space",
        "ünïcödé-名前",
        "dots.in.name",
        ".hidden",
        "..double",
        "-dash",
        "semi;colon=eq%pct",
        "tab\there",
        "newline\nin",
        "dekfs.dir", // the reserved cipher names must be usable plaintext names
        "dekfs.conf",
        "dekfs.ln.something",
    ];
    for s in specials {
        fs::write(v.p(s), s.as_bytes()).unwrap_or_else(|e| panic!("create {s:?}: {e}"));
        want.insert(s.to_string());
    }
    for i in 0..300 {
        let n = format!("file-{i:04}");
        fs::write(v.p(&n), n.as_bytes()).unwrap();
        want.insert(n);
    }
    fs::create_dir(v.p("subdir")).unwrap();
    want.insert("subdir".into());
    std::os::unix::fs::symlink("a", v.p("symlink")).unwrap();
    want.insert("symlink".into());
    let long = long_name('L', 200);
    fs::write(v.p(&long), b"l").unwrap();
    want.insert(long);
    let got: BTreeSet<String> = dir_names(&v.mnt).into_iter().collect();
    assert_eq!(got, want);
    v.remount();
    let got: BTreeSet<String> = dir_names(&v.mnt).into_iter().collect();
    assert_eq!(got, want, "after remount");
    for s in specials {
        assert_eq!(read_file(&v.p(s)).unwrap(), s.as_bytes(), "{s:?}");
    }
    // deletes are reflected
    for i in 0..300 {
        let n = format!("file-{i:04}");
        if i % 3 == 0 {
            fs::remove_file(v.p(&n)).unwrap();
            want.remove(&n);
        }
    }
    let got: BTreeSet<String> = dir_names(&v.mnt).into_iter().collect();
    assert_eq!(got, want, "after deletes");
    // an empty subdirectory lists nothing
    assert!(dir_names(&v.p("subdir")).is_empty());
    // the number of entries in the backing root matches (+ dekfs.conf,
    // dekfs.dir, + one .name per long name)
    v.umount();
    let backing: Vec<String> = dir_names(&v.cipher);
    let non_meta = backing
        .iter()
        .filter(|n| !is_root_meta(n) && !n.ends_with(".name"))
        .count();
    assert_eq!(
        non_meta,
        want.len(),
        "one backing entry per plaintext entry"
    );
    for n in &backing {
        assert!(
            is_root_meta(n) || n.starts_with("dekfs.ln.") || !n.contains('.'),
            "unexpected backing name {n:?}"
        );
    }
}

#[test]
fn open_unlinked_file_and_read_during_write() {
    require_fuse!();
    let v = TestVolume::new("unlinked");
    v.mount();
    let data = random_bytes(61, 20000);
    fs::write(v.p("u"), &data).unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.p("u"))
        .unwrap();
    fs::remove_file(v.p("u")).unwrap();
    assert!(!v.p("u").exists());
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert_eq!(got, data, "an open file stays readable after unlink");
    f.write_all_at(b"still-writable", 5).unwrap();
    let mut buf = [0u8; 14];
    f.read_exact_at(&mut buf, 5).unwrap();
    assert_eq!(&buf, b"still-writable");
    drop(f);
    assert!(dir_names(&v.mnt).is_empty());
}

/// readdir's d_type (what `find -type`, `rm -rf`, `tar` rely on) matches
/// the entry type, fresh and after remount.
#[test]
fn readdir_reports_entry_types() {
    require_fuse!();
    let v = TestVolume::new("dtype");
    v.mount();
    fs::create_dir(v.p("dir")).unwrap();
    fs::write(v.p("file"), b"f").unwrap();
    std::os::unix::fs::symlink("file", v.p("symlink")).unwrap();
    mkfifo(&v.p("fifo"), 0o644).unwrap();
    let check = |when: &str| {
        let mut got: Vec<(String, &'static str)> = fs::read_dir(&v.mnt)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let t = e.file_type().unwrap(); // d_type, lstat only if DT_UNKNOWN
                let kind = if t.is_dir() {
                    "dir"
                } else if t.is_symlink() {
                    "symlink"
                } else if t.is_fifo() {
                    "fifo"
                } else if t.is_file() {
                    "file"
                } else {
                    "other"
                };
                (e.file_name().to_string_lossy().into_owned(), kind)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("dir".to_string(), "dir"),
                ("fifo".to_string(), "fifo"),
                ("file".to_string(), "file"),
                ("symlink".to_string(), "symlink"),
            ],
            "readdir entry types ({when})"
        );
    };
    check("fresh");
    v.remount();
    check("after remount");
}

/// A tree removed with remove_dir_all (which trusts d_type like `rm -rf`)
/// is really gone.
#[test]
fn remove_tree() {
    require_fuse!();
    let v = TestVolume::new("rmtree");
    v.mount();
    for d in 0..4 {
        fs::create_dir_all(v.p(&format!("t/d{d}/sub"))).unwrap();
        for f in 0..10 {
            fs::write(v.p(&format!("t/d{d}/f{f}")), b"x").unwrap();
        }
        std::os::unix::fs::symlink("../f0", v.p(&format!("t/d{d}/sub/l"))).unwrap();
    }
    v.remount();
    fs::remove_dir_all(v.p("t")).unwrap_or_else(|e| panic!("remove_dir_all: {e}"));
    assert!(!v.p("t").exists());
    assert!(dir_names(&v.mnt).is_empty());
    v.umount();
    let left: Vec<String> = dir_names(&v.cipher)
        .into_iter()
        .filter(|n| n != VOLUME_LOCK && n != CONFIG_LOCK)
        .collect();
    assert_eq!(
        left,
        vec![CONF.to_string(), DIR_META.to_string()],
        "backing files left after removing the tree"
    );
}

/// Holes read as zeros but are stored as ciphertext, never as holes: an
/// all-zero block on disk must fail authentication (zeroing a block is an
/// attack, see THREAT-MODEL.md), so a gap is written as encrypted zeros.
/// The backing size follows FORMAT.md's size rule exactly.
#[test]
fn holes_are_stored_as_authenticated_ciphertext() {
    require_fuse!();
    let v = TestVolume::new("sparse-alloc");
    v.mount();
    let gap: u64 = 16 << 20;
    for (name, truncate) in [("hole-write", false), ("hole-truncate", true)] {
        let before = v.cipher_listing();
        let f = fs::File::create(v.p(name)).unwrap();
        if truncate {
            f.write_all_at(b"head", 0).unwrap();
            f.set_len(gap + 4).unwrap();
        } else {
            f.write_all_at(b"tail", gap).unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        let backing = v.new_backing_file(&before, &v.cipher_listing(), name);
        let raw = fs::read(&backing).unwrap();
        let plain = gap + 4;
        let full = plain / 4096;
        let rem = plain % 4096;
        let expect = 216 + full * 4124 + if rem > 0 { rem + 28 } else { 0 };
        assert_eq!(raw.len() as u64, expect, "{name}: backing size");
        assert!(
            !raw[216..].chunks(4124).any(|c| c.iter().all(|&b| b == 0)),
            "{name}: an all-zero block on disk"
        );
        let f = fs::File::open(v.p(name)).unwrap();
        let mut buf = vec![0xffu8; 8192];
        f.read_exact_at(&mut buf, gap / 2).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "{name}: hole reads as zeros");
    }
}

/// Values and targets too large for the backing store fail with the
/// backing filesystem's kind of error (ENOSPC/E2BIG, ENAMETOOLONG), never
/// EIO (which means "integrity failure" on dekfs); moderate sizes work.
#[test]
fn size_limits_give_clean_errors() {
    require_fuse!();
    let v = TestVolume::new("limits");
    v.mount();
    fs::write(v.p("f"), b"x").unwrap();
    set_xattr(&v.p("f"), "user.mid", &[7u8; 1500]).unwrap();
    assert_eq!(get_xattr(&v.p("f"), "user.mid").unwrap(), vec![7u8; 1500]);
    for n in [8192usize, 65536] {
        let e = set_xattr(&v.p("f"), "user.huge", &vec![1u8; n])
            .expect_err("a huge xattr value cannot fit the backing xattr");
        let en = errno(&e);
        assert!(
            en == libc::ENOSPC || en == libc::E2BIG || en == libc::ERANGE,
            "setxattr of {n} bytes: want ENOSPC/E2BIG/ERANGE, got {e}"
        );
    }
    let target = "t/".repeat(1000); // 2000 bytes
    std::os::unix::fs::symlink(&target, v.p("s2000")).unwrap();
    assert_eq!(fs::read_link(v.p("s2000")).unwrap(), PathBuf::from(&target));
    let e = std::os::unix::fs::symlink("t/".repeat(2040), v.p("s4080")).err();
    if let Some(e) = e {
        assert_eq!(errno(&e), libc::ENAMETOOLONG, "long symlink target: {e}");
    }
    let e = fs::write(v.p(&"n".repeat(256)), b"x").unwrap_err();
    assert_eq!(errno(&e), libc::ENAMETOOLONG, "256-byte name: {e}");
}

#[test]
fn noxattr_mount_refuses_xattrs_and_keeps_data() {
    require_fuse!();
    let v = TestVolume::new("noxattr");
    v.mount();
    fs::write(v.p("f"), b"data").unwrap();
    set_xattr(&v.p("f"), "user.kept", b"v").unwrap();
    v.umount();
    v.mount_with(&["-o", "noxattr"]);
    let e = set_xattr(&v.p("f"), "user.a", b"v").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "setxattr: {e}");
    let e = get_xattr(&v.p("f"), "user.kept").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "getxattr: {e}");
    // Writes work without the kernel's security.capability query.
    fs::write(v.p("g"), b"more").unwrap();
    assert_eq!(fs::read(v.p("f")).unwrap(), b"data");
    assert_eq!(fs::read(v.p("g")).unwrap(), b"more");
    v.umount();
    v.mount();
    assert_eq!(
        get_xattr(&v.p("f"), "user.kept").unwrap(),
        b"v",
        "xattrs survive a noxattr mount"
    );
}
