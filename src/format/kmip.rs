//! Body of a kind-4 (KMIP) protector record: parse/serialise only. Must NOT talk to a key
//! manager, read the files it names, or panic on any input; every length is capped before
//! anything is allocated.

use super::reader::Reader;
use super::FormatError;

/// Body layout version 1 (docs/FORMAT.md, "KMIP protector (kind 4)").
pub const KMIP_BODY_V1: u8 = 1;
pub const KMIP_IV_LEN: usize = 12;
pub const KMIP_TAG_LEN: usize = 16;
/// AES-256-GCM ciphertext of the 56-byte payload `KEK ‖ volume_id ‖ u64 kek_version`.
pub const KMIP_BLOB_LEN: usize = 56;
pub const KMIP_MAX_SERVERS: usize = 8;
pub const KMIP_MAX_HOST: usize = 253;
pub const KMIP_MAX_UID: usize = 255;
pub const KMIP_MAX_PATH: usize = 1024;
/// Prefix of the GCM associated data: `prefix ‖ volume_id ‖ protector_id ‖ u32 LE kek_version`.
pub const KMIP_AAD_PREFIX: &[u8; 14] = b"dekfs kmip v1\0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmipBody {
    /// `(host, port)`, tried in order.
    pub servers: Vec<(String, u16)>,
    pub tls_name: String,
    pub ca_path: String,
    pub cert_path: String,
    pub key_path: String,
    /// The manager's unique identifier of the wrapping key.
    pub key_uid: String,
    pub iv: [u8; KMIP_IV_LEN],
    pub tag: [u8; KMIP_TAG_LEN],
    pub blob: [u8; KMIP_BLOB_LEN],
}

/// The associated data that binds a wrap to its volume, protector and KEK version.
pub fn kmip_aad(volume_id: &[u8; 16], protector_id: &[u8; 16], kek_version: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(KMIP_AAD_PREFIX.len() + 36);
    v.extend_from_slice(KMIP_AAD_PREFIX);
    v.extend_from_slice(volume_id);
    v.extend_from_slice(protector_id);
    v.extend_from_slice(&kek_version.to_le_bytes());
    v
}

fn text(
    r: &mut Reader<'_>,
    cap: usize,
    what: &'static str,
    ok: fn(u8) -> bool,
) -> Result<String, FormatError> {
    let len = usize::from(r.u16()?);
    if len == 0 || len > cap {
        return Err(FormatError::Invalid(what));
    }
    let b = r.take(len)?;
    if !b.iter().all(|&c| ok(c)) {
        return Err(FormatError::Invalid(what));
    }
    // The byte check admits ASCII only, so this cannot fail.
    String::from_utf8(b.to_vec()).map_err(|_| FormatError::Invalid(what))
}

fn printable(c: u8) -> bool {
    c.is_ascii_graphic()
}

/// Paths: absolute, printable ASCII plus space.
fn path_byte(c: u8) -> bool {
    c.is_ascii_graphic() || c == b' '
}

fn check_text(
    s: &str,
    cap: usize,
    what: &'static str,
    ok: fn(u8) -> bool,
) -> Result<(), FormatError> {
    if s.is_empty() || s.len() > cap || !s.bytes().all(ok) {
        return Err(FormatError::Invalid(what));
    }
    Ok(())
}

fn check_path(s: &str, what: &'static str) -> Result<(), FormatError> {
    check_text(s, KMIP_MAX_PATH, what, path_byte)?;
    if !s.starts_with('/') {
        return Err(FormatError::Invalid(what));
    }
    Ok(())
}

impl KmipBody {
    pub fn parse(body: &[u8]) -> Result<KmipBody, FormatError> {
        let mut r = Reader::new(body);
        if r.u8()? != KMIP_BODY_V1 {
            return Err(FormatError::Invalid("unknown KMIP body version"));
        }
        let n = usize::from(r.u8()?);
        if n == 0 || n > KMIP_MAX_SERVERS {
            return Err(FormatError::Invalid("KMIP server count"));
        }
        r.zeros(2, "KMIP body reserved bytes not zero")?;
        let iv = r.array()?;
        let tag = r.array()?;
        let blob = r.array()?;
        let key_uid = text(&mut r, KMIP_MAX_UID, "KMIP key identifier", printable)?;
        let tls_name = text(&mut r, KMIP_MAX_HOST, "KMIP TLS name", printable)?;
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            let host = text(&mut r, KMIP_MAX_HOST, "KMIP server host", printable)?;
            let port = r.u16()?;
            if port == 0 {
                return Err(FormatError::Invalid("KMIP server port 0"));
            }
            servers.push((host, port));
        }
        let ca_path = text(&mut r, KMIP_MAX_PATH, "KMIP CA path", path_byte)?;
        let cert_path = text(&mut r, KMIP_MAX_PATH, "KMIP certificate path", path_byte)?;
        let key_path = text(&mut r, KMIP_MAX_PATH, "KMIP key path", path_byte)?;
        r.finish()?;
        let b = KmipBody {
            servers,
            tls_name,
            ca_path,
            cert_path,
            key_path,
            key_uid,
            iv,
            tag,
            blob,
        };
        b.check()?;
        Ok(b)
    }

    fn check(&self) -> Result<(), FormatError> {
        if self.servers.is_empty() || self.servers.len() > KMIP_MAX_SERVERS {
            return Err(FormatError::Invalid("KMIP server count"));
        }
        for (h, p) in &self.servers {
            check_text(h, KMIP_MAX_HOST, "KMIP server host", printable)?;
            if *p == 0 {
                return Err(FormatError::Invalid("KMIP server port 0"));
            }
        }
        check_text(
            &self.key_uid,
            KMIP_MAX_UID,
            "KMIP key identifier",
            printable,
        )?;
        check_text(&self.tls_name, KMIP_MAX_HOST, "KMIP TLS name", printable)?;
        check_path(&self.ca_path, "KMIP CA path")?;
        check_path(&self.cert_path, "KMIP certificate path")?;
        check_path(&self.key_path, "KMIP key path")
    }

    /// Serialises a body that `parse` accepts; refuses values it would not.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        self.check()?;
        let mut v = Vec::with_capacity(512);
        v.push(KMIP_BODY_V1);
        v.push(self.servers.len() as u8);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&self.iv);
        v.extend_from_slice(&self.tag);
        v.extend_from_slice(&self.blob);
        fn put(v: &mut Vec<u8>, s: &str) {
            v.extend_from_slice(&(s.len() as u16).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
        }
        put(&mut v, &self.key_uid);
        put(&mut v, &self.tls_name);
        for (h, p) in &self.servers {
            put(&mut v, h);
            v.extend_from_slice(&p.to_le_bytes());
        }
        put(&mut v, &self.ca_path);
        put(&mut v, &self.cert_path);
        put(&mut v, &self.key_path);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> KmipBody {
        KmipBody {
            servers: vec![("127.0.0.1".into(), 5696), ("kmip2.example".into(), 15696)],
            tls_name: "127.0.0.1".into(),
            ca_path: "/etc/dekfs/kmip/ca.crt".into(),
            cert_path: "/etc/dekfs/kmip/client.crt".into(),
            key_path: "/etc/dekfs/kmip/client.key".into(),
            key_uid: "42".into(),
            iv: [1; 12],
            tag: [2; 16],
            blob: [3; 56],
        }
    }

    #[test]
    fn round_trip_and_truncations() {
        let b = sample();
        let bytes = b.to_bytes().unwrap();
        assert_eq!(KmipBody::parse(&bytes).unwrap(), b);
        for n in 0..bytes.len() {
            assert!(KmipBody::parse(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(KmipBody::parse(&long).is_err());
    }

    #[test]
    fn refusals() {
        let good = sample().to_bytes().unwrap();
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.clone();
            f(&mut v);
            KmipBody::parse(&v).is_err()
        };
        assert!(bad(&|v| v[0] = 2));
        assert!(bad(&|v| v[1] = 0));
        assert!(bad(&|v| v[1] = 9));
        assert!(bad(&|v| v[2] = 1));
        // uid length 0, then a control byte in the uid
        assert!(bad(&|v| v[88..90].copy_from_slice(&0u16.to_le_bytes())));
        assert!(bad(&|v| v[90] = b'\n'));
        let relative = KmipBody {
            ca_path: "ca.crt".into(),
            ..sample()
        };
        assert!(relative.to_bytes().is_err());
        let no_servers = KmipBody {
            servers: vec![],
            ..sample()
        };
        assert!(no_servers.to_bytes().is_err());
    }

    #[test]
    fn aad_layout() {
        let a = kmip_aad(&[0xAA; 16], &[0xBB; 16], 0x01020304);
        assert_eq!(a.len(), 14 + 16 + 16 + 4);
        assert_eq!(&a[..14], b"dekfs kmip v1\0");
        assert_eq!(&a[46..], &[4, 3, 2, 1]);
    }
}
