//! The control socket over real sockets and processes: round trips with a test handler, file
//! modes, a refused foreign uid (a child switched to the `tests` user), a stale socket after
//! kill -9, a live server refusing a second one, and hostile input that must not stop it.
//!
//! Some cases re-run this test binary as a helper process (`helper_*`, ignored unless
//! DEKFS_CONTROL_HELPER is set) so the other side of the socket is a real separate process.

use dekfs::control::protocol::Wire;
use dekfs::control::{
    Client, ClientError, ControlError, ErrorCode, Handler, RekeyRequest, Request, Response, Server,
    ServerConfig, Status,
};
use dekfs::secret::Key32;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const HELPER: &str = "DEKFS_CONTROL_HELPER";

/// A stand-in for the daemon: lock/unlock toggle a flag (unlock wants the key 0x42 * 32),
/// rekey streams three progress messages, shred is not implemented.
struct TestDaemon {
    locked: AtomicBool,
}

impl Handler for TestDaemon {
    fn handle(&self, _: dekfs::control::Peer, req: Request, out: &mut dyn FnMut(Response)) {
        match req {
            Request::Status => out(Response::Status(Status {
                pid: std::process::id(),
                locked: self.locked.load(Ordering::SeqCst),
                kek_version: Some(1),
                ..Status::default()
            })),
            Request::Lock => {
                self.locked.store(true, Ordering::SeqCst);
                out(Response::done("locked"))
            }
            Request::Unlock(keys) => {
                if keys.len() == 1 && keys[0].0 == 1 && keys[0].1.ct_eq(&[0x42; 32]) {
                    self.locked.store(false, Ordering::SeqCst);
                    out(Response::done("unlocked"))
                } else {
                    out(Response::error(ErrorCode::WrongKey, "wrong key"))
                }
            }
            Request::Rekey(r) => {
                // Both KEKs arrive as key frames, in order, with the flags.
                let keys_ok = r.keys.len() == 2
                    && r.keys[0].0 == 1
                    && r.keys[0].1.ct_eq(&[0x42; 32])
                    && r.keys[1].0 == 2
                    && r.keys[1].1.ct_eq(&[0x43; 32]);
                if !keys_ok || !r.started || r.force {
                    return out(Response::error(ErrorCode::WrongKey, "wrong keys"));
                }
                for done in 0..3 {
                    out(Response::Progress {
                        step: "rewrap".into(),
                        done,
                        total: 3,
                    });
                }
                out(Response::done("rekeyed"))
            }
            Request::Shred { .. } | Request::Renew { .. } => {
                out(Response::error(ErrorCode::NotImplemented, "later"))
            }
        }
    }
}

fn daemon() -> Arc<dyn Handler> {
    Arc::new(TestDaemon {
        locked: AtomicBool::new(false),
    })
}

fn config(runtime: &Path, mnt: &Path) -> ServerConfig {
    ServerConfig {
        runtime_dir: runtime.to_path_buf(),
        mountpoint: mnt.to_path_buf(),
        owner_uid: rustix::process::geteuid().as_raw(),
        max_connections: 8,
        idle_timeout: Duration::from_secs(10),
    }
}

/// One log file for the whole test process (the logger is process-wide and set once).
fn log_file() -> &'static PathBuf {
    static LOG: OnceLock<PathBuf> = OnceLock::new();
    LOG.get_or_init(|| {
        // Under target/ (Cargo's scratch dir for integration tests): the
        // logger keeps it open for the life of the process, so no test can
        // remove it, and /tmp must be left as the run found it.
        let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dekfs-control-test-{}.log", std::process::id()));
        dekfs::logger::init(Some(&p), false).unwrap();
        p
    })
}

struct Setup {
    _tmp: tempfile::TempDir,
    runtime: PathBuf,
    mnt: PathBuf,
}

fn setup() -> Setup {
    log_file();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    Setup {
        runtime: tmp.path().join("run"),
        mnt,
        _tmp: tmp,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn helper(kind: &str, args: &[&Path]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        &format!("helper_{kind}"),
        "--ignored",
        "--nocapture",
        "-q",
    ]);
    let joined: Vec<String> = args.iter().map(|p| p.display().to_string()).collect();
    c.env(HELPER, joined.join("\n"));
    c
}

fn helper_args() -> Option<Vec<PathBuf>> {
    let v = std::env::var(HELPER).ok()?;
    Some(v.lines().map(PathBuf::from).collect())
}

#[test]
fn round_trip_with_streamed_progress() {
    let s = setup();
    let server = Server::start(config(&s.runtime, &s.mnt), daemon()).unwrap();
    let path = server.socket_path().to_path_buf();
    let mut c = Client::connect_socket(&path, &s.mnt).unwrap();
    assert_eq!(c.server_pid, std::process::id());
    let st = c.status().unwrap();
    assert_eq!(
        (st.pid, st.locked, st.kek_version),
        (std::process::id(), false, Some(1))
    );
    assert_eq!(
        c.call(&Request::Lock, &mut |_| {}).unwrap(),
        Response::done("locked")
    );
    assert!(c.status().unwrap().locked);
    let wrong = Request::Unlock(vec![(1, Key32::from_array(&mut [0x41; 32]))]);
    match c.call(&wrong, &mut |_| {}) {
        Err(ClientError::Daemon { code, .. }) => assert_eq!(code, ErrorCode::WrongKey),
        other => panic!("{other:?}"),
    }
    assert!(c.status().unwrap().locked, "a wrong key leaves it locked");
    let right = Request::Unlock(vec![(1, Key32::from_array(&mut [0x42; 32]))]);
    assert_eq!(
        c.call(&right, &mut |_| {}).unwrap(),
        Response::done("unlocked")
    );
    assert!(!c.status().unwrap().locked);
    let mut steps = Vec::new();
    let rekey = Request::Rekey(RekeyRequest {
        keys: vec![
            (1, Key32::from_array(&mut [0x42; 32])),
            (2, Key32::from_array(&mut [0x43; 32])),
        ],
        force: false,
        started: true,
    });
    let r = c.call(&rekey, &mut |p| steps.push(p.clone())).unwrap();
    assert_eq!((r, steps.len()), (Response::done("rekeyed"), 3));
    let shred = Request::Shred {
        path: "a".into(),
        dry_run: true,
        verify: false,
    };
    assert!(matches!(
        c.call(&shred, &mut |_| {}),
        Err(ClientError::Daemon {
            code: ErrorCode::NotImplemented,
            ..
        })
    ));
    drop(c);
    server.shutdown();
    assert!(!path.exists(), "clean shutdown removes the socket");
    assert!(matches!(
        Client::connect_socket(&path, &s.mnt),
        Err(ClientError::NoDaemon(_))
    ));
    // By mountpoint (root's /run/dekfs and /run/user/*/dekfs): nobody serves a fresh tempdir.
    match Client::connect(&s.mnt) {
        Err(e @ ClientError::NoDaemon(_)) => {
            assert!(e.to_string().contains("no dekfs daemon is serving"), "{e}")
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn socket_is_0600_and_runtime_dir_0700_even_under_umask_0() {
    let s = setup();
    // The daemon runs with umask 0; a pre-existing 0777 directory (what older daemons left)
    // is narrowed, not trusted.
    rustix::process::umask(rustix::fs::Mode::empty());
    std::fs::create_dir(&s.runtime).unwrap();
    std::fs::set_permissions(&s.runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let server = Server::start(config(&s.runtime, &s.mnt), daemon()).unwrap();
    assert_eq!(mode(&s.runtime), 0o700);
    assert_eq!(mode(server.socket_path()), 0o600);
    assert_eq!(mode(&server.socket_path().with_extension("lock")), 0o600);
    let names: Vec<_> = std::fs::read_dir(&s.runtime).unwrap().flatten().collect();
    assert_eq!(names.len(), 2, "no temporary socket left behind: {names:?}");
}

#[test]
fn foreign_uid_is_refused_and_logged() {
    let uid = run_id_u("tests");
    let s = setup();
    let server = Server::start(config(&s.runtime, &s.mnt), daemon()).unwrap();
    // Open the file-permission layers so only the peer-credential check stands in the way.
    for d in [s._tmp.path(), s.runtime.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(server.socket_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "helper_client", "--ignored", "--nocapture", "-q"])
        .env(HELPER, server.socket_path())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("RESULT permission denied"), "{text}");
    assert!(text.contains("only uid 0 or root"), "{text}");
    let log = std::fs::read_to_string(log_file()).unwrap();
    assert!(
        log.contains(&format!("refused connection from uid {uid} ")),
        "no refusal in the log:\n{log}"
    );
    // The owner (root here) still gets in.
    let mut c = Client::connect_socket(server.socket_path(), &s.mnt).unwrap();
    assert!(c.status().is_ok());
}

fn run_id_u(user: &str) -> String {
    let o = Command::new("id").args(["-u", user]).output().unwrap();
    let uid = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        !uid.is_empty(),
        "no user {user:?} (scripts/deps.sh creates it)"
    );
    uid
}

#[test]
fn stale_socket_after_kill9_is_replaced_and_live_one_refuses() {
    let s = setup();
    let mut child = helper("serve", &[&s.runtime, &s.mnt])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let path = dekfs::control::paths::socket_path_in(&s.runtime, &s.mnt).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        if let Ok(c) = Client::connect_socket(&path, &s.mnt) {
            break c;
        }
        assert!(Instant::now() < deadline, "helper server never came up");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(served.server_pid, child.id());
    drop(served);
    match Server::start(config(&s.runtime, &s.mnt), daemon()) {
        Err(ControlError::AlreadyRunning { pid, .. }) => assert_eq!(pid, Some(child.id())),
        other => panic!("a live server must refuse a second one: {:?}", other.err()),
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(path.exists(), "kill -9 leaves the socket behind");
    let server = Server::start(config(&s.runtime, &s.mnt), daemon()).unwrap();
    let c = Client::connect_socket(server.socket_path(), &s.mnt).unwrap();
    assert_eq!(c.server_pid, std::process::id());
    let log = std::fs::read_to_string(log_file()).unwrap();
    let line = format!("replacing the stale control socket {}", path.display());
    assert!(
        log.contains(&line),
        "no stale-socket line in the log:\n{log}"
    );
}

#[test]
fn dead_socket_file_is_replaced_but_other_files_are_not() {
    let s = setup();
    std::fs::create_dir(&s.runtime).unwrap();
    let path = dekfs::control::paths::socket_path_in(&s.runtime, &s.mnt).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = Server::start(config(&s.runtime, &s.mnt), daemon()).unwrap();
    assert!(Client::connect_socket(&path, &s.mnt).is_ok());
    server.shutdown();
    std::fs::write(&path, b"not a socket").unwrap();
    match Server::start(config(&s.runtime, &s.mnt), daemon()) {
        Err(ControlError::NotASocket(_)) => {}
        other => panic!("a regular file must be left alone: {:?}", other.err()),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

fn frame(s: &mut UnixStream, body: &[u8]) {
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
}

fn read_response(s: &mut UnixStream) -> Option<Response> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).ok()?;
    let mut b = vec![0u8; u32::from_be_bytes(h) as usize];
    s.read_exact(&mut b).ok()?;
    Response::parse(&b).ok()
}

fn error_code(r: Option<Response>) -> ErrorCode {
    match r {
        Some(Response::Error { code, .. }) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn malformed_oversized_and_silent_clients_do_not_stop_the_server() {
    let s = setup();
    let mut cfg = config(&s.runtime, &s.mnt);
    cfg.max_connections = 2;
    cfg.idle_timeout = Duration::from_millis(500);
    let server = Server::start(cfg, daemon()).unwrap();
    let path = server.socket_path().to_path_buf();
    let raw = || {
        let mut r = UnixStream::connect(&path).unwrap();
        r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let hello = Wire::Hello {
            version: 1,
            client: String::new(),
        };
        frame(&mut r, &hello.to_json());
        assert!(matches!(
            read_response(&mut r),
            Some(Response::Hello { .. })
        ));
        r
    };

    let mut r = raw();
    frame(&mut r, b"{\"op\":\"status\"");
    assert_eq!(error_code(read_response(&mut r)), ErrorCode::BadRequest);
    frame(&mut r, &[0xff; 100]);
    assert_eq!(error_code(read_response(&mut r)), ErrorCode::BadRequest);
    frame(&mut r, br#"{"op":"status"}"#);
    assert!(
        matches!(read_response(&mut r), Some(Response::Status(_))),
        "still served"
    );
    r.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    assert_eq!(error_code(read_response(&mut r)), ErrorCode::TooLarge);
    assert!(
        read_response(&mut r).is_none(),
        "closed after an oversized frame"
    );

    // A silent client is cut off by the idle timeout instead of holding its thread.
    let mut quiet = raw();
    assert_eq!(error_code(read_response(&mut quiet)), ErrorCode::Timeout);
    assert!(
        read_response(&mut quiet).is_none(),
        "closed after the timeout"
    );

    // The connection limit answers `busy` instead of queueing without bound.
    let (_a, _b) = (raw(), raw());
    let mut third = UnixStream::connect(&path).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(error_code(read_response(&mut third)), ErrorCode::Busy);
    drop((_a, _b));
    // Their threads notice the close on their own; until then a new client may still be busy.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match Client::connect_socket(&path, &s.mnt) {
            Ok(c) => break c,
            Err(ClientError::Daemon {
                code: ErrorCode::Busy,
                ..
            }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    };
    assert!(c.status().is_ok(), "the server survived all of it");
}

#[test]
fn non_root_runtime_dir_needs_xdg_runtime_dir() {
    let uid = run_id_u("tests");
    let without = Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_runtime_dir",
            "--ignored",
            "--nocapture",
            "-q",
        ])
        .env(HELPER, "-")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&without.stdout);
    assert!(text.contains("RESULT XDG_RUNTIME_DIR is not set"), "{text}");
    let with = Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_runtime_dir",
            "--ignored",
            "--nocapture",
            "-q",
        ])
        .env(HELPER, "-")
        .env("XDG_RUNTIME_DIR", format!("/run/user/{uid}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&with.stdout);
    assert!(
        text.contains(&format!("RESULT /run/user/{uid}/dekfs")),
        "{text}"
    );
    assert_eq!(
        dekfs::control::paths::runtime_dir().unwrap(),
        PathBuf::from("/run/dekfs"),
        "root daemons use /run/dekfs"
    );
}

#[test]
fn normal_user_serves_and_connects_by_mountpoint() {
    let uid: u32 = run_id_u("tests").parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (xdg, mnt) = (tmp.path().join("xdg"), tmp.path().join("mnt"));
    for d in [&xdg, &mnt] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(uid), None).unwrap();
    }
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_user_session",
            "--ignored",
            "--nocapture",
            "-q",
        ])
        .env(HELPER, &mnt)
        .env("XDG_RUNTIME_DIR", &xdg)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("RESULT status from pid "), "{text}");
    assert!(
        text.contains("RESULT socket mode 600 dir mode 700"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(xdg.join("dekfs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(
        left.len(),
        1,
        "only the lock file stays after shutdown: {left:?}"
    );
}

/// Helper process: serves the control socket until killed.
#[test]
#[ignore = "helper process for stale_socket_after_kill9_is_replaced_and_live_one_refuses"]
fn helper_serve() {
    let Some(args) = helper_args() else { return };
    let _server = Server::start(config(&args[0], &args[1]), daemon()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Helper process: connects to a socket and prints how it went.
#[test]
#[ignore = "helper process for foreign_uid_is_refused_and_logged"]
fn helper_client() {
    let Some(args) = helper_args() else { return };
    match Client::connect_socket(&args[0], Path::new("/mnt")) {
        Ok(_) => println!("RESULT connected"),
        Err(e) => println!("RESULT {e}"),
    }
}

/// Helper process: prints the runtime directory this user would get.
#[test]
#[ignore = "helper process for non_root_runtime_dir_needs_xdg_runtime_dir"]
fn helper_runtime_dir() {
    if helper_args().is_none() {
        return;
    }
    match dekfs::control::paths::runtime_dir() {
        Ok(p) => println!("RESULT {}", p.display()),
        Err(e) => println!("RESULT {e}"),
    }
}

/// Helper process (a normal user): serves its own mount's socket under $XDG_RUNTIME_DIR and
/// talks to it by mountpoint.
#[test]
#[ignore = "helper process for normal_user_serves_and_connects_by_mountpoint"]
fn helper_user_session() {
    let Some(args) = helper_args() else { return };
    let cfg = ServerConfig::for_mount(&args[0]).unwrap();
    let server = Server::start(cfg, daemon()).unwrap();
    let st = Client::connect(&args[0]).unwrap().status().unwrap();
    println!("RESULT status from pid {}", st.pid);
    let dir = server.socket_path().parent().unwrap();
    println!(
        "RESULT socket mode {:o} dir mode {:o}",
        mode(server.socket_path()),
        mode(dir)
    );
    server.shutdown();
}
