//! KEK escrow and migration: the transport key, `export` (wrap the unlocked active KEK under it)
//! and `import` (unwrap a blob and prove it opens this volume). Must NOT write anything: the
//! caller stores the blob and adds the new protector, so a refused import leaves no trace, and
//! the KEK only ever leaves a `Key32` wrapped.

use super::config_io::read_config_bytes;
use super::unlock::finish_unlock;
use super::{config_format_error, UnlockedVolume, VolumeError};
use crate::crypto::kw;
use crate::crypto::mac::{hmac_sha256, verify_hmac_sha256};
use crate::crypto::{kdf, CryptoError, VolumeKeys};
use crate::format::{KekExport, VolumeConfig, EXPORT_ALG_KW, EXPORT_ALG_KWP};
use crate::secret::{Key32, SecretBytes};
use std::path::Path;

/// First bytes of a transport key file; the 64 hex digits of the key follow, then a newline.
pub const TRANSPORT_KEY_PREFIX: &str = "dekfs-transport-key-v1:";

/// A fresh transport key from the OS CSPRNG, and its file text (prefix, hex, newline).
pub fn new_transport_key() -> Result<SecretBytes, VolumeError> {
    let k = Key32::random()?;
    let p = TRANSPORT_KEY_PREFIX.as_bytes();
    let mut text = SecretBytes::zeroed(p.len() + 65);
    let out = text.expose_mut();
    out[..p.len()].copy_from_slice(p);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in k.expose().iter().enumerate() {
        out[p.len() + 2 * i] = HEX[usize::from(b >> 4)];
        out[p.len() + 2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out[p.len() + 64] = b'\n';
    Ok(text)
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses the first line of a transport key file.
pub fn parse_transport_key(line: &SecretBytes) -> Result<Key32, VolumeError> {
    let bad = || VolumeError::Refused("not a dekfs transport key file".into());
    let hex = line
        .expose()
        .strip_prefix(TRANSPORT_KEY_PREFIX.as_bytes())
        .ok_or_else(bad)?;
    if hex.len() != 64 {
        return Err(bad());
    }
    Key32::try_fill(|out| {
        for (i, o) in out.iter_mut().enumerate() {
            let (Some(h), Some(l)) = (unhex(hex[2 * i]), unhex(hex[2 * i + 1])) else {
                return Err(bad());
            };
            *o = (h << 4) | l;
        }
        Ok(())
    })
}

/// The export blob of `kek` (deterministic: AES-KW and HMAC have no randomness, which is what
/// lets the format be frozen as a test vector).
pub fn export_blob(
    transport: &Key32,
    kek: &Key32,
    volume_id: &[u8; 16],
    kek_version: u32,
    created: u64,
) -> Result<Vec<u8>, VolumeError> {
    let wrapped = kw::wrap_bound(transport, kek, volume_id, kek_version)?.to_vec();
    let mut blob = KekExport {
        alg: EXPORT_ALG_KW,
        volume_id: *volume_id,
        kek_version,
        created,
        wrapped,
        mac: [0; 32],
    };
    blob.mac = hmac_sha256(&kdf::export_mac_key(transport)?, &blob.mac_input())?;
    Ok(blob.to_bytes())
}

fn refuse_rotation(n_keks: usize) -> Result<(), VolumeError> {
    if n_keks > 1 {
        return Err(VolumeError::Refused(
            "the volume holds more than one KEK (a rotation is unfinished); finish it before \
             exporting or importing"
                .into(),
        ));
    }
    Ok(())
}

/// Exports the active KEK of an unlocked volume.
pub fn export_kek(u: &UnlockedVolume, transport: &Key32) -> Result<Vec<u8>, VolumeError> {
    refuse_rotation(u.info.keks.len())?;
    let keys = &u.keys;
    let v = keys.active_kek_version();
    export_blob(
        transport,
        keys.kek_for(v)?,
        keys.volume_id(),
        v,
        super::init::now_unix(),
    )
}

/// The unwrapped KEK of `blob` if it is for this volume and KEK version and the transport key is
/// right; then the same checks as an unlock (config MAC, root directory). Writes nothing.
pub fn import_kek(
    cipherdir: &Path,
    transport: &Key32,
    blob: &[u8],
) -> Result<UnlockedVolume, VolumeError> {
    let raw = read_config_bytes(cipherdir)?;
    let config = VolumeConfig::parse(&raw).map_err(|e| config_format_error(cipherdir, e))?;
    refuse_rotation(config.keks.len())?;
    let e = KekExport::parse(blob)
        .map_err(|e| VolumeError::Refused(format!("not a valid dekfs KEK export: {e}")))?;
    verify_hmac_sha256(&kdf::export_mac_key(transport)?, &e.mac_input(), &e.mac).map_err(|_| {
        VolumeError::Refused(
            "the export's checksum does not verify: wrong transport key, or the blob was modified"
                .into(),
        )
    })?;
    if e.volume_id != config.volume_id {
        return Err(VolumeError::Refused(format!(
            "the export is of another volume ({}), not this one ({})",
            crate::crypto::keys::hex16(&e.volume_id),
            crate::crypto::keys::hex16(&config.volume_id)
        )));
    }
    let active = config
        .active_kek_version()
        .ok_or_else(|| VolumeError::Corrupt("no active KEK".into()))?;
    if e.kek_version != active {
        return Err(VolumeError::Refused(format!(
            "the export holds KEK version {}, but this copy of the volume uses version {active}",
            e.kek_version
        )));
    }
    let kek = unwrap_export(transport, &e)?;
    let keys = VolumeKeys::from_parts(config.volume_id, vec![(active, kek)], active)?;
    finish_unlock(cipherdir, &raw, &config, keys).map_err(|err| match err {
        VolumeError::Corrupt(w) => {
            VolumeError::Refused(format!("the exported KEK does not open this volume ({w})"))
        }
        other => other,
    })
}

fn unwrap_export(transport: &Key32, e: &KekExport) -> Result<Key32, VolumeError> {
    let wrong =
        || VolumeError::Refused("the wrapped KEK does not unwrap under this transport key".into());
    let plain = match e.alg {
        EXPORT_ALG_KWP => kw::unwrap_padded(transport, &e.wrapped),
        _ => kw::unwrap(transport, &e.wrapped),
    }
    .map_err(|err| match err {
        CryptoError::UnwrapFailed => wrong(),
        other => VolumeError::Crypto(other),
    })?;
    let p = plain.expose();
    if p.len() != 56 {
        return Err(VolumeError::Refused(
            "the wrapped KEK has the wrong length".into(),
        ));
    }
    if p[32..48] != e.volume_id || p[48..56] != u64::from(e.kek_version).to_le_bytes() {
        return Err(VolumeError::Refused(
            "the wrapped KEK names another volume or KEK version than its header".into(),
        ));
    }
    Ok(Key32::try_fill(|out| {
        out.copy_from_slice(&p[..32]);
        Ok::<(), CryptoError>(())
    })?)
}
