//! Daemon memory stays bounded: after an unlock at the default Argon2id cost
//! and 10,000 files created, opened, read and closed, the daemon's VmRSS is
//! under 64 MiB, and a second open/read/close pass does not grow it.
//!
//! The volume is initialised with the default KDF parameters (64 MiB of
//! Argon2id working memory), so memory the unlock used and did not give back
//! shows up here. 10,000 files of 4 KiB in 100 directories are written and
//! then read through the mount from this process (one Rust loop, no child
//! processes). VmRSS/VmHWM come from /proc/<daemon>/status; smaps_rollup,
//! thread and fd counts are printed with them so a failure says where the
//! memory went. Needs root and /dev/fuse.

mod common;

use std::fs;
use std::io::Read;
use std::time::Instant;

use common::*;

/// VmRSS must stay below this after unlock and 10,000 files.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// A second pass over the same files may not add more than this to VmRSS
/// (the daemon's caches must be bounded, not grow per open).
const SECOND_PASS_GROWTH_KIB: u64 = 4 * 1024;

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;
const FILE_LEN: usize = 4096;

/// A `Key:   123 kB` field of a /proc status-like file, in KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

struct Mem {
    rss: u64,
    hwm: u64,
    report: String,
}

/// VmRSS, VmHWM and a one-paragraph report of where the memory is.
fn daemon_mem(pid: u32, when: &str) -> Mem {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let rss = kib_field(&status, "VmRSS").expect("VmRSS");
    let hwm = kib_field(&status, "VmHWM").expect("VmHWM");
    let mut report = format!("daemon {pid} {when}: VmRSS {rss} KiB, VmHWM {hwm} KiB");
    for k in [
        "RssAnon", "RssFile", "RssShmem", "VmLck", "VmData", "VmStk", "Threads",
    ] {
        if let Some(line) = status.lines().find(|l| l.starts_with(&format!("{k}:"))) {
            report.push_str(&format!(
                ", {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    report.push_str(&format!(", open fds {fds}"));
    if let Ok(roll) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        let parts: Vec<String> = ["Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous", "Locked"]
            .iter()
            .filter_map(|k| Some(format!("{k} {}", kib_field(&roll, k)?)))
            .collect();
        report.push_str(&format!("\n  smaps_rollup (KiB): {}", parts.join(", ")));
    }
    Mem { rss, hwm, report }
}

/// The largest resident mappings of `pid` (for a failure message).
fn biggest_mappings(pid: u32, n: usize) -> String {
    let Ok(smaps) = fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return String::new();
    };
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut cur = String::new();
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            cur = l.to_owned();
        } else if let Some(v) = kib_field(l, "Rss") {
            maps.push((v, cur.clone()));
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    maps.iter()
        .take(n)
        .map(|(k, m)| format!("  {k:>8} KiB  {m}\n"))
        .collect()
}

fn content(d: usize, f: usize) -> Vec<u8> {
    let mut v = vec![(d * 31 + f) as u8; FILE_LEN];
    v[..8].copy_from_slice(&((d * FILES_PER_DIR + f) as u64).to_le_bytes());
    v
}

/// Opens, reads and closes every file; checks each one's content.
fn read_pass(v: &TestVolume, buf: &mut Vec<u8>) {
    for d in 0..DIRS {
        for f in 0..FILES_PER_DIR {
            let p = v.p(&format!("d{d}/f{f}"));
            let mut file =
                fs::File::open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            buf.clear();
            file.read_to_end(buf)
                .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            assert!(buf == &content(d, f), "content of {}", p.display());
        }
    }
}

#[test]
fn daemon_rss_bounded_after_unlock_and_10000_files() {
    require_fuse!();
    let t_all = Instant::now();
    // default KDF cost (64 MiB Argon2id): no FAST_KDF here
    let v = TestVolume::uninitialised("rss");
    dekfs([
        "init".as_ref(),
        v.cipher.as_os_str(),
        "--passfile".as_ref(),
        v.passfile.as_os_str(),
    ])
    .expect_code(exit::OK, "dekfs init (default KDF)");
    let t_mount = Instant::now();
    v.mount();
    let mount_secs = t_mount.elapsed().as_secs_f64();
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    let pid = pids[0];
    let m0 = daemon_mem(pid, "after mount (default KDF)");
    eprintln!("{}", m0.report);

    let t = Instant::now();
    for d in 0..DIRS {
        fs::create_dir(v.p(&format!("d{d}"))).unwrap();
        for f in 0..FILES_PER_DIR {
            fs::write(v.p(&format!("d{d}/f{f}")), content(d, f))
                .unwrap_or_else(|e| panic!("write d{d}/f{f}: {e}"));
        }
    }
    let create_secs = t.elapsed().as_secs_f64();
    let mc = daemon_mem(pid, "after creating 10,000 files");
    eprintln!("{}", mc.report);

    let mut buf = Vec::with_capacity(2 * FILE_LEN);
    let t = Instant::now();
    read_pass(&v, &mut buf);
    let pass1_secs = t.elapsed().as_secs_f64();
    let m1 = daemon_mem(pid, "after open/read/close pass 1");
    eprintln!("{}", m1.report);

    let t = Instant::now();
    read_pass(&v, &mut buf);
    let pass2_secs = t.elapsed().as_secs_f64();
    let m2 = daemon_mem(pid, "after open/read/close pass 2");
    eprintln!("{}", m2.report);

    eprintln!(
        "daemon RSS (KiB): mount {} | created {} | pass 1 {} | pass 2 {} (limit {RSS_LIMIT_KIB}, \
         pass-2 growth {} allowed {SECOND_PASS_GROWTH_KIB}); VmHWM {}\n\
         times: mount {mount_secs:.2} s, create {create_secs:.2} s, pass 1 {pass1_secs:.2} s, \
         pass 2 {pass2_secs:.2} s",
        m0.rss,
        mc.rss,
        m1.rss,
        m2.rss,
        m2.rss as i64 - m1.rss as i64,
        m2.hwm
    );
    let over = m1.rss >= RSS_LIMIT_KIB || m2.rss >= RSS_LIMIT_KIB;
    let grew = m2.rss > m1.rss + SECOND_PASS_GROWTH_KIB;
    if over || grew {
        eprintln!("largest resident mappings:\n{}", biggest_mappings(pid, 12));
    }
    v.umount();
    eprintln!("RSS test took {:.1} s", t_all.elapsed().as_secs_f64());
    assert!(
        !over,
        "daemon VmRSS {} KiB (pass 1) / {} KiB (pass 2) >= {RSS_LIMIT_KIB} KiB",
        m1.rss, m2.rss
    );
    assert!(
        !grew,
        "daemon VmRSS grew by {} KiB on a second open/close pass over the same 10,000 files \
         (allowed {SECOND_PASS_GROWTH_KIB} KiB): unbounded cache?",
        m2.rss - m1.rss
    );
}
