//! Test harness for the integration tests that drive the real `dekfs` binary
//! and real FUSE mounts. It must stay a harness: no assertions about dekfs
//! behaviour beyond the checks each helper documents.
//!
//! Every test makes its own [`TestVolume`] in its own temporary directory, so
//! tests of one binary run in parallel. Dropping a `TestVolume` always
//! unmounts it (`dekfs umount`, then `fusermount3 -uz`, then `umount -l`), so
//! a failing test never leaves a mount behind, and then removes its
//! directory (tmpfs unmounted first), so a run leaves nothing in /tmp.
//!
//! Tests that need FUSE start with `require_fuse!();`: it returns early (with
//! a printed message) only when `/dev/fuse` is missing or the test does not
//! run as root. On CI and on the project machine they run.
//!
//! One file per concern, all re-exported here (tests `use common::*`):
//! cmd (running the CLI), mounts (mountinfo, daemon processes and their
//! descriptors), wait (polling), volumes (TestVolume: make, mount, unmount,
//! clean up), fsck (fsck of a TestVolume), backing (the cipher tree: listings,
//! sizes, bit flips), files (syscall helpers, test data).
#![allow(dead_code)]

mod backing;
mod cmd;
mod files;
mod fsck;
mod mounts;
mod procmem;
mod volumes;
mod wait;

// Each test binary uses a different part of the harness.
#[allow(unused_imports)]
pub use backing::*;
#[allow(unused_imports)]
pub use cmd::*;
#[allow(unused_imports)]
pub use files::*;
#[allow(unused_imports)]
pub use mounts::*;
#[allow(unused_imports)]
pub use procmem::*;
#[allow(unused_imports)]
pub use volumes::*;
#[allow(unused_imports)]
pub use wait::*;

use std::path::Path;
use std::time::Duration;

/// The binary under test.
pub const DEKFS: &str = env!("CARGO_BIN_EXE_dekfs");

/// Fast KDF parameters for tests (the defaults cost 64 MiB and t=3).
pub const FAST_KDF: [&str; 6] = [
    "--kdf-memory",
    "8192",
    "--kdf-time",
    "1",
    "--kdf-lanes",
    "1",
];

/// Time limit for one CLI command (init, mount, umount, status...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(45);

/// On-disk format constants (docs/FORMAT.md).
pub const HEADER_LEN: u64 = 216;
pub const BLOCK_PLAIN: u64 = 4096;
pub const BLOCK_OVERHEAD: u64 = 12 + 16;
pub const BLOCK_CIPHER: u64 = BLOCK_PLAIN + BLOCK_OVERHEAD;
pub const DIR_META: &str = "dekfs.dir";
pub const DIR_META_LEN: u64 = 224;
pub const CONF: &str = "dekfs.conf";
/// The volume lock file a mount leaves in the cipher root (see FORMAT.md).
pub const VOLUME_LOCK: &str = "dekfs.lock";
/// The config writers' lock file (see FORMAT.md).
pub const CONFIG_LOCK: &str = "dekfs.conf.lock";

/// True for the cipher-root files that are not entries: config, key file, locks.
pub fn is_root_meta(name: &str) -> bool {
    [CONF, DIR_META, VOLUME_LOCK, CONFIG_LOCK].contains(&name)
}

/// Exit codes of the CLI contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const WRONG_KEY: i32 = 10;
    pub const TPM_POLICY: i32 = 11;
    pub const NOT_A_VOLUME: i32 = 12;
    pub const UNSUPPORTED: i32 = 13;
    pub const CORRUPT: i32 = 14;
    pub const MOUNT_FAILED: i32 = 15;
    pub const IO: i32 = 16;
    pub const ROLLBACK: i32 = 17;
}

/// `true` when real FUSE mounts can be made here (root and /dev/fuse).
pub fn fuse_available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    Ok(())
}

/// Return early from a test (with a message) when FUSE mounts are impossible.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Err(why) = $crate::common::fuse_available() {
            eprintln!("SKIPPED (needs root and /dev/fuse): {why}");
            return;
        }
    };
}
