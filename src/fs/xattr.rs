//! Extended attributes of the core: only the `user.` namespace, with names
//! and values encrypted under the file's DEK-derived (or directory's) key.
//! It must not pass other namespaces through: their semantics (ACLs,
//! capabilities, security labels) belong to the backing inode, not the user.

use super::node::{Kind, Node};
use super::{CoreError, CoreFs, Errno, FsResult};
use crate::crypto::XattrCipher;
use rustix::fs::{OFlags, XattrFlags};
use std::sync::Arc;

const USER: &[u8] = b"user.";
/// Backing xattrs hold at most 64 KiB; the sealed value adds 28 bytes.
const MAX_VALUE: usize = 64 * 1024 - 28;

impl CoreFs {
    /// Runs `f` with the node's xattr cipher. Regular files get a header
    /// (hence a DEK) on their first attribute.
    fn with_xattr<T>(
        &self,
        node: &Arc<Node>,
        create: bool,
        f: impl FnOnce(&XattrCipher) -> FsResult<T>,
    ) -> FsResult<T> {
        if node.unreadable {
            return Err(self.integrity(node.ino, "entry name failed authentication"));
        }
        match node.kind {
            Kind::Dir => f(self.dir_key_of(node)?.xattr()),
            Kind::File => {
                let (_, dkey) = self.dir_node(node.parent())?;
                let file = self.reopen(node, if create { OFlags::RDWR } else { OFlags::RDONLY })?;
                let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
                // Under the file's lock: a lock that ran meanwhile is seen.
                let keys = self.vkeys()?;
                let temp = !io.is_loaded();
                if temp {
                    self.load_io(node, &file, &mut io, &keys, &dkey)
                        .map_err(|e| self.locate(node.ino, e))?;
                }
                let key = match (io.key().cloned(), create) {
                    (Some(k), _) => Some(k),
                    (None, true) => Some(
                        io.ensure_header(&file, &keys, &dkey)
                            .map_err(|e| self.locate(node.ino, e))?,
                    ),
                    (None, false) => None,
                };
                // Still under the lock: a DEK renewal (which re-seals the
                // attributes) must not run between taking the key and using it.
                let r = match key {
                    Some(k) => f(k.xattr()),
                    None => Err(Errno::ENODATA.into()),
                };
                if temp && node.open_handles.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    io.unload();
                }
                r
            }
            _ => Err(Errno::EPERM.into()),
        }
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        self.check_writable()?;
        if !name.starts_with(USER) {
            return Err(Errno::EOPNOTSUPP.into());
        }
        if value.len() > MAX_VALUE {
            return Err(Errno(libc::E2BIG).into());
        }
        let node = self.node(ino)?;
        let path = self.proc_path(&node);
        self.with_xattr(&node, true, |x| {
            // The only way encrypting a name fails is its length.
            let bname = x.encrypt_name(name).map_err(|_| Errno::ERANGE)?;
            let sealed = x
                .seal_value(&bname, value)
                .map_err(|_| Errno(libc::E2BIG))?;
            let fl = XattrFlags::from_bits_truncate(flags as u32);
            Ok(rustix::fs::setxattr(
                path.as_str(),
                bname.as_str(),
                &sealed,
                fl,
            )?)
        })
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        if !name.starts_with(USER) {
            return Err(Errno::ENODATA.into());
        }
        let node = self.node(ino)?;
        let path = self.proc_path(&node);
        self.with_xattr(&node, false, |x| {
            let bname = x.encrypt_name(name).map_err(CoreError::Crypto)?;
            let mut buf = vec![0u8; MAX_VALUE + 64];
            let n = rustix::fs::getxattr(path.as_str(), bname.as_str(), &mut buf[..])?;
            x.open_value(&bname, &buf[..n])
                .map_err(|_| self.integrity(node.ino, "extended attribute failed authentication"))
        })
    }

    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        if !matches!(node.kind, Kind::File | Kind::Dir) {
            return Ok(Vec::new());
        }
        let path = self.proc_path(&node);
        let mut buf = vec![0u8; 64 * 1024];
        let n = rustix::fs::listxattr(path.as_str(), &mut buf[..])?;
        let names: Vec<&[u8]> = buf[..n]
            .split(|b| *b == 0)
            .filter(|s| s.starts_with(USER))
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.with_xattr(&node, false, |x| {
            let mut out = Vec::new();
            for bn in names {
                let Ok(s) = std::str::from_utf8(bn) else {
                    continue;
                };
                match x.decrypt_name(s) {
                    Ok(p) => {
                        out.extend_from_slice(&p);
                        out.push(0);
                    }
                    Err(_) => {
                        self.report_damage(ino, "extended attribute name failed authentication")
                    }
                }
            }
            Ok(out)
        })
        .or_else(|e| {
            if e == Errno::ENODATA {
                Ok(Vec::new())
            } else {
                Err(e)
            }
        })
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.check_writable()?;
        if !name.starts_with(USER) {
            return Err(Errno::ENODATA.into());
        }
        let node = self.node(ino)?;
        let path = self.proc_path(&node);
        self.with_xattr(&node, false, |x| {
            let bname = x.encrypt_name(name).map_err(CoreError::Crypto)?;
            Ok(rustix::fs::removexattr(path.as_str(), bname.as_str())?)
        })
    }
}
