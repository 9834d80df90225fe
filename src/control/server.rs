//! The daemon's control-socket listener: claims the socket path (replacing a crashed
//! predecessor's, refusing a live one), binds it 0600 inside a 0700 directory, checks every
//! peer's credentials and hands requests to a [`Handler`] on bounded connection threads. It
//! must not know about volumes or keys beyond passing them to the handler.

use super::paths::{prepare_runtime_dir, runtime_dir, socket_path_in};
use super::protocol::{ErrorCode, Request, Response};
use super::{conn, ControlError, Peer};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the daemon implements on top of its core. `out` takes any number of
/// [`Response::Progress`] and then one final response; the server sends an `internal` error if
/// the handler returns without one, and drops anything after it. Calls may run concurrently
/// (one per connection).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, peer: Peer, req: Request, out: &mut dyn FnMut(Response));
}

pub struct ServerConfig {
    /// Created (or narrowed to) 0700 if needed; see [`super::paths::runtime_dir`].
    pub runtime_dir: PathBuf,
    /// The mountpoint, as the daemon mounted it (already canonical).
    pub mountpoint: PathBuf,
    /// Besides root, the only uid allowed to connect: the user who mounted.
    pub owner_uid: u32,
    pub max_connections: usize,
    /// How long a connection may stay silent (mid-message or between requests).
    pub idle_timeout: Duration,
}

impl ServerConfig {
    /// Defaults for the calling daemon: its runtime directory and effective uid as the owner.
    pub fn for_mount(mountpoint: &Path) -> Result<ServerConfig, ControlError> {
        Ok(ServerConfig {
            runtime_dir: runtime_dir()?,
            mountpoint: mountpoint.to_path_buf(),
            owner_uid: rustix::process::geteuid().as_raw(),
            max_connections: 8,
            idle_timeout: Duration::from_secs(30),
        })
    }
}

/// A running listener. Dropping it (or [`Server::shutdown`]) stops accepting and removes the
/// socket; connections already being served finish on their own threads.
pub struct Server {
    path: PathBuf,
    /// (dev, ino) of our socket file, so shutdown never removes a successor's.
    ident: (u64, u64),
    listener: Arc<UnixListener>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// flock held for the server's life: two daemons starting at once cannot both claim the
    /// path. The file stays (unlinking a lock file races with the next locker).
    _lock: OwnedFd,
}

impl Server {
    pub fn start(cfg: ServerConfig, handler: Arc<dyn Handler>) -> Result<Server, ControlError> {
        prepare_runtime_dir(&cfg.runtime_dir)?;
        let path = socket_path_in(&cfg.runtime_dir, &cfg.mountpoint)?;
        let io = |e: std::io::Error| ControlError::Io(path.clone(), e.to_string());
        let lock = claim(&path)?;
        let listener = bind_private(&path).map_err(io)?;
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (listener, stop) = (listener.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dekfs-control".into())
                .spawn(move || accept_loop(&listener, &stop, &cfg, handler))
                .map_err(io)?
        };
        log::info!("control socket at {}", path.display());
        Ok(Server {
            path,
            ident: (meta.dev(), meta.ino()),
            listener,
            stop,
            thread: Some(thread),
            _lock: lock,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // shutdown(2) wakes a blocked accept on Linux; the connect is the fallback.
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Read);
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Takes the path's lock, then decides about what sits at the path: nothing is fine, a socket
/// nobody listens on (ECONNREFUSED) is a crashed daemon's and will be replaced, a socket that
/// answers belongs to a live daemon and is refused with its pid.
fn claim(path: &Path) -> Result<OwnedFd, ControlError> {
    let io = |e: std::io::Error| ControlError::Io(path.to_path_buf(), e.to_string());
    let lock_path = path.with_extension("lock");
    let lock = rustix::fs::open(
        &lock_path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io(e.into()))?;
    if !flock_briefly(&lock) {
        let pid = UnixStream::connect(path)
            .ok()
            .and_then(|s| peer_of(&s).ok())
            .map(|p| p.pid);
        return Err(ControlError::AlreadyRunning {
            path: path.to_path_buf(),
            pid,
        });
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lock),
        Err(e) => return Err(io(e)),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ControlError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => {}
    }
    match UnixStream::connect(path) {
        Ok(s) => Err(ControlError::AlreadyRunning {
            path: path.to_path_buf(),
            pid: peer_of(&s).ok().map(|p| p.pid),
        }),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            log::warn!("replacing the stale control socket {}", path.display());
            Ok(lock)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(lock),
        Err(e) => Err(io(e)),
    }
}

/// A lock file descriptor is shared with any child forked in the instant before its exec
/// (close-on-exec only closes it at exec), so a just-stopped server's lock can outlive it by a
/// moment. A live daemon holds it for good; a short retry tells the two apart.
fn flock_briefly(lock: &OwnedFd) -> bool {
    for _ in 0..20 {
        if rustix::fs::flock(lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Binds a listening socket that is 0600 from the moment its name exists: the mode is set on
/// the socket before bind (Linux creates the file from it; the daemon's umask is 0), under a
/// temporary name, then renamed over `path` so a stale socket is replaced atomically.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let tmp = path.with_extension(format!("sock.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(&tmp)?)?;
    let placed = rustix::net::listen(&fd, 64)
        .map_err(std::io::Error::from)
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(UnixListener::from(fd))
}

fn peer_of(s: &UnixStream) -> std::io::Result<Peer> {
    let c = rustix::net::sockopt::socket_peercred(s)?;
    Ok(Peer {
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
        pid: c.pid.as_raw_nonzero().get() as u32,
    })
}

/// Decrements the live-connection count when a connection thread ends, even by panic.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn refuse(s: &UnixStream, code: ErrorCode, message: String) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = super::frame::write_frame(s, &Response::error(code, message).to_json());
}

fn accept_loop(
    listener: &UnixListener,
    stop: &AtomicBool,
    cfg: &ServerConfig,
    handler: Arc<dyn Handler>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let s = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                log::warn!("control: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = match peer_of(&s) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("control: no peer credentials ({e}); connection dropped");
                continue;
            }
        };
        if peer.uid != cfg.owner_uid && peer.uid != 0 {
            log::warn!(
                "control: refused connection from uid {} pid {} (only uid {} or root may control this mount)",
                peer.uid,
                peer.pid,
                cfg.owner_uid
            );
            crate::audit::record(
                crate::audit::Event::new("control-refused")
                    .peer(peer.uid, peer.pid)
                    .refused(format!("uid {} may not control this mount", peer.uid)),
            );
            refuse(
                &s,
                ErrorCode::PermissionDenied,
                format!("only uid {} or root may control this mount", cfg.owner_uid),
            );
            continue;
        }
        if live.fetch_add(1, Ordering::SeqCst) >= cfg.max_connections {
            live.fetch_sub(1, Ordering::SeqCst);
            refuse(&s, ErrorCode::Busy, "too many control connections".into());
            continue;
        }
        let slot = Slot(live.clone());
        let (handler, idle) = (handler.clone(), cfg.idle_timeout);
        let spawned = std::thread::Builder::new()
            .name("dekfs-control-conn".into())
            .spawn(move || {
                conn::serve(&s, peer, &*handler, idle);
                // The slot is free before the peer sees the close, so a client that reconnects
                // at once is not told `busy`.
                drop(slot);
                drop(s);
            });
        if let Err(e) = spawned {
            log::warn!("control: cannot start a connection thread: {e}");
        }
        // A root directory key from an unlock was found in this thread's
        // dead frames at exit (the memory test's scan); wipe them each turn.
        crate::secret::scrub_stack();
    }
}
