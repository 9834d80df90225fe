//! One control connection on the daemon side: hello, then requests answered through the
//! handler, every read under a deadline. It must not panic on any input, log request contents
//! that may hold secrets, or let a handler's answer break the one-final-response rule.

use super::frame::{read_exact_frame, read_frame, write_frame, FrameError};
use super::protocol::{ErrorCode, RekeyRequest, Request, Response, Wire, VERSION};
use super::server::Handler;
use super::Peer;
use crate::secret::Key32;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Sends one response; a peer that stopped reading only loses its answers.
fn send(s: &UnixStream, r: &Response) -> bool {
    write_frame(s, &r.to_json()).is_ok()
}

fn frame_error_response(e: &FrameError) -> Option<Response> {
    match e {
        FrameError::Timeout => Some(Response::error(ErrorCode::Timeout, e.to_string())),
        FrameError::TooLarge(_) => Some(Response::error(ErrorCode::TooLarge, e.to_string())),
        FrameError::Closed | FrameError::Truncated | FrameError::Io(_) => None,
    }
}

/// Serves `s` until the peer closes, misbehaves beyond recovery, or stays silent for `idle`.
pub(super) fn serve(s: &UnixStream, peer: Peer, handler: &dyn Handler, idle: Duration) {
    // A peer that does not read must not block the handler's writes forever either.
    let _ = s.set_write_timeout(Some(idle));
    let mut greeted = false;
    loop {
        let deadline = Instant::now() + idle;
        let body = match read_frame(s, deadline) {
            Ok(b) => b,
            Err(e) => {
                if let Some(r) = frame_error_response(&e) {
                    send(s, &r);
                }
                return;
            }
        };
        let wire = match Wire::parse(&body) {
            Ok(w) => w,
            Err(r) => {
                // The frame boundary is intact, so the connection can go on.
                if !send(s, &r) {
                    return;
                }
                continue;
            }
        };
        if !greeted {
            match wire {
                Wire::Hello { version, .. } if version == VERSION => {
                    greeted = send(
                        s,
                        &Response::Hello {
                            version: VERSION,
                            server: format!("dekfs {}", env!("CARGO_PKG_VERSION")),
                            pid: std::process::id(),
                        },
                    );
                    if !greeted {
                        return;
                    }
                }
                Wire::Hello { version, .. } => {
                    let msg = format!(
                        "client speaks version {version}, this daemon speaks version {VERSION}"
                    );
                    send(s, &Response::error(ErrorCode::VersionMismatch, msg));
                    return;
                }
                _ => {
                    let r = Response::error(ErrorCode::HelloRequired, "send hello first");
                    send(s, &r);
                    return;
                }
            }
            continue;
        }
        let req = match to_request(s, wire, deadline) {
            Ok(req) => req,
            Err(e) => {
                let (r, fatal) = *e;
                if !send(s, &r) || fatal {
                    return;
                }
                continue;
            }
        };
        log::info!(
            "control: {} from uid {} pid {}",
            req.op(),
            peer.uid,
            peer.pid
        );
        if !answer(s, peer, handler, req) {
            return;
        }
    }
}

/// Turns a parsed message into a request, reading an unlock's key frames into locked memory.
/// The error carries the response and whether the connection must close (framing lost).
fn to_request(
    s: &UnixStream,
    wire: Wire,
    deadline: Instant,
) -> Result<Request, Box<(Response, bool)>> {
    Ok(match wire {
        Wire::Hello { .. } => {
            let r = Response::error(ErrorCode::BadRequest, "hello was already exchanged");
            return Err(Box::new((r, false)));
        }
        Wire::Status => Request::Status,
        Wire::Lock => Request::Lock,
        Wire::Rekey {
            kek_versions,
            force,
            started,
        } => Request::Rekey(RekeyRequest {
            keys: read_keys(s, kek_versions, deadline)?,
            force,
            started,
        }),
        Wire::Shred {
            path,
            dry_run,
            verify,
        } => Request::Shred {
            path,
            dry_run,
            verify,
        },
        Wire::Renew { path } => Request::Renew { path },
        Wire::Unlock { kek_versions } => Request::Unlock(read_keys(s, kek_versions, deadline)?),
    })
}

/// The response to send and whether the connection must close.
type Refusal = Box<(Response, bool)>;

/// Reads one key frame per version straight into locked memory.
fn read_keys(
    s: &UnixStream,
    versions: Vec<u32>,
    deadline: Instant,
) -> Result<Vec<(u32, Key32)>, Refusal> {
    let mut keys = Vec::with_capacity(versions.len());
    for v in versions {
        let key = Key32::try_fill(|b| read_exact_frame(s, b, deadline)).map_err(|e| {
            let r = match e {
                FrameError::Timeout => Response::error(ErrorCode::Timeout, e.to_string()),
                FrameError::TooLarge(_) => Response::error(
                    ErrorCode::BadRequest,
                    "each key frame must hold exactly 32 bytes",
                ),
                e => Response::error(ErrorCode::BadRequest, format!("key frame: {e}")),
            };
            Box::new((r, true))
        })?;
        keys.push((v, key));
    }
    Ok(keys)
}

/// Runs the handler and streams what it says. Returns false when the peer is gone.
fn answer(s: &UnixStream, peer: Peer, handler: &dyn Handler, req: Request) -> bool {
    let op = req.op();
    let mut finished = false;
    let mut alive = true;
    let mut emit = |r: Response, finished: &mut bool| {
        if *finished {
            log::warn!("control: extra answer to {op} dropped");
            return;
        }
        *finished = r.is_final();
        if alive {
            alive = send(s, &r);
        }
    };
    handler.handle(peer, req, &mut |r| emit(r, &mut finished));
    if !finished {
        log::warn!("control: the daemon gave no final answer to {op}");
        let r = Response::error(
            ErrorCode::Internal,
            format!("the daemon gave no answer to {op}"),
        );
        emit(r, &mut finished);
    }
    alive
}
