//! Test harness for the TPM tests: a private swtpm per test on a free loopback port with a fresh
//! state directory (killed on drop), tpm2-tools helpers, and a re-MAC helper that follows
//! docs/FORMAT.md with stock crates. Must NOT skip anything except when the swtpm binary is absent.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Swtpm {
    pub port: u16,
    child: Option<Child>,
    pub state: tempfile::TempDir,
}

/// Returns early from a test, with a printed reason, only when swtpm is not installed.
#[macro_export]
macro_rules! require_swtpm {
    () => {
        match $crate::tpm_support::Swtpm::start() {
            Some(t) => t,
            None => {
                eprintln!("SKIPPED (swtpm binary not installed)");
                return;
            }
        }
    };
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// True once the TPM at `port` answers TPM2_GetCapability.
fn answers(port: u16) -> bool {
    Command::new("tpm2_getcap")
        .arg("properties-fixed")
        .env(
            "TPM2TOOLS_TCTI",
            format!("swtpm:host=127.0.0.1,port={port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().unwrap().port();
        if p < 65535 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free loopback port pair");
}

impl Swtpm {
    /// None only if `swtpm` is not installed; any other failure panics.
    pub fn start() -> Option<Swtpm> {
        if !which("swtpm") {
            return None;
        }
        let state = tempfile::tempdir().expect("tempdir");
        let mut t = Swtpm {
            port: 0,
            child: None,
            state,
        };
        t.spawn();
        Some(t)
    }

    fn spawn(&mut self) {
        for _ in 0..5 {
            let port = free_port_pair();
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--server"])
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", self.state.path().display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start swtpm");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                // Listening is not enough: under load another test's swtpm
                // may hold the port, or ours may not answer yet. Ready means
                // our child is alive and answers a real TPM command.
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && matches!(child.try_wait(), Ok(None))
                    && answers(port)
                {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken in between: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start");
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The TPM dies: a new swtpm with a fresh (empty) state directory, i.e. new seeds.
    pub fn wipe(&mut self) {
        self.stop();
        self.state = tempfile::tempdir().expect("tempdir");
        self.spawn();
    }

    /// Runs a tpm2-tools command against this swtpm; panics on failure.
    pub fn tools(&self, args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+NONE")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (install tpm2-tools)", args[0]));
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tpm2_pcrextend PCR:sha256=<digest>`: a measured-boot change.
    pub fn extend_pcr(&self, pcr: u8) {
        let d = "ab".repeat(32);
        self.tools(&["tpm2_pcrextend", &format!("{pcr}:sha256={d}")]);
    }

    /// Dictionary-attack parameters (the lockout hierarchy has no auth on a fresh swtpm).
    pub fn set_da(&self, max_tries: u32, recovery_secs: u32) {
        self.tools(&[
            "tpm2_dictionarylockout",
            "--setup-parameters",
            &format!("--max-tries={max_tries}"),
            &format!("--recovery-time={recovery_secs}"),
            "--lockout-recovery-time=1",
        ]);
    }

    pub fn lockout_counter(&self) -> u32 {
        let s = self.tools(&["tpm2_getcap", "properties-variable"]);
        let line = s
            .lines()
            .find(|l| l.contains("TPM2_PT_LOCKOUT_COUNTER"))
            .expect("lockout counter");
        let v = line.rsplit("0x").next().unwrap().trim();
        u32::from_str_radix(v, 16).unwrap()
    }

    /// No transient object or session may survive a dekfs command (no resource manager here).
    #[track_caller]
    pub fn assert_nothing_leaked(&self) {
        for cap in [
            "handles-transient",
            "handles-loaded-session",
            "handles-saved-session",
        ] {
            let s = self.tools(&["tpm2_getcap", cap]);
            assert!(s.trim().is_empty(), "TPM {cap} left behind: {s}");
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Re-computes the config MAC of `CIPHERDIR/dekfs.conf` after a test edited it, using only the
/// recovery key and docs/FORMAT.md (HKDF, AES-KW, HMAC from stock crates): the edited config is
/// then authentic, so only the edit itself can make an unlock fail.
pub fn remac_with_recovery_key(cipherdir: &Path, recovery_key: &str) {
    use dekfs::format::{ProtectorBody, VolumeConfig};
    use hmac::Mac;
    let path = cipherdir.join("dekfs.conf");
    let raw = std::fs::read(&path).unwrap();
    let mut cfg = VolumeConfig::parse(&raw).unwrap();
    let rk = hex::decode(recovery_key.replace('-', "")).unwrap();
    let rec = cfg
        .protectors
        .iter()
        .find_map(|p| match &p.body {
            ProtectorBody::Recovery(b) => Some(b.clone()),
            _ => None,
        })
        .expect("recovery protector");
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&rec.salt), &rk);
    let mut pk = [0u8; 32];
    hk.expand(b"dekfs v1 recovery", &mut pk).unwrap();
    let kw = aes_kw::KekAes256::from(pk);
    let mut plain = [0u8; 56];
    kw.unwrap(&rec.wrapped_kek, &mut plain).unwrap();
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&cfg.volume_id), &plain[..32]);
    let mut mk = [0u8; 32];
    hk.expand(b"dekfs v1 config-mac", &mut mk).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&mk).unwrap();
    mac.update(&cfg.mac_input());
    cfg.mac = mac.finalize().into_bytes().into();
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, cfg.to_bytes()).unwrap();
}
