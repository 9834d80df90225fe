//! `status`, `protector list` and `init` as users read them: creation times in UTC ISO 8601
//! (epoch kept in `--json`), KDF refusals that state the bounds, and the memory-lock state with
//! the once-only warning when secrets cannot be locked (CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK 0).
//! Must NOT mount anything.

mod common;

use common::*;

fn is_iso_utc(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && s.bytes().filter(u8::is_ascii_digit).count() == 14
}

fn json_u64(json: &str, key: &str) -> u64 {
    let at = json.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn creation_times_are_utc_iso8601_and_json_keeps_epoch() {
    let v = TestVolume::new("status-dates");
    let c = v.cipher.display().to_string();
    let text = dekfs(["status", &c]);
    text.expect_code(exit::OK, "status");
    let created = text
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("created:"))
        .expect("created line")
        .trim()
        .to_string();
    assert!(is_iso_utc(&created), "{}", text.stdout);
    assert!(!text.stdout.contains("unix time"), "{}", text.stdout);
    let json = dekfs(["status", &c, "--json"]);
    json.expect_code(exit::OK, "status --json");
    let epoch = json_u64(&json.stdout, "created");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(epoch <= now && now - epoch < 3600, "{}", json.stdout);
    // The date shown is the JSON epoch, converted by date(1).
    let want = run_cmd(
        "date",
        ["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"],
        None,
    );
    assert_eq!(created, want.stdout.trim());
    assert!(text
        .stdout
        .contains(&format!("KEK v1:         created {created}, active")));
    assert!(!text.stdout.contains(&epoch.to_string()), "{}", text.stdout);

    let list = dekfs(["protector", "list", &c]);
    list.expect_code(exit::OK, "protector list");
    assert!(list.stdout.contains("CREATED (UTC)"), "{}", list.stdout);
    for row in list.stdout.lines().skip(1) {
        let last = row.split_whitespace().last().unwrap();
        assert!(is_iso_utc(last), "{row}");
    }
    assert!(!list.stdout.contains(&epoch.to_string()), "{}", list.stdout);
}

/// Runs dekfs without CAP_IPC_LOCK and with RLIMIT_MEMLOCK 0, so every mlock fails.
fn dekfs_unlockable(args: &[&str]) -> Out {
    let mut all = vec![
        "--bounding-set",
        "-ipc_lock",
        "--inh-caps",
        "-ipc_lock",
        "prlimit",
        "--memlock=0",
        DEKFS,
    ];
    all.extend_from_slice(args);
    run_cmd("setpriv", all, None)
}

#[test]
fn memory_lock_state_is_shown_and_its_failure_warned_once() {
    let v = TestVolume::new("status-mlock");
    let c = v.cipher.display().to_string();
    let pf = v.passfile.display().to_string();
    let ok = dekfs(["status", &c]);
    assert!(ok.stdout.contains("memory locked:  yes"), "{}", ok.stdout);
    assert!(dekfs(["status", &c, "--json"])
        .stdout
        .contains("\"memory_locked\":true"));

    let no = dekfs_unlockable(&["status", &c]);
    no.expect_code(exit::OK, "status without mlock");
    assert!(no.stdout.contains("memory locked:  no"), "{}", no.stdout);
    let json = dekfs_unlockable(&["status", &c, "--json"]);
    assert!(
        json.stdout.contains("\"memory_locked\":false"),
        "{}",
        json.stdout
    );

    // Reading a passphrase (fsck unlocks the volume) warns exactly once on stderr.
    let f = dekfs_unlockable(&["fsck", &c, "--passfile", &pf]);
    f.expect_code(exit::OK, "fsck without mlock");
    assert_eq!(
        f.stderr.matches("cannot lock memory").count(),
        1,
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("swap"), "{}", f.stderr);
    let quiet = dekfs(["fsck", &c, "--passfile", &pf]);
    assert!(
        !quiet.stderr.contains("cannot lock memory"),
        "{}",
        quiet.stderr
    );
}

#[test]
fn init_kdf_refusal_states_the_bounds() {
    let v = TestVolume::uninitialised("init-bounds");
    let (c, pf) = (
        v.cipher.display().to_string(),
        v.passfile.display().to_string(),
    );
    let out = dekfs(["init", &c, "--passfile", &pf, "--kdf-time", "65"]);
    assert!(!out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains("KDF parameters outside the allowed bounds: m_cost=65536 KiB, t_cost=65, p_lanes=4 (allowed m 8192..=4194304 KiB, t 1..=64, p 1..=16)"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(&v.cipher).unwrap().count(), 0);
}
