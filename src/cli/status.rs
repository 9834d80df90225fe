//! `dekfs status`: shows a volume's identity, KEKs and protectors, from a
//! cipher directory or a mount point, and for a mounted one the daemon's
//! live figures over its control socket. It needs no key and must not unlock.

use super::exit::CliResult;
use super::init::hex;
use super::mount::mount_source;
use crate::control::{Client, Status};
use crate::volume;
use clap::Args;
use std::path::{Path, PathBuf};

#[cfg(test)]
mod tests {
    #[test]
    fn utc_time_is_iso8601() {
        assert_eq!(super::utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc_time(1_796_314_800), "2026-12-03T16:20:00Z");
        assert_eq!(super::utc_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc_time(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}

#[derive(Args)]
pub struct StatusArgs {
    /// Cipher directory or mount point
    target: PathBuf,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

/// Unix seconds as UTC ISO 8601 (`2026-12-03T16:20:00Z`), proleptic Gregorian calendar.
pub(super) fn utc_time(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm), exact for every u64 input we can reach.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn esc(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

pub fn run(a: StatusArgs) -> CliResult<()> {
    let target = std::fs::canonicalize(&a.target).unwrap_or(a.target.clone());
    let (cipherdir, mounted_at) = match mount_source(&target) {
        Some((fstype, src)) if fstype == "fuse.dekfs" => (PathBuf::from(src), Some(target.clone())),
        _ => {
            let at = super::mount::mountpoint_of(&target);
            (target.clone(), at)
        }
    };
    let info = volume::read_info(&cipherdir)?;
    let live = mounted_at.as_deref().map(live_status);
    // This process only: a mounted daemon's own lock state is not reachable from here yet.
    let locked = crate::secret::probe_memory_lock();
    let age = volume::kek_age(&info, None, super::period::now_unix());
    let (seen, rolled_back) = super::period::rollback_state(&info);
    if a.json {
        let keks: Vec<String> = info
            .keks
            .iter()
            .map(|(v, c, act)| format!("{{\"version\":{v},\"created\":{c},\"active\":{act}}}"))
            .collect();
        let prots: Vec<String> = info
            .protectors
            .iter()
            .map(|p| {
                let kdf = p.kdf.as_ref().map_or("null".to_string(), |k| {
                    format!("{{\"m_cost_kib\":{},\"t_cost\":{},\"p_lanes\":{}}}", k.m_cost_kib, k.t_cost, k.p_lanes)
                });
                format!(
                    "{{\"kind\":\"{}\",\"id\":\"{}\",\"kek_version\":{},\"created\":{},\"kdf\":{kdf}}}",
                    p.kind, p.id, p.kek_version, p.created
                )
            })
            .collect();
        let live_json = match &live {
            Some(Ok(s)) => format!(",\"live\":{}", live_json(s)),
            Some(Err(why)) => format!(",\"live\":null,\"live_note\":\"{}\"", esc(why)),
            None => ",\"live\":null".into(),
        };
        let rotation = format!(
            ",\"rotation\":{{{}}},\"seen_kek_version\":{},\"rollback\":{rolled_back}",
            super::period::schedule_json(&age),
            seen.map_or("null".into(), |v| v.to_string())
        );
        println!(
            "{{\"cipherdir\":\"{}\",\"mountpoint\":{},\"volume_id\":\"{}\",\"format_version\":{},\"created\":{},\"memory_locked\":{locked},\"keks\":[{}],\"protectors\":[{}]{rotation}{live_json}}}",
            esc(&cipherdir.display().to_string()),
            mounted_at.as_ref().map_or("null".into(), |m| format!("\"{}\"", esc(&m.display().to_string()))),
            hex(&info.volume_id),
            info.format_version,
            info.created,
            keks.join(","),
            prots.join(",")
        );
        return rollback_result(&age, seen, rolled_back);
    }
    println!("cipherdir:      {}", cipherdir.display());
    println!(
        "mounted at:     {}",
        mounted_at.map_or("(not mounted)".into(), |m| m.display().to_string())
    );
    println!("volume id:      {}", hex(&info.volume_id));
    println!("format version: {}", info.format_version);
    println!("created:        {}", utc_time(info.created));
    for (v, c, act) in &info.keks {
        println!(
            "KEK v{v}:         created {}{}",
            utc_time(*c),
            // Only a rotation in progress leaves a non-active KEK.
            if *act {
                ", active"
            } else {
                ", retiring (key rotation unfinished: dekfs rekey --resume)"
            }
        );
    }
    for l in super::period::schedule_text(&age) {
        println!("{l}");
    }
    if rolled_back {
        println!(
            "ROLLBACK:       this machine has seen KEK v{} of this volume; this config is older",
            seen.unwrap_or(0)
        );
    }
    println!(
        "memory locked:  {} (this dekfs process{})",
        if locked { "yes" } else { "no" },
        if locked {
            ""
        } else {
            ": secrets may reach swap; raise RLIMIT_MEMLOCK"
        }
    );
    for p in &info.protectors {
        let kdf = p.kdf.as_ref().map_or(String::new(), |k| {
            format!(
                ", argon2id m={} KiB t={} p={}",
                k.m_cost_kib, k.t_cost, k.p_lanes
            )
        });
        println!(
            "protector:      {} {} (KEK v{}, created {}{kdf})",
            p.kind,
            p.id,
            p.kek_version,
            utc_time(p.created)
        );
    }
    match &live {
        Some(Ok(s)) => print_live(s),
        Some(Err(why)) => {
            println!("live:           unavailable ({why}); figures above are from the config")
        }
        None => {}
    }
    rollback_result(&age, seen, rolled_back)
}

/// Status never unlocks, but it says (exit 17) when the config is older than this machine's
/// rollback record, so that a script notices before it mounts.
fn rollback_result(age: &volume::KekAge, seen: Option<u32>, rolled_back: bool) -> CliResult<()> {
    if !rolled_back {
        return Ok(());
    }
    Err(super::CliError::new(
        super::exit::ROLLBACK,
        format!(
            "config rollback: dekfs.conf has KEK version {}, this machine has seen version {}",
            age.kek_version,
            seen.unwrap_or(0)
        ),
    )
    .hint("an older dekfs.conf was put back; every unlock refuses it without --allow-rollback"))
}

/// The mounted daemon's figures, or why there are none.
fn live_status(mnt: &Path) -> Result<Status, String> {
    let mut c = Client::connect(mnt).map_err(|e| e.to_string())?;
    c.status().map_err(|e| e.to_string())
}

fn print_live(s: &Status) {
    println!("daemon:         pid {}, up {} s", s.pid, s.uptime_secs);
    match (s.locked, s.kek_version) {
        (true, _) => println!("keys:           locked (`dekfs unlock` gives them back)"),
        (false, Some(v)) => println!("keys:           unlocked, KEK v{v} in use"),
        (false, None) => println!("keys:           unlocked"),
    }
    println!("open files:     {}", s.open_files);
    println!(
        "cached keys:    {} directory, {} file",
        s.cached_dir_keys, s.cached_file_keys
    );
    println!("bytes read:     {}", s.bytes_read);
    println!("bytes written:  {}", s.bytes_written);
    println!("integrity errors: {} since mount", s.integrity_errors);
}

fn live_json(s: &Status) -> String {
    format!(
        "{{\"pid\":{},\"uptime_secs\":{},\"locked\":{},\"kek_version\":{},\"open_files\":{},\"cached_dir_keys\":{},\"cached_file_keys\":{},\"bytes_read\":{},\"bytes_written\":{},\"integrity_errors\":{}}}",
        s.pid,
        s.uptime_secs,
        s.locked,
        s.kek_version.map_or("null".into(), |v| v.to_string()),
        s.open_files,
        s.cached_dir_keys,
        s.cached_file_keys,
        s.bytes_read,
        s.bytes_written,
        s.integrity_errors
    )
}
