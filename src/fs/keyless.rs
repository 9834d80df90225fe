//! Directories whose key a power cut took (key file missing or cut short
//! while entries in it were already durable), and the directories below
//! them, whose keys were wrapped under the lost one: listed with every
//! entry under its recovery name and emptied through those names, so that
//! `rm -rf` removes them through the mount. A key file of full length that
//! fails to authenticate is tampering, not a power cut: that directory
//! still answers EIO (fsck reports it). It must not decrypt, create or move
//! anything in them, nor give them a new key (their entries were named
//! under the lost one; `rekey_empty_dir` handles the empty case).

use super::names::{self, BackingName};
use super::node::{Kind, Location, Node};
use super::{read_small, Attr, CoreFs, Errno, FsResult};
use crate::format::{DIR_META_LEN, DIR_META_NAME};
use crate::layout::{self, Class, LONGNAME_SUFFIX};
use rustix::fs::{Mode, OFlags};
use std::sync::Arc;

impl CoreFs {
    /// The node of directory `ino` when its key is lost (see above). A
    /// locked volume's revoked keys do not count: those come back at unlock.
    pub(super) fn keyless_dir(&self, ino: u64) -> Option<Arc<Node>> {
        let n = self.node(ino).ok()?;
        if n.kind != Kind::Dir || !matches!(n.dir_key(), Err(e) if e == Errno::EIO) {
            return None;
        }
        // A shredded directory has no key file either, by design: it stays EIO.
        if n.shredded.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let cut = match read_small(&n.fd, DIR_META_NAME, DIR_META_LEN) {
            Ok(meta) => meta.len() < DIR_META_LEN,
            Err(e) => e == Errno::ENOENT,
        };
        let parent = n.parent();
        let below_lost = n.unreadable && parent != ino && self.keyless_dir(parent).is_some();
        (cut || below_lost).then_some(n)
    }

    /// Every entry of a keyless directory, each under its recovery name.
    pub(super) fn keyless_listing(&self, dir: &Node) -> FsResult<Vec<names::DirEntry>> {
        let mut out = Vec::new();
        for ent in layout::list(&dir.fd).map_err(Errno::from)? {
            let Some(cipher) = ent.name else { continue };
            if !matches!(
                layout::classify(&cipher),
                Class::Short(_) | Class::Long { .. }
            ) {
                continue;
            }
            out.push(names::DirEntry {
                plain: names::recovery_name(&cipher),
                kind: names::kind_of(ent.file_type),
                cipher,
                backing_ino: ent.ino,
                unreadable: true,
            });
        }
        Ok(out)
    }

    /// The backing entry behind a recovery name in a keyless directory.
    /// Any other name may or may not be there: EIO, not ENOENT, so that
    /// nobody takes the loss for an absence.
    fn keyless_entry(&self, dir: &Node, name: &[u8]) -> FsResult<String> {
        if !layout::is_recovery_name(name) {
            return Err(Errno::EIO)?;
        }
        names::find_recovery(&dir.fd, name)
    }

    /// lookup in a keyless directory: only recovery names exist there, and
    /// what they lead to is unreadable too (a subdirectory's key was
    /// wrapped under the lost one).
    pub(super) fn keyless_lookup(&self, dir: &Node, name: &[u8]) -> FsResult<Attr> {
        let cipher = self.keyless_entry(dir, name)?;
        let (node, st) = self.attach_unreadable(dir, &cipher, name)?;
        self.attr_from(&node, &st)
    }

    /// The node for an entry whose name cannot be read in `parent`.
    pub(super) fn attach_unreadable(
        &self,
        parent: &Node,
        cipher: &str,
        plain: &[u8],
    ) -> FsResult<(Arc<Node>, rustix::fs::Stat)> {
        let fd = rustix::fs::openat(
            &parent.fd,
            cipher,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        let ino = self.fuse_ino(st.st_ino);
        let kind = Kind::from_mode(st.st_mode);
        let loc = Location {
            parent: parent.ino,
            cipher_name: cipher.to_owned(),
            plain_name: plain.to_vec(),
        };
        let node = self.nodes.lookup_or_insert(ino, || {
            Ok(Node::new(ino, kind, fd, loc.clone(), None, true))
        })?;
        if node.parent() == parent.ino {
            node.set_location(loc);
        }
        Ok((node, st))
    }

    /// unlink or rmdir of a recovery name in a keyless directory; a
    /// long-form entry's `.name` record goes with it, or the directory
    /// could never be emptied.
    pub(super) fn keyless_remove(&self, dir: &Node, name: &[u8], is_dir: bool) -> FsResult<()> {
        let cipher = self.keyless_entry(dir, name)?;
        let _g = super::node::lock(&dir.entries_lock);
        let bn = BackingName::Short(cipher.clone());
        if is_dir {
            self.remove_dir_entry(&dir.fd, &bn)?;
        } else {
            rustix::fs::unlinkat(&dir.fd, cipher.as_str(), rustix::fs::AtFlags::empty())?;
        }
        if let Class::Long { .. } = layout::classify(&cipher) {
            let record = format!("{cipher}{LONGNAME_SUFFIX}");
            let _ = rustix::fs::unlinkat(&dir.fd, record.as_str(), rustix::fs::AtFlags::empty());
        }
        self.space_gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
