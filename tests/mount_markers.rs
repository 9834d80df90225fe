//! Confidentiality smoke test: distinctive markers written through the mount
//! (in file and directory names, contents, xattr names and values, symlink
//! targets, a 255-byte name) must not appear anywhere in the cipher dir - not
//! in any file name and not in any byte of any file - neither as UTF-8 nor as
//! UTF-16 nor base64/base64url nor hex. The passphrase and the recovery key
//! must not appear either.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;

use base64::Engine;
use common::*;

/// Every encoding of `marker` we look for.
fn forms(marker: &str) -> Vec<(String, Vec<u8>)> {
    let m = marker.as_bytes();
    let mut out = vec![
        ("utf8".to_string(), m.to_vec()),
        ("utf8-lower".to_string(), marker.to_lowercase().into_bytes()),
        (
            "utf16le".to_string(),
            marker
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect(),
        ),
        (
            "utf16be".to_string(),
            marker
                .encode_utf16()
                .flat_map(|u| u.to_be_bytes())
                .collect(),
        ),
        ("hex".to_string(), hex::encode(m).into_bytes()),
    ];
    // base64 of the marker at any alignment: encode with 0..2 bytes of prefix
    // and keep the characters that depend only on the marker.
    let engines: [(&str, &base64::engine::GeneralPurpose); 2] = [
        ("base64", &base64::engine::general_purpose::STANDARD_NO_PAD),
        (
            "base64url",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ];
    for (ename, eng) in engines {
        for shift in 0..3usize {
            let mut buf = vec![0u8; shift];
            buf.extend_from_slice(m);
            let enc = eng.encode(&buf);
            // chars fully determined by prefix-free marker bytes
            let start = if shift == 0 {
                0
            } else {
                (shift * 8).div_ceil(6)
            };
            let usable = ((shift + m.len()) / 3) * 4; // whole groups only
            if usable > start + 8 {
                out.push((
                    format!("{ename}@{shift}"),
                    enc.as_bytes()[start..usable].to_vec(),
                ));
            }
        }
    }
    out
}

fn find_all(hay: &[u8], needles: &[(String, String, Vec<u8>)]) -> Vec<String> {
    let mut hits = Vec::new();
    for (marker, form, n) in needles {
        if n.len() <= hay.len() && hay.windows(n.len()).any(|w| w == n.as_slice()) {
            hits.push(format!("{marker} as {form}"));
        }
    }
    hits
}

#[test]
fn no_plaintext_markers_in_cipher_dir() {
    require_fuse!();
    let v = TestVolume::new("markers");
    v.mount();

    let markers = [
        "MRKfilenameQZ7",
        "MRKdirnameQZ7",
        "MRKcontentQZ7",
        "MRKxattrnameQZ7",
        "MRKxattrvalueQZ7",
        "MRKsymlinkQZ7",
        "MRKlongnameQZ7",
        "MRKsmallQZ7",
    ];
    // directories and files whose names carry markers
    let dir = "dir-MRKdirnameQZ7";
    fs::create_dir(v.p(dir)).unwrap();
    fs::create_dir(v.p(&format!("{dir}/sub-MRKdirnameQZ7"))).unwrap();
    let content: Vec<u8> = "MRKcontentQZ7 "
        .repeat(2000)
        .into_bytes()
        .into_iter()
        .chain(random_bytes(5, 10000))
        .collect();
    fs::write(v.p("MRKfilenameQZ7.txt"), &content).unwrap();
    fs::write(
        v.p(&format!("{dir}/sub-MRKdirnameQZ7/MRKfilenameQZ7-deep")),
        &content,
    )
    .unwrap();
    // a tiny file (one partial block)
    fs::write(v.p("small"), b"MRKsmallQZ7").unwrap();
    // UTF-16 content
    let u16c: Vec<u8> = "MRKcontentQZ7"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    fs::write(v.p("utf16"), &u16c).unwrap();
    // xattrs
    set_xattr(&v.p("small"), "user.MRKxattrnameQZ7", b"MRKxattrvalueQZ7").unwrap();
    set_xattr(
        &v.p(dir),
        "user.MRKxattrnameQZ7.d",
        b"MRKxattrvalueQZ7 on a dir",
    )
    .unwrap();
    // symlink targets (short and long)
    std::os::unix::fs::symlink("target-MRKsymlinkQZ7", v.p("link")).unwrap();
    std::os::unix::fs::symlink(
        format!("/abs/{}/MRKsymlinkQZ7", "x".repeat(300)),
        v.p("longlink"),
    )
    .unwrap();
    // a 255-byte name (long-name form)
    let mut long = "MRKlongnameQZ7-".repeat(20);
    long.truncate(255);
    fs::write(v.p(&long), b"MRKcontentQZ7 in a long-named file").unwrap();
    let mut longdir = "MRKlongnameQZ7.".repeat(20);
    longdir.truncate(250);
    fs::create_dir(v.p(&longdir)).unwrap();
    fs::write(v.p(&format!("{longdir}/MRKfilenameQZ7")), b"MRKsmallQZ7").unwrap();
    // rename leaves nothing behind either
    fs::write(v.p("MRKfilenameQZ7-old"), b"MRKsmallQZ7").unwrap();
    fs::rename(v.p("MRKfilenameQZ7-old"), v.p("renamed-MRKfilenameQZ7")).unwrap();
    // sanity: the markers really are visible through the mount
    assert_eq!(
        get_xattr(&v.p("small"), "user.MRKxattrnameQZ7").unwrap(),
        b"MRKxattrvalueQZ7"
    );
    assert!(fs::read_link(v.p("link"))
        .unwrap()
        .to_string_lossy()
        .contains("MRKsymlinkQZ7"));
    v.umount();

    let mut needles: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut secrets: Vec<String> = markers.iter().map(|s| s.to_string()).collect();
    secrets.push(v.passphrase.clone());
    if let Some(k) = &v.recovery_key {
        secrets.push(k.clone());
        // and the key without dashes
        secrets.push(k.replace('-', ""));
    }
    for s in &secrets {
        for (form, bytes) in forms(s) {
            needles.push((s.clone(), form, bytes));
        }
    }

    let mut hits = Vec::new();
    let mut nfiles = 0;
    let mut nbytes = 0u64;
    for (rel, (is_file, _)) in v.cipher_listing() {
        // every path component (names are in the listing as relative paths)
        let name = rel.file_name().unwrap().as_bytes().to_vec();
        for h in find_all(&name, &needles) {
            hits.push(format!("name {}: {h}", rel.display()));
        }
        // base64url-decoded names, too
        if let Ok(dec) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&name) {
            for h in find_all(&dec, &needles) {
                hits.push(format!("decoded name {}: {h}", rel.display()));
            }
        }
        let full = v.cipher.join(&rel);
        if is_file {
            let data = fs::read(&full).unwrap();
            nfiles += 1;
            nbytes += data.len() as u64;
            for h in find_all(&data, &needles) {
                hits.push(format!("content of {}: {h}", rel.display()));
            }
        } else if fs::symlink_metadata(&full)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            let t = fs::read_link(&full).unwrap();
            for h in find_all(t.as_os_str().as_bytes(), &needles) {
                hits.push(format!("symlink target of {}: {h}", rel.display()));
            }
        }
        // xattrs of the backing entries
        if let Ok(names) = list_xattr(&full) {
            for n in names {
                for h in find_all(n.as_bytes(), &needles) {
                    hits.push(format!("xattr name on {}: {h}", rel.display()));
                }
                if let Ok(val) = get_xattr(&full, &n) {
                    for h in find_all(&val, &needles) {
                        hits.push(format!("xattr value on {}: {h}", rel.display()));
                    }
                }
            }
        }
    }
    assert!(nfiles >= 10, "scanned only {nfiles} files");
    assert!(nbytes > 40_000, "scanned only {nbytes} bytes");
    assert!(
        hits.is_empty(),
        "plaintext leaked into the cipher dir:\n{}",
        hits.join("\n")
    );

    // the harness would catch the markers if they were there: self-check the
    // scanner on a plaintext copy
    let probe = forms("MRKcontentQZ7");
    let mut hay = b"xx".to_vec();
    hay.extend(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(b"aMRKcontentQZ7b")
            .into_bytes(),
    );
    let needles2: Vec<(String, String, Vec<u8>)> = probe
        .into_iter()
        .map(|(f, b)| ("MRKcontentQZ7".to_string(), f, b))
        .collect();
    assert!(
        !find_all(&hay, &needles2).is_empty(),
        "scanner self-check (base64)"
    );
}
