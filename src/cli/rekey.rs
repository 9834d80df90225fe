//! `dekfs rekey CIPHERDIR`: offline KEK rotation under the volume lock. It
//! gathers credentials, asks the volume layer to start (or resume) the
//! rotation and the engine to finish it, and shows progress (TTY line or one
//! JSON line per step). It must not rewrap anything itself, and never
//! prints key material except a new recovery key, once.

use super::exit::{CliError, CliResult, CORRUPT, IO, MOUNT_FAILED, USAGE};
use super::unlock::{has_tty, try_tpm, unlock_policy, TpmOpts};
use super::{secret_input, KeySource};
use crate::engine::rekey::Stats;
use crate::engine::rotation;
use crate::volume::rotate::{self, RotateOptions};
use crate::volume::{self, Credential, LockError, UnlockedVolume, VolumeError, VolumeLock};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a copy of the whole cipher directory taken before the rotation still
/// gives its holder.
const BACKUP_NOTE: &str =
    "note: file keys (DEKs) are unchanged by a KEK rotation: a copy of the \
cipher directory taken before it, with its old dekfs.conf and an old credential, still opens the \
files as they were then; today's files open only with the new key. `dekfs rekey --data` gives every file a fresh DEK, so what is written afterwards is out of that copy's reach";

#[derive(Args)]
pub struct RekeyArgs {
    /// Mount point of a mounted volume (rotated online by its daemon), or the
    /// cipher directory (unmounted: rotated here, under the volume lock)
    pub(super) cipherdir: PathBuf,
    #[command(flatten)]
    pub(super) key: KeySource,
    #[command(flatten)]
    pub(super) tpm: TpmOpts,
    /// Passphrase of another passphrase protector to keep (first line of FILE; repeatable)
    #[arg(long, value_name = "FILE")]
    pub(super) also_passfile: Vec<PathBuf>,
    /// Recovery key of another recovery-key protector to keep (repeatable)
    #[arg(long, value_name = "FILE")]
    pub(super) also_recovery_key_file: Vec<PathBuf>,
    /// Do not carry protector ID (hex prefix, 4+ digits) over to the new key (repeatable)
    #[arg(long, value_name = "ID")]
    pub(super) drop_protector: Vec<String>,
    /// Also create a fresh recovery-key protector and print its key once
    #[arg(long)]
    pub(super) new_recovery_key: bool,
    /// Finish an interrupted rotation (a plain rekey does too)
    #[arg(long)]
    pub(super) resume: bool,
    /// Destroy the old key even if some objects could not be moved to the new one
    /// (they become unreadable); also allows keeping only TPM protectors
    #[arg(long)]
    pub(super) force: bool,
    /// One JSON object per line for progress and the result
    #[arg(long)]
    pub(super) json: bool,
    /// Do nothing unless the active KEK is older than the rotation period
    /// (or a rotation is pending)
    #[arg(long)]
    pub(super) if_due: bool,
    /// Audit lines (start, finish, destruction) to FILE instead of syslog
    #[arg(long, value_name = "FILE")]
    pub(super) log_file: Option<PathBuf>,
    /// Re-encrypt file contents under fresh DEKs instead (all files, or those under PATH,
    /// a path inside the volume); resumable: a rerun continues
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "/")]
    pub(super) data: Option<String>,
    /// Rotation period for --if-due, in days (default: the volume's, see `dekfs period`;
    /// 0: due now)
    #[arg(long, value_name = "DAYS", value_parser = super::period::parse_override_days)]
    pub(super) period_days: Option<u32>,
}

pub(super) fn explicit_credentials(a: &RekeyArgs) -> CliResult<Vec<Credential>> {
    let k = &a.key;
    let mut v = Vec::new();
    if let Some(p) = &k.passfile {
        v.push(Credential::Passphrase(secret_input::from_file(p)?));
    } else if let Some(fd) = k.passphrase_fd {
        v.push(Credential::Passphrase(secret_input::from_fd(fd)?));
    }
    if let Some(r) = &k.recovery_key_file {
        v.push(Credential::RecoveryKey(secret_input::recovery_from_file(
            r,
        )?));
    }
    for p in &a.also_passfile {
        v.push(Credential::Passphrase(secret_input::from_file(p)?));
    }
    for r in &a.also_recovery_key_file {
        v.push(Credential::RecoveryKey(secret_input::recovery_from_file(
            r,
        )?));
    }
    Ok(v)
}

/// Unlocks with the TPM or a KMIP key manager when no credential was given
/// (no prompt), else with
/// the first credential that opens the volume.
pub(super) fn unlock(
    a: &RekeyArgs,
    cipherdir: &Path,
    creds: &[Credential],
) -> CliResult<UnlockedVolume> {
    if creds.is_empty() {
        match try_tpm(cipherdir, &a.tpm, None)? {
            Ok(u) => return Ok(u),
            Err(VolumeError::NoSuchProtector(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // A key manager opens the volume without a prompt too (then TPM order, as unlock does).
        match super::kmip::try_kmip(cipherdir)? {
            Ok(u) => return Ok(u),
            Err(VolumeError::NoSuchProtector(_)) => {}
            Err(e) => return Err(e.into()),
        }
        return Err(
            CliError::new(USAGE, "no credential to unlock the volume with")
                .hint("give --passfile FILE or --recovery-key-file FILE (or run on a terminal)"),
        );
    }
    let mut last = None;
    for c in creds {
        match volume::unlock_with(cipherdir, c, &unlock_policy(&a.key)) {
            Ok(u) => return Ok(u),
            Err(e @ (VolumeError::WrongKey | VolumeError::NoSuchProtector(_))) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.unwrap_or(VolumeError::WrongKey).into())
}

/// Takes the volume lock: a mounted volume (or one being repaired) is refused.
fn lock(cipherdir: &Path) -> CliResult<Option<VolumeLock>> {
    let refuse = |what: String| {
        CliError::new(MOUNT_FAILED, format!("{}: {what}", cipherdir.display()))
            .hint("a mounted volume is rotated through its mount point: dekfs rekey MOUNTPOINT")
    };
    if let Some(m) = crate::daemon::mountpoint_of(cipherdir) {
        return Err(refuse(format!("mounted at {}", m.display())));
    }
    volume::read_info(cipherdir)?;
    match VolumeLock::try_acquire(cipherdir, "rekey", None) {
        Ok(l) => Ok(Some(l)),
        Err(LockError::Held(h)) => Err(refuse(format!("the volume is {h}"))),
        Err(LockError::Unsupported(why)) => {
            eprintln!("warning: cannot take the volume lock ({why})");
            Ok(None)
        }
        Err(LockError::Io(e)) => Err(CliError::new(IO, format!("cannot lock: {e}"))),
    }
}

/// The age of the active KEK and when it is due, in days (unauthenticated
/// config: at worst a forged date makes a rotation run early or late).
pub(super) fn due_in_days(a: &RekeyArgs, cipherdir: &Path) -> CliResult<(u64, i64)> {
    let info = volume::read_info(cipherdir)?;
    let age = volume::kek_age(&info, a.period_days, super::period::now_unix());
    Ok((age.age_days, age.due_in_days))
}

pub fn run(a: RekeyArgs) -> CliResult<()> {
    if a.data.is_none() {
        if let Some(mnt) = super::rekey_online::mounted(&a.cipherdir) {
            return super::rekey_online::run(a, &mnt);
        }
    }
    crate::logger::init(a.log_file.as_deref(), false)?;
    if let Some(scope) = &a.data {
        // A mount point: the daemon renews online.
        if let Some(r) = super::rekey_data::online(&a.cipherdir, scope, a.json) {
            return r;
        }
    }
    let _lock = lock(&a.cipherdir)?;
    if let Some(scope) = &a.data {
        let creds = credentials(&a, &a.cipherdir, true)?;
        let u = unlock(&a, &a.cipherdir, &creds)?;
        return super::rekey_data::run(&a.cipherdir, u, scope, a.json);
    }
    let pending = rotate::pending_rotation(&a.cipherdir)?;
    let mut out = Output::new(a.json);
    if a.if_due && pending.is_none() && not_due(&a, &a.cipherdir, &mut out)? {
        return Ok(());
    }
    let creds = credentials(&a, &a.cipherdir, pending.is_some())?;
    let u = unlock(&a, &a.cipherdir, &creds)?;
    // Rotation events go to the volume's audit log (when it keeps one).
    crate::audit::attach(&a.cipherdir, Some(&u.keys));
    let (old, keys) = match pending {
        Some((old, new)) => {
            if !a.resume {
                out.say(&format!(
                    "an interrupted rotation (KEK {old} -> {new}) is pending: finishing it"
                ));
            }
            (old, u.keys.clone())
        }
        None if a.resume => {
            out.say("no rotation to resume");
            return Ok(());
        }
        None => {
            let b = rotate::begin(&a.cipherdir, &u.keys, &rotate_options(&a, creds, &u)?)?;
            log::info!("rekey: started, KEK {} -> {}", b.old, b.new);
            crate::audit::record(
                crate::audit::Event::new("rotation-start")
                    .key_version(b.new)
                    .detail(format!("from KEK {}", b.old)),
            );
            announce(&mut out, &b);
            (b.old, std::sync::Arc::new(b.keys))
        }
    };
    drop(u);
    let total = crate::engine::rekey::count(&a.cipherdir, &keys)?;
    let mut progress = Progress::new(total, &mut out);
    // NV key shares of the old KEK's TPM records (template 3): erased once the KEK is gone.
    let retired = volume::nv_shares(&a.cipherdir, Some(old))?;
    let f = rotation::finish(&a.cipherdir, &keys, old, a.force, &mut |s| progress.step(s))?;
    progress.done(&f.rewrap.stats);
    if f.destroyed && !retired.is_empty() {
        volume::erase_nv_shares(&a.tpm.tcti(None)?, &retired);
    }
    report(&mut out, &f)
}

/// `--if-due` on a volume whose key is not due: says so; true to stop.
pub(super) fn not_due(a: &RekeyArgs, cipherdir: &Path, out: &mut Output) -> CliResult<bool> {
    let (age, left) = due_in_days(a, cipherdir)?;
    if left <= 0 {
        return Ok(false);
    }
    out.event(&serde_json::json!({
        "event": "not_due", "kek_age_days": age, "due_in_days": left,
    }));
    out.say(&format!(
        "not due: the volume key is {age} days old, rotation due in {left} days"
    ));
    Ok(true)
}

/// The credentials given, plus a prompted passphrase when one is needed
/// and a terminal is there.
pub(super) fn credentials(
    a: &RekeyArgs,
    cipherdir: &Path,
    resume: bool,
) -> CliResult<Vec<Credential>> {
    let mut creds = explicit_credentials(a)?;
    if creds.is_empty() && has_tty() && needs_credential(a, cipherdir, resume)? {
        creds.push(Credential::Passphrase(secret_input::prompt(
            "Passphrase: ",
            false,
        )?));
    }
    Ok(creds)
}

/// What the config step keeps, drops and adds, from the command line.
pub(super) fn rotate_options(
    a: &RekeyArgs,
    credentials: Vec<Credential>,
    u: &UnlockedVolume,
) -> CliResult<RotateOptions> {
    let has_pin = u
        .info
        .protectors
        .iter()
        .any(|p| p.tpm2.as_ref().is_some_and(|t| t.pin));
    Ok(RotateOptions {
        credentials,
        tcti: tcti_if_tpm(a, u)?,
        pin: if has_pin { a.tpm.pin(false)? } else { None },
        drop: a.drop_protector.clone(),
        new_recovery_key: a.new_recovery_key,
        force: a.force,
        tpm_nv: false,
    })
}

/// The config step is durable: says what it kept and dropped, and shows a
/// new recovery key, once.
pub(super) fn announce(out: &mut Output, b: &rotate::Begun) {
    out.event(&serde_json::json!({
        "event": "begun", "old_kek": b.old, "new_kek": b.new,
        "kept": b.kept, "dropped": b.dropped,
    }));
    if let Some(rk) = &b.recovery_key {
        // The one time it is shown: stdout, also with --json.
        println!("New recovery key, shown only once; store it safely:");
        println!("Recovery key: {}", rk.display());
    }
}

/// Whether a passphrase must be asked for: to start, when the volume has a
/// passphrase or recovery protector that is not dropped; to resume, when it
/// has no TPM protector to unlock with.
pub(super) fn needs_credential(a: &RekeyArgs, cipherdir: &Path, resume: bool) -> CliResult<bool> {
    let info = volume::read_info(cipherdir)?;
    let active = info.keks.iter().find(|k| k.2).map(|k| k.0);
    if resume {
        return Ok(!info
            .protectors
            .iter()
            .any(|p| p.tpm2.is_some() || p.kmip.is_some()));
    }
    Ok(info.protectors.iter().any(|p| {
        Some(p.kek_version) == active
            && p.tpm2.is_none()
            && p.kmip.is_none()
            && !a
                .drop_protector
                .iter()
                .any(|d| p.id.starts_with(&d.to_ascii_lowercase()))
    }))
}

pub(super) fn tcti_if_tpm(
    a: &RekeyArgs,
    u: &UnlockedVolume,
) -> CliResult<Option<crate::tpm::Tcti>> {
    if u.info.protectors.iter().any(|p| p.tpm2.is_some()) {
        Ok(Some(a.tpm.tcti(None)?))
    } else {
        Ok(None)
    }
}

fn report(out: &mut Output, f: &rotation::Finished) -> CliResult<()> {
    let s = &f.rewrap.stats;
    out.event(&serde_json::json!({
        "event": "finished", "old_kek": f.old, "new_kek": f.new,
        "dirs": s.dirs, "files": s.files, "rewrapped": s.rewrapped,
        "already_current": s.current, "blockers": f.blockers,
        "destroyed": f.destroyed, "rewrap_seconds": f.rewrap_time.as_secs_f64(),
    }));
    conclude(
        out,
        (f.old, f.new),
        &s.rewrapped,
        &f.blockers,
        f.destroyed,
        "",
        "repair or remove them (dekfs fsck --repair), then dekfs rekey --resume; or --force to destroy the old key anyway",
    )
}

/// The end of a rotation, offline or online: the blockers by path, then KEK v destroyed (with
/// the backup note) or kept (exit 14, with `hint`).
pub(super) fn conclude<B: std::fmt::Display>(
    out: &mut Output,
    (old, new): (u32, u32),
    rewrapped: &dyn std::fmt::Display,
    blockers: &[B],
    destroyed: bool,
    how: &str,
    hint: &'static str,
) -> CliResult<()> {
    for b in blockers {
        out.say(&format!("not moved to KEK {new}: {b}"));
    }
    if destroyed {
        out.say(&format!(
            "KEK {old} destroyed; {rewrapped} objects rewrapped to KEK {new}{how}"
        ));
        if !blockers.is_empty() {
            out.say("warning: --force: the objects listed above are now unreadable");
        }
        out.say(BACKUP_NOTE);
        return Ok(());
    }
    Err(CliError::new(
        CORRUPT,
        format!(
            "KEK {old} kept: {} objects still need it (listed above)",
            blockers.len()
        ),
    )
    .hint(hint))
}

/// Where messages go: stderr lines, or JSON lines on stdout.
pub(super) struct Output {
    json: bool,
}

impl Output {
    pub(super) fn new(json: bool) -> Output {
        Output { json }
    }

    pub(super) fn say(&mut self, msg: &str) {
        if self.json {
            self.event(&serde_json::json!({"event": "message", "text": msg}));
        } else {
            eprintln!("dekfs: {msg}");
        }
    }

    pub(super) fn event(&mut self, v: &serde_json::Value) {
        if self.json {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{v}");
            let _ = o.flush();
        }
    }
}

/// Objects done of total, rate and time left: a TTY line or JSON lines, at
/// most a few per second.
pub(super) struct Progress<'a> {
    total: u64,
    start: Instant,
    last: Instant,
    tty: bool,
    out: &'a mut Output,
}

impl<'a> Progress<'a> {
    pub(super) fn new(total: u64, out: &'a mut Output) -> Progress<'a> {
        let now = Instant::now();
        Progress {
            total,
            start: now,
            last: now,
            tty: !out.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            out,
        }
    }

    pub(super) fn step(&mut self, s: &Stats) {
        if self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        self.show(s, false);
    }

    pub(super) fn done(&mut self, s: &Stats) {
        self.show(s, true);
    }

    fn show(&mut self, s: &Stats, last: bool) {
        let done = s.dirs + s.files;
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let left = if rate > 0.0 {
            self.total.saturating_sub(done) as f64 / rate
        } else {
            0.0
        };
        if self.out.json {
            self.out.event(&serde_json::json!({
                "event": "progress", "done": done, "total": self.total,
                "rewrapped": s.rewrapped, "per_second": rate.round(), "seconds_left": left.round(),
            }));
        } else if self.tty {
            eprint!(
                "\rrekey: {done}/{} objects, {:.0}/s, {:.0} s left   ",
                self.total, rate, left
            );
            if last {
                eprintln!();
            }
        } else if last {
            eprintln!(
                "dekfs: rekey: {done} objects in {secs:.2} s ({rate:.0}/s), {} rewrapped",
                s.rewrapped
            );
        }
    }
}
