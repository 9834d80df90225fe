//! A control-socket connection refused for its uid writes exactly one `control-refused` audit
//! line naming the peer. The server runs in this process on a private runtime directory opened
//! up for the test; the peer is this test binary re-run as uid 65534 (`setpriv`).

use dekfs::audit::{self, AuditKey, Paths};
use dekfs::control::{Handler, Request, Response, Server, ServerConfig};
use dekfs::crypto::VolumeKeys;
use dekfs::secret::Key32;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

const CLIENT_ENV: &str = "DEKFS_TEST_CONTROL_CLIENT";

struct Nothing;

impl Handler for Nothing {
    fn handle(&self, _: dekfs::control::Peer, _: Request, _: &mut dyn FnMut(Response)) {}
}

/// The peer: connects, reads the refusal, exits. Run only by the test below, as another uid.
#[test]
#[ignore = "helper: run by control_refusal_is_audited as uid 65534"]
fn control_refused_peer() {
    let path = std::env::var(CLIENT_ENV).expect("socket path");
    let mut s = std::os::unix::net::UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        String::from_utf8_lossy(&buf).contains("may control"),
        "no refusal"
    );
}

#[test]
fn control_refusal_is_audited() {
    if !rustix::process::geteuid().is_root()
        || std::process::Command::new("setpriv")
            .arg("--help")
            .output()
            .is_err()
    {
        eprintln!("SKIPPED (needs root and setpriv to connect as another uid)");
        return;
    }
    let d = tempfile::Builder::new()
        .prefix("dekfs-auditctl-")
        .tempdir()
        .unwrap();
    let cipher = d.path().join("cipher");
    std::fs::create_dir(&cipher).unwrap();
    let keys =
        VolumeKeys::from_parts([7; 16], vec![(1, Key32::from_array(&mut [3; 32]))], 1).unwrap();
    audit::enable_creation();
    audit::attach(&cipher, Some(&keys));

    let run = d.path().join("run");
    let cfg = ServerConfig {
        runtime_dir: run.clone(),
        mountpoint: d.path().join("mnt"),
        owner_uid: 0,
        max_connections: 4,
        idle_timeout: Duration::from_secs(5),
    };
    let server = Server::start(cfg, Arc::new(Nothing)).unwrap();
    let sock = server.socket_path().to_path_buf();
    for p in [d.path(), run.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();

    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "control_refused_peer",
            "--ignored",
            "--nocapture",
        ])
        .env(CLIENT_ENV, &sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown();

    let paths = Paths::new(cipher.join(audit::LOG_NAME));
    let (lines, _, _) = audit::read_lines(&paths).unwrap();
    let refused: Vec<_> = lines
        .iter()
        .filter_map(|l| l.line.as_ref())
        .filter(|l| l.event == "control-refused")
        .collect();
    assert_eq!(refused.len(), 1, "{lines:?}");
    assert_eq!(
        (refused[0].uid, refused[0].result.as_str()),
        (65534, "refused")
    );
    let r = audit::verify(&paths, &[AuditKey::derive(&keys, 1).unwrap()]).unwrap();
    assert_eq!((r.verified, r.first_bad), (lines.len(), None));
}
