//! Cryptoperiods: the volume's KEK rotation period (config record kind 5) and how old the
//! active KEK is against it. Setting it is one MAC-covered config rewrite on an unlocked volume.
//! Must NOT rotate anything itself, nor treat the unauthenticated dates of `read_info` as more
//! than a schedule (a forged date only makes a rotation run early or late).

use super::init::now_unix;
use super::manage::rewrite;
use super::{UnlockedVolume, VolumeError, VolumeInfo};
use crate::format::{RotationPeriod, DEFAULT_ROTATION_PERIOD_DAYS};
use std::path::Path;

const DAY: u64 = 86_400;

/// The active KEK against the rotation period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekAge {
    pub kek_version: u32,
    /// Creation time of the active KEK (unix seconds).
    pub created: u64,
    pub period_days: u32,
    /// False when the volume has no period record (the default applies) and none was given.
    pub period_stored: bool,
    /// Whole days since the active KEK was created.
    pub age_days: u64,
    /// When a rotation is due (unix seconds).
    pub due_at: u64,
    /// Whole days until due; zero or negative when due.
    pub due_in_days: i64,
}

impl KekAge {
    pub fn due(&self) -> bool {
        self.due_in_days <= 0
    }

    /// Due for more than a day already.
    pub fn overdue(&self) -> bool {
        self.due_in_days < 0
    }
}

/// Age and due date of the active KEK at `now`; `period_override` (days) wins over the stored
/// period, which wins over the default.
pub fn kek_age(info: &VolumeInfo, period_override: Option<u32>, now: u64) -> KekAge {
    let (kek_version, created) = info
        .keks
        .iter()
        .find(|k| k.2)
        .map_or((0, 0), |k| (k.0, k.1));
    let period_days = period_override
        .or(info.rotation_period_days)
        .unwrap_or(DEFAULT_ROTATION_PERIOD_DAYS);
    let due_at = created.saturating_add(u64::from(period_days) * DAY);
    let due_in_days = if now >= due_at {
        -i64::try_from((now - due_at) / DAY).unwrap_or(i64::MAX)
    } else {
        // Rounded up: due "in 1 day" until the moment it is due.
        i64::try_from((due_at - now).div_ceil(DAY)).unwrap_or(i64::MAX)
    };
    KekAge {
        kek_version,
        created,
        period_days,
        period_stored: period_override.is_none() && info.rotation_period_days.is_some(),
        age_days: now.saturating_sub(created) / DAY,
        due_at,
        due_in_days,
    }
}

/// Stores `days` as the volume's rotation period (1..=36500), replacing any earlier one.
pub fn set_rotation_period(
    cipherdir: &Path,
    u: &UnlockedVolume,
    days: u32,
) -> Result<(), VolumeError> {
    let active = u.keys.active_kek_version();
    let mut record = RotationPeriod::new(days, active, now_unix())
        .map_err(|e| VolumeError::Refused(format!("rotation period of {days} days: {e}")))?;
    rewrite(cipherdir, u, |config| {
        if let Some(old) = &config.rotation_period {
            record.position = old.position;
        }
        config.rotation_period = Some(record);
        if config.record_count() > crate::format::MAX_PROTECTORS {
            return Err(VolumeError::Refused(
                "too many config records (at most 64): remove a protector first".into(),
            ));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(created: u64, period: Option<u32>) -> VolumeInfo {
        VolumeInfo {
            volume_id: [0; 16],
            format_version: 1,
            created: 0,
            keks: vec![(1, 0, false), (2, created, true)],
            protectors: Vec::new(),
            rotation_period_days: period,
        }
    }

    #[test]
    fn due_dates() {
        let t0 = 1_700_000_000;
        let a = kek_age(&info(t0, None), None, t0 + 10 * DAY + 5);
        assert_eq!(
            (a.kek_version, a.period_days, a.period_stored, a.age_days),
            (2, 365, false, 10)
        );
        assert_eq!((a.due_in_days, a.due(), a.overdue()), (355, false, false));
        let a = kek_age(&info(t0, Some(30)), None, t0 + 30 * DAY);
        assert!(a.period_stored && a.due() && !a.overdue());
        assert_eq!(a.due_at, t0 + 30 * DAY);
        let a = kek_age(&info(t0, Some(30)), None, t0 + 32 * DAY);
        assert!(a.overdue());
        assert_eq!(a.due_in_days, -2);
        let a = kek_age(&info(t0, Some(30)), Some(7), t0 + DAY);
        assert_eq!(
            (a.period_days, a.period_stored, a.due_in_days),
            (7, false, 6)
        );
        // A KEK dated in the future (clock skew, forged date) is simply not due.
        let a = kek_age(&info(u64::MAX, None), None, t0);
        assert!(!a.due() && a.age_days == 0);
    }
}
