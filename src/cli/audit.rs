//! `dekfs audit CIPHERDIR`: lists the audit log (filtered by time and event) and with `--verify`
//! checks its chain and seal with the volume's key. Must NOT modify the log itself (unlocking
//! for `--verify` records its own unlock line through the volume layer, like any unlock).

use super::exit::{CliError, CliResult, CORRUPT, USAGE};
use super::unlock::{explicit_credential, has_tty, unlock_volume, TpmOpts};
use super::KeySource;
use crate::audit::{self, AuditKey, StoredLine};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    cipherdir: PathBuf,
    /// Only events at or after T (unix seconds, or YYYY-MM-DD[THH:MM:SS] UTC)
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only events named E (e.g. unlock, protector-add, integrity-error)
    #[arg(long, value_name = "E")]
    event: Option<String>,
    /// Print the stored JSON lines as they are
    #[arg(long)]
    json: bool,
    /// Check the MAC chain and the seal (needs a credential); names the first bad line
    #[arg(long)]
    verify: bool,
    /// Start keeping the audit log for this volume (needs a credential)
    #[arg(long, conflicts_with = "verify")]
    enable: bool,
    #[command(flatten)]
    key: KeySource,
    #[command(flatten)]
    tpm: TpmOpts,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn parse_time(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, mo, da], [h, mi, se]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    if !(1..=12).contains(mo) || !(1..=31).contains(da) || *h > 23 || *mi > 59 || *se > 60 {
        return None;
    }
    let secs = days_from_civil(*y, *mo, *da) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

fn show(s: &StoredLine, json: bool, tag: &str) {
    if json {
        println!("{}", s.text);
        return;
    }
    let Some(l) = &s.line else {
        println!("{tag}{:>5} (unreadable line)", s.number);
        return;
    };
    let mut extra = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            extra.push(format!("{k}={v}"));
        }
    };
    add("protector", l.protector.clone());
    add("key", l.key_id.clone());
    add("kek", l.key_version.map(|v| v.to_string()));
    add("object", l.object.clone());
    add("path", l.path.clone());
    add("origin", l.origin.clone());
    add("detail", l.detail.clone());
    println!(
        "{tag}{:>5} {} {:<18} {:<8} uid={} pid={} {}",
        s.number,
        super::status::utc_time(l.time),
        l.event,
        l.result,
        l.uid,
        l.pid,
        extra.join(" ")
    );
}

pub fn run(a: AuditArgs) -> CliResult<()> {
    let since = match &a.since {
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            CliError::new(
                USAGE,
                format!("--since {t}: give unix seconds or YYYY-MM-DD[THH:MM:SS]"),
            )
        })?),
        None => None,
    };
    // Checked before listing: a volume that is not one has no log to show.
    crate::volume::read_info(&a.cipherdir)?;
    if a.enable {
        audit::enable_creation();
        let u = unlock_volume(
            &a.cipherdir,
            &a.key,
            &a.tpm,
            None,
            !explicit_credential(&a.key),
        )?;
        audit::record(audit::Event::new("audit-enable").volume(&u.info.volume_id));
        eprintln!(
            "dekfs: audit log enabled at {}",
            audit::paths_for(&a.cipherdir).log.display()
        );
        return Ok(());
    }
    let paths = audit::paths_for(&a.cipherdir);
    if std::fs::symlink_metadata(&paths.log).is_err() {
        return Err(
            CliError::new(USAGE, format!("no audit log at {}", paths.log.display()))
                .hint("this volume is not audited; `dekfs audit --enable CIPHERDIR` starts a log"),
        );
    }
    let keys = if a.verify {
        if !explicit_credential(&a.key) && !has_tty() && !has_tpm(&a) {
            None
        } else {
            let u = unlock_volume(
                &a.cipherdir,
                &a.key,
                &a.tpm,
                None,
                !explicit_credential(&a.key),
            )?;
            let held: Vec<AuditKey> = u
                .info
                .keks
                .iter()
                .filter_map(|(v, _, _)| AuditKey::derive(&u.keys, *v).ok())
                .collect();
            Some(held)
        }
    } else {
        None
    };
    let (lines, pending, torn) = audit::read_lines(&paths)?;
    let keep = |s: &StoredLine| {
        s.line.as_ref().is_none_or(|l| {
            since.is_none_or(|t| l.time >= t) && a.event.as_ref().is_none_or(|e| &l.event == e)
        })
    };
    for s in lines.iter().filter(|s| keep(s)) {
        show(s, a.json, "");
    }
    for s in pending.iter().filter(|s| keep(s)) {
        show(s, a.json, "pending ");
    }
    if torn {
        eprintln!(
            "dekfs: the log ends in a torn line (a writer died mid-append); it is not counted"
        );
    }
    if !pending.is_empty() {
        eprintln!(
            "dekfs: {} pending line(s) written without the key (e.g. failed unlocks) are not yet \
             chained; the next keyed event chains them",
            pending.len()
        );
    }
    let Some(keys) = keys else {
        eprintln!(
            "dekfs: {} line(s) listed, NOT verified: {}",
            lines.len(),
            if a.verify {
                "no key (give --passfile, --recovery-key-file or a terminal)"
            } else {
                "use --verify with a credential to check the chain"
            }
        );
        return if a.verify {
            Err(CliError::new(
                USAGE,
                "cannot verify the audit log without the volume key",
            ))
        } else {
            Ok(())
        };
    };
    let r = audit::verify(&paths, &keys)?;
    if let Some((n, why)) = r.first_bad {
        let at = if n == 0 {
            "the log".to_string()
        } else {
            format!("line {n}")
        };
        return Err(CliError::new(
            CORRUPT,
            format!("audit log verification FAILED at {at}: {why}"),
        ));
    }
    if let Some(why) = r.incomplete {
        eprintln!("dekfs: verified {} of {} lines; {why}", r.verified, r.lines);
        return Ok(());
    }
    eprintln!(
        "dekfs: audit log verified: {} lines, chain intact, seal {}",
        r.verified,
        r.sealed.map_or("absent (empty log)".into(), |c| format!(
            "matches ({c} lines)"
        ))
    );
    Ok(())
}

fn has_tpm(a: &AuditArgs) -> bool {
    crate::volume::read_info(&a.cipherdir)
        .is_ok_and(|i| i.protectors.iter().any(|p| p.tpm2.is_some()))
        && a.tpm.tpm_tcti.is_some()
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn since_accepts_unix_seconds_and_utc_dates() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_time("2026-12-03 17:11:47"), Some(1_796_317_907));
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(parse_time("1969-12-31"), None);
        assert_eq!(parse_time("soon"), None);
    }
}
