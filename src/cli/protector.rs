//! `dekfs protector add|remove|list|reseal`: manage a volume's protectors. Every change is
//! authorised by unlocking with an existing protector and rewrites only dekfs.conf. Must NOT
//! print secrets other than a new recovery key (once), nor bypass the volume layer's refusals.

use super::exit::{CliError, CliResult, USAGE};
use super::init::hex;
use super::kmip::{self as kmip_cli, KmipNewArgs};
use super::unlock::{explicit_credential, unlock_volume, TpmOpts};
use super::{secret_input, KeySource};
use crate::audit::{self, Event};
use crate::volume::{self, KdfParams, NewProtector, Tpm2Seal};
use clap::{ArgGroup, Args, Subcommand};
use std::path::PathBuf;

/// The new TPM2 protector's shape (init and protector add).
#[derive(Args, Clone, Default)]
pub struct Tpm2NewArgs {
    /// Seal the KEK in the TPM (PolicyPCR, default PCR 7)
    #[arg(long)]
    pub tpm2: bool,
    /// PCRs (sha256 bank) the TPM protector is bound to, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "N,...", requires = "tpm2")]
    pub pcrs: Vec<u8>,
    /// Also require a PIN (PolicyAuthValue; dictionary-attack protected)
    #[arg(long, requires = "tpm2")]
    pub pin: bool,
    /// Bind the TPM protector to a key share in TPM NV, which `shred --purge-backups` erases
    /// so that old copies of dekfs.conf open nothing on this TPM (needs empty owner auth)
    #[arg(long, requires = "tpm2")]
    pub tpm_nv: bool,
    #[command(flatten)]
    pub tpm: TpmOpts,
}

impl Tpm2NewArgs {
    fn pcrs(&self) -> Vec<u8> {
        if self.pcrs.is_empty() {
            vec![7]
        } else {
            self.pcrs.clone()
        }
    }

    pub fn describe(&self) -> String {
        let p: Vec<String> = self.pcrs().iter().map(|p| p.to_string()).collect();
        format!(
            "PCR {}{}{}",
            p.join(","),
            if self.pin { ", PIN" } else { "" },
            if self.tpm_nv { ", NV key share" } else { "" }
        )
    }

    pub fn seal_request(&self) -> CliResult<Tpm2Seal> {
        let pin = if self.pin {
            let pin = self
                .tpm
                .pin(true)?
                .ok_or_else(|| CliError::new(USAGE, "--pin needs --pin-file FILE or a terminal"))?;
            if pin.is_empty() {
                return Err(CliError::new(USAGE, "empty PIN"));
            }
            Some(pin)
        } else {
            None
        };
        Ok(Tpm2Seal {
            tcti: self.tpm.tcti(None)?,
            pcrs: self.pcrs(),
            pin,
            nv: self.tpm_nv,
        })
    }
}

#[derive(Subcommand)]
pub enum ProtectorCmd {
    /// List protectors: kind, id, PCRs, PIN, creation time (no key needed)
    List { cipherdir: PathBuf },
    /// Add a protector, authorised by an existing one
    Add(AddArgs),
    /// Remove a protector by id (refuses to remove the last non-TPM/KMIP one without --force)
    Remove(RemoveArgs),
    /// Re-seal TPM2 protectors to the current PCR values, or rewrap a KMIP one under a new key
    Reseal(ResealArgs),
}

/// The protector to create (protector add, key import).
#[derive(Args)]
pub struct NewArgs {
    #[command(flatten)]
    new_tpm: Tpm2NewArgs,
    #[command(flatten)]
    new_kmip: KmipNewArgs,
    /// Add a passphrase protector (new passphrase from --new-passfile or the terminal)
    #[arg(long, conflicts_with_all = ["tpm2", "recovery_key", "kmip"])]
    passphrase: bool,
    /// Add a recovery-key protector (printed once)
    #[arg(long, conflicts_with_all = ["tpm2", "kmip"])]
    recovery_key: bool,
    /// Read the new passphrase from the first line of FILE
    #[arg(long, value_name = "FILE", requires = "passphrase")]
    new_passfile: Option<PathBuf>,
    /// Argon2id memory cost in KiB for a new passphrase (default 65536)
    #[arg(long, value_name = "KIB")]
    kdf_memory: Option<u32>,
    /// Argon2id passes (default 3)
    #[arg(long, value_name = "T")]
    kdf_time: Option<u32>,
    /// Argon2id lanes (default 4)
    #[arg(long, value_name = "P")]
    kdf_lanes: Option<u32>,
}

impl NewArgs {
    pub fn check(&self) -> CliResult<()> {
        if self.new_tpm.tpm2 && self.new_kmip.wanted() {
            return Err(CliError::new(USAGE, "add --tpm2 and --kmip one at a time"));
        }
        if !(self.new_tpm.tpm2 || self.new_kmip.wanted() || self.passphrase || self.recovery_key) {
            return Err(CliError::new(
                USAGE,
                "say which protector to add: --tpm2, --kmip, --passphrase or --recovery-key",
            ));
        }
        Ok(())
    }

    pub fn kind_name(&self) -> &'static str {
        if self.new_tpm.tpm2 {
            "tpm2"
        } else if self.new_kmip.wanted() {
            "kmip"
        } else if self.passphrase {
            "passphrase"
        } else {
            "recovery-key"
        }
    }
}

/// Reads what the new protector needs (passphrase, PIN) and describes it.
pub fn new_protector(a: &NewArgs) -> CliResult<NewProtector> {
    Ok(if a.new_tpm.tpm2 {
        NewProtector::Tpm2(a.new_tpm.seal_request()?)
    } else if a.new_kmip.wanted() {
        NewProtector::Kmip(a.new_kmip.wrap_request()?)
    } else if a.passphrase {
        let passphrase = match &a.new_passfile {
            Some(p) => secret_input::from_file(p)?,
            None => secret_input::prompt("New passphrase: ", true)?,
        };
        let d = KdfParams::default();
        NewProtector::Passphrase {
            passphrase,
            kdf: KdfParams {
                m_cost_kib: a.kdf_memory.unwrap_or(d.m_cost_kib),
                t_cost: a.kdf_time.unwrap_or(d.t_cost),
                p_lanes: a.kdf_lanes.unwrap_or(d.p_lanes),
            },
        }
    } else {
        NewProtector::RecoveryKey
    })
}

#[derive(Args)]
pub struct AddArgs {
    cipherdir: PathBuf,
    #[command(flatten)]
    new: NewArgs,
    #[command(flatten)]
    key: KeySource,
}

#[derive(Args)]
pub struct RemoveArgs {
    cipherdir: PathBuf,
    /// Protector id (or a unique prefix of at least 4 hex digits), see `protector list`
    id: String,
    /// Allow removing the last passphrase/recovery-key protector (TPM/KMIP-only afterwards)
    #[arg(long)]
    force: bool,
    /// The protector is a KMIP one (refuse otherwise)
    #[arg(long)]
    kmip: bool,
    /// Also revoke and destroy its key on the KMIP manager: every volume protected only by
    /// that key is locked for good
    #[arg(long)]
    destroy_remote: bool,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
}

#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["tpm2", "kmip"])))]
pub struct ResealArgs {
    /// Reseal TPM2 protectors to the current PCR values
    #[arg(long)]
    tpm2: bool,
    /// Rewrap a KMIP protector under a new manager key and revoke the old one
    #[arg(long, conflicts_with = "tpm2")]
    kmip: bool,
    cipherdir: PathBuf,
    /// Only this protector (id or unique prefix)
    #[arg(long)]
    id: Option<String>,
    /// New PCR selection (default: keep each protector's)
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pcrs: Vec<u8>,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
}

pub fn run(c: ProtectorCmd) -> CliResult<()> {
    match c {
        ProtectorCmd::List { cipherdir } => list(cipherdir),
        ProtectorCmd::Add(a) => add(a),
        ProtectorCmd::Remove(a) => {
            let u = unlock_volume(
                &a.cipherdir,
                &a.key,
                &a.tpm,
                None,
                !explicit_credential(&a.key),
            )?;
            if a.destroy_remote {
                return kmip_cli::remove_destroy(&a.cipherdir, &u, &a.id, a.force);
            }
            if a.kmip {
                let info = volume::read_info(&a.cipherdir)?;
                let pfx = a.id.trim().to_ascii_lowercase();
                if !info
                    .protectors
                    .iter()
                    .any(|p| p.kmip.is_some() && p.id.starts_with(&pfx))
                {
                    return Err(CliError::new(
                        USAGE,
                        format!("no KMIP protector with id {pfx}"),
                    ));
                }
            }
            let shares = volume::nv_shares_of(&a.cipherdir, &a.id)?;
            let id = match volume::remove_protector(&a.cipherdir, &u, &a.id, a.force) {
                Ok(id) => id,
                Err(e) => {
                    audit::record(
                        Event::new("protector-remove")
                            .key_id(a.id.clone())
                            .refused(e.to_string()),
                    );
                    return Err(e.into());
                }
            };
            audit::record(Event::new("protector-remove").key_id(id.clone()));
            if !shares.is_empty() {
                volume::erase_nv_shares(&a.tpm.tcti(None)?, &shares);
            }
            eprintln!("Removed protector {id}");
            Ok(())
        }
        ProtectorCmd::Reseal(a) => {
            // Authorised by another protector: the TPM one is what is being repaired.
            // A KMIP rewrap may be authorised by the KMIP protector itself (its old key still
            // works); a TPM reseal by another protector, the TPM one being what is repaired.
            let kmip_first = a.kmip && !explicit_credential(&a.key);
            let u = unlock_volume(&a.cipherdir, &a.key, &a.tpm, None, kmip_first)?;
            if a.kmip {
                return kmip_cli::reseal(&a.cipherdir, &u, a.id.as_deref());
            }
            let pcrs = (!a.pcrs.is_empty()).then(|| a.pcrs.clone());
            let needs_pin = volume::read_info(&a.cipherdir)?
                .protectors
                .iter()
                .any(|p| p.tpm2.as_ref().is_some_and(|t| t.pin));
            let pin = if needs_pin { a.tpm.pin(false)? } else { None };
            let ids = match volume::reseal_tpm2(
                &a.cipherdir,
                &u,
                a.id.as_deref(),
                &a.tpm.tcti(None)?,
                pcrs,
                pin,
            ) {
                Ok(ids) => ids,
                Err(e) => {
                    audit::record(
                        Event::new("protector-reseal")
                            .protector("tpm2")
                            .failed(e.to_string()),
                    );
                    return Err(e.into());
                }
            };
            audit::record(
                Event::new("protector-reseal")
                    .protector("tpm2")
                    .key_id(ids.join(",")),
            );
            eprintln!(
                "Resealed TPM2 protector(s) {} to the current PCR values",
                ids.join(", ")
            );
            Ok(())
        }
    }
}

fn list(cipherdir: PathBuf) -> CliResult<()> {
    let info = volume::read_info(&cipherdir)?;
    println!(
        "{:<12} {:<32} {:>3} {:<20} CREATED (UTC)",
        "KIND", "ID", "KEK", "PCRS"
    );
    for p in &info.protectors {
        let detail = match (&p.tpm2, &p.kdf) {
            _ if p.kmip.as_ref().is_some_and(|k| k.error.is_some()) => {
                "(record unreadable)".to_string()
            }
            _ if p.kmip.is_some() => p
                .kmip
                .as_ref()
                .map(|k| format!("key {} @ {}", k.key_uid, k.servers))
                .unwrap_or_default(),
            (Some(t), _) if t.error.is_some() => "(record unreadable)".to_string(),
            (Some(t), _) => {
                let v: Vec<String> = t.pcrs.iter().map(|x| x.to_string()).collect();
                format!(
                    "sha256:{}{}{}",
                    v.join(","),
                    if t.pin { " +PIN" } else { "" },
                    // Template 1 predates SRK pinning; template 3 has an NV key share.
                    match t.template_version {
                        1 => " (no SRK pin)",
                        3 => " +NV",
                        _ => "",
                    }
                )
            }
            (None, _) => "-".to_string(),
        };
        println!(
            "{:<12} {:<32} {:>3} {:<20} {}",
            p.kind,
            p.id,
            p.kek_version,
            detail,
            super::status::utc_time(p.created)
        );
    }
    Ok(())
}

fn add(a: AddArgs) -> CliResult<()> {
    a.new.check()?;
    let u = unlock_volume(
        &a.cipherdir,
        &a.key,
        &a.new.new_tpm.tpm,
        None,
        !explicit_credential(&a.key),
    )?;
    let kind = a.new.kind_name();
    let added =
        match new_protector(&a.new).and_then(|n| Ok(volume::add_protector(&a.cipherdir, &u, n)?)) {
            Ok(x) => x,
            Err(e) => {
                audit::record(
                    Event::new("protector-add")
                        .protector(kind)
                        .failed(e.msg.clone()),
                );
                return Err(e);
            }
        };
    audit::record(
        Event::new("protector-add")
            .protector(kind)
            .key_id(added.id.clone()),
    );
    eprintln!(
        "Added protector {} to volume {}",
        added.id,
        hex(&u.info.volume_id)
    );
    if let Some(rk) = added.recovery_key {
        println!("Recovery key: {}", rk.display());
        eprintln!("Store the recovery key offline now; it is shown only once.");
    }
    Ok(())
}
