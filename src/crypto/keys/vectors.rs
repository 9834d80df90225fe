//! Generator for the frozen dekfs v1 vectors (tests/vectors/dekfs-derivations-v1.txt). Ignored:
//! it was run once; it must NOT be used to "update" the frozen file.

use super::*;

/// Fixed inputs of tests/vectors/dekfs-derivations-v1.txt (must match that file).
pub(crate) mod fixed {
    pub fn seq<const N: usize>(start: u8) -> [u8; N] {
        let mut a = [0u8; N];
        for (i, b) in a.iter_mut().enumerate() {
            *b = start.wrapping_add(i as u8);
        }
        a
    }
}

/// Prints the frozen derivation vectors. Run once with
/// `cargo test --lib print_frozen_vectors -- --ignored --nocapture`; the output was pasted into
/// tests/vectors/dekfs-derivations-v1.txt and must never change.
#[test]
#[ignore]
fn print_frozen_vectors() {
    use fixed::seq;
    let hx = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let vid: [u8; 16] = seq(0x00);
    let kek_b: [u8; 32] = seq(0x10);
    let root_id: [u8; 16] = seq(0xa0);
    let root_key_b: [u8; 32] = seq(0x30);
    let sub_id: [u8; 16] = seq(0xb0);
    let sub_key_b: [u8; 32] = seq(0x50);
    let file_id: [u8; 16] = seq(0xc0);
    let dek_b: [u8; 32] = seq(0x70);
    let rk_b: [u8; 32] = seq(0x90);
    let salt: [u8; 32] = seq(0xd0);
    let k = |b: [u8; 32]| Key32::from_array(&mut b.clone());
    let vk = VolumeKeys::from_parts(vid, vec![(1, k(kek_b))], 1).unwrap();
    let kek = k(kek_b);
    println!("volume_id = {}", hx(&vid));
    println!("kek = {}", hx(&kek_b));
    println!("kek_version = 1");
    println!("root_dir_id = {}", hx(&root_id));
    println!("root_dir_key = {}", hx(&root_key_b));
    println!("sub_dir_id = {}", hx(&sub_id));
    println!("sub_dir_key = {}", hx(&sub_key_b));
    println!("file_id = {}", hx(&file_id));
    println!("dek = {}", hx(&dek_b));
    println!("recovery_key = {}", hx(&rk_b));
    println!("recovery_salt = {}", hx(&salt));
    println!(
        "recovery_protector_key = {}",
        hx(kdf::recovery_protector_key(&k(rk_b), &salt)
            .unwrap()
            .expose())
    );
    println!(
        "config_mac_key = {}",
        hx(kdf::config_mac_key(&kek, &vid).unwrap().expose())
    );
    println!(
        "root_wrap_key = {}",
        hx(kdf::root_wrap_key(&kek, &vid, &root_id).unwrap().expose())
    );
    println!(
        "sub_dir_wrap_key = {}",
        hx(kdf::dir_wrap_key(&kek, &k(root_key_b), &vid, &sub_id)
            .unwrap()
            .expose())
    );
    println!(
        "sub_dir_mac_key = {}",
        hx(kdf::dir_mac_key(&k(sub_key_b), &vid, &sub_id)
            .unwrap()
            .expose())
    );
    println!(
        "sub_name_key = {}",
        hx(kdf::name_key(&k(sub_key_b), &vid).unwrap().expose())
    );
    let sub_xk = kdf::dir_xattr_key(&k(sub_key_b), &vid).unwrap();
    println!("sub_xattr_key = {}", hx(sub_xk.expose()));
    println!(
        "sub_xattr_name_key = {}",
        hx(kdf::xattr_name_key(&sub_xk).unwrap().expose())
    );
    println!(
        "file_wrap_key = {}",
        hx(
            kdf::file_wrap_key(&kek, &k(sub_key_b), &vid, &sub_id, &file_id)
                .unwrap()
                .expose()
        )
    );
    println!(
        "header_mac_key = {}",
        hx(kdf::header_mac_key(&k(dek_b), &vid, &file_id)
            .unwrap()
            .expose())
    );
    println!(
        "content_key = {}",
        hx(kdf::content_key(&k(dek_b), &vid, &file_id)
            .unwrap()
            .expose())
    );
    let fxk = kdf::file_xattr_key(&k(dek_b), &vid, &file_id).unwrap();
    println!("file_xattr_key = {}", hx(fxk.expose()));
    println!(
        "file_xattr_name_key = {}",
        hx(kdf::xattr_name_key(&fxk).unwrap().expose())
    );
    let (root, root_meta) = vk
        .create_root_dir_from_parts(k(root_key_b), root_id)
        .unwrap();
    let (sub, sub_meta) = vk
        .create_dir_from_parts(&root, k(sub_key_b), sub_id)
        .unwrap();
    let (fk, header) = vk
        .create_file_from_parts(&sub, k(dek_b), file_id, FileKey::INITIAL_RESERVATION)
        .unwrap();
    println!("root_dir_meta = {}", hx(&root_meta));
    println!("sub_dir_meta = {}", hx(&sub_meta));
    println!("file_header = {}", hx(&header));
    println!("name_plain = {}", hx(b"hello.txt"));
    println!(
        "name_encrypted = {}",
        sub.encrypt_name(b"hello.txt").unwrap()
    );
    println!("symlink_plain = {}", hx(b"../target"));
    println!(
        "symlink_encrypted = {}",
        sub.encrypt_symlink(b"../target").unwrap()
    );
    println!("xattr_name_plain = {}", hx(b"user.comment"));
    println!(
        "dir_xattr_name_encrypted = {}",
        sub.xattr().encrypt_name(b"user.comment").unwrap()
    );
    println!(
        "file_xattr_name_encrypted = {}",
        fk.xattr().encrypt_name(b"user.comment").unwrap()
    );
    let nonce: [u8; 12] = seq(0xe0);
    let plain = b"dekfs v1 block zero";
    let mut out = vec![0u8; plain.len() + 28];
    fk.seal_block(3, &nonce, plain, &mut out);
    println!("block_index = 3");
    println!("block_nonce = {}", hx(&nonce));
    println!("block_plain = {}", hx(plain));
    println!("block_stored = {}", hx(&out));
}
