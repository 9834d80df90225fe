//! The KMIP protector against a real PyKMIP server on loopback (tests/kmip_support): add, unlock
//! in a fresh process with no prompt, central revoke and destroy, reseal, a server that is down
//! or first in the list and dead, a tampered record, a response without a GCM tag, a KEK
//! rotation, and the unlock latency. Skips only when the PyKMIP venv is not installed.

mod common;
mod kmip_support;

use common::*;
use std::path::Path;

const KMIP_EXIT: i32 = 18;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A passphrase-only volume (fast KDF, no recovery key).
fn volume(name: &str) -> TestVolume {
    TestVolume::with_init_args(name, &["--no-recovery-key"])
}

/// `protector add --kmip` authorised by the passphrase; the new protector's id.
fn add_kmip(v: &TestVolume, srv: &kmip_support::KmipServer, extra: &[&str]) -> String {
    let mut args = vec![
        "protector".to_string(),
        "add".into(),
        s(&v.cipher),
        "--passfile".into(),
        s(&v.passfile),
    ];
    args.extend(srv.add_args("client"));
    args.extend(extra.iter().map(|x| x.to_string()));
    let out = dekfs(&args);
    out.expect_code(exit::OK, "protector add --kmip");
    out.stderr
        .split_whitespace()
        .nth(2)
        .expect("protector id")
        .to_string()
}

/// (kind, id, detail) of each line of `protector list`.
fn list(v: &TestVolume) -> Vec<(String, String, String)> {
    let out = dekfs(["protector", "list", &s(&v.cipher)]);
    out.expect_code(exit::OK, "protector list");
    out.stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].into(),
                f[1].into(),
                f.get(3..).unwrap_or(&[]).join(" "),
            )
        })
        .collect()
}

/// The manager key uid of the (only) kmip protector of the active KEK.
fn kmip_uid(v: &TestVolume) -> String {
    let l = list(v);
    let (_, _, detail) = l
        .iter()
        .rev()
        .find(|(k, _, _)| k == "kmip")
        .expect("kmip row");
    detail.split_whitespace().nth(1).unwrap().to_string()
}

/// `dekfs mount` with no credential at all: only the KMIP protector can open it.
fn mount_no_credential(v: &TestVolume, extra: &[&str]) -> Out {
    let mut args = vec![
        "mount".to_string(),
        s(&v.cipher),
        s(&v.mnt),
        "--log-file".into(),
        s(&v.logfile),
    ];
    args.extend(extra.iter().map(|x| x.to_string()));
    dekfs(&args)
}

#[test]
fn add_then_unlock_in_a_fresh_process_without_prompt() {
    let srv = require_kmip!();
    eprintln!("PyKMIP ready in {:.2} s", srv.start_secs);
    let v = volume("kmip-add");
    let id = add_kmip(&v, &srv, &[]);
    let rows = list(&v);
    assert!(rows
        .iter()
        .any(|(k, i, d)| k == "kmip" && *i == id && d.contains(&srv.server())));
    assert_eq!(srv.admin("state", &kmip_uid(&v)), "ACTIVE");

    mount_no_credential(&v, &[]).expect_code(exit::OK, "mount through KMIP");
    std::fs::write(v.p("f"), b"through the key manager").unwrap();
    v.umount();
    mount_no_credential(&v, &["-o", "keysource=kmip,headless"])
        .expect_code(exit::OK, "mount keysource=kmip");
    assert_eq!(std::fs::read(v.p("f")).unwrap(), b"through the key manager");
    v.umount();
    // keysource=passphrase never asks the manager.
    mount_no_credential(&v, &["-o", "keysource=passphrase"]).expect_code(exit::USAGE, "no tty");

    // A second client identity does not own the key: permission denied, by name.
    let mut args = vec![
        "protector".to_string(),
        "add".into(),
        s(&v.cipher),
        "--passfile".into(),
        s(&v.passfile),
        "--kmip-key-uid".into(),
        kmip_uid(&v),
    ];
    args.extend(srv.add_args("other"));
    let out = dekfs(&args);
    out.expect_code(KMIP_EXIT, "other identity");
    assert!(out.stderr.contains("denies this client"), "{}", out.stderr);
}

#[test]
fn revoke_then_destroy_lock_the_protector_with_the_right_message() {
    let srv = require_kmip!();
    let v = volume("kmip-revoke");
    add_kmip(&v, &srv, &[]);
    let uid = kmip_uid(&v);
    srv.admin("revoke", &uid);
    let out = mount_no_credential(&v, &[]);
    out.expect_code(KMIP_EXIT, "mount after revoke")
        .expect_one_line_error("revoked");
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
    assert!(!is_mounted(&v.mnt));
    let out = mount_no_credential(&v, &["-o", "keysource=kmip,headless"]);
    out.expect_code(KMIP_EXIT, "keysource=kmip headless after revoke");
    assert!(out.stderr.contains("headless"), "{}", out.stderr);
    // The passphrase still opens it, after saying why KMIP did not.
    let out = v.try_mount(&[]);
    out.expect_code(exit::OK, "fallback to the passphrase");
    assert!(
        out.stderr.contains("trying the next protector"),
        "{}",
        out.stderr
    );
    v.umount();

    srv.admin("destroy", &uid);
    let out = mount_no_credential(&v, &[]);
    out.expect_code(KMIP_EXIT, "mount after destroy");
    assert!(out.stderr.contains("destroyed"), "{}", out.stderr);
}

#[test]
fn remove_destroy_remote_retires_the_key_behind_the_guard() {
    let srv = require_kmip!();
    let v = volume("kmip-remove");
    let id = add_kmip(&v, &srv, &[]);
    let uid = kmip_uid(&v);
    let pass_id = list(&v)
        .into_iter()
        .find(|(k, _, _)| k == "passphrase")
        .unwrap()
        .1;
    // Leaving only the key manager needs --force, like leaving only a TPM.
    let out = dekfs([
        "protector",
        "remove",
        &s(&v.cipher),
        &pass_id,
        "--passfile",
        &s(&v.passfile),
    ]);
    out.expect_code(exit::USAGE, "remove the last passphrase");
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    // --destroy-remote on a passphrase protector is refused, nothing changes.
    let out = dekfs([
        "protector",
        "remove",
        &s(&v.cipher),
        &pass_id,
        "--destroy-remote",
        "--passfile",
        &s(&v.passfile),
    ]);
    out.expect_code(exit::USAGE, "destroy-remote of a passphrase");
    assert_eq!(list(&v).len(), 2);

    // A second protector on the same manager key, found by its name: removing the first one
    // with --destroy-remote must leave the key alone while the second still uses it.
    let vid = dekfs(["status", &s(&v.cipher), "--json"]).stdout;
    let vid = vid.split("\"volume_id\":\"").nth(1).unwrap()[..32].to_string();
    let name = format!("dekfs {vid} {id}");
    let id2 = add_kmip(&v, &srv, &["--kmip-key-name", &name]);
    let shared = format!("key {uid} ");
    assert!(list(&v)
        .iter()
        .any(|(k, i, d)| k == "kmip" && *i == id2 && (d.to_string() + " ").contains(&shared)));
    let remove = |id: &str| {
        dekfs([
            "protector",
            "remove",
            &s(&v.cipher),
            "--kmip",
            id,
            "--destroy-remote",
            "--passfile",
            &s(&v.passfile),
        ])
    };
    let out = remove(&id);
    out.expect_code(exit::OK, "remove --destroy-remote of a shared key");
    assert!(!out.stderr.contains("Destroyed"), "{}", out.stderr);
    assert_eq!(srv.admin("state", &uid), "ACTIVE");
    mount_no_credential(&v, &[]).expect_code(exit::OK, "the second protector still opens");
    v.umount();

    let out = remove(&id2);
    out.expect_code(exit::OK, "remove --destroy-remote");
    assert!(
        out.stderr.contains(&format!("Destroyed manager key {uid}")),
        "{}",
        out.stderr
    );
    assert!(srv.admin("state", &uid).starts_with("GONE"));
    assert_eq!(list(&v).len(), 1);
    v.mount();
    v.umount();
}

#[test]
fn reseal_rewraps_under_a_new_key_and_revokes_the_old() {
    let srv = require_kmip!();
    let v = volume("kmip-reseal");
    let id = add_kmip(&v, &srv, &[]);
    let old = kmip_uid(&v);
    // Authorised by the KMIP protector itself: no credential given.
    let out = dekfs(["protector", "reseal", "--kmip", &s(&v.cipher)]);
    out.expect_code(exit::OK, "reseal --kmip");
    let new = kmip_uid(&v);
    assert_ne!(old, new);
    assert!(
        out.stderr.contains(&format!("Revoked manager key {old}")),
        "{}",
        out.stderr
    );
    assert_eq!(srv.admin("state", &old), "DEACTIVATED");
    assert_eq!(srv.admin("state", &new), "ACTIVE");
    assert!(
        list(&v).iter().any(|(k, i, _)| k == "kmip" && *i == id),
        "id kept"
    );
    mount_no_credential(&v, &[]).expect_code(exit::OK, "mount after reseal");
    v.umount();
}

#[test]
fn server_down_then_fallback_and_a_dead_first_server() {
    let mut srv = require_kmip!();
    let v = volume("kmip-down");
    // The first server of the list is dead: the second one is used, for add and unlock.
    let dead = kmip_support::free_port();
    let list_arg = format!("127.0.0.1:{dead},{}", srv.server());
    let mut args = vec![
        "protector".to_string(),
        "add".into(),
        s(&v.cipher),
        "--passfile".into(),
        s(&v.passfile),
    ];
    let mut kargs = srv.add_args("client");
    kargs[1] = list_arg;
    args.extend(kargs);
    dekfs(&args).expect_code(exit::OK, "add with a dead first server");
    mount_no_credential(&v, &[]).expect_code(exit::OK, "mount via the second server");
    v.umount();

    srv.stop();
    let out = mount_no_credential(&v, &[]);
    out.expect_code(KMIP_EXIT, "mount with the manager down");
    assert!(
        out.stderr.contains("no KMIP server reachable"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{dead}")),
        "{}",
        out.stderr
    );
    let out = v.try_mount(&[]);
    out.expect_code(exit::OK, "fallback to the passphrase");
    assert!(
        out.stderr.contains("no KMIP server reachable"),
        "{}",
        out.stderr
    );
    v.umount();
    srv.restart();
    mount_no_credential(&v, &[]).expect_code(exit::OK, "mount once it is back");
    v.umount();
}

#[test]
fn tampered_record_is_refused() {
    let srv = require_kmip!();
    let v = volume("kmip-tamper");
    add_kmip(&v, &srv, &[]);
    let conf_path = v.cipher.join(CONF);
    let good = std::fs::read(&conf_path).unwrap();
    let body = kmip_support::kmip_body_offset(&good);
    // A flipped bit of the wrapped KEK (body offset 32..88): GCM on the manager refuses it.
    let mut bad = good.clone();
    bad[body + 40] ^= 0x01;
    std::fs::write(&conf_path, &bad).unwrap();
    let out = mount_no_credential(&v, &[]);
    out.expect_code(KMIP_EXIT, "tampered blob");
    assert!(
        out.stderr.contains("could not open the wrapped KEK"),
        "{}",
        out.stderr
    );
    // The same for the tag (body offset 16..32).
    let mut bad = good.clone();
    bad[body + 20] ^= 0x80;
    std::fs::write(&conf_path, &bad).unwrap();
    let out = mount_no_credential(&v, &[]);
    out.expect_code(KMIP_EXIT, "tampered tag");
    assert!(
        out.stderr.contains("could not open the wrapped KEK"),
        "{}",
        out.stderr
    );
    // A record moved to another protector id no longer matches its associated data.
    let mut bad = good.clone();
    bad[body - 16] ^= 0x01;
    std::fs::write(&conf_path, &bad).unwrap();
    let out = mount_no_credential(&v, &[]);
    out.expect_code(KMIP_EXIT, "record under another protector id");
    assert!(
        out.stderr.contains("could not open the wrapped KEK"),
        "{}",
        out.stderr
    );
    std::fs::write(&conf_path, &good).unwrap();
    mount_no_credential(&v, &[]).expect_code(exit::OK, "restored");
    v.umount();
}

#[test]
fn encrypt_response_without_gcm_tag_is_refused() {
    if !kmip_support::venv().join("bin/python").is_file() {
        eprintln!("SKIPPED (PyKMIP venv not installed: run scripts/deps.sh)");
        return;
    }
    let pki = scratch_dir("dekfs-kmip-fake-");
    kmip_support::make_pki(pki.path());
    let fake = kmip_support::FakeServer::start(pki.path());
    let v = volume("kmip-notag");
    let before = std::fs::read(v.cipher.join(CONF)).unwrap();
    let out = dekfs([
        "protector",
        "add",
        &s(&v.cipher),
        "--passfile",
        &s(&v.passfile),
        "--kmip",
        &format!("127.0.0.1:{}", fake.port),
        "--kmip-ca",
        &s(&pki.path().join("ca.crt")),
        "--kmip-cert",
        &s(&pki.path().join("client.crt")),
        "--kmip-key",
        &s(&pki.path().join("client.key")),
    ]);
    out.expect_code(KMIP_EXIT, "no GCM tag");
    assert!(out.stderr.contains("without a GCM tag"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(v.cipher.join(CONF)).unwrap(),
        before,
        "config unchanged"
    );
}

#[test]
fn rekey_protects_the_new_kek_through_kmip() {
    let srv = require_kmip!();
    let v = volume("kmip-rekey");
    let id = add_kmip(&v, &srv, &[]);
    v.mount();
    std::fs::write(v.p("a"), b"before rotation").unwrap();
    v.umount();
    let out = dekfs(["rekey", &s(&v.cipher), "--passfile", &s(&v.passfile)]);
    out.expect_code(exit::OK, "rekey");
    let rows = list(&v);
    assert!(rows.iter().all(|(_, _, d)| !d.is_empty()), "{rows:?}");
    let out = dekfs(["protector", "list", &s(&v.cipher)]);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("kmip")
            && l.contains(&id)
            && l.split_whitespace().nth(2) == Some("2")),
        "kmip record of KEK 2:\n{}",
        out.stdout
    );
    mount_no_credential(&v, &[]).expect_code(exit::OK, "mount with KEK 2 through KMIP");
    assert_eq!(std::fs::read(v.p("a")).unwrap(), b"before rotation");
    v.umount();
}

/// With no credential at all, `dekfs rekey` unlocks through the key manager (no prompt), drops
/// the passphrase protector it was told to, and the new KEK is reachable through KMIP alone.
#[test]
fn rekey_without_a_credential_unlocks_through_kmip() {
    let srv = require_kmip!();
    let v = volume("kmip-rekey-nocred");
    add_kmip(&v, &srv, &[]);
    v.mount();
    std::fs::write(v.p("a"), b"kmip only").unwrap();
    v.umount();
    let pass_id = list(&v)
        .into_iter()
        .find(|(kind, _, _)| kind == "passphrase")
        .map(|(_, id, _)| id)
        .expect("passphrase protector");
    let out = dekfs([
        "rekey",
        &s(&v.cipher),
        "--drop-protector",
        &pass_id,
        "--force",
    ]);
    out.expect_code(exit::OK, "rekey with no credential");
    let rows = list(&v);
    assert!(
        rows.iter().all(|(kind, _, _)| kind == "kmip"),
        "only the KMIP protector is left: {rows:?}"
    );
    mount_no_credential(&v, &[]).expect_code(exit::OK, "mount with KEK 2 through KMIP");
    assert_eq!(std::fs::read(v.p("a")).unwrap(), b"kmip only");
    v.umount();
}

/// Unlock latency through KMIP, in process (TLS handshake, Decrypt, config MAC, root dir).
#[test]
fn unlock_latency_median_of_20() {
    let srv = require_kmip!();
    let v = volume("kmip-latency");
    add_kmip(&v, &srv, &[]);
    let mut ms: Vec<f64> = (0..20)
        .map(|_| {
            let t0 = std::time::Instant::now();
            let u = dekfs::volume::unlock_kmip(&v.cipher).expect("unlock through KMIP");
            drop(u);
            t0.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = (ms[9] + ms[10]) / 2.0;
    eprintln!(
        "KMIP unlock latency: median {median:.1} ms, min {:.1} ms, max {:.1} ms (20 runs)",
        ms[0], ms[19]
    );
    assert!(median < 2000.0, "median {median} ms");
}

/// The fstab helper (`mount -t fuse.dekfs`, built on first use like tests/mount_helper.rs does)
/// with `keysource=kmip,headless`, with no terminal: the manager or nothing.
#[test]
fn fstab_helper_accepts_keysource_kmip() {
    let srv = require_kmip!();
    let v = volume("kmip-helper");
    add_kmip(&v, &srv, &[]);
    let helper = Path::new(DEKFS).with_file_name("dekfs-mount-helper");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", "mount-helper"]);
    if DEKFS.contains("/release/") {
        build.arg("--release");
    }
    assert!(build
        .status()
        .expect("cargo build -p mount-helper")
        .success());
    let run = || {
        run_cmd(
            "setsid",
            [
                "-w".to_string(),
                s(&helper),
                s(&v.cipher),
                s(&v.mnt),
                "-o".into(),
                "keysource=kmip,headless".into(),
            ],
            None,
        )
    };
    run().expect_code(exit::OK, "helper keysource=kmip");
    assert!(is_mounted(&v.mnt));
    v.umount();
    srv.admin("revoke", &kmip_uid(&v));
    let out = run();
    out.expect_code(KMIP_EXIT, "helper keysource=kmip after revoke");
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
    assert!(!is_mounted(&v.mnt));
}

/// A server that takes the connection but never answers: the timeout
/// (`DEKFS_KMIP_TIMEOUT_MS`) moves on to the next server, and the refusal names both.
#[test]
fn a_silent_server_times_out_and_the_next_one_is_tried() {
    let mut srv = require_kmip!();
    let v = volume("kmip-silent");
    // The kernel completes the TCP handshake into the backlog; nobody ever reads.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let with_timeout = |args: Vec<String>| {
        let mut full = vec!["DEKFS_KMIP_TIMEOUT_MS=300".to_string(), DEKFS.to_string()];
        full.extend(args);
        run_cmd("env", &full, None)
    };
    let mut args = vec![
        "protector".to_string(),
        "add".into(),
        s(&v.cipher),
        "--passfile".into(),
        s(&v.passfile),
    ];
    let mut kargs = srv.add_args("client");
    kargs[1] = format!("{silent},{}", srv.server());
    args.extend(kargs);
    let t0 = std::time::Instant::now();
    with_timeout(args).expect_code(exit::OK, "add past a silent server");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    let mount = vec![
        "mount".to_string(),
        s(&v.cipher),
        s(&v.mnt),
        "--log-file".into(),
        s(&v.logfile),
    ];
    with_timeout(mount.clone()).expect_code(exit::OK, "mount past a silent server");
    v.umount();
    srv.stop();
    let out = with_timeout(mount);
    out.expect_code(KMIP_EXIT, "silent and down");
    assert!(
        out.stderr.contains("no KMIP server reachable"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("{silent}: timed out")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&srv.server()), "{}", out.stderr);
}
