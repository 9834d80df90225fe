//! KEK escrow and migration through the CLI: transport keys, export, import on a copy of the
//! volume (which then mounts with the new protector), every bad blob refused with the cipher
//! directory unchanged byte for byte, and no KEK or DEK bytes in any output, log or audit file.

mod common;

use common::*;
use dekfs::crypto::kw;
use dekfs::secret::Key32;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Every file under `root` with its bytes and mode (directories as empty entries).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if m.is_dir() {
                stack.push(p.clone());
                out.insert(rel, (m.permissions().mode(), Vec::new()));
            } else {
                out.insert(rel, (m.permissions().mode(), fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
}

fn new_transport_key(path: &Path) -> Out {
    let o = dekfs(["key", "transport-key", "new", &s(path)]);
    o.expect_code(exit::OK, "transport-key new");
    o
}

fn export(v: &TestVolume, tk: &Path, out: &Path) -> Out {
    let o = dekfs([
        "key",
        "export",
        &s(&v.cipher),
        "--transport-key",
        &s(tk),
        "--passfile",
        &s(&v.passfile),
        "--out",
        &s(out),
    ]);
    o.expect_code(exit::OK, "key export");
    o
}

fn import(cipher: &Path, tk: &Path, blob: &Path, new_pass: &Path) -> Out {
    let mut args = vec![
        "key".to_string(),
        "import".into(),
        s(cipher),
        "--transport-key".into(),
        s(tk),
        s(blob),
        "--passphrase".into(),
        "--new-passfile".into(),
        s(new_pass),
    ];
    args.extend(FAST_KDF.iter().map(|x| x.to_string()));
    dekfs(&args)
}

/// The KEK inside an export, unwrapped here with the transport key (the test's own copy).
fn kek_of(tk: &Path, blob: &[u8]) -> [u8; 32] {
    let text = fs::read_to_string(tk).unwrap();
    let hex_key = text.trim().strip_prefix("dekfs-transport-key-v1:").unwrap();
    let mut k: [u8; 32] = hex::decode(hex_key).unwrap().try_into().unwrap();
    let e = dekfs::format::KekExport::parse(blob).unwrap();
    let plain = kw::unwrap(&Key32::from_array(&mut k), &e.wrapped).unwrap();
    plain.expose()[..32].try_into().unwrap()
}

/// The DEK of a file in the root directory, unwrapped straight from FORMAT.md with the KEK
/// (root dekfs.dir slot 0, then the file header's slot 0), independently of dekfs's key code.
fn dek_of(cipher: &Path, kek: &[u8; 32], backing: &Path) -> [u8; 32] {
    let hkdf = |ikm: &[&[u8]], salt: &[u8], info: &[&[u8]]| {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm.concat());
        let mut okm = [0u8; 32];
        hk.expand(&info.concat(), &mut okm).unwrap();
        okm
    };
    let unwrap = |k: &[u8; 32], w: &[u8]| aes_kw::KekAes256::from(*k).unwrap_vec(w).unwrap();
    let conf = fs::read(cipher.join("dekfs.conf")).unwrap();
    let vid = &conf[20..36];
    let m = fs::read(cipher.join("dekfs.dir")).unwrap();
    let root_id = &m[16..32];
    let dwk = hkdf(&[kek], vid, &[b"dekfs v1 root-wrap", root_id]);
    let root_key = unwrap(&dwk, &m[88..152]);
    let h = fs::read(backing).unwrap();
    let file_id = &h[16..32];
    let fwk = hkdf(
        &[kek, &root_key[..32]],
        vid,
        &[b"dekfs v1 file-wrap", root_id, file_id],
    );
    let inner = unwrap(&fwk, &h[80..144]);
    assert_eq!(&inner[32..48], file_id, "independent unwrap went wrong");
    inner[..32].try_into().unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn transport_key_is_0600_and_never_overwritten() {
    let d = scratch_dir("dekfs-tk-");
    let tk = d.path().join("tk");
    let o = new_transport_key(&tk);
    let before = fs::read(&tk).unwrap();
    assert_eq!(
        fs::metadata(&tk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(before.len(), "dekfs-transport-key-v1:".len() + 65);
    assert!(
        !contains(o.stdout.as_bytes(), &before[23..87]),
        "key printed"
    );
    let again = dekfs(["key", "transport-key", "new", &s(&tk)]);
    again.expect_code(exit::USAGE, "second transport-key new");
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );
    assert_eq!(fs::read(&tk).unwrap(), before);
    let tk2 = d.path().join("tk2");
    new_transport_key(&tk2);
    assert_ne!(fs::read(&tk2).unwrap(), before, "two keys alike");
}

#[test]
fn export_then_import_on_a_copy_opens_with_the_new_protector() {
    require_fuse!();
    let v = TestVolume::with_init_args("escrow", &["--audit"]);
    v.mount();
    let backing = v.create_file("kept.txt", b"survives migration");
    v.umount();
    let tk = v.dir.path().join("tk");
    let blob = v.dir.path().join("kek.export");
    let mut outputs = vec![new_transport_key(&tk), export(&v, &tk, &blob)];
    assert_eq!(
        fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let blob_bytes = fs::read(&blob).unwrap();
    assert_eq!(blob_bytes.len(), 140);

    // The copy on "another machine": its own passphrase, unknown to the original.
    let copy = TestVolume::uninitialised("escrow-copy");
    copy_tree(&v.cipher, &copy.cipher);
    // Before the import the new passphrase does not open the copy.
    let refused = copy.try_mount(&[]);
    refused.expect_code(exit::WRONG_KEY, "mount before import");
    let o = import(&copy.cipher, &tk, &blob, &copy.passfile);
    o.expect_code(exit::OK, "key import");
    outputs.push(o);
    copy.mount();
    assert_eq!(fs::read(copy.p("kept.txt")).unwrap(), b"survives migration");
    copy.umount();
    // The original is untouched by the import and still opens with its own passphrase only.
    v.mount();
    v.umount();

    let listing = dekfs(["audit", &s(&copy.cipher)]);
    listing.expect_code(exit::OK, "audit list");
    assert!(listing.stdout.contains("key-import"), "{}", listing.stdout);
    outputs.push(listing);
    let verified = dekfs([
        "audit",
        &s(&copy.cipher),
        "--verify",
        "--passfile",
        &s(&copy.passfile),
    ]);
    verified.expect_code(exit::OK, "audit --verify on the copy");
    outputs.push(verified);

    // No output, log or audit file holds the KEK, raw or in hex.
    let kek = kek_of(&tk, &blob_bytes);
    let dek = dek_of(&v.cipher, &kek, &backing);
    let mut needles = Vec::new();
    for k in [kek, dek] {
        needles.extend([
            k.to_vec(),
            hex::encode(k).into_bytes(),
            hex::encode_upper(k).into_bytes(),
        ]);
    }
    let mut hay: Vec<(String, Vec<u8>)> = outputs
        .iter()
        .map(|o| {
            (
                "cli output".to_string(),
                format!("{}{}", o.stdout, o.stderr).into_bytes(),
            )
        })
        .collect();
    for vol in [&v, &copy] {
        hay.push((
            "daemon log".into(),
            fs::read(&vol.logfile).unwrap_or_default(),
        ));
        for f in ["dekfs.audit", "dekfs.audit.seal", "dekfs.audit.pending"] {
            hay.push((f.into(), fs::read(vol.cipher.join(f)).unwrap_or_default()));
        }
    }
    let mut scanned = 0;
    for (what, bytes) in &hay {
        for n in &needles {
            assert!(!contains(bytes, n), "KEK bytes found in {what}");
        }
        scanned += bytes.len();
    }
    assert!(scanned > 1000, "too little scanned ({scanned} bytes)");
}

#[test]
fn bad_blobs_are_refused_and_nothing_is_written() {
    let v = TestVolume::new("badblob");
    let other = TestVolume::new("badblob-other");
    let d = v.dir.path();
    let (tk, tk2) = (d.join("tk"), d.join("tk2"));
    new_transport_key(&tk);
    new_transport_key(&tk2);
    let blob = d.join("good.export");
    export(&v, &tk, &blob);
    let good = fs::read(&blob).unwrap();
    let other_blob = d.join("other.export");
    export(&other, &tk, &other_blob);

    // A well-formed, correctly MAC'd export of another KEK version of this volume.
    let text = fs::read_to_string(&tk).unwrap();
    let mut tkb: [u8; 32] =
        hex::decode(text.trim().strip_prefix("dekfs-transport-key-v1:").unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    let e = dekfs::format::KekExport::parse(&good).unwrap();
    let v2 = dekfs::volume::export_blob(
        &Key32::from_array(&mut tkb),
        &Key32::from_array(&mut kek_of(&tk, &good)),
        &e.volume_id,
        e.kek_version + 1,
        e.created,
    )
    .unwrap();

    let copy = TestVolume::uninitialised("badblob-copy");
    copy_tree(&v.cipher, &copy.cipher);
    let before = snapshot(&copy.cipher);
    let mut cases: Vec<(String, PathBuf, Vec<u8>, &str)> = vec![
        (
            "wrong transport key".into(),
            tk2.clone(),
            good.clone(),
            "checksum",
        ),
        (
            "another volume".into(),
            tk.clone(),
            fs::read(&other_blob).unwrap(),
            "another volume",
        ),
        ("another KEK version".into(), tk.clone(), v2, "KEK version"),
        ("empty".into(), tk.clone(), Vec::new(), "truncated"),
    ];
    for n in [1, 8, 43, 44, 100, 107, 108, 139] {
        cases.push((
            format!("truncated to {n}"),
            tk.clone(),
            good[..n].to_vec(),
            "export",
        ));
    }
    let mut long = good.clone();
    long.push(0);
    cases.push(("one byte appended".into(), tk.clone(), long, "export"));
    for at in 0..good.len() {
        let mut t = good.clone();
        t[at] ^= 0x01;
        cases.push((format!("byte {at} edited"), tk.clone(), t, ""));
    }
    for (name, key, bytes, want) in &cases {
        let p = d.join("case.export");
        fs::write(&p, bytes).unwrap();
        let o = import(&copy.cipher, key, &p, &copy.passfile);
        assert_ne!(o.code, Some(0), "{name}: accepted\n{}", o.stderr);
        o.expect_one_line_error(name);
        assert!(o.stderr.contains(want), "{name}: {}", o.stderr);
        assert!(
            snapshot(&copy.cipher) == before,
            "{name}: the cipher directory changed"
        );
    }
    // And the untouched blob still imports (the refusals above were about the blobs).
    import(&copy.cipher, &tk, &blob, &copy.passfile).expect_code(exit::OK, "good blob");
    assert!(snapshot(&copy.cipher) != before);
}
