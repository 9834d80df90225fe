//! Unit tests for key objects: round trips, tamper detection, swaps and torn rewraps. Must NOT
//! depend on frozen vectors (tests/kat.rs owns those).

use super::*;
use crate::crypto::CryptoError;

fn volume() -> VolumeKeys {
    VolumeKeys::from_parts([0x42; 16], vec![(1, Key32::random().unwrap())], 1).unwrap()
}

fn flips(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..bytes.len() * 8).map(move |bit| {
        let mut v = bytes.to_vec();
        v[bit / 8] ^= 1 << (bit % 8);
        v
    })
}

#[test]
fn dir_round_trip_and_names() {
    let vk = volume();
    let (root, root_meta) = vk.create_root_dir().unwrap();
    let root2 = vk.open_root_dir(&root_meta).unwrap();
    assert_eq!(root.dir_id(), root2.dir_id());
    let e = root.encrypt_name(b"file.txt").unwrap();
    assert_eq!(root2.decrypt_name(&e).unwrap(), b"file.txt");

    let (sub, sub_meta) = vk.create_dir(&root).unwrap();
    let sub2 = vk.open_dir(&root2, &sub_meta).unwrap();
    let e = sub.encrypt_name(b"x").unwrap();
    assert_eq!(sub2.decrypt_name(&e).unwrap(), b"x");
    // Names differ per directory (NameKey comes from the DirKey).
    assert_ne!(e, root.encrypt_name(b"x").unwrap());
    assert!(root.decrypt_name(&e).is_err());
    // A subdirectory's metadata is not a root's and vice versa.
    assert!(vk.open_root_dir(&sub_meta).is_err());
    assert!(vk.open_dir(&root, &root_meta).is_err());
}

#[test]
fn wrong_parent_or_volume_fails() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (a, _) = vk.create_dir(&root).unwrap();
    let (_, b_meta) = vk.create_dir(&root).unwrap();
    assert_eq!(
        vk.open_dir(&a, &b_meta).err(),
        Some(CryptoError::UnwrapFailed)
    );
    let (_, h) = vk.create_file(&root).unwrap();
    assert!(vk.open_file(&a, &h).is_err());
    let other = volume();
    let (root_o, root_o_meta) = other.create_root_dir().unwrap();
    assert!(vk.open_root_dir(&root_o_meta).is_err());
    assert!(vk.open_file(&root_o, &h).is_err());
}

#[test]
fn every_bit_flip_of_dir_meta_is_detected() {
    let vk = volume();
    let (root, root_meta) = vk.create_root_dir().unwrap();
    let (_, meta) = vk.create_dir(&root).unwrap();
    for (i, m) in flips(&meta).enumerate() {
        assert!(vk.open_dir(&root, &m).is_err(), "dir meta bit {i}");
    }
    for (i, m) in flips(&root_meta).enumerate() {
        assert!(vk.open_root_dir(&m).is_err(), "root meta bit {i}");
    }
}

#[test]
fn every_bit_flip_of_header_is_detected() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fk, h) = vk.create_file(&root).unwrap();
    assert_eq!(fk.nonce_reserved(), FileKey::INITIAL_RESERVATION);
    assert!(vk.open_file(&root, &h).is_ok());
    for (i, m) in flips(&h).enumerate() {
        assert!(vk.open_file(&root, &m).is_err(), "header bit {i}");
    }
}

#[test]
fn block_round_trip_and_tamper() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fk, h) = vk.create_file(&root).unwrap();
    let fk2 = vk.open_file(&root, &h).unwrap();
    for len in [1usize, 17, 4095, 4096] {
        let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut stored = vec![0u8; len + 28];
        fk.seal_block(7, &[9; 12], &plain, &mut stored);
        let mut out = vec![0u8; 4096];
        assert_eq!(fk2.open_block(7, &stored, &mut out).unwrap(), len);
        assert_eq!(&out[..len], &plain[..]);
        // Moved to another index: refused.
        assert!(fk2.open_block(8, &stored, &mut out).is_err());
        // Truncated by one byte: refused.
        assert!(fk2.open_block(7, &stored[..len + 27], &mut out).is_err());
    }
    let mut stored = vec![0u8; 100 + 28];
    fk.seal_block(0, &[1; 12], &[0x5a; 100], &mut stored);
    let mut out = vec![0u8; 4096];
    for (i, s) in flips(&stored).enumerate() {
        assert!(fk2.open_block(0, &s, &mut out).is_err(), "block bit {i}");
    }
    assert!(fk2.open_block(0, &stored, &mut out[..99]).is_err());
    assert!(fk2.open_block(0, &[0u8; 28], &mut out).is_err());
    assert!(fk2.open_block(0, &vec![0u8; 4125], &mut out).is_err());
}

#[test]
fn header_swap_between_files_is_detected_by_blocks() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fa, ha) = vk.create_file(&root).unwrap();
    let (_fb, hb) = vk.create_file(&root).unwrap();
    let mut block_a = vec![0u8; 4096 + 28];
    fa.seal_block(0, &[3; 12], &[1u8; 4096], &mut block_a);
    // File A's backing file now carries B's header: the header itself is valid...
    let swapped = vk.open_file(&root, &hb).unwrap();
    assert_ne!(swapped.file_id(), fa.file_id());
    // ...but A's blocks are bound to A's file_id and key, so reading fails.
    let mut out = vec![0u8; 4096];
    assert!(swapped.open_block(0, &block_a, &mut out).is_err());
    assert!(vk
        .open_file(&root, &ha)
        .unwrap()
        .open_block(0, &block_a, &mut out)
        .is_ok());
}

#[test]
fn header_reservation_update() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fk, h) = vk.create_file(&root).unwrap();
    let h2 = fk.header_with_reservation(&h, 4096).unwrap();
    let reopened = vk.open_file(&root, &h2).unwrap();
    assert_eq!(reopened.nonce_reserved(), 4096);
    assert_eq!(&h2[72..], &h[72..]);
    // Refuses a header that is not this file's or whose MAC is bad.
    let (other, oh) = vk.create_file(&root).unwrap();
    assert_eq!(
        fk.header_with_reservation(&oh, 1).err(),
        Some(CryptoError::WrongObject)
    );
    let mut bad = h;
    bad[33] ^= 1;
    assert!(fk.header_with_reservation(&bad, 1).is_err());
    drop(other);
}

#[test]
fn torn_dir_move_every_state_opens() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (p_old, _) = vk.create_dir(&root).unwrap();
    let (p_new, _) = vk.create_dir(&root).unwrap();
    let (d, meta) = vk.create_dir(&p_old).unwrap();
    let (both, fin) = vk.rewrap_dir_move(&d, &p_old, &p_new, &meta).unwrap();
    // Old slot alone (crash before the first write).
    assert_eq!(vk.open_dir(&p_old, &meta).unwrap().dir_id(), d.dir_id());
    // Both slots (crash between the writes): opens under either parent.
    assert!(vk.open_dir(&p_old, &both).is_ok());
    assert!(vk.open_dir(&p_new, &both).is_ok());
    // New slot alone (done): only the new parent opens it.
    let moved = vk.open_dir(&p_new, &fin).unwrap();
    assert!(vk.open_dir(&p_old, &fin).is_err());
    let e = d.encrypt_name(b"child").unwrap();
    assert_eq!(moved.decrypt_name(&e).unwrap(), b"child");
    // A second move starts from the final state and reuses the freed slot.
    let (both2, fin2) = vk.rewrap_dir_move(&moved, &p_new, &p_old, &fin).unwrap();
    assert!(vk.open_dir(&p_new, &both2).is_ok());
    assert!(vk.open_dir(&p_old, &fin2).is_ok());
    assert!(vk.open_dir(&p_new, &fin2).is_err());
    // Wrong old parent or wrong dir is refused.
    assert!(vk.rewrap_dir_move(&d, &p_new, &p_old, &meta).is_err());
    assert!(vk.rewrap_dir_move(&p_new, &p_old, &p_new, &meta).is_err());
}

#[test]
fn torn_file_move_every_state_opens() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (d_old, _) = vk.create_dir(&root).unwrap();
    let (d_new, _) = vk.create_dir(&root).unwrap();
    let (fk, h) = vk.create_file(&d_old).unwrap();
    let mut block = vec![0u8; 50];
    fk.seal_block(0, &[0; 12], &[7u8; 22], &mut block);
    let (both, fin) = vk.rewrap_file_move(&fk, &d_old, &d_new, &h).unwrap();
    let mut out = [0u8; 4096];
    for (dir, hdr) in [
        (&d_old, &h),
        (&d_old, &both),
        (&d_new, &both),
        (&d_new, &fin),
    ] {
        let k = vk.open_file(dir, hdr).unwrap();
        assert_eq!(k.open_block(0, &block, &mut out).unwrap(), 22);
    }
    assert!(vk.open_file(&d_old, &fin).is_err());
    assert!(vk.open_file(&d_new, &h).is_err());
}

#[test]
fn kek_versions_and_unknown_slot_versions() {
    let vk2 = VolumeKeys::from_parts(
        [1; 16],
        vec![(2, Key32::random().unwrap()), (1, Key32::random().unwrap())],
        2,
    )
    .unwrap();
    assert_eq!(vk2.active_kek_version(), 2);
    let (root, meta) = vk2.create_root_dir().unwrap();
    assert_eq!(
        u32::from_le_bytes([meta[80], meta[81], meta[82], meta[83]]),
        2
    );
    assert!(vk2.open_root_dir(&meta).is_ok());
    let (_, h) = vk2.create_file(&root).unwrap();
    assert!(vk2.open_file(&root, &h).is_ok());
    assert!(VolumeKeys::from_parts([1; 16], vec![(1, Key32::random().unwrap())], 2).is_err());
    assert!(VolumeKeys::from_parts(
        [1; 16],
        vec![(1, Key32::random().unwrap()), (1, Key32::random().unwrap())],
        1
    )
    .is_err());
}

#[test]
fn xattr_names_and_values() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fk, _) = vk.create_file(&root).unwrap();
    for x in [root.xattr(), fk.xattr()] {
        let n = x.encrypt_name(b"user.comment").unwrap();
        assert!(n.starts_with("user.") && n.len() <= 255);
        assert_eq!(x.decrypt_name(&n).unwrap(), b"user.comment");
        let v = x.seal_value(&n, b"hello").unwrap();
        assert_eq!(v.len(), 5 + 28);
        assert_eq!(x.open_value(&n, &v).unwrap(), b"hello");
        let n2 = x.encrypt_name(b"user.other").unwrap();
        assert!(
            x.open_value(&n2, &v).is_err(),
            "value moved to another name"
        );
        for s in flips(&v) {
            assert!(x.open_value(&n, &s).is_err());
        }
        assert!(x.decrypt_name("trusted.abc").is_err());
        assert!(x.decrypt_name("user.!!").is_err());
        assert!(x.encrypt_name(&[b'a'; 200]).is_err());
        // Documented limit: 171-byte plaintext names fit in 255 backing bytes, 172 do not.
        assert_eq!(x.encrypt_name(&[b'a'; 171]).unwrap().len(), 255);
        assert!(x.encrypt_name(&[b'a'; 172]).is_err());
        assert!(x.seal_value(&n, &vec![0; MAX_XATTR_VALUE + 1]).is_err());
        assert_eq!(
            x.open_value(&n, &x.seal_value(&n, b"").unwrap()).unwrap(),
            b""
        );
    }
    let n = root.xattr().encrypt_name(b"user.a").unwrap();
    assert_ne!(n, fk.xattr().encrypt_name(b"user.a").unwrap());
    assert!(fk.xattr().decrypt_name(&n).is_err());
}

#[test]
fn debug_output_is_redacted() {
    let vk = volume();
    let (root, _) = vk.create_root_dir().unwrap();
    let (fk, _) = vk.create_file(&root).unwrap();
    assert!(format!("{root:?}").contains("redacted"));
    assert!(format!("{fk:?}").contains("redacted"));
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn key_objects_are_send_sync() {
    assert_send_sync::<VolumeKeys>();
    assert_send_sync::<DirKey>();
    assert_send_sync::<FileKey>();
    assert_send_sync::<XattrCipher>();
}
