//! The CLI side of the control socket: finds a mount's socket, says hello, sends requests and
//! reads streamed answers, turning every failure into an error a user can act on. It must not
//! decide anything about volumes; it only carries requests.

use super::frame::{read_frame, write_frame, FrameError};
use super::paths::{owner_of, runtime_dir, socket_path_in};
use super::protocol::{ErrorCode, Request, Response, Status, Wire, VERSION};
use super::ControlError;
use crate::secret::Key32;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum ClientError {
    /// No socket, or nobody listening on it: no daemon serves this mountpoint.
    NoDaemon(PathBuf),
    /// The socket or its directory is not ours, or the daemon refused our uid.
    PermissionDenied(PathBuf, String),
    VersionMismatch(String),
    NoRuntimeDir(String),
    /// The daemon's final answer was an error.
    Daemon {
        code: ErrorCode,
        message: String,
    },
    /// The daemon broke the protocol or the connection failed midway.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoDaemon(m) => {
                write!(f, "no dekfs daemon is serving {}", m.display())
            }
            ClientError::PermissionDenied(m, why) => write!(
                f,
                "permission denied controlling {}: {why} (only the user who mounted it, or root, may)",
                m.display()
            ),
            ClientError::VersionMismatch(why) => write!(
                f,
                "the daemon speaks another control protocol version ({why}); use the dekfs \
                 binary that mounted the volume, or remount"
            ),
            ClientError::NoRuntimeDir(why) => f.write_str(why),
            ClientError::Daemon { message, .. } => f.write_str(message),
            ClientError::Protocol(why) => write!(f, "control connection failed: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

pub struct Client {
    s: UnixStream,
    timeout: Duration,
    /// The daemon's pid and version string from its hello.
    pub server_pid: u32,
    pub server: String,
}

/// Where a daemon for `mnt` may listen: our own runtime directory, and for root also every
/// user's (root may control a user's mount).
fn candidates(mnt: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let mut dirs = Vec::new();
    match runtime_dir() {
        Ok(d) => dirs.push(d),
        Err(e) => return Err(ClientError::NoRuntimeDir(e.to_string())),
    }
    if rustix::process::geteuid().is_root() {
        if let Ok(users) = std::fs::read_dir("/run/user") {
            dirs.extend(users.flatten().map(|u| u.path().join("dekfs")));
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        let p = socket_path_in(&d, mnt).map_err(|e| match e {
            ControlError::Mountpoint(..) => ClientError::NoDaemon(mnt.to_path_buf()),
            e => ClientError::Protocol(e.to_string()),
        })?;
        out.push(p);
    }
    Ok(out)
}

/// Before sending anything (an unlock sends keys), the listener must be root, ourselves, or the
/// owner of the socket's directory: never a third user who managed to place a socket there.
fn check_server(s: &UnixStream, path: &Path) -> Result<(), ClientError> {
    let cred = rustix::net::sockopt::socket_peercred(s)
        .map_err(|e| ClientError::Protocol(format!("no peer credentials: {e}")))?;
    let uid = cred.uid.as_raw();
    let me = rustix::process::geteuid().as_raw();
    if uid == 0 || uid == me || path.parent().and_then(owner_of) == Some(uid) {
        return Ok(());
    }
    Err(ClientError::Protocol(format!(
        "{} is served by uid {uid}, who owns neither it nor this session; not talking to it",
        path.display()
    )))
}

impl Client {
    /// Connects to the daemon serving `mnt` and exchanges hellos.
    pub fn connect(mnt: &Path) -> Result<Client, ClientError> {
        let paths = candidates(mnt)?;
        // The first existing socket; with none, the first candidate gives the precise error.
        let found = paths
            .iter()
            .find(|p| std::fs::symlink_metadata(p).is_ok())
            .or(paths.first());
        match found {
            Some(p) => Client::connect_socket(p, mnt),
            None => Err(ClientError::NoDaemon(mnt.to_path_buf())),
        }
    }

    /// Connects to a known socket path; `mnt` only names the mount in errors.
    pub fn connect_socket(path: &Path, mnt: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) | Some(libc::ENOTDIR) => {
                ClientError::NoDaemon(mnt.to_path_buf())
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                let who = path
                    .parent()
                    .and_then(owner_of)
                    .map(|u| format!("its control directory belongs to uid {u}"))
                    .unwrap_or_else(|| e.to_string());
                ClientError::PermissionDenied(mnt.to_path_buf(), who)
            }
            _ => ClientError::Protocol(format!("{}: {e}", path.display())),
        })?;
        check_server(&s, path)?;
        let mut c = Client {
            s,
            timeout: Duration::from_secs(120),
            server_pid: 0,
            server: String::new(),
        };
        let hello = Wire::Hello {
            version: VERSION,
            client: format!("dekfs {}", env!("CARGO_PKG_VERSION")),
        };
        if let Err(e) = c.send(&hello.to_json()) {
            // A refusing server writes its reason and closes before reading our hello: the
            // reason is still waiting in our receive buffer.
            return Err(match c.next() {
                Ok(r) => c.unexpected(r, mnt),
                Err(_) => e,
            });
        }
        match c.next() {
            Ok(Response::Hello {
                version,
                server,
                pid,
            }) if version == VERSION => {
                c.server_pid = pid;
                c.server = server;
                Ok(c)
            }
            Ok(Response::Hello { version, .. }) => Err(ClientError::VersionMismatch(format!(
                "it answered version {version}, this client speaks {VERSION}"
            ))),
            Ok(other) => Err(c.unexpected(other, mnt)),
            Err(e) => Err(e),
        }
    }

    /// How long to wait for each answer message (progress resets it).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    fn send(&self, body: &[u8]) -> Result<(), ClientError> {
        write_frame(&self.s, body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn next(&self) -> Result<Response, ClientError> {
        let body = read_frame(&self.s, Instant::now() + self.timeout).map_err(|e| match e {
            FrameError::Closed | FrameError::Truncated => {
                ClientError::Protocol("the daemon closed the connection".into())
            }
            e => ClientError::Protocol(e.to_string()),
        })?;
        Response::parse(&body).map_err(ClientError::Protocol)
    }

    fn unexpected(&self, r: Response, mnt: &Path) -> ClientError {
        match r {
            Response::Error {
                code: ErrorCode::PermissionDenied,
                message,
            } => ClientError::PermissionDenied(mnt.to_path_buf(), message),
            Response::Error {
                code: ErrorCode::VersionMismatch,
                message,
            } => ClientError::VersionMismatch(message),
            Response::Error { code, message } => ClientError::Daemon { code, message },
            other => ClientError::Protocol(format!("unexpected answer {other:?}")),
        }
    }

    /// Sends `req`, passes each progress message to `progress`, and returns the final answer;
    /// a final error becomes `Err(ClientError::Daemon)`.
    pub fn call(
        &mut self,
        req: &Request,
        progress: &mut dyn FnMut(&Response),
    ) -> Result<Response, ClientError> {
        match req {
            Request::Status => self.exchange(&Wire::Status, &[], progress),
            Request::Lock => self.exchange(&Wire::Lock, &[], progress),
            Request::Rekey(r) => {
                let borrowed: Vec<(u32, &Key32)> = r.keys.iter().map(|(v, k)| (*v, k)).collect();
                self.rekey(&borrowed, r.force, r.started, progress)
            }
            Request::Shred {
                path,
                dry_run,
                verify,
            } => {
                let wire = Wire::Shred {
                    path: path.clone(),
                    dry_run: *dry_run,
                    verify: *verify,
                };
                self.exchange(&wire, &[], progress)
            }
            Request::Renew { path } => {
                self.exchange(&Wire::Renew { path: path.clone() }, &[], progress)
            }
            Request::Unlock(keys) => {
                let borrowed: Vec<(u32, &Key32)> = keys.iter().map(|(v, k)| (*v, k)).collect();
                self.unlock(&borrowed)
            }
        }
    }

    /// Unlocks with KEKs the caller holds (as `volume::unlock` produced them), borrowed so no
    /// copy of a key is made on the way to the socket.
    pub fn unlock(&mut self, keks: &[(u32, &Key32)]) -> Result<Response, ClientError> {
        let wire = Wire::Unlock {
            kek_versions: keks.iter().map(|(v, _)| *v).collect(),
        };
        self.exchange(&wire, keks, &mut |_| {})
    }

    /// Asks the daemon to finish the rotation the config holds, with the
    /// KEKs of both versions (none: it uses its own), streaming progress.
    pub fn rekey(
        &mut self,
        keks: &[(u32, &Key32)],
        force: bool,
        started: bool,
        progress: &mut dyn FnMut(&Response),
    ) -> Result<Response, ClientError> {
        let wire = Wire::Rekey {
            kek_versions: keks.iter().map(|(v, _)| *v).collect(),
            force,
            started,
        };
        self.exchange(&wire, keks, progress)
    }

    fn exchange(
        &mut self,
        wire: &Wire,
        keks: &[(u32, &Key32)],
        progress: &mut dyn FnMut(&Response),
    ) -> Result<Response, ClientError> {
        self.send(&wire.to_json())?;
        for (_, k) in keks {
            // Straight from the locked slot into the socket.
            self.send(k.expose())?;
        }
        loop {
            let r = self.next()?;
            if !r.is_final() {
                progress(&r);
                continue;
            }
            return match r {
                Response::Error { code, message } => Err(ClientError::Daemon { code, message }),
                r => Ok(r),
            };
        }
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        match self.call(&Request::Status, &mut |_| {})? {
            Response::Status(s) => Ok(s),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }
}
