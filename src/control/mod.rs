//! The per-mount control socket (docs/CONTROL.md): a versioned request/response protocol, the
//! daemon-side server that owns listening, peer checks and connection threads, and the CLI-side
//! client. It must not touch volume keys or the filesystem core: the daemon plugs those in
//! through [`server::Handler`].

mod conn;
pub mod frame;
pub mod paths;
pub mod protocol;
pub mod server;

pub mod client;

pub use client::{Client, ClientError};
pub use protocol::{ErrorCode, RekeyRequest, RekeyResult, Request, Response, Status};
pub use server::{Handler, Server, ServerConfig};

use std::path::PathBuf;

/// Who is on the other end of a connection, from SO_PEERCRED (taken by the kernel at connect
/// time, so the peer cannot lie about it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Why the control server could not start.
#[derive(Debug)]
pub enum ControlError {
    /// A non-root daemon without $XDG_RUNTIME_DIR has nowhere private to put its socket.
    NoRuntimeDir,
    RuntimeDir(PathBuf, String),
    Mountpoint(PathBuf, String),
    /// A live daemon already answers on this mountpoint's socket.
    AlreadyRunning {
        path: PathBuf,
        pid: Option<u32>,
    },
    /// Something that is not a socket sits at the socket path; it is left alone.
    NotASocket(PathBuf),
    Io(PathBuf, String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NoRuntimeDir => f.write_str(
                "XDG_RUNTIME_DIR is not set: a non-root dekfs needs a private runtime directory \
                 for its control socket (log in through a session manager, or set \
                 XDG_RUNTIME_DIR to a directory only you can enter)",
            ),
            ControlError::RuntimeDir(p, e) => {
                write!(f, "runtime directory {}: {e}", p.display())
            }
            ControlError::Mountpoint(p, e) => write!(f, "mountpoint {}: {e}", p.display()),
            ControlError::AlreadyRunning { path, pid } => match pid {
                Some(pid) => write!(
                    f,
                    "a dekfs daemon (pid {pid}) already serves the control socket {}",
                    path.display()
                ),
                None => write!(
                    f,
                    "another dekfs daemon is starting on the control socket {}",
                    path.display()
                ),
            },
            ControlError::NotASocket(p) => write!(
                f,
                "{} exists and is not a socket; remove it if no dekfs uses it",
                p.display()
            ),
            ControlError::Io(p, e) => write!(f, "control socket {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ControlError {}

#[cfg(test)]
mod tests;
