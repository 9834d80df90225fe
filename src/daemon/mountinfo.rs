//! Reads /proc/self/mountinfo: whether a path is a mount point, what is
//! mounted there, where a cipher directory is mounted. It must not stat the
//! mount point itself: that would wait for a daemon that may not serve yet.

use std::path::{Path, PathBuf};

/// True if `p` is the mount point of some mount.
pub fn is_mountpoint(p: &Path) -> bool {
    mount_source(p).is_some()
}

/// The fstype and source (for dekfs: the cipher directory) of the mount at `p`.
pub fn mount_source(p: &Path) -> Option<(String, String)> {
    mountinfo_line(p, |f| {
        let sep = f.iter().position(|x| *x == "-")?;
        Some((f.get(sep + 1)?.to_string(), unescape(f.get(sep + 2)?)))
    })
}

/// Where the cipher directory `cipherdir` is mounted as dekfs, if anywhere.
pub fn mountpoint_of(cipherdir: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = cipherdir.to_string_lossy();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        let mp = PathBuf::from(unescape(f.get(4)?));
        (*f.get(sep + 1)? == "fuse.dekfs" && unescape(f.get(sep + 2)?) == want).then_some(mp)
    })
}

/// The mount points of every dekfs mount.
pub fn dekfs_mounts() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let mp = PathBuf::from(unescape(f.get(4)?));
            (*f.get(sep + 1)? == "fuse.dekfs").then_some(mp)
        })
        .collect()
}

/// The major:minor device of the mount at `p`.
pub fn device_of(p: &Path) -> Option<String> {
    mountinfo_line(p, |f| f.get(2).map(|s| s.to_string()))
}

/// Applies `pick` to the split fields of the last mountinfo line for `p`.
fn mountinfo_line<T>(p: &Path, pick: impl Fn(&[&str]) -> Option<T>) -> Option<T> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = p.to_string_lossy();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if unescape(f.get(4)?) != want {
            return None;
        }
        pick(&f)
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn root_is_a_mountpoint() {
        assert!(is_mountpoint(Path::new("/")));
        assert!(!is_mountpoint(Path::new("/surely/not/mounted/here")));
    }
}
