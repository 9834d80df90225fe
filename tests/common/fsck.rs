//! `dekfs fsck` of a TestVolume. Must not repair anything unless a test asks.

use std::ffi::OsStr;

use super::*;

impl TestVolume {
    /// `dekfs fsck` of the (unmounted) volume with its passfile.
    pub fn fsck(&self) -> Out {
        dekfs([
            OsStr::new("fsck"),
            self.cipher.as_os_str(),
            OsStr::new("--passfile"),
            self.passfile.as_os_str(),
        ])
    }

    /// Panics, with fsck's output, unless `dekfs fsck` finds the volume clean.
    #[track_caller]
    pub fn assert_fsck_clean(&self, when: &str) {
        let out = self.fsck();
        assert!(out.ok(), "fsck {when}:\n{}{}", out.stdout, out.stderr);
    }
}
