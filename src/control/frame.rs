//! Control-socket framing: a 4-byte big-endian length, then that many bytes. It reads exactly
//! what a frame holds (never ahead), so a secret frame can go straight into locked memory; it
//! must not interpret frame contents or keep any buffer past one call.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Largest frame either side accepts. Control messages are small; the bound stops a client
/// from making the daemon allocate at will.
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    Closed,
    /// The peer closed the connection inside a frame.
    Truncated,
    /// The deadline passed before the whole frame arrived.
    Timeout,
    /// The length prefix exceeds [`MAX_FRAME`] (or the caller's expected size).
    TooLarge(u32),
    Io(ErrorKind),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Truncated => f.write_str("connection closed inside a message"),
            FrameError::Timeout => f.write_str("timed out waiting for a message"),
            FrameError::TooLarge(n) => write!(f, "message of {n} bytes exceeds the limit"),
            FrameError::Io(k) => write!(f, "socket error: {k}"),
        }
    }
}

/// Fills `buf` from `s` before `deadline`. The timeout is re-armed before every read, so a
/// peer that trickles one byte at a time still cannot outlast the deadline.
fn read_exact_by(s: &UnixStream, buf: &mut [u8], deadline: Instant) -> Result<(), FrameError> {
    let mut got = 0;
    let mut r = s;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::Timeout);
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| FrameError::Io(e.kind()))?;
        let Some(dst) = buf.get_mut(got..) else {
            return Err(FrameError::Truncated);
        };
        match r.read(dst) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(FrameError::Timeout)
            }
            Err(e) => return Err(FrameError::Io(e.kind())),
        }
    }
    Ok(())
}

/// Reads a length prefix and checks it against `max` before anything is allocated.
pub fn read_len(s: &UnixStream, max: usize, deadline: Instant) -> Result<usize, FrameError> {
    let mut h = [0u8; 4];
    read_exact_by(s, &mut h, deadline)?;
    let n = u32::from_be_bytes(h);
    match usize::try_from(n) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::TooLarge(n)),
    }
}

/// Reads one whole frame of at most [`MAX_FRAME`] bytes.
pub fn read_frame(s: &UnixStream, deadline: Instant) -> Result<Vec<u8>, FrameError> {
    let len = read_len(s, MAX_FRAME, deadline)?;
    let mut body = vec![0u8; len];
    match read_exact_by(s, &mut body, deadline) {
        Err(FrameError::Closed) => Err(FrameError::Truncated),
        r => r.map(|()| body),
    }
}

/// Reads a frame body of exactly `into.len()` bytes (after its prefix) directly into `into`,
/// which for a key is a locked slot: no other buffer ever holds the bytes.
pub fn read_exact_frame(
    s: &UnixStream,
    into: &mut [u8],
    deadline: Instant,
) -> Result<(), FrameError> {
    let len = read_len(s, into.len(), deadline)?;
    if len != into.len() {
        return Err(FrameError::TooLarge(len as u32));
    }
    match read_exact_by(s, into, deadline) {
        Err(FrameError::Closed) => Err(FrameError::Truncated),
        r => r,
    }
}

/// Writes one frame. `body` is written from the caller's buffer as is (the prefix separately),
/// so a secret body is not copied into a temporary.
pub fn write_frame(mut s: &UnixStream, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "control frame too large"))?;
    s.write_all(&len.to_be_bytes())?;
    s.write_all(body)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn round_trip_and_limits() {
        let (a, b) = UnixStream::pair().unwrap();
        write_frame(&a, b"hello").unwrap();
        write_frame(&a, b"").unwrap();
        assert_eq!(read_frame(&b, soon()).unwrap(), b"hello");
        assert_eq!(read_frame(&b, soon()).unwrap(), b"");
        (&a).write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .unwrap();
        assert_eq!(
            read_frame(&b, soon()),
            Err(FrameError::TooLarge(MAX_FRAME as u32 + 1))
        );
        let mut key = [0u8; 4];
        write_frame(&a, b"abc").unwrap();
        assert_eq!(
            read_exact_frame(&b, &mut key, soon()),
            Err(FrameError::TooLarge(3))
        );
        drop(a);
        let mut rest = Vec::new();
        let _ = (&b).read_to_end(&mut rest);
        assert!(write_frame(&b, &vec![0; MAX_FRAME + 1]).is_err());
    }

    #[test]
    fn truncation_and_timeouts() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        let short = Instant::now() + Duration::from_millis(100);
        assert_eq!(read_frame(&b, short), Err(FrameError::Timeout));
        drop(a);
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        drop(a);
        assert_eq!(read_frame(&b, soon()), Err(FrameError::Truncated));
        assert_eq!(read_frame(&b, soon()), Err(FrameError::Closed));
    }
}
