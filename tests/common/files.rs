//! Syscall helpers the std library lacks (xattrs, mkfifo, utimensat,
//! statvfs) and deterministic test data with its digests. Must not know
//! about dekfs.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Deterministic random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// errno of an io::Error (panics if none).
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("expected an OS error, got {e:?}"))
}

/// Opens and reads the whole file; Ok(bytes) or the error.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Names in a directory (not . and ..), sorted.
pub fn dir_names(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

// ---- xattr helpers (libc) ----

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a valid buffer of value.len().
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid strings; buf has buf.len() bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

pub fn list_xattr(path: &Path) -> std::io::Result<Vec<String>> {
    let p = cstr(path);
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid string; buf has buf.len() bytes.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    let mut v: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    Ok(v)
}

pub fn remove_xattr(path: &Path, name: &str) -> std::io::Result<()> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn mkfifo(path: &Path, mode: u32) -> std::io::Result<()> {
    let p = cstr(path);
    // SAFETY: valid NUL-terminated string.
    let r = unsafe { libc::mkfifo(p.as_ptr(), mode as libc::mode_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// utimensat with explicit atime/mtime (seconds, nanoseconds), not
/// following symlinks when `nofollow`.
pub fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> std::io::Result<()> {
    let p = cstr(path);
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid string and a 2-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    let p = cstr(path);
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid string and pointer.
    let r = unsafe { libc::statvfs(p.as_ptr(), &mut st) };
    if r == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Inode number, nlink, mode of a path (lstat).
pub fn lstat(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

pub fn nlink(path: &Path) -> u64 {
    lstat(path).nlink()
}
