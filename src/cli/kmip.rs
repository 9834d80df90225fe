//! The KMIP protector's command-line side: the options of `protector add --kmip`, reseal and
//! remove with `--destroy-remote`, and the no-prompt unlock attempt. Must NOT talk KMIP itself
//! (the volume layer does) nor print anything a key manager returned except its refusal.

use super::exit::{CliError, CliResult, KEY_MANAGER, USAGE};
use crate::audit::{self, Event};
use crate::kmip::{parse_servers, Endpoint};
use crate::volume::{self, KmipKeyChoice, KmipWrap, RemoteOutcome, UnlockedVolume, VolumeError};
use clap::Args;
use std::path::{Path, PathBuf};

/// The new KMIP protector's shape (protector add, key import).
#[derive(Args, Clone, Default)]
pub struct KmipNewArgs {
    /// Wrap the KEK with a KMIP key manager: SERVER[:PORT][,SERVER...] (port 5696 by default)
    #[arg(long, value_name = "SERVERS")]
    pub kmip: Option<String>,
    /// CA certificate(s) (PEM) the KMIP servers' certificates must chain to
    #[arg(long, value_name = "FILE", requires = "kmip")]
    pub kmip_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the KMIP servers
    #[arg(long, value_name = "FILE", requires = "kmip")]
    pub kmip_cert: Option<PathBuf>,
    /// Client private key (PEM) of --kmip-cert
    #[arg(long, value_name = "FILE", requires = "kmip")]
    pub kmip_key: Option<PathBuf>,
    /// Name the servers' certificates must carry (default: the first server's host)
    #[arg(long, value_name = "NAME", requires = "kmip")]
    pub kmip_tls_name: Option<String>,
    /// Use this existing AES-256 key of the manager instead of creating one
    #[arg(
        long,
        value_name = "UID",
        requires = "kmip",
        conflicts_with = "kmip_key_name"
    )]
    pub kmip_key_uid: Option<String>,
    /// Use the existing key the manager finds under this name
    #[arg(long, value_name = "NAME", requires = "kmip")]
    pub kmip_key_name: Option<String>,
}

fn file(opt: &Option<PathBuf>, flag: &str) -> CliResult<PathBuf> {
    let p = opt
        .as_ref()
        .ok_or_else(|| CliError::new(USAGE, format!("--kmip needs {flag} FILE")))?;
    // Stored in the config and read at every unlock, from any working directory.
    std::fs::canonicalize(p)
        .map_err(|e| CliError::new(USAGE, format!("{flag} {}: {e}", p.display())))
}

impl KmipNewArgs {
    pub fn wanted(&self) -> bool {
        self.kmip.is_some()
    }

    pub fn wrap_request(&self) -> CliResult<KmipWrap> {
        let list = self.kmip.as_deref().unwrap_or_default();
        let servers = parse_servers(list).map_err(|e| CliError::new(USAGE, e.to_string()))?;
        let tls_name = match &self.kmip_tls_name {
            Some(n) => n.clone(),
            None => servers.first().map(|s| s.0.clone()).unwrap_or_default(),
        };
        let key = match (&self.kmip_key_uid, &self.kmip_key_name) {
            (Some(u), _) => KmipKeyChoice::Uid(u.clone()),
            (None, Some(n)) => KmipKeyChoice::Name(n.clone()),
            (None, None) => KmipKeyChoice::Create,
        };
        Ok(KmipWrap {
            endpoint: Endpoint {
                servers,
                tls_name,
                ca: file(&self.kmip_ca, "--kmip-ca")?,
                cert: file(&self.kmip_cert, "--kmip-cert")?,
                key: file(&self.kmip_key, "--kmip-key")?,
            },
            key,
        })
    }
}

/// Tries the volume's kmip protector(s). `Err(NoSuchProtector)` when it has none for the
/// active KEK, without any network traffic.
pub fn try_kmip(cipherdir: &Path) -> CliResult<Result<UnlockedVolume, VolumeError>> {
    let info = volume::read_info(cipherdir)?;
    let active = info.keks.iter().find(|k| k.2).map(|k| k.0);
    let any = info
        .protectors
        .iter()
        .any(|p| p.kmip.is_some() && Some(p.kek_version) == active);
    if !any {
        return Ok(Err(VolumeError::NoSuchProtector("kmip")));
    }
    Ok(volume::unlock_kmip(cipherdir))
}

/// Prints what happened on the manager; an error if a key could not be retired.
fn report(out: &RemoteOutcome, what: &str) -> CliResult<()> {
    for uid in &out.retired {
        eprintln!("{what} manager key {uid}");
    }
    if out.failed.is_empty() {
        return Ok(());
    }
    let failed: Vec<String> = out
        .failed
        .iter()
        .map(|(uid, e)| format!("{uid}: {e}"))
        .collect();
    Err(CliError::new(
        KEY_MANAGER,
        format!(
            "the config no longer uses the manager key(s), but they were not {}: {}",
            what.to_lowercase(),
            failed.join("; ")
        ),
    )
    .hint("retire the key on the key manager by hand"))
}

/// `protector reseal --kmip`.
pub fn reseal(cipherdir: &Path, u: &UnlockedVolume, id: Option<&str>) -> CliResult<()> {
    let out = match volume::reseal_kmip(cipherdir, u, id) {
        Ok(o) => o,
        Err(e) => {
            audit::record(
                Event::new("protector-reseal")
                    .protector("kmip")
                    .failed(e.to_string()),
            );
            return Err(e.into());
        }
    };
    audit::record(
        Event::new("protector-reseal")
            .protector("kmip")
            .key_id(out.id.clone()),
    );
    eprintln!(
        "Resealed KMIP protector {} under manager key {}",
        out.id,
        out.new_uid.as_deref().unwrap_or("?")
    );
    report(&out, "Revoked")
}

/// `protector remove --destroy-remote`.
pub fn remove_destroy(
    cipherdir: &Path,
    u: &UnlockedVolume,
    id: &str,
    force: bool,
) -> CliResult<()> {
    let out = match volume::destroy_remote_key(cipherdir, u, id, force) {
        Ok(o) => o,
        Err(e) => {
            audit::record(
                Event::new("protector-remove")
                    .key_id(id.to_string())
                    .refused(e.to_string()),
            );
            return Err(e.into());
        }
    };
    audit::record(Event::new("protector-remove").key_id(out.id.clone()));
    eprintln!("Removed protector {}", out.id);
    report(&out, "Destroyed")
}
