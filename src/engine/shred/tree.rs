//! The keyless passes of a shred over the backing subtree, by descriptor and
//! without following symlinks: survey (count, and fingerprint every wrapped
//! key and id before anything is destroyed), destroy (overwrite both slots
//! of every key object in place; the caller syncs) and remove (unlink the
//! ciphertext, deepest first). A key object is every entry file (a header,
//! whatever its magic says), every `dekfs.dir` and its temp files, and any
//! other file that carries a header or dekfs.dir magic. It must not look
//! outside the target subtree and must not need a key: a rerun after a crash
//! has only the journal.

use super::verify::{Needle, Needles};
use crate::format::{plain_size, DIR_META_LEN, DIR_META_NAME, HEADER_LEN, SLOT_LEN};
use crate::layout::{self, Class};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// Where the two slots of a header and of a dekfs.dir start.
const HEADER_SLOTS: usize = HEADER_LEN - 2 * SLOT_LEN;
const DIR_SLOTS: usize = DIR_META_LEN - 2 * SLOT_LEN;

/// What the target holds, before anything is destroyed.
#[derive(Debug, Default, Clone)]
pub struct Survey {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    pub others: u64,
    /// Plaintext bytes of the files (from their ciphertext sizes).
    pub plain_bytes: u64,
    /// Headers, dekfs.dir files and their temps.
    pub key_objects: u64,
    pub ids: Vec<[u8; 16]>,
    pub needles: Needles,
    /// The target's own id, if it carries one.
    pub target_id: Option<[u8; 16]>,
}

/// Opens the directory at backing path `comps` below `root`; None if a
/// component is gone.
pub(super) fn open_parent(root: &OwnedFd, comps: &[String]) -> io::Result<Option<OwnedFd>> {
    let mut fd = open_dir(root.as_fd(), ".")?;
    for c in comps {
        fd = match open_dir(fd.as_fd(), c) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    Ok(Some(fd))
}

fn open_dir(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// The entries of a directory (but `.` and `..`) with their types.
fn children(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut out = Vec::new();
    for e in layout::list(&fd)? {
        if e.raw == b"." || e.raw == b".." {
            continue;
        }
        let ft = match e.file_type {
            FileType::Unknown => FileType::from_raw_mode(
                rustix::fs::statat(fd, e.raw.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
            ),
            t => t,
        };
        out.push((e.raw, ft));
    }
    Ok(out)
}

fn stat_type(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The id an entry carries now: its dekfs.dir's dir_id (a directory) or its
/// header's file_id; None if it has none. `Err(NOENT)` if it is gone.
pub(super) fn target_id(parent: &OwnedFd, entry: &str) -> io::Result<Option<[u8; 16]>> {
    let head = match stat_type(parent.as_fd(), entry.as_bytes())? {
        None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        Some(FileType::Directory) => {
            let fd = open_dir(parent.as_fd(), entry)?;
            match open_file(fd.as_fd(), DIR_META_NAME.as_bytes(), false) {
                Ok(f) => read_head(&f)?,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Some(FileType::RegularFile) => {
            read_head(&open_file(parent.as_fd(), entry.as_bytes(), false)?)?
        }
        Some(_) => return Ok(None),
    };
    Ok(head.get(16..32).map(|b| {
        let mut id = [0u8; 16];
        id.copy_from_slice(b);
        id
    }))
}

/// True for a directory holding nothing but (at most) its dekfs.dir: the
/// daemon re-keys such a directory on first access, which changes its id
/// without there being anything to lose.
pub(super) fn empty_dir(parent: &OwnedFd, entry: &str) -> io::Result<bool> {
    if stat_type(parent.as_fd(), entry.as_bytes())? != Some(FileType::Directory) {
        return Ok(false);
    }
    let fd = open_dir(parent.as_fd(), entry)?;
    Ok(children(fd.as_fd())?
        .iter()
        .all(|(n, _)| n == DIR_META_NAME.as_bytes()))
}

fn read_head(f: &std::fs::File) -> io::Result<Vec<u8>> {
    let len = f.metadata()?.len() as usize;
    let mut head = vec![0u8; 32.min(len)];
    f.read_exact_at(&mut head, 0)?;
    Ok(head)
}

/// Where a file's key slots start, from its name and first bytes; None for
/// a file that carries no key.
fn slot_start(name: &[u8], head: &[u8]) -> Option<usize> {
    let name = std::str::from_utf8(name).unwrap_or("");
    if name.starts_with(DIR_META_NAME) || head.starts_with(b"DKFD") {
        return Some(DIR_SLOTS);
    }
    if head.starts_with(b"DKFH")
        || matches!(layout::classify(name), Class::Short(_) | Class::Long { .. })
    {
        return Some(HEADER_SLOTS);
    }
    None
}

fn open_file(dir: BorrowedFd<'_>, name: &[u8], write: bool) -> io::Result<std::fs::File> {
    let mode = if write { OFlags::RDWR } else { OFlags::RDONLY };
    let fd = rustix::fs::openat(
        dir,
        name,
        mode | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// Counts the target and fingerprints every id and wrapped key under it.
pub fn survey(root: &OwnedFd, t: &super::Target) -> io::Result<Survey> {
    let parent =
        open_parent(root, &t.parent)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    survey_at(&parent, &t.entry)
}

/// `survey` of entry `entry` in the open directory `parent`.
pub fn survey_at(parent: &OwnedFd, entry: &str) -> io::Result<Survey> {
    let mut s = Survey {
        target_id: target_id(parent, entry)?,
        ..Survey::default()
    };
    survey_entry(&mut s, parent.as_fd(), entry.as_bytes())?;
    Ok(s)
}

fn survey_entry(s: &mut Survey, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match stat_type(dir, name)? {
        Some(FileType::Directory) => {
            s.dirs += 1;
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            for (n, _) in children(fd.as_fd())? {
                survey_entry(s, fd.as_fd(), &n)?;
            }
        }
        Some(FileType::RegularFile) => survey_file(s, dir, name)?,
        Some(FileType::Symlink) => s.symlinks += 1,
        Some(_) => s.others += 1,
        None => {}
    }
    Ok(())
}

fn survey_file(s: &mut Survey, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let f = open_file(dir, name, false)?;
    let len = f.metadata()?.len();
    let mut head = vec![0u8; DIR_META_LEN.min(len as usize)];
    f.read_exact_at(&mut head, 0)?;
    let entry = std::str::from_utf8(name)
        .is_ok_and(|n| matches!(layout::classify(n), Class::Short(_) | Class::Long { .. }));
    if entry {
        s.files += 1;
        s.plain_bytes += plain_size(len).unwrap_or(0);
    }
    let Some(start) = slot_start(name, &head) else {
        return Ok(());
    };
    s.key_objects += 1;
    if head.len() >= 32 {
        let mut id = [0u8; 16];
        id.copy_from_slice(&head[16..32]);
        s.ids.push(id);
    }
    for k in 0..2 {
        let at = start + k * SLOT_LEN + 8;
        if let Some(w) = head.get(at..at + crate::format::WRAPPED_LEN) {
            if w.iter().any(|&b| b != 0) {
                let mut wrapped = [0u8; crate::format::WRAPPED_LEN];
                wrapped.copy_from_slice(w);
                s.needles.push(Needle::of(&wrapped));
            }
        }
    }
    Ok(())
}

/// Overwrites both slots of every key object under the entry with zeros.
/// Nothing is synced here: the caller makes the whole filesystem durable
/// with one syncfs, which on a disk costs one flush instead of one per file
/// (the same guarantee as an fdatasync of each). The count of objects
/// overwritten. `expected` only places the half-way crash point.
pub(super) fn destroy_slots(parent: &OwnedFd, entry: &str, expected: usize) -> io::Result<u64> {
    let mut n = 0u64;
    let half = (expected as u64 / 2).max(1);
    destroy_entry(parent.as_fd(), entry.as_bytes(), &mut n, half)?;
    Ok(n)
}

fn destroy_entry(dir: BorrowedFd<'_>, name: &[u8], n: &mut u64, half: u64) -> io::Result<()> {
    match stat_type(dir, name)? {
        Some(FileType::Directory) => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            // The directory's own key first: its whole subtree dies with it.
            let kids = children(fd.as_fd())?;
            let (meta, rest): (Vec<_>, Vec<_>) = kids
                .into_iter()
                .partition(|(k, _)| k.starts_with(DIR_META_NAME.as_bytes()));
            for (k, _) in meta.iter().chain(rest.iter()) {
                destroy_entry(fd.as_fd(), k, n, half)?;
            }
        }
        Some(FileType::RegularFile) => {
            let f = open_file(dir, name, true)?;
            let len = f.metadata()?.len() as usize;
            let mut head = vec![0u8; 4.min(len)];
            f.read_exact_at(&mut head, 0)?;
            if let Some(start) = slot_start(name, &head) {
                let end = (start + 2 * SLOT_LEN).min(len);
                if end > start {
                    f.write_all_at(&vec![0u8; end - start], start as u64)?;
                }
                *n += 1;
                if *n == half {
                    crate::failpoint::hit(super::FP_HALF);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Removes the entry and everything under it, deepest first, then its
/// long-name record, and fsyncs the parent.
pub(super) fn remove(parent: &OwnedFd, entry: &str, record: Option<&str>) -> io::Result<()> {
    if let Some(fd) = open_target_dir(parent, entry)? {
        clear_dir(&fd)?;
    }
    remove_entry(parent, entry, record)
}

/// The target's directory, if it is one.
pub(super) fn open_target_dir(parent: &OwnedFd, entry: &str) -> io::Result<Option<OwnedFd>> {
    match stat_type(parent.as_fd(), entry.as_bytes())? {
        Some(FileType::Directory) => Ok(Some(open_dir(parent.as_fd(), entry)?)),
        _ => Ok(None),
    }
}

/// Removes everything in the directory `fd` (by descriptor, whatever its
/// name is meanwhile) and syncs it.
pub(super) fn clear_dir(fd: &OwnedFd) -> io::Result<()> {
    remove_contents(fd.as_fd())?;
    rustix::fs::fsync(fd)?;
    crate::failpoint::hit(super::FP_CONTENTS);
    Ok(())
}

/// Removes the (emptied) entry, then its long-name record, and fsyncs the
/// parent.
pub(super) fn remove_entry(parent: &OwnedFd, entry: &str, record: Option<&str>) -> io::Result<()> {
    let is_dir = stat_type(parent.as_fd(), entry.as_bytes())? == Some(FileType::Directory);
    unlink(parent.as_fd(), entry.as_bytes(), is_dir)?;
    if let Some(r) = record {
        unlink(parent.as_fd(), r.as_bytes(), false)?;
    }
    rustix::fs::fsync(parent)?;
    Ok(())
}

fn remove_contents(fd: BorrowedFd<'_>) -> io::Result<()> {
    for (name, ft) in children(fd)? {
        if ft == FileType::Directory {
            let sub = rustix::fs::openat(
                fd,
                name.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            remove_contents(sub.as_fd())?;
            unlink(fd, &name, true)?;
        } else {
            unlink(fd, &name, false)?;
        }
    }
    Ok(())
}

fn unlink(dir: BorrowedFd<'_>, name: &[u8], is_dir: bool) -> io::Result<()> {
    let flags = if is_dir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &std::path::Path) -> OwnedFd {
        super::super::open_root(dir).unwrap()
    }

    #[test]
    fn destroy_zeroes_exactly_the_slots_of_every_key_object() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("victim");
        std::fs::create_dir_all(top.join("sub")).unwrap();
        let header: Vec<u8> = (0..HEADER_LEN + 100).map(|i| (i % 251 + 1) as u8).collect();
        let mut header = header;
        header[..4].copy_from_slice(b"DKFH");
        let meta: Vec<u8> = (0..DIR_META_LEN).map(|i| (i % 13 + 1) as u8).collect();
        std::fs::write(top.join("Zm9vYmFy"), &header).unwrap();
        std::fs::write(top.join(DIR_META_NAME), &meta).unwrap();
        // A torn dekfs.dir.tmp reaching into slot 0 only.
        std::fs::write(top.join("sub/dekfs.dir.tmp"), &meta[..100]).unwrap();
        std::fs::write(top.join("sub/dekfs.ln.abc.name"), b"record").unwrap();
        let r = root(t.path());
        let n = destroy_slots(&r, "victim", 3).unwrap();
        assert_eq!(n, 3);
        let h = std::fs::read(top.join("Zm9vYmFy")).unwrap();
        assert_eq!(&h[..HEADER_SLOTS], &header[..HEADER_SLOTS]);
        assert!(h[HEADER_SLOTS..HEADER_LEN].iter().all(|&b| b == 0));
        assert_eq!(&h[HEADER_LEN..], &header[HEADER_LEN..], "content untouched");
        let m = std::fs::read(top.join(DIR_META_NAME)).unwrap();
        assert_eq!(&m[..DIR_SLOTS], &meta[..DIR_SLOTS]);
        assert!(m[DIR_SLOTS..].iter().all(|&b| b == 0));
        let tmp = std::fs::read(top.join("sub/dekfs.dir.tmp")).unwrap();
        assert_eq!(tmp.len(), 100);
        assert!(tmp[DIR_SLOTS..].iter().all(|&b| b == 0));
        assert_eq!(
            std::fs::read(top.join("sub/dekfs.ln.abc.name")).unwrap(),
            b"record"
        );
        remove(&r, "victim", None).unwrap();
        assert!(!top.exists());
    }

    #[test]
    fn survey_fingerprints_slots_and_ids_before_destruction() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("v")).unwrap();
        let mut h = vec![0u8; HEADER_LEN];
        h[..4].copy_from_slice(b"DKFH");
        h[16..32].copy_from_slice(&[9; 16]);
        h[HEADER_SLOTS] = 1;
        h[HEADER_SLOTS + 8..HEADER_SLOTS + 72].fill(0x5a);
        std::fs::write(t.path().join("v/Zm9v"), &h).unwrap();
        let target = super::super::Target {
            plain: "/v".into(),
            parent: vec![],
            entry: "v".into(),
            record: None,
            kind: FileType::Directory,
        };
        let s = survey(&root(t.path()), &target).unwrap();
        assert_eq!((s.dirs, s.files, s.key_objects), (1, 1, 1));
        assert_eq!(s.ids, vec![[9; 16]]);
        assert_eq!(s.needles.len(), 1, "the empty slot 1 is no needle");
        assert_eq!(s.needles.iter().next().unwrap().prefix, [0x5a; 8]);
    }
}
