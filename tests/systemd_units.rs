//! The shipped systemd units (dist/systemd): every one verifies clean with
//! `systemd-analyze verify` (templates as an instance, the binary path pointed at the build, as
//! scripts/install.sh does), every man page they name is one the CLI generates, and the rekey
//! service's command line, run as systemd would run it, does nothing for a volume that is not
//! due and rotates one that is. Skips only without systemd-analyze.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

const UNITS: &[(&str, &str)] = &[
    ("dekfs-rekey@.service", "dekfs-rekey@srv-vault.enc.service"),
    ("dekfs-rekey@.timer", "dekfs-rekey@srv-vault.enc.timer"),
    ("user/dekfs-mount@.service", "dekfs-mount@vault.service"),
    ("srv-vault.mount", "srv-vault.mount"),
    ("srv-vault.automount", "srv-vault.automount"),
];

fn dist(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn units_verify_clean() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED (systemd-analyze not installed)");
        return;
    }
    let dir = scratch_dir("dekfs-units-");
    for (src, inst) in UNITS {
        let text = dist(src).replace("/usr/local/bin/dekfs", DEKFS);
        fs::write(dir.path().join(inst), text).unwrap();
    }
    for (_, inst) in UNITS {
        // Man pages are checked below against the CLI: this host need not have them installed.
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(inst))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "systemd-analyze verify {inst}:\n{text}"
        );
    }
}

#[test]
fn documented_man_pages_exist() {
    let cmd = dekfs::cli::command();
    for (src, _) in UNITS {
        for line in dist(src).lines() {
            let Some(docs) = line.strip_prefix("Documentation=") else {
                continue;
            };
            for d in docs.split_whitespace() {
                let page = d.strip_prefix("man:").expect("man: page");
                let name = page.split('(').next().unwrap();
                let ok = match name.strip_prefix("dekfs-") {
                    _ if name == "dekfs" || name == "mount.fuse.dekfs" => true,
                    Some(sub) => cmd.get_subcommands().any(|c| c.get_name() == sub),
                    None => false,
                };
                assert!(ok, "{src}: {page} is not a page dekfs-docgen makes");
            }
        }
    }
}

/// The service's ExecStart, with %f and $DEKFS_REKEY_ARGS as systemd expands them.
fn exec_start(cipher: &Path, rekey_args: &[&str]) -> Vec<String> {
    let unit = dist("dekfs-rekey@.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut argv = Vec::new();
    for w in line.split_whitespace() {
        match w {
            "/usr/local/bin/dekfs" => argv.push(DEKFS.to_string()),
            "%f" => argv.push(cipher.display().to_string()),
            "$DEKFS_REKEY_ARGS" => argv.extend(rekey_args.iter().map(|s| s.to_string())),
            w => argv.push(w.to_string()),
        }
    }
    argv
}

#[test]
fn rekey_service_command_rotates_only_when_due() {
    let v = TestVolume::with_init_args(
        "units-rekey",
        &["--no-recovery-key", "--rotation-period", "1"],
    );
    let pass = format!("--passfile={}", v.passfile.display());
    let run = |extra: &[&str]| {
        let argv = exec_start(&v.cipher, extra);
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    let (code, err) = run(&[&pass]);
    assert_eq!(code, Some(exit::OK), "{err}");
    assert!(err.contains("not due"), "{err}");
    assert_eq!(
        fs::read(v.cipher.join(CONF)).unwrap(),
        conf,
        "nothing rotated"
    );
    let (code, err) = run(&[&pass, "--period-days=0"]);
    assert_eq!(code, Some(exit::OK), "{err}");
    assert!(err.contains("KEK 1 destroyed"), "{err}");
    let c = dekfs::format::VolumeConfig::parse(&fs::read(v.cipher.join(CONF)).unwrap()).unwrap();
    assert_eq!(c.active_kek_version(), Some(2));
    assert_eq!(c.rotation_period.map(|p| p.days), Some(1));
}
