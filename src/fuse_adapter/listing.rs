//! Directory listings for the kernel: READDIR and READDIRPLUS replies
//! built from the core's opendir snapshot. Offsets and which slots exist
//! come from fs::policy::listing; this file only fills the reply buffers.

use super::convert::{attr, kind};
use super::err;
use crate::fs::policy::{self, Slot, ENTRY_TTL};
use crate::fs::CoreFs;
use fuser::{
    FileAttr, FileHandle, FileType, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub(super) fn readdir(
    core: &CoreFs,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectory,
) {
    let dir = match core.readdir_entries(ino.0, fh.0, offset) {
        Ok(d) => d,
        Err(e) => return reply.error(err(e)),
    };
    for (next, slot) in policy::listing(&dir.entries, offset) {
        let full = match slot {
            Slot::Dot => reply.add(ino, next, FileType::Directory, "."),
            Slot::DotDot => reply.add(INodeNo(1), next, FileType::Directory, ".."),
            Slot::Entry(e) => {
                let ino = INodeNo(core.fuse_ino(e.backing_ino));
                reply.add(ino, next, kind(e.kind), OsStr::from_bytes(&e.plain))
            }
        };
        if full {
            break;
        }
    }
    reply.ok();
}

pub(super) fn readdirplus(
    core: &CoreFs,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectoryPlus,
) {
    let dir = match core.readdir_entries(ino.0, fh.0, offset) {
        Ok(d) => d,
        Err(e) => return reply.error(err(e)),
    };
    let mut dir_attr: Option<FileAttr> = None;
    for (next, slot) in policy::listing(&dir.entries, offset) {
        let full = match slot {
            Slot::Dot | Slot::DotDot => {
                let a = match dir_attr {
                    Some(a) => a,
                    None => match core.getattr(ino.0) {
                        Ok(a) => *dir_attr.insert(attr(&a)),
                        Err(e) => return reply.error(err(e)),
                    },
                };
                // ".." is not looked up by the kernel; its attributes are
                // only a placeholder, as in readdir.
                let (i, name) = match slot {
                    Slot::Dot => (ino, "."),
                    _ => (a.ino, ".."),
                };
                reply.add(i, next, name, &ENTRY_TTL, &a, Generation(0))
            }
            Slot::Entry(e) => {
                // Each entry sent counts as a lookup; one that no longer
                // exists is skipped, one that does not fit is forgotten again.
                let Ok(a) = core.lookup_entry(ino.0, e) else {
                    continue;
                };
                let name = OsStr::from_bytes(&e.plain);
                let full = reply.add(
                    INodeNo(a.ino),
                    next,
                    name,
                    &policy::ttl(&a),
                    &attr(&a),
                    Generation(0),
                );
                if full {
                    core.forget(a.ino, 1);
                }
                full
            }
        };
        if full {
            break;
        }
    }
    reply.ok();
}
