//! What the kernel says about mounts and processes: mountinfo, FUSE
//! connections, the daemons of a volume and the files they hold. Read-only:
//! it must not unmount or signal anything.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Mount points currently in this process's mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = if b[i] == b'\\' && i + 4 <= b.len() {
            std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        } else {
            None
        };
        if let Some(v) = octal {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many times `path` is a mount point (stacked mounts count twice).
/// `path` must be absolute and canonical (no stat of a possibly hung mount).
pub fn mount_count(path: &Path) -> usize {
    mount_points().iter().filter(|p| **p == path).count()
}

pub fn is_mounted(path: &Path) -> bool {
    mount_count(path) > 0
}

/// The fstype of the topmost mount at `path` ("fuse.dekfs", "fuse", ...).
pub fn mount_fstype(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for l in info.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() > 4 && Path::new(&unescape_mountinfo(f[4])) == path {
            let sep = f.iter().position(|x| *x == "-")?;
            found = f.get(sep + 1).map(|s| s.to_string());
        }
    }
    found
}

/// PIDs of processes whose command line mentions `needle` (the volume's
/// unique temp path), i.e. the dekfs daemon(s) of a volume.
pub fn pids_mentioning(needle: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = needle.as_os_str().as_bytes();
    let mut pids = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
                if cmd.windows(needle.len()).any(|w| w == needle) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// Regular files that process `pid` holds descriptors of, by their /proc
/// link text (" (deleted)" once unlinked), with their link count;
/// `which(o_path)` picks O_PATH descriptors (dekfs nodes) or the others
/// (open handles).
pub fn held_files(pid: u32, which: impl Fn(bool) -> bool) -> Vec<(String, u64)> {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let o_path = |fd: &std::ffi::OsStr| {
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()));
        let flags = info.ok().and_then(|i| {
            let l = i.lines().find(|l| l.starts_with("flags:"))?;
            u32::from_str_radix(l["flags:".len()..].trim(), 8).ok()
        });
        flags.is_some_and(|f| f & libc::O_PATH as u32 != 0)
    };
    rd.flatten()
        .filter(|e| which(o_path(&e.file_name())))
        .filter_map(|e| {
            let m = fs::metadata(e.path()).ok().filter(|m| m.is_file())?;
            let t = fs::read_link(e.path()).ok()?;
            Some((t.to_string_lossy().into_owned(), m.nlink()))
        })
        .collect()
}

/// Unlinked regular files (nlink 0) that process `pid` holds a descriptor
/// of (see `held_files`). Their space cannot be freed.
pub fn held_unlinked(pid: u32, which: impl Fn(bool) -> bool) -> Vec<String> {
    held_files(pid, which)
        .into_iter()
        .filter(|(_, nlink)| *nlink == 0)
        .map(|(t, _)| t)
        .collect()
}

/// The FUSE connection id (minor device number) of the mount at `path`.
pub fn fuse_connection(path: &Path) -> Option<u32> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && Path::new(&unescape_mountinfo(f[4])) == path)
            .then(|| f[2].split(':').nth(1)?.parse().ok())
            .flatten()
    })
}
