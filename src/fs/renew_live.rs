//! Online `rekey --data`: renews the DEK of every regular file of a subtree
//! of the mounted volume through the live core, one file at a time under
//! its node's `io` write lock (so open handles carry on with the new key),
//! the way a client would walk it: list, look up, renew, forget. It must
//! not hold any lock across more than one file, and leaves what it cannot
//! renew to the report (never a silent skip).

use super::node::Kind;
use super::{names, CoreError, CoreFs, Errno, FsResult, ROOT_INO};
use rustix::fs::OFlags;
use std::collections::HashSet;
use std::os::fd::AsFd;

/// What an online renewal did.
#[derive(Debug, Default)]
pub struct LiveRenewal {
    pub files: u64,
    pub renewed: u64,
    /// Empty files (no DEK yet).
    pub empty: u64,
    /// "path: what" for each file not renewed.
    pub problems: Vec<String>,
}

impl CoreFs {
    /// Renews every regular file under plaintext path `scope` ("/" for all).
    /// `progress` sees the running counts after each file.
    pub fn renew_live(
        &self,
        scope: &str,
        progress: &mut dyn FnMut(&LiveRenewal),
    ) -> FsResult<LiveRenewal> {
        let mut out = LiveRenewal::default();
        let mut seen = HashSet::new();
        let mut ino = ROOT_INO;
        let mut held = Vec::new();
        for part in scope.split('/').filter(|p| !p.is_empty()) {
            match self.lookup(ino, part.as_bytes()) {
                Ok(a) => {
                    held.push(a.ino);
                    ino = a.ino;
                }
                Err(e) => {
                    self.forget_all(&held);
                    return Err(e);
                }
            }
        }
        let r = match self.node(ino).map(|n| n.kind) {
            Ok(Kind::Dir) => self.renew_tree(ino, scope, &mut out, &mut seen, progress),
            Ok(Kind::File) => {
                self.renew_one(ino, scope, &mut out, &mut seen);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        self.forget_all(&held);
        r.map(|()| out)
    }

    fn forget_all(&self, inos: &[u64]) {
        for i in inos {
            self.forget(*i, 1);
        }
    }

    fn renew_tree(
        &self,
        dir: u64,
        path: &str,
        out: &mut LiveRenewal,
        seen: &mut HashSet<u64>,
        progress: &mut dyn FnMut(&LiveRenewal),
    ) -> FsResult<()> {
        let (node, key) = self.dir_node(dir)?;
        let entries = names::list(&key, &node.fd, |_| {})?;
        drop((node, key));
        for e in entries {
            // A lock stops the run: every file after it would fail alike.
            self.check_unlocked()?;
            let child = format!(
                "{}/{}",
                path.trim_end_matches('/'),
                String::from_utf8_lossy(&e.plain)
            );
            if e.unreadable {
                out.problems
                    .push(format!("{child}: entry name failed authentication"));
                continue;
            }
            if !matches!(e.kind, Kind::Dir | Kind::File) {
                continue;
            }
            let a = match self.lookup(dir, &e.plain) {
                Ok(a) => a,
                // Removed since the listing.
                Err(err) if err == Errno::ENOENT => continue,
                Err(err) => return Err(err),
            };
            let r = match e.kind {
                Kind::Dir => self.renew_tree(a.ino, &child, out, seen, progress),
                _ => {
                    self.renew_one(a.ino, &child, out, seen);
                    progress(out);
                    Ok(())
                }
            };
            self.forget(a.ino, 1);
            r?;
        }
        Ok(())
    }

    /// Renews one file; what fails is recorded, not returned.
    fn renew_one(&self, ino: u64, path: &str, out: &mut LiveRenewal, seen: &mut HashSet<u64>) {
        if !seen.insert(ino) {
            // Another name of a file already renewed.
            return;
        }
        out.files += 1;
        match self.renew_node(ino) {
            Ok(true) => out.renewed += 1,
            Ok(false) => out.empty += 1,
            Err(CoreError::Damage(d)) => out.problems.push(format!("{path}: {}", d.what)),
            Err(e) => out.problems.push(format!("{path}: {:?}", e.errno())),
        }
    }

    /// Renews the file of node `ino` under its `io` lock; `false` for a file
    /// without a header.
    fn renew_node(&self, ino: u64) -> FsResult<bool> {
        self.check_writable()?;
        let node = self.node(ino)?;
        if node.kind != Kind::File || node.unreadable {
            return Ok(false);
        }
        let file = self.reopen(&node, OFlags::RDWR)?;
        let (_, dkey) = self.dir_node(node.parent())?;
        let mut io = node.io.write().unwrap_or_else(|e| e.into_inner());
        let keys = self.vkeys()?;
        let temp = !io.is_loaded();
        if temp {
            self.load_io(&node, &file, &mut io, &keys, &dkey)?;
        }
        let r = if io.key().is_some() {
            let root = self.node(ROOT_INO)?;
            io.renew(root.fd.as_fd(), &file, &keys, &dkey)
                .map(|()| true)
        } else {
            Ok(false)
        };
        if temp && node.open_handles.load(std::sync::atomic::Ordering::Acquire) == 0 {
            io.unload();
        }
        r
    }
}
