//! `dekfs period TARGET [DAYS]`: shows the volume's KEK rotation schedule, or stores a
//! new period (after an unlock: the record is covered by the config MAC). Also the schedule text
//! and JSON that `dekfs status` shows. It must not rotate anything.

use super::exit::{CliResult, ROLLBACK};
use super::unlock::{explicit_credential, unlock_volume, TpmOpts};
use super::KeySource;
use crate::format::{ROTATION_PERIOD_MAX_DAYS, ROTATION_PERIOD_MIN_DAYS};
use crate::volume::{self, KekAge, VolumeInfo};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PeriodArgs {
    /// Cipher directory or mount point
    target: PathBuf,
    /// New period in days (1..=36500); without it, show the schedule
    #[arg(value_parser = parse_days)]
    days: Option<u32>,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

/// clap parser of a period in days.
pub(super) fn parse_days(s: &str) -> Result<u32, String> {
    let d: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of days"))?;
    if (ROTATION_PERIOD_MIN_DAYS..=ROTATION_PERIOD_MAX_DAYS).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "a rotation period is {ROTATION_PERIOD_MIN_DAYS}..={ROTATION_PERIOD_MAX_DAYS} days"
        ))
    }
}

/// clap parser of `rekey --period-days`: also 0, "due now".
pub(super) fn parse_override_days(s: &str) -> Result<u32, String> {
    if s == "0" {
        return Ok(0);
    }
    parse_days(s)
}

pub(super) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The schedule lines of `status` and `period`, aligned like status's.
pub(super) fn schedule_text(a: &KekAge) -> Vec<String> {
    let when = if a.overdue() {
        format!("OVERDUE by {} days", -a.due_in_days)
    } else if a.due() {
        "due now".into()
    } else {
        format!("in {} days", a.due_in_days)
    };
    vec![
        format!(
            "rotation period: {} days ({})",
            a.period_days,
            if a.period_stored { "stored" } else { "default" }
        ),
        format!(
            "KEK age:        v{} is {} days old; rotation due {} ({when})",
            a.kek_version,
            a.age_days,
            super::status::utc_time(a.due_at)
        ),
    ]
}

/// The schedule as JSON fields (no braces), for `status --json` too.
pub(super) fn schedule_json(a: &KekAge) -> String {
    format!(
        "\"kek_version\":{},\"kek_created\":{},\"kek_age_days\":{},\"rotation_period_days\":{},\"rotation_period_stored\":{},\"rotation_due\":{},\"rotation_due_in_days\":{},\"rotation_overdue\":{}",
        a.kek_version,
        a.created,
        a.age_days,
        a.period_days,
        a.period_stored,
        a.due_at,
        a.due_in_days,
        a.overdue()
    )
}

/// This machine's rollback record against the (unauthenticated) config: the seen version,
/// and whether the config is older.
pub(super) fn rollback_state(info: &VolumeInfo) -> (Option<u32>, bool) {
    let active = info.keks.iter().find(|k| k.2).map_or(0, |k| k.0);
    let seen = volume::rollback::seen(&info.volume_id);
    (seen, seen.is_some_and(|s| active < s))
}

/// The cipher directory behind a mount point, or the target itself.
fn cipherdir_of(target: &std::path::Path) -> PathBuf {
    let t = std::fs::canonicalize(target).unwrap_or(target.to_path_buf());
    match super::mount::mount_source(&t) {
        Some((fstype, src)) if fstype == "fuse.dekfs" => PathBuf::from(src),
        _ => t,
    }
}

pub fn run(a: PeriodArgs) -> CliResult<()> {
    let cipherdir = cipherdir_of(&a.target);
    if let Some(days) = a.days {
        let u = unlock_volume(
            &cipherdir,
            &a.key,
            &a.tpm,
            None,
            !explicit_credential(&a.key),
        )?;
        volume::set_rotation_period(&cipherdir, &u, days)?;
        crate::audit::record(crate::audit::Event::new("period").detail(format!("{days} days")));
        if !a.json {
            eprintln!("dekfs: rotation period set to {days} days");
        }
    }
    let info = volume::read_info(&cipherdir)?;
    let age = volume::kek_age(&info, None, now_unix());
    if a.json {
        println!("{{{}}}", schedule_json(&age));
    } else {
        for l in schedule_text(&age) {
            println!("{l}");
        }
    }
    let (seen, rolled_back) = rollback_state(&info);
    if rolled_back {
        return Err(super::CliError::new(
            ROLLBACK,
            format!(
                "config rollback: dekfs.conf has KEK version {}, this machine has seen version {}",
                age.kek_version,
                seen.unwrap_or(0)
            ),
        ));
    }
    Ok(())
}
