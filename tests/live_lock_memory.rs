//! Keys leave the daemon's memory at `dekfs lock`, with the mount live and a
//! file held open: the KEK, the root directory key and the open file's DEK
//! (derived here independently from the recovery key) are found before the
//! lock (positive control), not after it, and come back after unlock when the
//! open descriptor reads again. Needs root (reads /proc/PID/mem).

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::FileExt;

fn hkdf(ikm: &[&[u8]], salt: &[u8], info: &[&[u8]]) -> Vec<u8> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm.concat());
    let mut okm = vec![0u8; 32];
    hk.expand(&info.concat(), &mut okm).unwrap();
    okm
}

fn kw_unwrap(kek: &[u8], wrapped: &[u8]) -> Vec<u8> {
    aes_kw::KekAes256::try_from(kek)
        .unwrap()
        .unwrap_vec(wrapped)
        .unwrap()
}

/// (KEK, root DirKey, DEK of `header`) from the recovery key.
fn derive_keys(v: &TestVolume, header: &[u8]) -> [Vec<u8>; 3] {
    let conf = fs::read(v.cipher.join(CONF)).unwrap();
    let vid = &conf[20..36];
    // passphrase record at 64 (32 + 112 bytes), then the recovery record
    let rec = &conf[64 + 144..];
    assert_eq!(rec[0], 2, "second protector is the recovery key");
    let (salt, wrapped) = (&rec[32..64], &rec[64..128]);
    let rk = hex::decode(v.recovery_key.as_ref().unwrap().replace('-', "")).unwrap();
    let pk = hkdf(&[&rk], salt, &[b"dekfs v1 recovery"]);
    let kek = kw_unwrap(&pk, wrapped)[..32].to_vec();
    let meta = fs::read(v.cipher.join(DIR_META)).unwrap();
    let dir_id = &meta[16..32];
    let dwk = hkdf(&[&kek], vid, &[b"dekfs v1 root-wrap", dir_id]);
    let dir_key = kw_unwrap(&dwk, &meta[88..152])[..32].to_vec();
    let file_id = &header[16..32];
    let fwk = hkdf(
        &[&kek, &dir_key],
        vid,
        &[b"dekfs v1 file-wrap", dir_id, file_id],
    );
    let dek = kw_unwrap(&fwk, &header[80..144])[..32].to_vec();
    [kek, dir_key, dek]
}

/// Number of occurrences of each needle in the readable memory of `pid`.
fn scan(pid: u32, needles: &[Vec<u8>]) -> Vec<usize> {
    let mut hits = vec![0; needles.len()];
    for_each_region(pid, |_, _, buf| {
        for (i, n) in needles.iter().enumerate() {
            hits[i] += buf.windows(n.len()).filter(|w| w == n).count();
        }
    });
    hits
}

#[test]
fn lock_wipes_kek_dir_key_and_dek_from_daemon_memory() {
    require_fuse!();
    let v = TestVolume::new("live-mem");
    v.mount();
    let data = random_bytes(78, 10_000);
    let backing = v.create_file("/f", &data);
    let header = fs::read(&backing).unwrap()[..216].to_vec();
    let keys = derive_keys(&v, &header);
    let names = ["KEK", "root directory key", "file DEK"];
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    let pid = pids[0];
    let f = fs::File::open(v.p("/f")).unwrap();
    let mut b = [0u8; 10];
    f.read_exact_at(&mut b, 0).unwrap();
    for (n, h) in names.iter().zip(scan(pid, &keys)) {
        assert!(h > 0, "{n} not found before the lock: the scan cannot work");
    }

    dekfs([OsStr::new("lock"), v.mnt.as_os_str()]).expect_code(exit::OK, "lock");
    let after = scan(pid, &keys);
    for (n, h) in names.iter().zip(&after) {
        assert_eq!(*h, 0, "{n} still in daemon memory after lock ({h} copies)");
    }

    dekfs([
        OsStr::new("unlock"),
        v.mnt.as_os_str(),
        OsStr::new("--passfile"),
        v.passfile.as_os_str(),
    ])
    .expect_code(exit::OK, "unlock");
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b[..], &data[..10]);
    for (n, h) in names.iter().zip(scan(pid, &keys)) {
        assert!(h > 0, "{n} not back after unlock and a read");
    }
    drop(f);
    v.umount();
}
