//! Connection-level tests over socket pairs: the hello rule, key frames, the one-final-answer
//! rule and a fuzz run of arbitrary byte streams through a whole connection.

use super::frame::{read_frame, write_frame};
use super::protocol::{ErrorCode, Request, Response, Wire, VERSION};
use super::{conn, Handler, Peer};
use proptest::prelude::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const PEER: Peer = Peer {
    uid: 0,
    gid: 0,
    pid: 1,
};

/// Answers status; checks unlock keys against 0x11 * version; sends nothing for rekey and
/// two answers for shred, to exercise the server's enforcement.
struct Probe;

impl Handler for Probe {
    fn handle(&self, _: Peer, req: Request, out: &mut dyn FnMut(Response)) {
        match req {
            Request::Status => out(Response::Status(Default::default())),
            Request::Lock => out(Response::done("locked")),
            Request::Unlock(keys) => {
                let ok = keys.iter().all(|(v, k)| k.ct_eq(&[0x11 * *v as u8; 32]));
                out(if ok {
                    Response::done("unlocked")
                } else {
                    Response::error(ErrorCode::WrongKey, "wrong key")
                })
            }
            Request::Rekey(_) => {}
            Request::Shred { .. } => {
                out(Response::done("first"));
                out(Response::done("second"));
            }
            Request::Renew { path } => out(Response::done(path)),
        }
    }
}

fn start() -> (UnixStream, std::thread::JoinHandle<()>) {
    let (a, b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || conn::serve(&b, PEER, &Probe, Duration::from_secs(5)));
    (a, t)
}

fn ask(s: &UnixStream, w: &Wire) -> Response {
    write_frame(s, &w.to_json()).unwrap();
    next(s)
}

fn next(s: &UnixStream) -> Response {
    let body = read_frame(s, Instant::now() + Duration::from_secs(5)).unwrap();
    Response::parse(&body).unwrap()
}

fn code(r: Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn hello() -> Wire {
    Wire::Hello {
        version: VERSION,
        client: "test".into(),
    }
}

#[test]
fn hello_first_then_requests() {
    let (s, t) = start();
    assert_eq!(code(ask(&s, &Wire::Status)), ErrorCode::HelloRequired);
    t.join().unwrap();

    let (s, t) = start();
    let r = ask(
        &s,
        &Wire::Hello {
            version: 99,
            client: String::new(),
        },
    );
    assert_eq!(code(r), ErrorCode::VersionMismatch);
    t.join().unwrap();

    let (s, t) = start();
    assert!(matches!(
        ask(&s, &hello()),
        Response::Hello {
            version: VERSION,
            ..
        }
    ));
    assert_eq!(code(ask(&s, &hello())), ErrorCode::BadRequest);
    assert!(matches!(ask(&s, &Wire::Status), Response::Status(_)));
    // No answer from the handler becomes an internal error, two answers become one.
    let rekey = Wire::Rekey {
        kek_versions: Vec::new(),
        force: false,
        started: false,
    };
    assert_eq!(code(ask(&s, &rekey)), ErrorCode::Internal);
    assert_eq!(
        ask(
            &s,
            &Wire::Shred {
                path: "f".into(),
                dry_run: false,
                verify: false
            }
        ),
        Response::done("first")
    );
    assert_eq!(ask(&s, &Wire::Lock), Response::done("locked"));
    assert_eq!(
        ask(&s, &Wire::Renew { path: "/d".into() }),
        Response::done("/d")
    );
    drop(s);
    t.join().unwrap();
}

#[test]
fn unlock_keys_travel_as_frames() {
    let (s, t) = start();
    ask(&s, &hello());
    let w = Wire::Unlock {
        kek_versions: vec![1, 2],
    };
    write_frame(&s, &w.to_json()).unwrap();
    write_frame(&s, &[0x11; 32]).unwrap();
    write_frame(&s, &[0x22; 32]).unwrap();
    assert_eq!(next(&s), Response::done("unlocked"));
    write_frame(&s, &w.to_json()).unwrap();
    write_frame(&s, &[0x11; 32]).unwrap();
    write_frame(&s, &[0x23; 32]).unwrap();
    assert_eq!(code(next(&s)), ErrorCode::WrongKey);
    // A key frame of the wrong size loses the framing: error, then the connection closes.
    write_frame(
        &s,
        &Wire::Unlock {
            kek_versions: vec![1],
        }
        .to_json(),
    )
    .unwrap();
    // The server may answer and close as soon as it reads the prefix, so the body's write
    // can meet a closed socket (EPIPE); the answer is still queued for us to read.
    let _ = write_frame(&s, &[0x11; 31]);
    assert_eq!(code(next(&s)), ErrorCode::BadRequest);
    t.join().unwrap();
}

#[test]
fn silent_or_oversized_peers_are_cut_off() {
    let (a, b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || conn::serve(&b, PEER, &Probe, Duration::from_millis(200)));
    (&a).write_all(&[0, 0]).unwrap();
    assert_eq!(code(next(&a)), ErrorCode::Timeout);
    t.join().unwrap();

    let (s, t) = start();
    (&s).write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(code(next(&s)), ErrorCode::TooLarge);
    t.join().unwrap();
}

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec![
            r#"{"op":"hello","version":1}"#,
            r#"{"op":"status"}"#,
            r#"{"op":"unlock","kek_versions":[1]}"#,
            r#"{"op":"unlock","kek_versions":[1,2,3]}"#,
            r#"{"op":"shred","path":"x"}"#,
            r#"{"op":"rekey"}"#,
            r#"{"op":"nope"}"#,
            "not json",
        ])
        .prop_map(|s| {
            let mut v = (s.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(s.as_bytes());
            v
        }),
        prop::collection::vec(any::<u8>(), 32).prop_map(|k| {
            let mut v = 32u32.to_be_bytes().to_vec();
            v.extend(k);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any byte stream ends the connection cleanly: no panic, no hang past the deadline.
    #[test]
    fn any_stream_is_served_without_panic(chunks in prop::collection::vec(chunk(), 0..12)) {
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            conn::serve(&b, PEER, &Probe, Duration::from_millis(300))
        });
        let bytes = chunks.concat();
        let _ = (&a).write_all(&bytes);
        let _ = a.shutdown(std::net::Shutdown::Write);
        // Drain answers so the server never blocks on a full socket buffer.
        while read_frame(&a, Instant::now() + Duration::from_secs(5)).is_ok() {}
        prop_assert!(t.join().is_ok());
    }
}
