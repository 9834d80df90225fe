//! Tamper-evident audit log of key lifecycle events: `record(Event)` appends one chained,
//! MAC'd JSON line (see docs/FORMAT.md "Audit log") and sends a copy to syslog. Must NOT carry
//! key bytes, file contents, or plaintext names unless the user opted in; a failed write is
//! logged, never turned into a failure of the operation being audited.

mod line;
mod store;
mod verify;

pub use line::Line;
pub use store::{is_audit_name, read_seal, Paths, Seal};
pub use verify::{read_lines, verify, Report, StoredLine};

use crate::crypto::{kdf, CryptoError, VolumeKeys};
use crate::secret::Key32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The log's reserved name in the cipher directory root (with `.seal` and `.pending` beside it).
pub const LOG_NAME: &str = "dekfs.audit";

/// Lines an appender writes when it finds the seal contradicting the log.
pub const EVENT_TRUNCATED: &str = "audit-truncated";
pub const EVENT_SEAL_INVALID: &str = "audit-seal-invalid";
pub const EVENT_SEAL_MISSING: &str = "audit-seal-missing";

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One event to record. Built with the chaining setters; `uid`/`pid` default to this process.
#[derive(Debug, Clone)]
pub struct Event(Line);

impl Event {
    pub fn new(event: &str) -> Event {
        Event(Line {
            time: now(),
            event: event.into(),
            result: "ok".into(),
            uid: rustix::process::getuid().as_raw(),
            pid: std::process::id(),
            ..Line::default()
        })
    }
    pub fn failed(mut self, why: impl Into<String>) -> Event {
        self.0.result = "failed".into();
        self.0.detail = Some(why.into());
        self
    }
    pub fn refused(mut self, why: impl Into<String>) -> Event {
        self.0.result = "refused".into();
        self.0.detail = Some(why.into());
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Event {
        self.0.detail = Some(d.into());
        self
    }
    pub fn protector(mut self, kind: &str) -> Event {
        self.0.protector = Some(kind.into());
        self
    }
    pub fn key_id(mut self, id: impl Into<String>) -> Event {
        self.0.key_id = Some(id.into());
        self
    }
    pub fn key_version(mut self, v: u32) -> Event {
        self.0.key_version = Some(v);
        self
    }
    pub fn volume(mut self, id: &[u8; 16]) -> Event {
        self.0.volume = Some(line::hex(id));
        self
    }
    /// The object by id; always recorded.
    pub fn object(mut self, id: impl Into<String>) -> Event {
        self.0.object = Some(id.into());
        self
    }
    /// A plaintext path: recorded only when names are opted in (`--audit-names`).
    pub fn path(mut self, p: &str) -> Event {
        if config().names {
            self.0.path = Some(p.into());
        }
        self
    }
    pub fn peer(mut self, uid: u32, pid: u32) -> Event {
        self.0.uid = uid;
        self.0.pid = pid;
        self
    }
}

struct Config {
    location: Option<PathBuf>,
    names: bool,
}

static CREATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets this process create a volume's audit log (`init --audit`, `audit --enable`). Otherwise
/// a volume is audited only once its log exists, or when a location was given explicitly.
pub fn enable_creation() {
    CREATE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether events for `paths` are recorded at all (file and syslog copy).
fn enabled(paths: &Paths) -> bool {
    CREATE.load(std::sync::atomic::Ordering::SeqCst)
        || config().location.is_some()
        || std::fs::symlink_metadata(&paths.log).is_ok()
}

static CONFIG: OnceLock<Config> = OnceLock::new();

fn config_from_env() -> Config {
    Config {
        location: std::env::var_os("DEKFS_AUDIT_LOG").map(PathBuf::from),
        names: std::env::var_os("DEKFS_AUDIT_NAMES").is_some_and(|v| v == "1"),
    }
}

fn config() -> &'static Config {
    CONFIG.get_or_init(config_from_env)
}

/// Process-wide choices from the command line (`--audit-log PATH`, `--audit-names`; else
/// $DEKFS_AUDIT_LOG and $DEKFS_AUDIT_NAMES=1). Must run before the first event.
pub fn configure(location: Option<PathBuf>, names: bool) {
    let env = config_from_env();
    let _ = CONFIG.set(Config {
        location: location.or(env.location),
        names: names || env.names,
    });
}

/// The audit files of the volume at `cipherdir` (the override, if one was configured).
pub fn paths_for(cipherdir: &Path) -> Paths {
    let loc = config().location.clone();
    Paths::new(loc.unwrap_or_else(|| cipherdir.join(LOG_NAME)))
}

/// The audit MAC key of one KEK version.
pub struct AuditKey {
    pub kek: u32,
    key: Key32,
}

impl AuditKey {
    pub fn derive(keys: &VolumeKeys, version: u32) -> Result<AuditKey, CryptoError> {
        Ok(AuditKey {
            kek: version,
            key: kdf::audit_mac_key(keys.kek_for(version)?, keys.volume_id())?,
        })
    }

    pub fn active(keys: &VolumeKeys) -> Result<AuditKey, CryptoError> {
        AuditKey::derive(keys, keys.active_kek_version())
    }
}

/// Where events of one volume go, and the key (if held) that chains them.
pub struct Target {
    pub paths: Paths,
    key: Option<AuditKey>,
}

impl Target {
    pub fn for_volume(cipherdir: &Path) -> Target {
        Target {
            paths: paths_for(cipherdir),
            key: None,
        }
    }

    pub fn with_keys(mut self, keys: &VolumeKeys) -> Target {
        match AuditKey::active(keys) {
            Ok(k) => self.key = Some(k),
            Err(e) => log::warn!("audit: cannot derive the audit key: {e}"),
        }
        self
    }

    /// Appends one event: chained if the key is held, else to the pending file.
    pub fn append(&self, e: Event) -> std::io::Result<()> {
        // A volume that is not audited keeps its log as before: no extra syslog lines either.
        if !enabled(&self.paths) {
            return Ok(());
        }
        emit_syslog(&e.0, self.key.as_ref().map(|k| k.kek));
        let mut held = store::Locked::acquire(&self.paths)?;
        match &self.key {
            Some(k) => held.append(&self.paths, &k.key, k.kek, None, vec![e.0]),
            None => held.append_pending(&self.paths, &e.0),
        }
    }

    /// Continues the chain under the KEK `new` (a rotation): the link line is MAC'd under the
    /// new audit key and carries a tag under the old one. Later events use the new key.
    pub fn link(&mut self, keys: &VolumeKeys, new: u32) -> std::io::Result<()> {
        let newk = AuditKey::derive(keys, new).map_err(std::io::Error::other)?;
        let old = self.key.take();
        let e = Event::new("audit-key-link").key_version(new);
        if !enabled(&self.paths) {
            self.key = Some(newk);
            return Ok(());
        }
        emit_syslog(&e.0, Some(new));
        let mut held = store::Locked::acquire(&self.paths)?;
        let link = old.as_ref().map(|o| (o.kek, &o.key));
        let r = held.append(&self.paths, &newk.key, new, link, vec![e.0]);
        self.key = Some(newk);
        r
    }
}

fn emit_syslog(l: &Line, kek: Option<u32>) {
    let text = format!(
        "audit: event={} result={} kek={} object={} detail={}",
        l.event,
        l.result,
        kek.map_or("-".to_string(), |k| k.to_string()),
        l.object.as_deref().unwrap_or("-"),
        l.detail.as_deref().unwrap_or("-")
    );
    if log::max_level() >= log::LevelFilter::Info {
        log::info!("{text}");
        return;
    }
    // A CLI command has no logger installed: write to syslog directly (best effort).
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        if s.connect("/dev/log").is_ok() {
            let _ = s.send(format!("<86>dekfs[{}]: {text}", std::process::id()).as_bytes());
        }
    }
}

fn global() -> &'static Mutex<Option<Target>> {
    static G: OnceLock<Mutex<Option<Target>>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(None))
}

/// Makes `cipherdir` this process's audit target (the CLI and the daemon serve one volume),
/// keyed when `keys` are given. Keeps an existing target for the same log, adding the key.
pub fn attach(cipherdir: &Path, keys: Option<&VolumeKeys>) {
    let mut g = global().lock().unwrap_or_else(|e| e.into_inner());
    let paths = paths_for(cipherdir);
    let same = g.as_ref().is_some_and(|t| t.paths.log == paths.log);
    if !same {
        *g = Some(Target::for_volume(cipherdir));
    }
    if let (Some(t), Some(k)) = (g.as_mut(), keys) {
        if t.key.is_none() {
            t.key = AuditKey::active(k).ok();
        }
    }
}

/// Records one event on this process's target (see `attach`); without one, nothing.
/// Never fails the caller: a write error is logged.
pub fn record(e: Event) {
    let g = global().lock().unwrap_or_else(|e| e.into_inner());
    match g.as_ref() {
        Some(t) => {
            if let Err(err) = t.append(e) {
                log::warn!("audit: cannot append to {}: {err}", t.paths.log.display());
            }
        }
        None => drop(e),
    }
}

/// The rotation hook: continues this process's chain under KEK version `new`.
pub fn link_rotation(keys: &VolumeKeys, new: u32) {
    let mut g = global().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = g.as_mut() {
        if let Err(err) = t.link(keys, new) {
            log::warn!("audit: cannot write the key link: {err}");
        }
    }
}

#[cfg(test)]
mod tests;
