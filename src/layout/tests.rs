use super::*;
use crate::crypto::{DirKey, VolumeKeys};
use crate::secret::Key32;
use std::os::fd::OwnedFd;

fn key(seed: u8) -> DirKey {
    let keys = VolumeKeys::from_parts([7; 16], vec![(1, Key32::from_array(&mut [1; 32]))], 1)
        .expect("keys");
    keys.create_root_dir_from_parts(Key32::from_array(&mut [seed; 32]), [3; 16])
        .expect("root")
        .0
}

fn tmp() -> (tempfile::TempDir, OwnedFd) {
    let d = tempfile::tempdir().unwrap();
    let fd = open_dir(&rustix::fs::CWD, d.path().to_str().unwrap()).unwrap();
    (d, fd)
}

#[test]
fn classification_of_every_kind() {
    let h = "A".repeat(LONG_HASH_LEN);
    assert_eq!(classify("."), Class::Dot);
    assert_eq!(classify(".."), Class::Dot);
    assert_eq!(classify("abc-_09"), Class::Short("abc-_09"));
    assert_eq!(classify(&format!("dekfs.ln.{h}")), Class::Long { hash: &h });
    assert_eq!(
        classify(&format!("dekfs.ln.{h}.name")),
        Class::LongRecord { hash: &h }
    );
    for (name, r) in [
        ("dekfs.conf", Reserved::Config),
        ("dekfs.conf.tmp", Reserved::ConfigTemp),
        ("dekfs.dir", Reserved::DirMeta),
        ("dekfs.dir.tmp", Reserved::DirMetaTemp),
        ("dekfs.quarantine", Reserved::Quarantine),
        ("dekfs.tmp.1234", Reserved::Other),
        ("dekfs.future", Reserved::Other),
        ("dekfs.ln.", Reserved::Other),
        ("dekfs.ln..name", Reserved::Other),
        ("dekfs.ln.x.y", Reserved::Other),
    ] {
        assert_eq!(classify(name), Class::Reserved(r), "{name}");
    }
    assert_eq!(
        classify(&format!("dekfs.ln.{h}.name.tmp")),
        Class::Reserved(Reserved::RecordTemp)
    );
    for junk in ["a.b", ".dekfs-unreadable-0011223344556677", "x.", ""] {
        assert_eq!(classify(junk), Class::Junk, "{junk}");
    }
}

#[test]
fn recovery_names() {
    let r = recovery_name("someBackingName");
    assert!(is_recovery_name(&r));
    assert_eq!(r.len(), RECOVERY_PREFIX.len() + 16);
    assert!(!is_recovery_name(b".dekfs-unreadable-"));
    assert!(!is_recovery_name(b".dekfs-unreadable-00112233445566zz"));
    assert!(!is_recovery_name(b"plain"));
    let (_d, fd) = tmp();
    rustix::fs::mkdirat(&fd, "someBackingName", rustix::fs::Mode::RWXU).unwrap();
    assert_eq!(find_recovery(&fd, &r).unwrap(), "someBackingName");
    assert_eq!(
        find_recovery(&fd, &recovery_name("other")),
        Err(rustix::io::Errno::NOENT)
    );
}

#[test]
fn short_and_long_round_trip_at_the_boundary() {
    let (k, (_d, fd)) = (key(2), tmp());
    for (len, long) in [(1, false), (175, false), (176, true), (255, true)] {
        let plain = vec![b'x'; len];
        let bn = BackingName::encode(&k, &plain).unwrap();
        assert_eq!(matches!(bn, BackingName::Long { .. }), long, "{len}");
        assert!(bn.name().len() <= MAX_SHORT_NAME);
        bn.write_record(&fd).unwrap();
        assert_eq!(decode(&k, &fd, bn.name()), Decoded::Name(plain), "{len}");
        if let Some(rec) = bn.record_name() {
            assert_eq!(decode(&k, &fd, &rec), Decoded::Internal);
            assert!(read_small(&fd, &rec, MAX_LONG_RECORD).unwrap().len() <= MAX_LONG_RECORD);
            bn.remove_record(&fd);
            assert_eq!(
                decode(&k, &fd, bn.name()),
                Decoded::Unreadable(Damage::RecordMissing)
            );
        }
    }
    // the largest record is exactly the limit
    let BackingName::Long { full, .. } = BackingName::encode(&k, &[b'y'; 255]).unwrap() else {
        panic!("255-byte names are long");
    };
    assert_eq!(full.len(), MAX_LONG_RECORD);
}

#[test]
fn encode_refuses_bad_names() {
    let k = key(2);
    let err = |p: &[u8]| BackingName::encode(&k, p).err();
    assert_eq!(err(&[b'a'; 256]), Some(rustix::io::Errno::NAMETOOLONG));
    assert_eq!(err(b""), Some(rustix::io::Errno::INVAL));
    assert_eq!(err(b"a/b"), Some(rustix::io::Errno::INVAL));
    assert_eq!(err(b"a\0b"), Some(rustix::io::Errno::INVAL));
    assert_eq!(err(b".."), Some(rustix::io::Errno::IO));
}

#[test]
fn reader_refuses_damaged_records() {
    let (k, (_d, fd)) = (key(2), tmp());
    let bn = BackingName::encode(&k, &[b'z'; 200]).unwrap();
    let BackingName::Long { hashed, full } = &bn else {
        panic!("long")
    };
    let rec = bn.record_name().unwrap();
    let hash = hashed.strip_prefix(LONGNAME_PREFIX).unwrap();
    let refused = |bytes: &[u8]| {
        write_small_atomic(&fd, &rec, bytes).unwrap();
        match decode(&k, &fd, hashed) {
            Decoded::Unreadable(d) => d,
            other => panic!("accepted {other:?}"),
        }
    };
    assert_eq!(refused(b"AAAA"), Damage::RecordHashMismatch);
    assert_eq!(refused(&[0xff; 300]), Damage::RecordNotAscii);
    assert_eq!(refused(&[b'A'; 400]), Damage::RecordTooLarge);
    let mut swapped = full.clone().into_bytes();
    swapped[10] ^= 1;
    assert_eq!(refused(&swapped), Damage::RecordHashMismatch);
    write_small_atomic(&fd, &rec, full.as_bytes()).unwrap();
    assert_eq!(read_record(&fd, hash).unwrap(), *full);
    // a record in the right place that names another directory's name
    let other = BackingName::encode(&key(9), &[b'z'; 200]).unwrap();
    if let BackingName::Long { hashed: oh, .. } = &other {
        other.write_record(&fd).unwrap();
        assert_eq!(
            decode(&k, &fd, oh),
            Decoded::Unreadable(Damage::NameFailedAuthentication)
        );
    }
}

#[test]
fn reader_refuses_a_short_name_stored_in_long_form() {
    let (k, (_d, fd)) = (key(2), tmp());
    let short = k.encrypt_name(b"dup").unwrap();
    assert!(short.len() <= MAX_SHORT_NAME);
    // Built by hand: dekfs never writes this pair. It decrypts fine, so a
    // reader that accepted it would list "dup" twice next to the short entry.
    let hash = crate::crypto::names::long_name_hash(&short);
    write_small_atomic(&fd, &format!("dekfs.ln.{hash}.name"), short.as_bytes()).unwrap();
    assert_eq!(
        decode(&k, &fd, &format!("dekfs.ln.{hash}")),
        Decoded::Unreadable(Damage::ShortNameInLongForm)
    );
    assert_eq!(decode(&k, &fd, &short), Decoded::Name(b"dup".to_vec()));
}

#[test]
fn metadata_reads_are_capped_and_do_not_follow_symlinks() {
    let (_d, fd) = tmp();
    assert_eq!(read_dir_meta(&fd), Err(rustix::io::Errno::NOENT));
    write_small_atomic(&fd, DIR_META_NAME, &[0; DIR_META_LEN + 1]).unwrap();
    assert_eq!(read_dir_meta(&fd), Err(rustix::io::Errno::FBIG));
    write_small_atomic(&fd, DIR_META_NAME, &[0; DIR_META_LEN]).unwrap();
    assert_eq!(read_dir_meta(&fd).unwrap().len(), DIR_META_LEN);
    assert!(only_dir_meta(&fd).unwrap());
    rustix::fs::symlinkat("dekfs.dir", &fd, "dekfs.ln.abc.name").unwrap();
    assert!(matches!(
        read_record(&fd, "abc"),
        Err(Damage::RecordUnreadable(_))
    ));
    assert!(!only_dir_meta(&fd).unwrap());
    // a FIFO in place of a record is refused, not waited on
    rustix::fs::mknodat(
        &fd,
        "dekfs.ln.fifo.name",
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RWXU,
        0,
    )
    .unwrap();
    assert_eq!(read_record(&fd, "fifo"), Err(Damage::RecordHashMismatch));
}

#[test]
fn non_entries_decode_as_internal() {
    let (k, (_d, fd)) = (key(2), tmp());
    for n in [
        ".",
        "..",
        "dekfs.dir",
        "dekfs.conf",
        "a.b",
        "dekfs.quarantine",
    ] {
        assert_eq!(decode(&k, &fd, n), Decoded::Internal, "{n}");
    }
    assert_eq!(
        decode(&k, &fd, "notAName"),
        Decoded::Unreadable(Damage::NameFailedAuthentication)
    );
}
