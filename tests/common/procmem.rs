//! Reading a live process's memory for the secret scans: every readable
//! mapping of /proc/PID/maps, read whole through /proc/PID/mem. Needs root
//! (or ptrace rights); must not interpret what it reads.

use std::fs;
use std::os::unix::fs::FileExt;

/// Calls `visit(label, start, bytes)` for every readable mapping of `pid`
/// that can be read (the label is the mapped file or `anon <perms>`).
pub fn for_each_region(pid: u32, mut visit: impl FnMut(&str, u64, &[u8])) {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if !f[1].starts_with('r') || l.contains("[vvar") || l.contains("[vsyscall]") {
            continue;
        }
        let (a, b) = f[0].split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.read_exact_at(&mut buf, a).is_err() {
            continue;
        }
        let label = f.get(5).map_or(format!("anon {}", f[1]), |p| p.to_string());
        visit(&label, a, &buf);
    }
}
