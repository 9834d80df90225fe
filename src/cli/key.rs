//! `dekfs key transport-key new|export|import`: KEK escrow and migration. Export is authorised
//! by unlocking with an existing protector; import proves the blob opens this copy of the
//! volume before adding the new protector. Must NOT print or write a raw key: the transport key
//! goes only to its 0600 file, the KEK only wrapped; a refused import writes nothing.

use super::exit::{CliError, CliResult, USAGE};
use super::init::hex;
use super::protector::{new_protector, NewArgs};
use super::unlock::{explicit_credential, unlock_volume, TpmOpts};
use super::{secret_input, KeySource};
use crate::audit::{self, Event};
use crate::volume;
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Transport keys (the wrapping key of an export)
    #[command(subcommand)]
    TransportKey(TransportKeyCmd),
    /// Export the volume's KEK wrapped under a transport key (AES-KW, RFC 3394)
    Export(ExportArgs),
    /// Install an exported KEK on a copy of the volume and add a new protector for it
    Import(ImportArgs),
}

#[derive(Subcommand)]
pub enum TransportKeyCmd {
    /// Write a new 256-bit transport key to FILE (mode 0600; never overwrites)
    New { file: PathBuf },
}

#[derive(Args)]
pub struct ExportArgs {
    cipherdir: PathBuf,
    /// The transport key file (`dekfs key transport-key new`)
    #[arg(long, value_name = "FILE")]
    transport_key: PathBuf,
    /// Write the export to FILE (mode 0600, never overwritten); default stdout (not a terminal)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
}

#[derive(Args)]
pub struct ImportArgs {
    cipherdir: PathBuf,
    /// The transport key file the export was made with
    #[arg(long, value_name = "FILE")]
    transport_key: PathBuf,
    /// The export file (`dekfs key export --out`)
    blob: PathBuf,
    #[command(flatten)]
    new: NewArgs,
}

pub fn run(c: KeyCmd) -> CliResult<()> {
    match c {
        KeyCmd::TransportKey(TransportKeyCmd::New { file }) => {
            let text = volume::new_transport_key()?;
            write_new(&file, text.expose())?;
            eprintln!(
                "Wrote a new transport key to {} (keep it apart from the exports it wraps)",
                file.display()
            );
            Ok(())
        }
        KeyCmd::Export(a) => export(a),
        KeyCmd::Import(a) => import(a),
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            let msg = if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("{} exists; refusing to overwrite it", path.display())
            } else {
                format!("cannot create {}: {e}", path.display())
            };
            CliError::new(USAGE, msg)
        })?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn transport_key(p: &Path) -> CliResult<crate::secret::Key32> {
    Ok(volume::parse_transport_key(&secret_input::from_file(p)?)?)
}

fn export(a: ExportArgs) -> CliResult<()> {
    let tk = transport_key(&a.transport_key)?;
    if a.out.is_none() && std::io::stdout().is_terminal() {
        return Err(
            CliError::new(USAGE, "refusing to write a binary export to a terminal")
                .hint("use --out FILE"),
        );
    }
    let u = unlock_volume(
        &a.cipherdir,
        &a.key,
        &a.tpm,
        None,
        !explicit_credential(&a.key),
    )?;
    let version = u.keys.active_kek_version();
    let blob = match volume::export_kek(&u, &tk) {
        Ok(b) => b,
        Err(e) => {
            audit::record(
                Event::new("key-export")
                    .key_version(version)
                    .failed(e.to_string()),
            );
            return Err(e.into());
        }
    };
    match &a.out {
        Some(p) => write_new(p, &blob)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&blob)?;
            out.flush()?;
        }
    }
    audit::record(
        Event::new("key-export")
            .volume(&u.info.volume_id)
            .key_version(version),
    );
    eprintln!(
        "Exported KEK version {version} of volume {} wrapped under the transport key",
        hex(&u.info.volume_id)
    );
    Ok(())
}

fn import(a: ImportArgs) -> CliResult<()> {
    a.new.check()?;
    let tk = transport_key(&a.transport_key)?;
    let mut blob = Vec::new();
    std::fs::File::open(&a.blob)
        .map_err(|e| CliError::new(USAGE, format!("cannot read {}: {e}", a.blob.display())))?
        .take(4096)
        .read_to_end(&mut blob)?;
    let u = match volume::import_kek(&a.cipherdir, &tk, &blob) {
        Ok(u) => u,
        Err(e) => {
            // Nothing may be written for a refused blob: syslog only, not the volume's log.
            log::warn!("key import refused: {e}");
            return Err(e.into());
        }
    };
    let new = new_protector(&a.new)?;
    let kind = a.new.kind_name();
    let added = volume::add_protector(&a.cipherdir, &u, new)?;
    audit::attach(&a.cipherdir, Some(&u.keys));
    audit::record(
        Event::new("key-import")
            .volume(&u.info.volume_id)
            .key_version(u.keys.active_kek_version())
            .protector(kind)
            .key_id(added.id.clone()),
    );
    audit::record(
        Event::new("protector-add")
            .protector(kind)
            .key_id(added.id.clone()),
    );
    eprintln!(
        "Imported the KEK into volume {} and added {kind} protector {}",
        hex(&u.info.volume_id),
        added.id
    );
    if let Some(rk) = added.recovery_key {
        println!("Recovery key: {}", rk.display());
        eprintln!("Store the recovery key offline now; it is shown only once.");
    }
    Ok(())
}
