//! The `user.` extended attributes of a file under renewal: their names and
//! values are sealed under a DEK-derived key, so they move to the new DEK
//! with the blocks. The journal file keeps the raw originals as its own
//! attributes so a restore can put them back. It must not touch other
//! namespaces (they belong to the backing inode).

use crate::crypto::FileKey;
use crate::fs::{CoreError, FsResult};
use rustix::fs::XattrFlags;
use std::fs::File;

const USER: &[u8] = b"user.";
const VALUE_MAX: usize = 64 * 1024;

/// The `user.` backing attribute names of `f`.
fn names(f: &File) -> FsResult<Vec<String>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = match rustix::fs::flistxattr(f, &mut buf[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(buf[..n]
        .split(|b| *b == 0)
        .filter(|s| s.starts_with(USER))
        .filter_map(|s| std::str::from_utf8(s).ok().map(str::to_owned))
        .collect())
}

fn get(f: &File, name: &str) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; VALUE_MAX];
    let n = rustix::fs::fgetxattr(f, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

/// Copies `src`'s raw `user.` attributes onto `dst` (the journal).
pub fn save(src: &File, dst: &File) -> FsResult<()> {
    for n in names(src)? {
        rustix::fs::fsetxattr(dst, n.as_str(), &get(src, &n)?, XattrFlags::empty())?;
    }
    Ok(())
}

/// Makes `dst`'s `user.` attributes exactly the raw ones of `src` (the
/// journal): the restore side of `save`.
pub fn restore(src: &File, dst: &File) -> FsResult<()> {
    for n in names(dst)? {
        rustix::fs::fremovexattr(dst, n.as_str())?;
    }
    save(src, dst)
}

/// Re-seals every `user.` attribute from `old` to `new`. One that does not
/// open under `old` was damaged before and is left as it is.
pub fn reseal(f: &File, old: &FileKey, new: &FileKey) -> FsResult<()> {
    for bname in names(f)? {
        let Ok(name) = old.xattr().decrypt_name(&bname) else {
            continue;
        };
        let Ok(value) = old.xattr().open_value(&bname, &get(f, &bname)?) else {
            continue;
        };
        let nname = new.xattr().encrypt_name(&name).map_err(CoreError::Crypto)?;
        let sealed = new
            .xattr()
            .seal_value(&nname, &value)
            .map_err(CoreError::Crypto)?;
        rustix::fs::fsetxattr(f, nname.as_str(), &sealed, XattrFlags::empty())?;
        rustix::fs::fremovexattr(f, bname.as_str())?;
    }
    Ok(())
}
