//! Attributes for the core: stat translation (ciphertext size -> plaintext
//! size), setattr and statfs. It must not change file contents except by
//! delegating size changes to `FileIo`.

use super::node::{Kind, Node};
use super::{CoreError, CoreFs, Errno, FsResult, Requester};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

#[derive(Default, Debug)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub fh: Option<u64>,
    /// The caller lacks CAP_FSETID: a size change must drop set-id bits
    /// (we own that rule under FUSE_HANDLE_KILLPRIV_V2).
    pub kill_setid: bool,
    /// Who asked: a long extension stops if they are killed.
    pub who: Requester,
}

pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

fn systime(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs())
            + Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64)
    }
}

fn timespec(t: Option<TimeSet>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT as _,
        },
        Some(TimeSet::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW as _,
        },
        Some(TimeSet::At(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as _,
            },
            Err(e) => {
                let d = e.duration();
                let (mut s, mut n) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i64));
                if n < 0 {
                    s -= 1;
                    n += 1_000_000_000;
                }
                Timespec {
                    tv_sec: s,
                    tv_nsec: n as _,
                }
            }
        },
    }
}

impl CoreFs {
    pub(super) fn attr_of(&self, node: &Node) -> FsResult<Attr> {
        let st = self.stat_node(node)?;
        self.attr_from(node, &st)
    }

    pub(super) fn attr_from(&self, node: &Node, st: &rustix::fs::Stat) -> FsResult<Attr> {
        let kind = Kind::from_mode(st.st_mode);
        let size = match kind {
            Kind::File => self.file_size(node, st.st_size as u64),
            Kind::Symlink => match self.readlink(node.ino) {
                Ok(t) => t.len() as u64,
                // stat still answers, so no error carries the damage out.
                Err(e) => {
                    if let CoreError::Damage(d) = &e {
                        super::error::report(d);
                    }
                    0
                }
            },
            _ => st.st_size as u64,
        };
        Ok(Attr {
            ino: node.ino,
            size,
            blocks: st.st_blocks as u64,
            atime: systime(st.st_atime, st.st_atime_nsec as i64),
            mtime: systime(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: systime(st.st_ctime, st.st_ctime_nsec as i64),
            kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: 4096,
        })
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        // While locked only the mountpoint itself answers (shells, umount
        // and `mountpoint` stat it); everything below is refused.
        if ino != super::ROOT_INO {
            self.check_unlocked()?;
        }
        let node = self.node(ino)?;
        self.attr_of(&node)
    }

    pub fn setattr(&self, ino: u64, set: SetAttr) -> FsResult<Attr> {
        self.check_writable()?;
        self.check_unlocked()?;
        let node = self.node(ino)?;
        if set.uid.is_some() || set.gid.is_some() {
            rustix::fs::chownat(
                &node.fd,
                "",
                set.uid.map(Uid::from_raw),
                set.gid.map(Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = set.mode {
            if node.kind == Kind::Symlink {
                return Err(Errno::EOPNOTSUPP.into());
            }
            rustix::fs::chmod(
                self.proc_path(&node).as_str(),
                Mode::from_raw_mode(mode & 0o7777),
            )?;
        }
        if let Some(size) = set.size {
            self.with_space(|| self.truncate(&node, set.fh, size, set.who))?;
            if set.kill_setid && set.mode.is_none() {
                self.kill_setid(ino)?;
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let ts = Timestamps {
                last_access: timespec(set.atime),
                last_modification: timespec(set.mtime),
            };
            if node.kind == Kind::Symlink {
                let loc = node.location();
                let p = self.node(loc.parent)?;
                rustix::fs::utimensat(
                    &p.fd,
                    loc.cipher_name.as_str(),
                    &ts,
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            } else {
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    self.proc_path(&node).as_str(),
                    &ts,
                    AtFlags::empty(),
                )?;
            }
        }
        self.attr_of(&node)
    }

    fn truncate(
        &self,
        node: &std::sync::Arc<Node>,
        fh: Option<u64>,
        size: u64,
        who: Requester,
    ) -> FsResult<()> {
        match node.kind {
            Kind::File => {}
            Kind::Dir => return Err(Errno::EISDIR.into()),
            _ => return Err(Errno::EINVAL.into()),
        }
        if node.unreadable {
            return Err(self.integrity(node.ino, "entry name failed authentication"));
        }
        let file = match fh.and_then(|h| self.open_file(h).ok()) {
            Some(of) => of.file.try_clone()?,
            None => self.reopen(node, OFlags::RDWR)?,
        };
        let (_, dkey) = self.dir_node(node.parent())?;
        let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
        let keys = self.vkeys()?;
        let temp = !io.is_loaded();
        if temp {
            self.load_io(node, &file, &mut io, &keys, &dkey)
                .map_err(|e| self.locate(node.ino, e))?;
        }
        let plen = io.plain_len()?;
        let r = self
            .renew_if_due(&file, &mut io, &keys, &dkey, size.min(plen), size)
            .and_then(|()| io.truncate(&file, &keys, &dkey, size, who))
            .map_err(|e| self.locate(node.ino, e));
        if temp && node.open_handles.load(std::sync::atomic::Ordering::Acquire) == 0 {
            io.unload();
        }
        r
    }

    /// Drops set-user-id, and set-group-id where group-execute is set, as
    /// the kernel would on a write or truncate by a caller without CAP_FSETID.
    pub fn kill_setid(&self, ino: u64) -> FsResult<()> {
        let node = self.node(ino)?;
        if node.kind != Kind::File {
            return Ok(());
        }
        let mode = self.stat_node(&node)?.st_mode & 0o7777;
        let mut new = mode & !libc::S_ISUID;
        if mode & libc::S_IXGRP != 0 {
            new &= !libc::S_ISGID;
        }
        if new != mode {
            rustix::fs::chmod(self.proc_path(&node).as_str(), Mode::from_raw_mode(new))?;
        }
        Ok(())
    }

    pub fn statfs(&self) -> FsResult<StatFs> {
        let root = self.node(super::ROOT_INO)?;
        let fd = rustix::fs::openat(
            &root.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let s = rustix::fs::fstatvfs(&fd)?;
        Ok(StatFs {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            namelen: 255,
            frsize: s.f_frsize as u32,
        })
    }
}

impl CoreFs {
    /// Plaintext size of a regular file from its backing size, by the size rule of its layout:
    /// the loaded file's own (its header says), else the volume's (FORMAT.md: a paged volume's
    /// files are paged). No read: stat stays one fstat.
    fn file_size(&self, node: &Node, csize: u64) -> u64 {
        let paged = match node.io.try_read() {
            Ok(io) if io.is_loaded() && io.key().is_some() => io.is_paged(),
            _ => self.paged,
        };
        if paged {
            crate::format::paged_plain_of(csize)
        } else {
            super::file_io::visible_size(csize)
        }
    }
}
