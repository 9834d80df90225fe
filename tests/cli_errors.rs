//! The CLI contract: exit codes, one-line error messages, recovery key,
//! refusals that leave everything untouched, status, double mounts.

mod common;

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Lines of `status` output that describe a protector (lowercased).
fn protector_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::to_lowercase)
        .filter(|l| l.trim_start().starts_with("protector"))
        .collect()
}

#[track_caller]
fn assert_not_mounted_and_no_daemon(v: &TestVolume) {
    assert!(
        !is_mounted(&v.mnt),
        "{} must not be mounted",
        v.mnt.display()
    );
    // A failed daemon exits on its own time; a surviving one never does.
    let gone = wait_until(Duration::from_secs(10), || {
        pids_mentioning(&v.cipher).is_empty()
    });
    assert!(
        gone,
        "a dekfs process survived a failed mount: {:?}",
        pids_mentioning(&v.cipher)
    );
}

#[test]
fn wrong_passphrase_exit_10() {
    require_fuse!();
    let v = TestVolume::new("wrongpw");
    let bad = v.dir.path().join("bad-pass");
    fs::write(&bad, "not the passphrase\n").unwrap();
    let out = dekfs(["mount", &s(&v.cipher), &s(&v.mnt), "--passfile", &s(&bad)]);
    out.expect_code(exit::WRONG_KEY, "mount with a wrong passphrase")
        .expect_one_line_error("wrong passphrase");
    assert!(
        !out.stderr.contains("not the passphrase") && !out.stderr.contains(&v.passphrase),
        "passphrase echoed in the error: {}",
        out.stderr
    );
    assert_not_mounted_and_no_daemon(&v);
    // a passphrase that differs only by a missing last character
    let pw = &v.passphrase;
    fs::write(&bad, &pw[..pw.len() - 1]).unwrap();
    dekfs(["mount", &s(&v.cipher), &s(&v.mnt), "--passfile", &s(&bad)])
        .expect_code(exit::WRONG_KEY, "mount with a truncated passphrase");
    // the right one still works afterwards
    v.mount();
    fs::write(v.p("ok"), b"ok").unwrap();
    v.umount();
}

#[test]
fn passfile_trailing_newline_stripped_and_fd() {
    require_fuse!();
    let v = TestVolume::new("passfile"); // passfile has "...\n"
    let nonl = v.dir.path().join("pass-nonl");
    fs::write(&nonl, &v.passphrase).unwrap();
    dekfs(["mount", &s(&v.cipher), &s(&v.mnt), "--passfile", &s(&nonl)])
        .expect_code(exit::OK, "passfile without trailing newline");
    assert!(is_mounted(&v.mnt));
    fs::write(v.p("a"), b"a").unwrap();
    v.umount();
    // only the first line counts
    let twolines = v.dir.path().join("pass-2");
    fs::write(&twolines, format!("{}\nsecond line\n", v.passphrase)).unwrap();
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--passfile",
        &s(&twolines),
    ])
    .expect_code(exit::OK, "passfile with two lines");
    v.umount();
    // --passphrase-fd 0
    let out = dekfs_stdin(
        ["mount", &s(&v.cipher), &s(&v.mnt), "--passphrase-fd", "0"],
        format!("{}\n", v.passphrase).as_bytes(),
    );
    out.expect_code(exit::OK, "mount --passphrase-fd 0");
    assert_eq!(read_file(&v.p("a")).unwrap(), b"a");
    v.umount();

    // init with --passphrase-fd
    let w = TestVolume::uninitialised("passfd");
    let mut args = vec![
        "init".to_string(),
        s(&w.cipher),
        "--passphrase-fd".into(),
        "0".into(),
    ];
    args.extend(FAST_KDF.iter().map(|x| x.to_string()));
    dekfs_stdin(&args, format!("{}\n", w.passphrase).as_bytes())
        .expect_code(exit::OK, "init --passphrase-fd 0");
    w.mount(); // with the passfile holding the same passphrase
    w.umount();
}

#[test]
fn recovery_key_unlocks() {
    require_fuse!();
    let v = TestVolume::new("recovery");
    let init = v.init_out.as_ref().unwrap();
    let key = v
        .recovery_key
        .clone()
        .unwrap_or_else(|| panic!("no 'Recovery key: ' line in init stdout:\n{}", init.stdout));
    assert!(
        recovery_key_well_formed(&key),
        "recovery key not 8 groups of 8: {key:?}"
    );
    assert_eq!(
        init.stdout.matches(&key).count(),
        1,
        "the recovery key is printed exactly once"
    );
    assert!(!init.stderr.contains(&key), "recovery key also on stderr");
    v.mount();
    let data = random_bytes(3, 10_000);
    fs::write(v.p("secret"), &data).unwrap();
    v.umount();
    // passphrase-less unlock with the recovery key
    let kf = v.dir.path().join("recovery.txt");
    fs::write(&kf, format!("{key}\n")).unwrap();
    let out = dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--recovery-key-file",
        &s(&kf),
        "--log-file",
        &s(&v.logfile),
    ]);
    out.expect_code(exit::OK, "mount --recovery-key-file");
    assert_eq!(read_file(&v.p("secret")).unwrap(), data);
    v.umount();
    assert!(
        !v.log().contains(&key) && !v.log().contains(&key.replace('-', "")),
        "recovery key in the daemon log"
    );
    // a wrong recovery key (one character changed) is exit 10
    let mut bad: Vec<u8> = key.clone().into_bytes();
    bad[0] = if bad[0] == b'A' || bad[0] == b'a' || bad[0] == b'0' {
        bad[0] + 1
    } else {
        bad[0] - 1
    };
    fs::write(&kf, bad).unwrap();
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--recovery-key-file",
        &s(&kf),
    ])
    .expect_code(exit::WRONG_KEY, "mount with a wrong recovery key")
    .expect_one_line_error("wrong recovery key");
    assert_not_mounted_and_no_daemon(&v);
    // two volumes get different recovery keys
    let w = TestVolume::new("recovery2");
    assert_ne!(w.recovery_key, v.recovery_key);
}

#[test]
fn no_recovery_key_option() {
    require_fuse!();
    let v = TestVolume::with_init_args("norecovery", &["--no-recovery-key"]);
    let init = v.init_out.as_ref().unwrap();
    assert!(
        v.recovery_key.is_none(),
        "--no-recovery-key printed a key:\n{}",
        init.stdout
    );
    let st = dekfs(["status", &s(&v.cipher)]);
    st.expect_code(exit::OK, "status");
    let prot = protector_lines(&st.stdout);
    assert_eq!(
        prot.len(),
        1,
        "exactly one protector expected:\n{}",
        st.stdout
    );
    assert!(prot[0].contains("passphrase"), "{}", st.stdout);
    v.mount();
    v.umount();
}

#[test]
fn init_refuses_non_empty_dir() {
    let v = TestVolume::uninitialised("nonempty");
    fs::write(v.cipher.join("precious.txt"), b"do not touch").unwrap();
    let mut args = vec![
        "init".to_string(),
        s(&v.cipher),
        "--passfile".into(),
        s(&v.passfile),
    ];
    args.extend(FAST_KDF.iter().map(|x| x.to_string()));
    let out = dekfs(&args);
    assert!(!out.ok(), "init on a non-empty dir succeeded: {out:?}");
    assert!(out.code.is_some());
    out.expect_one_line_error("init on a non-empty dir");
    assert_eq!(
        dir_names(&v.cipher),
        vec!["precious.txt"],
        "init wrote into a non-empty dir"
    );
    assert_eq!(
        fs::read(v.cipher.join("precious.txt")).unwrap(),
        b"do not touch"
    );

    // init twice on the same dir
    let w = TestVolume::new("twice");
    let conf = fs::read(w.cipher.join(CONF)).unwrap();
    let mut args = vec![
        "init".to_string(),
        s(&w.cipher),
        "--passfile".into(),
        s(&w.passfile),
    ];
    args.extend(FAST_KDF.iter().map(|x| x.to_string()));
    let out = dekfs(&args);
    assert!(!out.ok(), "second init succeeded: {out:?}");
    assert_eq!(
        fs::read(w.cipher.join(CONF)).unwrap(),
        conf,
        "second init changed the config"
    );
}

#[test]
fn init_layout() {
    let v = TestVolume::new("layout");
    let mut names = dir_names(&v.cipher);
    names.sort();
    assert_eq!(
        names,
        vec![CONF.to_string(), DIR_META.to_string()],
        "fresh volume layout"
    );
    assert_eq!(
        fs::metadata(v.cipher.join(DIR_META)).unwrap().len(),
        DIR_META_LEN
    );
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    assert!(
        conf.len() > 10 + 32,
        "config too short: {} bytes",
        conf.len()
    );
    assert!(
        !conf
            .windows(v.passphrase.len())
            .any(|w| w == v.passphrase.as_bytes()),
        "passphrase stored in the config"
    );
}

#[test]
fn mount_non_volume_exit_12() {
    require_fuse!();
    let v = TestVolume::uninitialised("notavolume");
    // empty dir
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--passfile",
        &s(&v.passfile),
    ])
    .expect_code(exit::NOT_A_VOLUME, "mount of an empty dir")
    .expect_one_line_error("mount of an empty dir");
    // dir with ordinary files
    fs::write(v.cipher.join("hello.txt"), b"hello").unwrap();
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--passfile",
        &s(&v.passfile),
    ])
    .expect_code(exit::NOT_A_VOLUME, "mount of a plain dir");
    assert_not_mounted_and_no_daemon(&v);
    // status too
    dekfs(["status", &s(&v.cipher)]).expect_code(exit::NOT_A_VOLUME, "status of a plain dir");
    // a dekfs.conf that is not a dekfs config
    fs::write(v.cipher.join(CONF), b"[this is not a dekfs config]\n").unwrap();
    let out = dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--passfile",
        &s(&v.passfile),
    ]);
    assert!(
        out.code == Some(exit::NOT_A_VOLUME) || out.code == Some(exit::CORRUPT),
        "garbage dekfs.conf: expected 12 or 14, got {out:?}"
    );
    assert_not_mounted_and_no_daemon(&v);
}

#[test]
fn unsupported_version_exit_13_nothing_written() {
    require_fuse!();
    let v = TestVolume::new("version");
    let conf_path = v.cipher.join(CONF);
    let mut conf = fs::read(&conf_path).unwrap();
    conf[8..10].copy_from_slice(&99u16.to_le_bytes());
    fs::write(&conf_path, &conf).unwrap();
    let before_listing = v.cipher_listing();
    let out = v.try_mount(&[]);
    out.expect_code(exit::UNSUPPORTED, "mount of a format-99 volume")
        .expect_one_line_error("unsupported version");
    assert_eq!(fs::read(&conf_path).unwrap(), conf, "config bytes changed");
    assert_eq!(v.cipher_listing(), before_listing, "cipher dir changed");
    assert_not_mounted_and_no_daemon(&v);
}

#[test]
fn corrupt_config_mac_exit_14() {
    require_fuse!();
    let v = TestVolume::new("confmac");
    v.mount();
    fs::write(v.p("f"), b"data").unwrap();
    v.umount();
    let conf_path = v.cipher.join(CONF);
    let orig = fs::read(&conf_path).unwrap();
    for back in [1usize, 16, 32] {
        let mut conf = orig.clone();
        let i = conf.len() - back;
        conf[i] ^= 0x01;
        fs::write(&conf_path, &conf).unwrap();
        let out = v.try_mount(&[]);
        out.expect_code(exit::CORRUPT, &format!("config MAC byte -{back} flipped"))
            .expect_one_line_error("corrupt config");
        assert_eq!(fs::read(&conf_path).unwrap(), conf, "config rewritten");
        assert_not_mounted_and_no_daemon(&v);
    }
    // truncated config
    fs::write(&conf_path, &orig[..orig.len() - 1]).unwrap();
    let out = v.try_mount(&[]);
    assert!(
        out.code == Some(exit::CORRUPT) || out.code == Some(exit::NOT_A_VOLUME),
        "truncated config: expected 14 (or 12), got {out:?}"
    );
    // restored: works again
    fs::write(&conf_path, &orig).unwrap();
    v.mount();
    assert_eq!(read_file(&v.p("f")).unwrap(), b"data");
    v.umount();
}

#[test]
fn bad_mountpoint_exit_15() {
    require_fuse!();
    let v = TestVolume::new("mntpt");
    let missing = v.dir.path().join("does-not-exist");
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&missing),
        "--passfile",
        &s(&v.passfile),
    ])
    .expect_code(exit::MOUNT_FAILED, "missing mountpoint")
    .expect_one_line_error("missing mountpoint");
    assert!(!missing.exists(), "mount created the missing mountpoint");
    let file = v.dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&file),
        "--passfile",
        &s(&v.passfile),
    ])
    .expect_code(exit::MOUNT_FAILED, "mountpoint is a file");
    assert_not_mounted_and_no_daemon(&v);
}

#[test]
fn double_mount_refused() {
    require_fuse!();
    let v = TestVolume::new("double");
    v.mount();
    fs::write(v.p("f"), b"first").unwrap();
    let out = v.try_mount(&[]);
    out.expect_code(exit::MOUNT_FAILED, "second mount on the same mountpoint")
        .expect_one_line_error("double mount");
    assert_eq!(mount_count(&v.mnt), 1, "stacked mount");
    assert_eq!(
        read_file(&v.p("f")).unwrap(),
        b"first",
        "first mount broken"
    );
    // the same volume on a second mountpoint while mounted: refused or
    // allowed, but never corrupting; we require a clean answer (0 or 15)
    let mnt2 = v.mnt.with_file_name("mnt2");
    fs::create_dir(&mnt2).unwrap();
    let out2 = dekfs([
        "mount",
        &s(&v.cipher),
        &s(&mnt2),
        "--passfile",
        &s(&v.passfile),
    ]);
    if out2.ok() {
        let _ = dekfs(["umount", &s(&mnt2)]);
    } else {
        assert!(
            out2.code == Some(exit::MOUNT_FAILED) || out2.code == Some(exit::OTHER),
            "second mount of a mounted volume: {out2:?}"
        );
    }
    assert!(!is_mounted(&mnt2));
    v.umount();
    // umount of something not mounted fails cleanly
    let out = dekfs(["umount", &s(&v.mnt)]);
    assert!(!out.ok(), "umount of a non-mounted dir succeeded");
    out.expect_one_line_error("umount not mounted");
}

#[test]
fn status_shows_volume_id_and_protectors() {
    require_fuse!();
    let v = TestVolume::new("status");
    let st = dekfs(["status", &s(&v.cipher)]);
    st.expect_code(exit::OK, "status CIPHERDIR");
    let prot = protector_lines(&st.stdout);
    assert_eq!(prot.len(), 2, "two protectors expected:\n{}", st.stdout);
    let lower = prot.join("\n");
    assert!(
        lower.contains("passphrase"),
        "no passphrase protector in:\n{}",
        st.stdout
    );
    assert!(
        lower.contains("recovery"),
        "no recovery protector in:\n{}",
        st.stdout
    );
    let id_line = st
        .stdout
        .lines()
        .find(|l| {
            let l = l.to_lowercase();
            l.contains("volume") && l.contains("id")
        })
        .unwrap_or_else(|| panic!("no volume id line in status:\n{}", st.stdout));
    // an id token: a long hex/uuid-ish word
    let id = id_line
        .split(|c: char| c.is_whitespace() || c == ':' || c == '=')
        .filter(|w| w.len() >= 16 && w.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .map(str::to_owned)
        .next()
        .unwrap_or_else(|| panic!("no id value in {id_line:?}"));
    // the id is stable and unique per volume
    let st2 = dekfs(["status", &s(&v.cipher)]);
    assert!(st2.stdout.contains(&id));
    let w = TestVolume::new("status2");
    let stw = dekfs(["status", &s(&w.cipher)]);
    assert!(
        !stw.stdout.contains(&id),
        "two volumes with the same id {id}"
    );
    // status does not print secrets
    if let Some(k) = &v.recovery_key {
        assert!(!st.stdout.contains(k.as_str()));
    }
    assert!(!st.stdout.contains(&v.passphrase));

    // --json: valid JSON with the same id and the protectors
    let js = dekfs(["status", &s(&v.cipher), "--json"]);
    js.expect_code(exit::OK, "status --json");
    let j: serde_json::Value = serde_json::from_str(&js.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", js.stdout));
    let flat = j.to_string().to_lowercase();
    let prots = j
        .get("protectors")
        .and_then(|p| p.as_array())
        .unwrap_or_else(|| panic!("status --json has no \"protectors\" array: {flat}"));
    assert_eq!(prots.len(), 2, "json protectors: {flat}");
    assert!(
        flat.contains(&id.to_lowercase()),
        "json lacks the volume id {id}: {flat}"
    );
    assert!(
        flat.contains("passphrase") && flat.contains("recovery"),
        "json protectors: {flat}"
    );

    // status on the mountpoint while mounted
    v.mount();
    let sm = dekfs(["status", &s(&v.mnt)]);
    sm.expect_code(exit::OK, "status MOUNTPOINT");
    assert!(
        sm.stdout.contains(&id),
        "status of the mountpoint shows another id:\n{}",
        sm.stdout
    );
    let smj = dekfs(["status", &s(&v.mnt), "--json"]);
    smj.expect_code(exit::OK, "status MOUNTPOINT --json");
    serde_json::from_str::<serde_json::Value>(&smj.stdout).expect("json");
    v.umount();
}

#[test]
fn usage_errors_exit_2() {
    let out = dekfs(["frobnicate"]);
    out.expect_code(exit::USAGE, "unknown subcommand");
    let out = dekfs(["mount"]);
    out.expect_code(exit::USAGE, "mount without arguments");
    let out = dekfs(["init"]);
    out.expect_code(exit::USAGE, "init without arguments");
    let v = TestVolume::uninitialised("usage");
    let out = dekfs(["init", &s(&v.cipher), "--kdf-memory", "lots"]);
    out.expect_code(exit::USAGE, "non-numeric --kdf-memory");
    assert!(
        dir_names(&v.cipher).is_empty(),
        "usage error wrote to the cipher dir"
    );
    // --help is success
    dekfs(["--help"]).expect_code(exit::OK, "--help");
}

#[test]
fn mount_detaches_from_stdio_and_foreground_mode() {
    require_fuse!();
    let v = TestVolume::new("stdio");
    // with pipes for stdout/stderr, `dekfs mount` must return and close them
    // (a daemon keeping them open hangs `$(dekfs mount ...)` and systemd)
    let mut child = Command::new(DEKFS)
        .args([
            "mount",
            &s(&v.cipher),
            &s(&v.mnt),
            "--passfile",
            &s(&v.passfile),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut a);
        let _ = se.read_to_end(&mut b);
        let _ = tx.send((a, b));
    });
    let closed = rx.recv_timeout(Duration::from_secs(30));
    let st = child.wait().unwrap();
    assert!(st.success(), "mount failed: {st:?}");
    assert!(
        closed.is_ok(),
        "the daemon kept the caller's stdout/stderr open after `dekfs mount` returned"
    );
    assert!(is_mounted(&v.mnt));
    v.umount();

    // -f stays in the foreground until unmounted, then exits 0
    let mut fg = Command::new(DEKFS)
        .args([
            "mount",
            "-f",
            &s(&v.cipher),
            &s(&v.mnt),
            "--passfile",
            &s(&v.passfile),
            "--log-file",
            &s(&v.logfile),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !is_mounted(&v.mnt) {
        assert!(
            fg.try_wait().unwrap().is_none(),
            "dekfs mount -f exited before mounting"
        );
        assert!(t0.elapsed() < Duration::from_secs(30), "mount -f timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::write(v.p("fg"), b"foreground").unwrap();
    assert!(
        fg.try_wait().unwrap().is_none(),
        "mount -f returned while mounted"
    );
    dekfs(["umount", &s(&v.mnt)]).expect_code(exit::OK, "umount of a -f mount");
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = fg.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = fg.kill();
            panic!("mount -f did not exit after umount");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(st.success(), "mount -f exit status {st:?}");
    v.mount();
    assert_eq!(read_file(&v.p("fg")).unwrap(), b"foreground");
    v.umount();
}

#[test]
fn read_only_mount() {
    require_fuse!();
    let v = TestVolume::new("ro");
    v.mount();
    fs::write(v.p("f"), b"data").unwrap();
    v.umount();
    let listing = v.cipher_listing();
    v.mount_with(&["-o", "ro"]);
    assert_eq!(read_file(&v.p("f")).unwrap(), b"data");
    let e = fs::write(v.p("g"), b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EROFS, "create on a ro mount: {e}");
    let e = fs::OpenOptions::new()
        .write(true)
        .open(v.p("f"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EROFS, "open for write on a ro mount: {e}");
    v.umount();
    assert_eq!(
        v.cipher_listing(),
        listing,
        "a ro mount changed the cipher dir"
    );
}

#[test]
fn errors_never_leak_secrets_in_log() {
    require_fuse!();
    let v = TestVolume::new("logsecrets");
    v.mount();
    fs::write(v.p("file"), b"x").unwrap();
    v.umount();
    let log = v.log();
    assert!(!log.contains(&v.passphrase), "passphrase in the daemon log");
    if let Some(k) = &v.recovery_key {
        assert!(!log.contains(k.as_str()), "recovery key in the daemon log");
    }
}

/// Mount options as seen in /proc/self/mountinfo (super options included).
fn mount_options(path: &std::path::Path) -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not in mountinfo", path.display()))
        .to_string()
}

#[test]
fn allow_other_implies_default_permissions() {
    require_fuse!();
    let v = TestVolume::new("allowother");
    v.mount();
    let plain = mount_options(&v.mnt);
    assert!(
        !plain.contains("allow_other"),
        "allow_other without -o: {plain}"
    );
    assert_eq!(
        mount_fstype(&v.mnt).as_deref(),
        Some("fuse.dekfs"),
        "fstype"
    );
    v.umount();
    v.mount_with(&["-o", "allow_other"]);
    let opts = mount_options(&v.mnt);
    assert!(
        opts.contains("allow_other") && opts.contains("default_permissions"),
        "-o allow_other must also turn on default_permissions: {opts}"
    );
    v.umount();
}

#[test]
fn umount_of_busy_mount_is_refused_cleanly() {
    require_fuse!();
    let v = TestVolume::new("busy");
    v.mount();
    fs::write(v.p("f"), b"data").unwrap();
    let f = fs::File::open(v.p("f")).unwrap();
    let out = dekfs(["umount", &s(&v.mnt)]);
    out.expect_code(exit::MOUNT_FAILED, "umount while a file is open")
        .expect_one_line_error("busy umount");
    assert!(
        is_mounted(&v.mnt),
        "a refused umount must leave the mount alone"
    );
    assert_eq!(read_file(&v.p("f")).unwrap(), b"data");
    drop(f);
    v.umount();
}

#[test]
fn mount_option_passfile_and_unknown_option() {
    require_fuse!();
    let v = TestVolume::new("mountopts");
    // An unknown option is a usage error that names it, before any unlock.
    let out = dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--passfile",
        &s(&v.passfile),
        "-o",
        "ro,bogus,nofail",
    ]);
    out.expect_code(exit::USAGE, "mount -o bogus")
        .expect_one_line_error("unknown option");
    assert!(out.stderr.contains("`bogus`"), "{}", out.stderr);
    assert_not_mounted_and_no_daemon(&v);
    // `-o passfile=` is the only credential: no terminal (setsid), no
    // --passfile; fstab bookkeeping options ride along and are ignored.
    let opts = format!(
        "passfile={},ro,nofail,_netdev,x-systemd.automount,defaults",
        s(&v.passfile)
    );
    let out = run_cmd(
        "setsid",
        ["-w", DEKFS, "mount", &s(&v.cipher), &s(&v.mnt), "-o", &opts],
        None,
    );
    out.expect_code(exit::OK, "mount -o passfile=FILE");
    assert!(is_mounted(&v.mnt));
    let e = fs::write(v.p("f"), b"x").expect_err("ro must hold");
    assert_eq!(errno(&e), libc::EROFS);
    v.umount();
    // Generic kernel options reach the mount (relatime was refused before
    // the grammar was shared).
    v.mount_with(&["-o", "noexec,relatime,nodev"]);
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(s(&v.mnt).as_str()))
        .expect("mountinfo line");
    let flags: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
    for f in ["rw", "noexec", "nosuid", "nodev", "relatime"] {
        assert!(flags.contains(&f), "{f} missing: {line}");
    }
    v.umount();
    // Both ways of naming a credential at once is ambiguous.
    dekfs([
        "mount",
        &s(&v.cipher),
        &s(&v.mnt),
        "--passfile",
        &s(&v.passfile),
        "-o",
        &format!("passfile={}", s(&v.passfile)),
    ])
    .expect_code(exit::USAGE, "--passfile with -o passfile=");
    assert!(!is_mounted(&v.mnt));
}
