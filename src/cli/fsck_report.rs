//! How `dekfs fsck` shows its report: text lines (problems with their power-cut verdict,
//! unreadable ranges, salvage totals) or one JSON object. It must only format: the checking
//! and the verdicts are the engine's.

use crate::engine::fsck::Report;
use serde_json::{json, Value};
use std::path::Path;

pub fn text(r: &Report, salvage: Option<&Path>) {
    for (i, p) in r.problems.iter().enumerate() {
        let verdict = match r.diagnoses.get(i) {
            Some(d) if d.power_cut => format!("explained by a power cut: {}", d.why),
            Some(d) => format!("NOT explained by a power cut: {}", d.why),
            None => String::new(),
        };
        println!(
            "corrupt: {}: {} (backing {}) [{verdict}]",
            p.path,
            p.what,
            p.backing.display()
        );
    }
    for u in &r.unreadable {
        if u.end == u64::MAX {
            println!("unreadable: {}: whole file ({})", u.path, u.what);
        } else {
            println!(
                "unreadable: {}: bytes {}..{} ({})",
                u.path, u.start, u.end, u.what
            );
        }
    }
    if let Some(out) = salvage {
        println!(
            "salvage: {} file(s), {} byte(s) copied into {}; unreadable ranges are holes (zeros)",
            r.salvaged_files,
            r.salvaged_bytes,
            out.display()
        );
    }
}

pub fn json(r: &Report, salvage: Option<&Path>) -> Value {
    let problems: Vec<Value> = r
        .problems
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = r.diagnoses.get(i);
            json!({
                "path": p.path,
                "backing": p.backing.display().to_string(),
                "what": p.what,
                "power_cut": d.map(|d| d.power_cut),
                "cause": d.map(|d| d.why.clone()),
            })
        })
        .collect();
    let unreadable: Vec<Value> = r
        .unreadable
        .iter()
        .map(|u| {
            let end = (u.end != u64::MAX).then_some(u.end);
            json!({"path": u.path, "start": u.start, "end": end, "what": u.what})
        })
        .collect();
    let cuts = r.diagnoses.iter().filter(|d| d.power_cut).count();
    json!({
        "dirs": r.dirs,
        "files": r.files,
        "symlinks": r.symlinks,
        "blocks": r.blocks,
        "problems": problems,
        "power_cut_problems": cuts,
        "other_problems": r.problems.len() - cuts,
        "unreadable": unreadable,
        "notes": r.notes,
        "salvage": salvage.map(|o| json!({
            "out": o.display().to_string(),
            "files": r.salvaged_files,
            "bytes": r.salvaged_bytes,
        })),
        "quarantined": r.quarantined.iter().map(|(a, b)| json!([a.display().to_string(), b.display().to_string()])).collect::<Vec<_>>(),
        "removed": r.removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "cut": r.cut.iter().map(|(p, n)| json!([p.display().to_string(), n])).collect::<Vec<_>>(),
    })
}
