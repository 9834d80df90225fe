//! KMIP over mutually authenticated TLS (rustls, ring provider, TLS 1.2 and 1.3): opens a
//! session with the first server of a list that answers, sends one-item requests and runs the
//! operations dekfs uses. Must NOT retry an operation on another server once a server has
//! answered it (a refusal is an answer), nor keep plaintext outside `SecretBytes`.

use super::messages::{self as m, op, reason, tag, Failure, GCM_IV_LEN, GCM_TAG_LEN};
use super::ttlv::{self, Item, HEADER_LEN};
use super::KmipError;
use crate::secret::SecretBytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The IANA port of KMIP over TLS.
pub const DEFAULT_PORT: u16 = 5696;
/// Per-server connect and per-read/write timeout, in milliseconds (default 5000).
pub const TIMEOUT_ENV: &str = "DEKFS_KMIP_TIMEOUT_MS";

/// Where the key manager is and how to prove who we are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Tried in order until one answers.
    pub servers: Vec<(String, u16)>,
    /// The name the servers' certificates must carry (a DNS name or an IP address).
    pub tls_name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `HOST[:PORT][,HOST[:PORT]...]`; an IPv6 address is written in brackets.
pub fn parse_servers(s: &str) -> Result<Vec<(String, u16)>, KmipError> {
    let bad = |what: &str| KmipError::Setup(format!("server list {s:?}: {what}"));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (host, port) = if let Some(rest) = part.strip_prefix('[') {
            let (h, tail) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match tail.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if tail.is_empty() => (h, None),
                None => return Err(bad("junk after ]")),
            }
        } else {
            match part.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (part, None),
            }
        };
        if host.is_empty() || host.len() > 253 || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("empty or invalid host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None => DEFAULT_PORT,
        };
        out.push((host.to_string(), port));
    }
    if out.is_empty() || out.len() > 8 {
        return Err(bad("give 1 to 8 servers"));
    }
    Ok(out)
}

fn timeout() -> Duration {
    let ms = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| (1..=600_000).contains(ms))
        .unwrap_or(5000);
    Duration::from_millis(ms)
}

fn tls_config(ep: &Endpoint) -> Result<Arc<ClientConfig>, KmipError> {
    let setup = |what: &str, p: &PathBuf, e: &dyn std::fmt::Display| {
        KmipError::Setup(format!("{what} {}: {e}", p.display()))
    };
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&ep.ca).map_err(|e| setup("CA file", &ep.ca, &e))?;
    for c in cas {
        let c = c.map_err(|e| setup("CA file", &ep.ca, &e))?;
        roots.add(c).map_err(|e| setup("CA file", &ep.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(setup("CA file", &ep.ca, &"no certificate"));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ep.cert)
        .map_err(|e| setup("certificate file", &ep.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| setup("certificate file", &ep.cert, &e))?;
    if chain.is_empty() {
        return Err(setup("certificate file", &ep.cert, &"no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&ep.key).map_err(|e| setup("key file", &ep.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| KmipError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| KmipError::Setup(format!("client certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// An Encrypt result: (iv, ciphertext, tag).
pub type Wrapped = ([u8; GCM_IV_LEN], Vec<u8>, [u8; GCM_TAG_LEN]);

/// One TLS connection to the server that answered.
pub struct Session {
    stream: StreamOwned<ClientConnection, TcpStream>,
    server: String,
}

enum Attempt {
    Tcp(String),
    Tls(String),
}

fn connect_one(
    cfg: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    host: &str,
    port: u16,
    t: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, Attempt> {
    let here = format!("{host}:{port}");
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Attempt::Tcp(format!("{here}: {e}")))?;
    let mut last = format!("{here}: no address");
    for addr in addrs {
        let mut tcp = match TcpStream::connect_timeout(&addr, t) {
            Ok(s) => s,
            Err(e) => {
                last = format!("{here}: {e}");
                continue;
            }
        };
        let tls_err = |e: &dyn std::fmt::Display| Attempt::Tls(format!("{here}: {e}"));
        tcp.set_read_timeout(Some(t)).map_err(|e| tls_err(&e))?;
        tcp.set_write_timeout(Some(t)).map_err(|e| tls_err(&e))?;
        tcp.set_nodelay(true).map_err(|e| tls_err(&e))?;
        let mut conn = ClientConnection::new(cfg.clone(), name.clone()).map_err(|e| tls_err(&e))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        Attempt::Tcp(format!("{here}: timed out in the TLS handshake"))
                    }
                    _ => tls_err(&e),
                });
            }
        }
        return Ok(StreamOwned::new(conn, tcp));
    }
    Err(Attempt::Tcp(last))
}

impl Session {
    /// Connects to the first server of the list that completes a TLS handshake.
    pub fn open(ep: &Endpoint) -> Result<Session, KmipError> {
        let cfg = tls_config(ep)?;
        let name = ServerName::try_from(ep.tls_name.clone())
            .map_err(|_| KmipError::Setup(format!("invalid TLS name {:?}", ep.tls_name)))?;
        let t = timeout();
        let (mut tcp, mut tls) = (Vec::new(), Vec::new());
        for (host, port) in &ep.servers {
            match connect_one(&cfg, &name, host, *port, t) {
                Ok(stream) => {
                    return Ok(Session {
                        stream,
                        server: format!("{host}:{port}"),
                    })
                }
                Err(Attempt::Tcp(e)) => tcp.push(e),
                Err(Attempt::Tls(e)) => tls.push(e),
            }
        }
        if tls.is_empty() {
            Err(KmipError::Unreachable(tcp))
        } else {
            tls.extend(tcp);
            Err(KmipError::Tls(tls))
        }
    }

    /// The server this session talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn io_error(&self, e: std::io::Error) -> KmipError {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                KmipError::Unreachable(vec![format!("{}: timed out", self.server)])
            }
            _ => KmipError::Tls(vec![format!("{}: {e}", self.server)]),
        }
    }

    /// Sends one request and returns the raw response, held in locked, wiped memory.
    fn exchange(
        &mut self,
        operation: u32,
        payload: Vec<Item<'_>>,
    ) -> Result<SecretBytes, KmipError> {
        let msg = m::request(operation, payload);
        let len = msg.encoded_len();
        if len > ttlv::MAX_MESSAGE {
            return Err(KmipError::Protocol("request too large".into()));
        }
        let mut buf = Vec::with_capacity(len);
        msg.encode(&mut buf);
        let req = SecretBytes::new(buf);
        self.stream
            .write_all(req.expose())
            .and_then(|_| self.stream.flush())
            .map_err(|e| self.io_error(e))?;
        let mut header = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| self.io_error(e))?;
        let total = ttlv::message_len(&header).map_err(|e| KmipError::Protocol(e.to_string()))?;
        let mut resp = SecretBytes::zeroed(total);
        let b = resp.expose_mut();
        b[..HEADER_LEN].copy_from_slice(&header);
        self.stream
            .read_exact(&mut b[HEADER_LEN..])
            .map_err(|e| self.io_error(e))?;
        Ok(resp)
    }

    /// Runs `operation` and hands the success payload to `f`; a refusal goes to `refused`.
    fn call<T>(
        &mut self,
        operation: u32,
        payload: Vec<Item<'_>>,
        f: impl FnOnce(&[Item<'_>]) -> Result<T, KmipError>,
    ) -> Result<Result<T, Failure>, KmipError> {
        let raw = self.exchange(operation, payload)?;
        let msg = ttlv::parse(raw.expose()).map_err(|e| KmipError::Protocol(e.to_string()))?;
        match m::response(&msg, operation)? {
            Ok(p) => f(p).map(Ok),
            Err(fail) => Ok(Err(fail)),
        }
    }

    fn refused(operation: u32, f: Failure) -> KmipError {
        KmipError::Refused {
            op: op::name(operation),
            reason: f.reason,
            message: f.message,
        }
    }

    /// A new AES-256 key for encrypt and decrypt, activated; its unique identifier.
    pub fn create_key(&mut self, name: &str) -> Result<String, KmipError> {
        let id = self
            .call(op::CREATE, m::create_aes256(name), m::uid_of)?
            .map_err(|f| Self::refused(op::CREATE, f))?;
        self.call(op::ACTIVATE, m::by_uid(&id), |_| Ok(()))?
            .map_err(|f| Self::refused(op::ACTIVATE, f))?;
        Ok(id)
    }

    /// Identifiers of the keys named `name`.
    pub fn locate(&mut self, name: &str) -> Result<Vec<String>, KmipError> {
        self.call(op::LOCATE, m::locate_by_name(name), |p| {
            p.iter()
                .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
                .map(|i| m::uid_of(std::slice::from_ref(i)))
                .collect()
        })?
        .map_err(|f| Self::refused(op::LOCATE, f))
    }

    /// The key's KMIP state, or the refusal that stopped us reading it.
    pub fn state(&mut self, id: &str) -> Result<Result<u32, Failure>, KmipError> {
        self.call(op::GET_ATTRIBUTES, m::get_state(id), |p| {
            m::state_of(p).ok_or_else(|| KmipError::Protocol("no State attribute".into()))
        })
    }

    /// Turns a refused use of key `id` into the reason a person needs.
    fn classify(&mut self, operation: u32, id: &str, f: Failure) -> KmipError {
        let uid = id.to_string();
        match f.reason {
            Some(reason::ITEM_NOT_FOUND) => KmipError::KeyDestroyed { uid },
            Some(reason::PERMISSION_DENIED | reason::WRONG_KEY_LIFECYCLE_STATE) => {
                match self.state(id) {
                    Ok(Ok(s @ (3 | 4))) => KmipError::KeyRevoked {
                        uid,
                        state: m::state_name(s),
                    },
                    Ok(Ok(5 | 6)) => KmipError::KeyDestroyed { uid },
                    Ok(Err(Failure {
                        reason: Some(reason::ITEM_NOT_FOUND),
                        ..
                    })) => KmipError::KeyDestroyed { uid },
                    _ => KmipError::PermissionDenied {
                        uid,
                        message: f.message,
                    },
                }
            }
            Some(reason::CRYPTOGRAPHIC_FAILURE) | Some(0x100) if operation == op::DECRYPT => {
                KmipError::DecryptFailed {
                    uid,
                    message: f.message,
                }
            }
            _ => Self::refused(operation, f),
        }
    }

    /// AES-256-GCM under key `id` with a fresh random IV: (iv, ciphertext, tag).
    pub fn encrypt(
        &mut self,
        id: &str,
        plain: &SecretBytes,
        aad: &[u8],
    ) -> Result<Wrapped, KmipError> {
        let iv: [u8; GCM_IV_LEN] = crate::crypto::random_array()
            .map_err(|e| KmipError::Setup(format!("random IV: {e}")))?;
        let len = plain.len();
        let r = self.call(op::ENCRYPT, m::encrypt(id, plain.expose(), &iv, aad), |p| {
            let (ct, t) = m::encrypted(p, &iv, len)?;
            Ok((ct.to_vec(), t))
        })?;
        match r {
            Ok((ct, t)) => Ok((iv, ct, t)),
            Err(f) => Err(self.classify(op::ENCRYPT, id, f)),
        }
    }

    /// The plaintext of an AES-256-GCM ciphertext under key `id`.
    pub fn decrypt(
        &mut self,
        id: &str,
        iv: &[u8],
        ct: &[u8],
        gcm_tag: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes, KmipError> {
        let r = self.call(op::DECRYPT, m::decrypt(id, ct, iv, aad, gcm_tag), |p| {
            let data = m::find(p, tag::DATA)
                .and_then(Item::as_bytes)
                .ok_or_else(|| KmipError::Protocol("Decrypt response without data".into()))?;
            let mut out = SecretBytes::zeroed(data.len());
            out.expose_mut().copy_from_slice(data);
            Ok(out)
        })?;
        r.map_err(|f| self.classify(op::DECRYPT, id, f))
    }

    /// Revoke (superseded or no longer used), then nothing else: the key stays for audit.
    pub fn revoke(&mut self, id: &str, superseded: bool) -> Result<(), KmipError> {
        self.call(op::REVOKE, m::revoke(id, superseded), |_| Ok(()))?
            .map_err(|f| Self::refused(op::REVOKE, f))
    }

    /// Revokes the key if it is still active, then destroys it.
    pub fn revoke_and_destroy(&mut self, id: &str) -> Result<(), KmipError> {
        if let Ok(Ok(2)) = self.state(id) {
            self.revoke(id, false)?;
        }
        self.call(op::DESTROY, m::by_uid(id), |_| Ok(()))?
            .map_err(|f| Self::refused(op::DESTROY, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists() {
        assert_eq!(
            parse_servers("kmip1.example, 10.0.0.2:15696,[::1]:7,[fe80::1]").unwrap(),
            vec![
                ("kmip1.example".to_string(), DEFAULT_PORT),
                ("10.0.0.2".to_string(), 15696),
                ("::1".to_string(), 7),
                ("fe80::1".to_string(), DEFAULT_PORT),
            ]
        );
        for bad in [
            "",
            "a:0",
            "a:70000",
            "a:x",
            "[::1",
            "[::1]x",
            "a b",
            ",",
            "a,b,c,d,e,f,g,h,i",
        ] {
            assert!(parse_servers(bad).is_err(), "{bad:?}");
        }
    }
}
