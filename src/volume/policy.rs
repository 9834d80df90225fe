//! Local unlock-cost policy: how much Argon2 work one unlock may do before the config MAC can be
//! checked. The config is unauthenticated until a KEK is found, so its KDF parameters and record
//! count are attacker-chosen; this caps them by what this machine would choose itself. Must NOT
//! run a KDF or read volume files (only /proc/meminfo and the override variable).

use super::{KdfParams, VolumeError};

/// Environment override (any non-empty value other than `0`): lifts the local policy to the
/// format's own bounds, like `--allow-kdf-cost`.
pub const ALLOW_KDF_COST_ENV: &str = "DEKFS_ALLOW_KDF_COST";

/// Memory cap regardless of RAM: 16 times init's default.
const MAX_M_KIB: u32 = 1024 * 1024;
/// Time cap: init's default t=3 with headroom for a deliberately slower volume.
const MAX_T: u32 = 16;
/// Passphrase (or recovery) records of the active KEK tried per unlock; a legitimate volume has
/// one per protector, and nobody types one passphrase for more than a few protectors.
const MAX_RECORDS: usize = 4;
/// Records of retiring KEKs opened after the active one (a rotation in progress has one).
const MAX_RETIRING: usize = 2;

/// The limits one unlock runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockPolicy {
    pub max_m_cost_kib: u32,
    pub max_t_cost: u32,
    pub max_p_lanes: u32,
    /// Candidate records of the credential's kind (active KEK) that are tried at most.
    pub max_records: usize,
    /// Records of retiring KEKs unwrapped at most.
    pub max_retiring: usize,
    /// True when the limits were lifted by the user.
    pub overridden: bool,
}

impl UnlockPolicy {
    /// This machine's policy: at most 1 GiB and half of the available RAM (never below init's
    /// default, so a volume made here with defaults always opens), t ≤ 16, init's lane cap.
    pub fn local() -> UnlockPolicy {
        let half_avail =
            mem_available_kib().map_or(MAX_M_KIB, |k| (k / 2).min(u64::from(u32::MAX)) as u32);
        UnlockPolicy {
            max_m_cost_kib: MAX_M_KIB
                .min(half_avail)
                .max(KdfParams::default().m_cost_kib),
            max_t_cost: MAX_T,
            max_p_lanes: crate::format::ARGON2_P_MAX,
            max_records: MAX_RECORDS,
            max_retiring: MAX_RETIRING,
            overridden: false,
        }
    }

    /// The format's own bounds and every record: what `--allow-kdf-cost` asks for.
    pub fn unlimited() -> UnlockPolicy {
        UnlockPolicy {
            max_m_cost_kib: crate::format::ARGON2_M_MAX_KIB,
            max_t_cost: crate::format::ARGON2_T_MAX,
            max_p_lanes: crate::format::ARGON2_P_MAX,
            max_records: usize::MAX,
            max_retiring: usize::MAX,
            overridden: true,
        }
    }

    /// `local()`, or `unlimited()` when `allow` or `$DEKFS_ALLOW_KDF_COST` says so.
    pub fn from_env(allow: bool) -> UnlockPolicy {
        let env = std::env::var(ALLOW_KDF_COST_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        if allow || env {
            UnlockPolicy::unlimited()
        } else {
            UnlockPolicy::local()
        }
    }

    /// Refuses parameters above this policy, naming them and the limit.
    pub fn check(&self, p: &KdfParams) -> Result<(), VolumeError> {
        if p.m_cost_kib <= self.max_m_cost_kib
            && p.t_cost <= self.max_t_cost
            && p.p_lanes <= self.max_p_lanes
        {
            return Ok(());
        }
        Err(VolumeError::Refused(format!(
            "passphrase KDF cost above this machine's unlock limit: m_cost={} KiB, t_cost={}, \
             p_lanes={} (limit m ≤ {} KiB, t ≤ {}, p ≤ {}); the config is not authenticated \
             before the KDF runs, so an edited one could exhaust memory or time. If the volume \
             was made this way on purpose, retry with --allow-kdf-cost or {}=1",
            p.m_cost_kib,
            p.t_cost,
            p.p_lanes,
            self.max_m_cost_kib,
            self.max_t_cost,
            self.max_p_lanes,
            ALLOW_KDF_COST_ENV
        )))
    }
}

/// MemAvailable from /proc/meminfo, in KiB.
fn mem_available_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_policy_admits_init_defaults_and_refuses_format_maxima() {
        let p = UnlockPolicy::local();
        assert!(p.check(&KdfParams::default()).is_ok());
        assert!(p.max_m_cost_kib <= MAX_M_KIB && !p.overridden);
        let huge = KdfParams {
            m_cost_kib: crate::format::ARGON2_M_MAX_KIB,
            t_cost: 64,
            p_lanes: 4,
        };
        let msg = p.check(&huge).unwrap_err().to_string();
        assert!(msg.contains("m_cost=4194304 KiB, t_cost=64"), "{msg}");
        assert!(
            msg.contains(&format!("limit m ≤ {} KiB, t ≤ 16", p.max_m_cost_kib)),
            "{msg}"
        );
        assert!(msg.contains("--allow-kdf-cost"), "{msg}");
        let slow = KdfParams {
            m_cost_kib: 8192,
            t_cost: 17,
            p_lanes: 1,
        };
        assert!(p.check(&slow).is_err());
        assert!(UnlockPolicy::unlimited().check(&huge).is_ok());
    }

    #[test]
    fn meminfo_parses() {
        assert!(mem_available_kib().is_some_and(|k| k > 0));
    }
}
