//! `dekfs status`: shows a volume's identity, KEKs and protectors, from a
//! cipher directory or a mount point. It needs no key and must not unlock.

use super::exit::CliResult;
use super::init::hex;
use super::mount::mount_source;
use crate::volume;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct StatusArgs {
    /// Cipher directory or mount point
    target: PathBuf,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
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
        println!(
            "{{\"cipherdir\":\"{}\",\"mountpoint\":{},\"volume_id\":\"{}\",\"format_version\":{},\"created\":{},\"keks\":[{}],\"protectors\":[{}]}}",
            esc(&cipherdir.display().to_string()),
            mounted_at.as_ref().map_or("null".into(), |m| format!("\"{}\"", esc(&m.display().to_string()))),
            hex(&info.volume_id),
            info.format_version,
            info.created,
            keks.join(","),
            prots.join(",")
        );
        return Ok(());
    }
    println!("cipherdir:      {}", cipherdir.display());
    println!(
        "mounted at:     {}",
        mounted_at.map_or("(not mounted)".into(), |m| m.display().to_string())
    );
    println!("volume id:      {}", hex(&info.volume_id));
    println!("format version: {}", info.format_version);
    println!("created:        {} (unix time)", info.created);
    for (v, c, act) in &info.keks {
        println!(
            "KEK v{v}:         created {c}{}",
            if *act { ", active" } else { "" }
        );
    }
    for p in &info.protectors {
        let kdf = p.kdf.as_ref().map_or(String::new(), |k| {
            format!(
                ", argon2id m={} KiB t={} p={}",
                k.m_cost_kib, k.t_cost, k.p_lanes
            )
        });
        println!(
            "protector:      {} {} (KEK v{}, created {}{kdf})",
            p.kind, p.id, p.kek_version, p.created
        );
    }
    Ok(())
}
