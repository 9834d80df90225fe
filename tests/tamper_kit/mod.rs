//! Shared helpers for the tamper battery (`tests/tamper_*.rs`): a volume with
//! a control set of files, plaintext -> backing file mapping by inode, and
//! the fail-closed checks (EIO, a log line naming file and attack class, the
//! rest of the volume intact). It must not tamper with anything itself.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// A mounted-or-not volume plus files that no attack touches.
pub struct Bench {
    pub v: TestVolume,
    pub control: BTreeMap<String, Vec<u8>>,
}

/// New volume with directories `/a`, `/b` and a control set of files in
/// `/`, `/a` and `/b`; left mounted.
pub fn bench(name: &str) -> Bench {
    let v = TestVolume::new(name);
    v.mount();
    fs::create_dir(v.p("a")).unwrap();
    fs::create_dir(v.p("b")).unwrap();
    let mut control = BTreeMap::new();
    for (i, (rel, len)) in [
        ("/control-top", 100usize),
        ("/a/control-a", 3 * 4096 + 7),
        ("/b/control-b", 4096),
        ("/b/control-empty", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let data = random_bytes(9000 + i as u64, len);
        fs::write(v.p(rel), &data).unwrap();
        control.insert(rel.to_string(), data);
    }
    Bench { v, control }
}

impl Bench {
    /// Writes a file through the mount (no fsync: umount flushes).
    pub fn put(&self, rel: &str, data: &[u8]) {
        fs::write(self.v.p(rel), data).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    /// The backing file of a plaintext path (same inode number).
    pub fn backing(&self, rel: &str) -> PathBuf {
        backing_by_inode(&self.v.cipher, lstat(&self.v.p(rel)).ino())
            .unwrap_or_else(|| panic!("no backing file with the inode of {rel}"))
    }

    /// Control files still read correctly, and the volume is still writable.
    #[track_caller]
    pub fn check_rest_works(&self) {
        for (rel, data) in &self.control {
            let got = read_file(&self.v.p(rel))
                .unwrap_or_else(|e| panic!("control file {rel} must stay readable: {e}"));
            assert!(got == *data, "control file {rel}: content changed");
        }
        for d in ["/", "/a", "/b"] {
            let _ = dir_names(&self.v.p(d));
        }
        let probe = "/a/written-after-tamper";
        fs::write(self.v.p(probe), b"still works").unwrap();
        assert_eq!(read_file(&self.v.p(probe)).unwrap(), b"still works");
        fs::remove_file(self.v.p(probe)).unwrap();
        for line in self.v.log().lines().filter(|l| l.contains("integrity")) {
            for rel in self.control.keys() {
                assert!(
                    !line.contains(&format!("{rel}:")),
                    "integrity error logged for untouched control file {rel}: {line}"
                );
            }
        }
    }

    /// Reading `rel` fails with EIO and the log names the file and `class`.
    #[track_caller]
    pub fn expect_detected(&self, rel: &str, class: &str) {
        expect_eio(&self.v.p(rel));
        self.expect_log(rel, class);
    }

    #[track_caller]
    pub fn expect_log(&self, rel: &str, class: &str) {
        let lines = self.v.wait_log_lines(&["integrity error", rel, class]);
        assert!(
            !lines.is_empty(),
            "no log line 'integrity error ... {rel} ... {class}'; log:\n{}",
            self.v.log()
        );
    }
}

/// Finds the file under `root` whose inode is `ino`.
pub fn backing_by_inode(root: &Path, ino: u64) -> Option<PathBuf> {
    for e in fs::read_dir(root).ok()?.flatten() {
        let md = fs::symlink_metadata(e.path()).ok()?;
        if md.ino() == ino {
            return Some(e.path());
        }
        if md.is_dir() {
            if let Some(p) = backing_by_inode(&e.path(), ino) {
                return Some(p);
            }
        }
    }
    None
}

#[track_caller]
pub fn expect_eio(path: &Path) {
    match read_file(path) {
        Ok(bytes) => panic!(
            "reading tampered {} returned {} bytes instead of EIO",
            path.display(),
            bytes.len()
        ),
        Err(e) => assert_eq!(errno(&e), libc::EIO, "tampered {}: {e}", path.display()),
    }
}

/// Replaces `len` bytes at `off` of `path` with `bytes`.
pub fn patch(path: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

/// Bytes `off..off+len` of a file.
pub fn slice(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

/// Offset of block `i` in a backing file.
pub fn block_off(i: u64) -> u64 {
    HEADER_LEN + i * BLOCK_CIPHER
}

pub fn set_len(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// inode -> backing path for every entry under `root`.
pub fn inode_map(root: &Path) -> BTreeMap<u64, PathBuf> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, out: &mut BTreeMap<u64, PathBuf>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let md = fs::symlink_metadata(e.path()).unwrap();
            out.insert(md.ino(), e.path());
            if md.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    walk(root, &mut out);
    out
}

/// Mounts, reads every `rel` in `victims` expecting EIO, and checks that the
/// log has one line per victim naming it and `class`. Returns the victims
/// that were NOT detected (read without error) with what they returned.
pub fn read_all_expect_eio(b: &Bench, victims: &[String], class: &str) -> Vec<String> {
    let mut missed = Vec::new();
    for rel in victims {
        match read_file(&b.v.p(rel)) {
            Ok(bytes) => missed.push(format!("{rel}: read {} bytes", bytes.len())),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            Err(e) => missed.push(format!("{rel}: {e} (not EIO)")),
        }
    }
    // every victim logged, naming the class
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = b.v.log();
    let logged: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("integrity error") && l.contains(class))
        .filter_map(|l| {
            let i = l.find("integrity error: ")? + "integrity error: ".len();
            let rest = &l[i..];
            Some(&rest[..rest.find(": ")?])
        })
        .collect();
    for rel in victims {
        if !logged.contains(rel.as_str()) {
            missed.push(format!(
                "{rel}: no 'integrity error: {rel}: ...{class}...' log line"
            ));
        }
    }
    missed
}
