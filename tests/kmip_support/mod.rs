//! Test harness for the KMIP tests: a private PyKMIP server per test on a free loopback port,
//! with a fresh ECDSA P-256 test PKI and database in its own temp dir (killed on drop), the
//! administrator's operations through PyKMIP's own client, and a fake server that answers
//! without a GCM tag. Must NOT skip anything except when the PyKMIP venv is absent.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where scripts/deps.sh installs PyKMIP (override: $DEKFS_KMIP_VENV).
pub fn venv() -> PathBuf {
    std::env::var_os("DEKFS_KMIP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/dekfs-kmip-venv"))
}

fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kmip_support")
        .join(file)
}

/// Returns early from a test, with a printed reason, only when the PyKMIP venv is absent.
#[macro_export]
macro_rules! require_kmip {
    () => {
        match $crate::kmip_support::KmipServer::start() {
            Some(s) => s,
            None => {
                eprintln!(
                    "SKIPPED (PyKMIP venv {} not installed: run scripts/deps.sh)",
                    $crate::kmip_support::venv().display()
                );
                return;
            }
        }
    };
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// The test PKI: ca, server, client (owner of the keys) and other (no rights).
pub fn make_pki(dir: &Path) {
    let ok = Command::new("bash")
        .arg(support("pki.sh"))
        .arg(dir)
        .status()
        .expect("run pki.sh")
        .success();
    assert!(ok, "pki.sh failed");
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "KMIP server exited with {st}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("KMIP server did not listen on {port} within 30 s");
}

pub struct KmipServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Seconds from spawn to listening, for the report.
    pub start_secs: f64,
}

impl KmipServer {
    /// None only if the venv is not installed; any other failure panics.
    pub fn start() -> Option<KmipServer> {
        if !venv().join("bin/pykmip-server").is_file() {
            return None;
        }
        let dir = crate::common::scratch_dir("dekfs-kmip-");
        make_pki(dir.path());
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        let mut s = KmipServer {
            port: 0,
            dir,
            child: None,
            start_secs: 0.0,
        };
        s.spawn();
        Some(s)
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn spawn(&mut self) {
        let port = if self.port == 0 {
            free_port()
        } else {
            self.port
        };
        let d = self.dir.path().display().to_string();
        let conf = format!(
            "[server]\nhostname=127.0.0.1\nport={port}\ncertificate_path={d}/server.crt\n\
             key_path={d}/server.key\nca_path={d}/ca.crt\nauth_suite=TLS1.2\n\
             policy_path={d}/policies\nenable_tls_client_auth=True\nlogging_level=INFO\n\
             database_path={d}/pykmip.db\n"
        );
        std::fs::write(self.path("server.conf"), conf).unwrap();
        let log = self.path("server.log");
        let out = std::fs::File::create(self.path("server.out")).unwrap();
        let t0 = Instant::now();
        let mut child = Command::new(venv().join("bin/pykmip-server"))
            .arg("-f")
            .arg(self.path("server.conf"))
            .arg("-l")
            .arg(&log)
            .current_dir(self.dir.path())
            .env("PYTHONWARNINGS", "ignore")
            // Its own process group: PyKMIP forks helpers (the policy monitor) that must go
            // with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start pykmip-server");
        wait_listening(port, &mut child, &self.path("server.out"));
        self.start_secs = t0.elapsed().as_secs_f64();
        self.port = port;
        self.child = Some(child);
    }

    /// The server goes away (its database stays). SIGTERM first, so that PyKMIP stops and
    /// reaps its own helpers; then whatever is left of its process group is killed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&format!("{}", c.id()), "TERM");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            signal(&format!("-{}", c.id()), "KILL");
            let _ = c.wait();
        }
    }

    /// The same server (port, PKI, database) again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `protector add` arguments for this server with the `client` (or `other`) identity.
    pub fn add_args(&self, who: &str) -> Vec<String> {
        vec![
            "--kmip".into(),
            self.server(),
            "--kmip-ca".into(),
            self.path("ca.crt").display().to_string(),
            "--kmip-cert".into(),
            self.path(&format!("{who}.crt")).display().to_string(),
            "--kmip-key".into(),
            self.path(&format!("{who}.key")).display().to_string(),
        ]
    }

    /// An administrator's operation on key `uid`: revoke, destroy or state.
    pub fn admin(&self, op: &str, uid: &str) -> String {
        let out = Command::new(venv().join("bin/python"))
            .arg(support("admin.py"))
            .args(["127.0.0.1", &self.port.to_string()])
            .arg(self.dir.path())
            .args([op, uid])
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .output()
            .expect("run admin.py");
        assert!(
            out.status.success(),
            "admin {op} {uid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `kill -SIG -- TARGET` (a negative target is a process group).
fn signal(target: &str, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for KmipServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS server with the test PKI that answers Create, Activate, then an Encrypt response
/// without the GCM tag, as PyKMIP does for a KMIP 1.2 request. Killed on drop.
pub struct FakeServer {
    pub port: u16,
    child: Child,
}

impl FakeServer {
    pub fn start(pki: &Path) -> FakeServer {
        let port = free_port();
        let log = pki.join("fake.out");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(venv().join("bin/python"))
            .arg(support("fake_server.py"))
            .arg(port.to_string())
            .arg(pki)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start fake server");
        wait_listening(port, &mut child, &log);
        FakeServer { port, child }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Offset in dekfs.conf of the body of the first kind-4 record (docs/FORMAT.md layout).
pub fn kmip_body_offset(conf: &[u8]) -> usize {
    let n_keks = u16::from_le_bytes([conf[44], conf[45]]) as usize;
    let n_prot = u16::from_le_bytes([conf[46], conf[47]]) as usize;
    let mut off = 48 + 16 * n_keks;
    for _ in 0..n_prot {
        let len = u16::from_le_bytes([conf[off + 2], conf[off + 3]]) as usize;
        if conf[off] == 4 {
            return off + 32;
        }
        off += 32 + len;
    }
    panic!("no kind-4 record");
}
