//! Support for the memory-hygiene tests: every secret a mount daemon can hold, derived here
//! independently of dekfs from the recovery key and the on-disk bytes (docs/FORMAT.md), and a
//! scanner of a live process's memory that says where each hit lies. Must not modify the daemon's
//! memory or the volume.

use super::common::*;
use std::fs;

/// When a secret may legitimately be in the daemon.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Life {
    /// For the whole mount: the KEK and the root directory's keys.
    Mount,
    /// While the kernel knows the inode: a file's DEK and derived keys, a subdirectory's key
    /// and derived keys.
    Inode,
    /// Only inside one operation: wrapping keys, MAC keys of directories.
    Op,
    /// Never: the credential is used by the parent before the daemon exists.
    Never,
}

pub struct Secret {
    pub name: String,
    pub bytes: Vec<u8>,
    pub life: Life,
}

fn hkdf(ikm: &[&[u8]], salt: Option<&[u8]>, info: &[&[u8]], len: usize) -> Vec<u8> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(salt, &ikm.concat());
    let mut okm = vec![0u8; len];
    hk.expand(&info.concat(), &mut okm).unwrap();
    okm
}

/// Argon2id over the passphrase with the parameters of a passphrase protector body.
fn passphrase_key(body: &[u8], pass: &[u8]) -> Vec<u8> {
    assert_eq!(body[0], 1, "Argon2id");
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap());
    let params = argon2::Params::new(u32_at(4), u32_at(8), u32_at(12), Some(32)).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = vec![0u8; 32];
    a.hash_password_into(pass, &body[16..48], &mut out).unwrap();
    out
}

fn kw_unwrap(kek: &[u8], wrapped: &[u8]) -> Vec<u8> {
    aes_kw::KekAes256::try_from(kek)
        .unwrap()
        .unwrap_vec(wrapped)
        .unwrap()
}

/// Every secret of the volume `v` that a daemon serving the root directory, the file (in the
/// root) whose first 216 backing bytes are `header` and the subdirectory (of the root) whose
/// `dekfs.dir` is `sub_meta` derives, plus the credentials that unlock it. 64-byte
/// AES-SIV keys are listed by halves: the MAC half and the CTR half live apart in a cipher.
pub fn secrets(v: &TestVolume, header: &[u8], sub_meta: &[u8]) -> Vec<Secret> {
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    let vid = &conf[20..36];
    // passphrase record at 64 (32 + 112 bytes), then the recovery record
    let rec = &conf[64 + 144..];
    assert_eq!(rec[0], 2, "second protector is the recovery key");
    let (salt, wrapped) = (&rec[32..64], &rec[64..128]);
    let pass_pk = passphrase_key(&conf[96..208], v.passphrase.as_bytes());
    let rk_text = v.recovery_key.clone().unwrap();
    let rk = hex::decode(rk_text.replace('-', "")).unwrap();
    let pk = hkdf(&[&rk], Some(salt), &[b"dekfs v1 recovery"], 32);
    let kek = kw_unwrap(&pk, wrapped)[..32].to_vec();
    assert_eq!(
        kw_unwrap(&pass_pk, &conf[144..208])[..32],
        kek[..],
        "the passphrase protector key is derived as dekfs does"
    );
    let meta = fs::read(v.cipher.join(DIR_META)).unwrap();
    let dir_id = &meta[16..32];
    let dwk = hkdf(&[&kek], Some(vid), &[b"dekfs v1 root-wrap", dir_id], 32);
    let dk = kw_unwrap(&dwk, &meta[88..152])[..32].to_vec();
    let file_id = &header[16..32];
    let fwk = hkdf(
        &[&kek, &dk],
        Some(vid),
        &[b"dekfs v1 file-wrap", dir_id, file_id],
        32,
    );
    let dek = kw_unwrap(&fwk, &header[80..144])[..32].to_vec();
    let names = hkdf(&[&dk], Some(vid), &[b"dekfs v1 names"], 64);
    let dir_xattr = hkdf(&[&dk], Some(vid), &[b"dekfs v1 xattr"], 32);
    let dir_xname = hkdf(&[&dir_xattr], None, &[b"dekfs v1 xattr-name"], 64);
    let dir_mac = hkdf(&[&dk], Some(vid), &[b"dekfs v1 dir-mac", dir_id], 32);
    let content = hkdf(&[&dek], Some(vid), &[b"dekfs v1 content", file_id], 32);
    let hmac = hkdf(&[&dek], Some(vid), &[b"dekfs v1 header-mac", file_id], 32);
    let f_xattr = hkdf(&[&dek], Some(vid), &[b"dekfs v1 xattr", file_id], 32);
    let f_xname = hkdf(&[&f_xattr], None, &[b"dekfs v1 xattr-name"], 64);
    let sub_id = &sub_meta[16..32];
    let sub_wk = hkdf(&[&kek, &dk], Some(vid), &[b"dekfs v1 dir-wrap", sub_id], 32);
    let sub = kw_unwrap(&sub_wk, &sub_meta[88..152])[..32].to_vec();
    let sub_names = hkdf(&[&sub], Some(vid), &[b"dekfs v1 names"], 64);
    let sub_xattr = hkdf(&[&sub], Some(vid), &[b"dekfs v1 xattr"], 32);
    let sub_xname = hkdf(&[&sub_xattr], None, &[b"dekfs v1 xattr-name"], 64);
    let mut out = Vec::new();
    let mut add = |name: &str, bytes: &[u8], life: Life| {
        out.push(Secret {
            name: name.to_owned(),
            bytes: bytes.to_vec(),
            life,
        })
    };
    add("KEK", &kek, Life::Mount);
    add("root directory key", &dk, Life::Mount);
    add("root name key (MAC half)", &names[..32], Life::Mount);
    add("root name key (CTR half)", &names[32..], Life::Mount);
    add("root xattr key", &dir_xattr, Life::Mount);
    add(
        "root xattr-name key (MAC half)",
        &dir_xname[..32],
        Life::Mount,
    );
    add(
        "root xattr-name key (CTR half)",
        &dir_xname[32..],
        Life::Mount,
    );
    add("file DEK", &dek, Life::Inode);
    add("file content key", &content, Life::Inode);
    add("file header MAC key", &hmac, Life::Inode);
    add("file xattr key", &f_xattr, Life::Inode);
    add(
        "file xattr-name key (MAC half)",
        &f_xname[..32],
        Life::Inode,
    );
    add(
        "file xattr-name key (CTR half)",
        &f_xname[32..],
        Life::Inode,
    );
    add("subdirectory key", &sub, Life::Inode);
    add(
        "subdirectory name key (MAC half)",
        &sub_names[..32],
        Life::Inode,
    );
    add(
        "subdirectory name key (CTR half)",
        &sub_names[32..],
        Life::Inode,
    );
    add("subdirectory xattr key", &sub_xattr, Life::Inode);
    add(
        "subdirectory xattr-name key (MAC half)",
        &sub_xname[..32],
        Life::Inode,
    );
    add(
        "subdirectory xattr-name key (CTR half)",
        &sub_xname[32..],
        Life::Inode,
    );
    add("root wrapping key", &dwk, Life::Op);
    add("subdirectory wrapping key", &sub_wk, Life::Op);
    add("file wrapping key", &fwk, Life::Op);
    add("root directory MAC key", &dir_mac, Life::Op);
    add("recovery protector key", &pk, Life::Op);
    add("passphrase protector key", &pass_pk, Life::Op);
    add("passphrase", v.passphrase.as_bytes(), Life::Never);
    add("recovery key", &rk, Life::Never);
    add("recovery key text", rk_text.as_bytes(), Life::Never);
    out
}

/// Where each secret was found in the readable memory of `pid`: one entry per hit, naming the
/// mapping (path, [heap], [stack] or an anonymous region with its flags).
pub fn scan(pid: u32, secrets: &[Secret]) -> Vec<Vec<String>> {
    let mut hits = vec![Vec::new(); secrets.len()];
    // One pass over memory: only offsets whose first two bytes begin some secret are compared.
    let mut first2 = vec![false; 1 << 16];
    for s in secrets {
        first2[usize::from(u16::from_le_bytes([s.bytes[0], s.bytes[1]]))] = true;
    }
    for_each_region(pid, |what, a, buf| {
        for off in 0..buf.len().saturating_sub(1) {
            if !first2[usize::from(u16::from_le_bytes([buf[off], buf[off + 1]]))] {
                continue;
            }
            for (i, s) in secrets.iter().enumerate() {
                if buf[off..].starts_with(&s.bytes) {
                    hits[i].push(format!("{what}+{:#x}", off as u64 + a));
                }
            }
        }
    });
    hits
}

/// The secrets (by name, with where they were found) among `pick` that have hits.
pub fn found(secrets: &[Secret], hits: &[Vec<String>], pick: impl Fn(Life) -> bool) -> Vec<String> {
    secrets
        .iter()
        .zip(hits)
        .filter(|(s, h)| pick(s.life) && !h.is_empty())
        .map(|(s, h)| format!("{} at {}", s.name, h.join(" ")))
        .collect()
}

/// The secrets among `pick` that have no hit.
pub fn missing(
    secrets: &[Secret],
    hits: &[Vec<String>],
    pick: impl Fn(Life) -> bool,
) -> Vec<String> {
    secrets
        .iter()
        .zip(hits)
        .filter(|(s, h)| pick(s.life) && h.is_empty())
        .map(|(s, _)| s.name.clone())
        .collect()
}
