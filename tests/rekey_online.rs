//! `dekfs rekey MOUNTPOINT`: the daemon rotates the KEK of a mounted volume
//! while a randomized read/write/rename workload (cross-directory moves
//! included) runs through the mount. The workload sees no error and its
//! final bytes match the same operations replayed on a plain directory;
//! afterwards no header or dekfs.dir holds KEK 1, KEK 1 is gone from the
//! config, and the old config put back opens nothing. A wrong passphrase
//! aborts before anything is written. Skips only without FUSE.

mod common;
mod rekey_support;

use common::*;
use dekfs::format::{KekState, VolumeConfig};
use rekey_support::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

fn skip() -> bool {
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED ({why})");
        return true;
    }
    false
}

fn config(v: &TestVolume) -> VolumeConfig {
    VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap()
}

/// `dekfs rekey MNT --passfile P extra`.
fn rekey_online(v: &TestVolume, passfile: &Path, extra: &[&str]) -> Out {
    let mut args: Vec<String> = vec![
        "rekey".into(),
        v.mnt.display().to_string(),
        "--passfile".into(),
        passfile.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    dekfs(&args)
}

/// A small deterministic generator (no dependency, fixed seeds).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DIRS: [&str; 4] = ["w0", "w1", "w0/deep", "w2"];

/// The same operation on the mount and on a plain directory; every error
/// through the mount is a failure of the rotation's promise.
struct Workload {
    mnt: PathBuf,
    plain: PathBuf,
    /// Relative paths of the live files.
    files: Vec<String>,
    rng: Rng,
    made: u64,
    ops: u64,
    /// Operations done so far, for the main thread.
    count: Arc<AtomicU64>,
}

impl Workload {
    fn both(&self, rel: &str) -> (PathBuf, PathBuf) {
        (self.mnt.join(rel), self.plain.join(rel))
    }

    fn create(&mut self) -> Result<(), String> {
        let d = DIRS[self.rng.below(DIRS.len() as u64) as usize];
        let rel = format!("{d}/n{}", self.made);
        self.made += 1;
        let data = random_bytes(self.rng.next(), self.rng.below(20_000) as usize);
        let (m, p) = self.both(&rel);
        fs::write(&m, &data).map_err(|e| format!("create {rel}: {e}"))?;
        fs::write(&p, &data).unwrap();
        self.files.push(rel);
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.ops += 1;
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.files.is_empty() || self.rng.below(10) == 0 {
            return self.create();
        }
        let i = self.rng.below(self.files.len() as u64) as usize;
        let rel = self.files[i].clone();
        let (m, p) = self.both(&rel);
        match self.rng.below(4) {
            0 => {
                let got = fs::read(&m).map_err(|e| format!("read {rel}: {e}"))?;
                if got != fs::read(&p).unwrap() {
                    return Err(format!("read {rel}: contents differ from the replay"));
                }
            }
            1 => {
                let len = fs::metadata(&p).unwrap().len();
                let off = self.rng.below(len + 1);
                let data = random_bytes(self.rng.next(), 1 + self.rng.below(9000) as usize);
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&m)
                    .map_err(|e| format!("open {rel}: {e}"))?;
                f.write_all_at(&data, off)
                    .map_err(|e| format!("write {rel}: {e}"))?;
                drop(f);
                let g = fs::OpenOptions::new().write(true).open(&p).unwrap();
                g.write_all_at(&data, off).unwrap();
            }
            2 => {
                // Within or across directories.
                let d = DIRS[self.rng.below(DIRS.len() as u64) as usize];
                let to = format!("{d}/m{}", self.made);
                self.made += 1;
                let (m2, p2) = self.both(&to);
                fs::rename(&m, &m2).map_err(|e| format!("rename {rel} -> {to}: {e}"))?;
                fs::rename(&p, &p2).unwrap();
                self.files[i] = to;
            }
            _ => {
                let len = fs::metadata(&p).unwrap().len();
                let to = self.rng.below(len + 1);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&m)
                    .and_then(|f| f.set_len(to))
                    .map_err(|e| format!("truncate {rel}: {e}"))?;
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(to)
                    .unwrap();
            }
        }
        Ok(())
    }
}

/// Every file under the workload's directories, by relative path.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in DIRS {
        for e in fs::read_dir(root.join(d)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                let rel = format!("{d}/{}", e.file_name().to_string_lossy());
                out.insert(rel, sha256(&fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// The mount's files against the replay's, naming the first difference.
fn same_trees(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    for k in keys {
        assert_eq!(got.get(k), want.get(k), "{k}: mount vs replay");
    }
}

#[test]
fn online_rekey_under_a_random_workload() {
    if skip() {
        return;
    }
    let v = TestVolume::new("rekey-online");
    v.mount();
    let want = populate(&v, 300);
    let plain = scratch_dir("dekfs-rekey-online-plain-");
    for d in DIRS {
        fs::create_dir_all(v.p(d)).unwrap();
        fs::create_dir_all(plain.path().join(d)).unwrap();
    }
    let old_conf = fs::read(v.cipher.join(CONF)).unwrap();
    let mut w = Workload {
        mnt: v.mnt.clone(),
        plain: plain.path().to_path_buf(),
        files: Vec::new(),
        rng: Rng(0x5eed_0001),
        made: 0,
        ops: 0,
        count: Arc::new(AtomicU64::new(0)),
    };
    let count = w.count.clone();
    for _ in 0..60 {
        w.create().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // At least this many operations, and on until the rekey is done.
            while w.ops < 400 || !stop.load(Ordering::Relaxed) {
                w.step()?;
            }
            Ok::<Workload, String>(w)
        })
    };
    let rk = recovery_file(&v);
    // The workload is under way before the rotation starts.
    assert!(wait_until(std::time::Duration::from_secs(30), || count
        .load(Ordering::Relaxed)
        > 20));
    let before = count.load(Ordering::Relaxed);
    let out = rekey_online(
        &v,
        &v.passfile,
        &["--also-recovery-key-file", rk.to_str().unwrap(), "--json"],
    );
    let during = count.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let w = worker.join().unwrap().expect("the workload saw an error");
    out.expect_code(exit::OK, "online rekey");
    let fin = out
        .stdout
        .lines()
        .find(|l| l.contains("\"event\":\"finished\""))
        .unwrap_or_else(|| panic!("no finished line: {}", out.stdout));
    let fin: serde_json::Value = serde_json::from_str(fin).unwrap();
    assert_eq!(fin["destroyed"], true, "{fin}");
    assert_eq!(fin["online"], true, "{fin}");
    assert!(fin["rewrapped"].as_u64().unwrap() > 300, "{fin}");
    assert!(
        out.stdout.contains("\"event\":\"progress\"") || fin["rewrap_seconds"].as_f64() < Some(0.3),
        "progress lines: {}",
        out.stdout
    );
    eprintln!(
        "online rekey under a workload of {} operations, {during} during the rekey: {fin}",
        w.ops
    );
    assert!(
        during >= 20,
        "the workload ran during the rekey: {during} operations"
    );
    // The daemon writes new objects under KEK 2 now.
    fs::write(v.p("w1/after"), b"after the rotation").unwrap();
    fs::write(plain.path().join("w1/after"), b"after the rotation").unwrap();
    same_trees(&tree(&v.mnt), &tree(plain.path()));
    assert_eq!(hashes(&v, &want), want, "the populated files");
    let log = v.log();
    assert!(log.contains("KEK 1 destroyed"), "{log}");
    v.umount();

    let after = slot_versions(&v.cipher);
    assert!(
        after.values().all(|s| s == &vec![2]),
        "every object on KEK 2 only: {after:?}"
    );
    let c = config(&v);
    assert_eq!(c.keks.len(), 1);
    assert_eq!((c.keks[0].version, c.keks[0].state), (2, KekState::Active));
    assert!(c.protectors.iter().all(|p| p.kek_version == 2));
    v.assert_fsck_clean("after the online rekey");

    // The old config over today's ciphertext, with the old passphrase.
    let conf = v.cipher.join(CONF);
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&conf, &old_conf).unwrap();
    let r = v.try_mount(&[]);
    assert!(!r.ok(), "old config must not mount today's tree: {r:?}");
}

#[test]
fn online_rekey_with_a_wrong_passphrase_writes_nothing() {
    if skip() {
        return;
    }
    let v = TestVolume::new("rekey-online-wrong");
    v.mount();
    let want = populate(&v, 12);
    let before_conf = fs::read(v.cipher.join(CONF)).unwrap();
    let before = raw_tree(&v.cipher);
    let wrong = v.dir.path().join("wrong");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    let o = rekey_online(&v, &wrong, &[]);
    o.expect_code(exit::WRONG_KEY, "online rekey, wrong passphrase");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before_conf);
    assert_eq!(raw_tree(&v.cipher), before, "no object was rewrapped");
    // The recovery key unlocks, but the passphrase protector cannot follow
    // the new key with a wrong passphrase: refused before the config step.
    let rk = recovery_file(&v);
    let o = rekey_online(
        &v,
        &wrong,
        &["--also-recovery-key-file", rk.to_str().unwrap()],
    );
    assert!(!o.ok() && o.stderr.contains("cannot follow"), "{o:?}");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before_conf);
    assert_eq!(raw_tree(&v.cipher), before, "no object was rewrapped");
    // A kept protector without its credential refuses as well.
    let o = rekey_online(&v, &v.passfile, &[]);
    assert!(!o.ok(), "{o:?}");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), before_conf);
    assert_eq!(raw_tree(&v.cipher), before, "no object was rewrapped");
    assert_eq!(hashes(&v, &want), want);
    // The cipher directory of a mounted volume goes to its daemon too; here
    // the recovery protector is dropped.
    let rid = recovery_id(&v);
    let mut c = Command::new(DEKFS);
    c.arg("rekey")
        .arg(&v.cipher)
        .arg("--passfile")
        .arg(&v.passfile)
        .args(["--drop-protector", &rid]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(hashes(&v, &want), want);
    let c = config(&v);
    assert_eq!(c.keks.len(), 1, "KEK 1 destroyed");
    assert_eq!(c.protectors.len(), 1, "the recovery key dropped");
    // Locked: refused, nothing written; unlocked with KEK 2: all readable.
    let mnt = v.mnt.to_str().unwrap();
    dekfs(["lock", mnt]).expect_code(exit::OK, "lock");
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    let o = rekey_online(&v, &v.passfile, &[]);
    assert!(!o.ok() && o.stderr.contains("locked"), "{o:?}");
    assert_eq!(fs::read(v.cipher.join(CONF)).unwrap(), conf);
    let pf = v.passfile.to_str().unwrap();
    dekfs(["unlock", mnt, "--passfile", pf]).expect_code(exit::OK, "unlock on KEK 2");
    assert_eq!(hashes(&v, &want), want);
    v.umount();
}

/// The id prefix of the volume's recovery-key protector.
fn recovery_id(v: &TestVolume) -> String {
    let c = config(v);
    let p = c
        .protectors
        .iter()
        .find(|p| matches!(p.body, dekfs::format::ProtectorBody::Recovery(_)))
        .unwrap();
    p.protector_id
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}
