//! Builds the FUSE session for a mount: the adapter over the shared core,
//! fuser's configuration, and the mount itself (mount(2) as root, so the
//! type reads `fuse.dekfs`; fusermount3 otherwise). It must not serve
//! requests; the caller runs the session once everything else is ready.

use super::{kmount, DaemonConfig, DaemonError};
use crate::fs::policy::MountPolicy;
use crate::fs::CoreFs;
use crate::fuse_adapter::DekFuse;
use crate::mount_opts::{Access, MountOptions};
use fuser::{MountOption, SessionACL};
use std::sync::Arc;

pub fn build(
    cfg: &DaemonConfig,
    core: Arc<CoreFs>,
) -> Result<fuser::Session<DekFuse>, DaemonError> {
    let o = &cfg.options;
    let acl = match o.access {
        Access::Owner => SessionACL::Owner,
        Access::OwnerAndRoot => SessionACL::RootAndOwner,
        Access::All => SessionACL::All,
    };
    let mut config = fuser::Config::default();
    config.acl = acl;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // The kernel hands each request to the worker that has waited longest,
    // so surplus workers only make requests land on cache-cold threads;
    // one more than the cores leaves a worker for the asynchronous RELEASE
    // (measurements in docs/design/daemon.md).
    config.n_threads = Some(cfg.threads.unwrap_or(cores + 1).clamp(1, 64));
    config.clone_fd = true;
    let fs = DekFuse {
        core,
        policy: MountPolicy {
            writeback_cache: o.writeback_cache,
            xattr: o.xattr,
        },
    };
    let mnt = &cfg.mountpoint;
    let mount_err =
        |e: std::io::Error| DaemonError::Mount(format!("cannot mount at {}: {e}", mnt.display()));
    if rustix::process::geteuid().is_root() {
        let fd = kmount::mount(&cfg.cipherdir, mnt, o).map_err(mount_err)?;
        fuser::Session::from_fd(fs, fd, acl, config).map_err(mount_err)
    } else {
        config.mount_options = fusermount_options(&cfg.cipherdir.display().to_string(), o);
        fuser::Session::new(fs, mnt, &config).map_err(mount_err)
    }
}

/// The options fusermount3 gets for a non-root mount (it adds allow_other
/// itself from the ACL).
fn fusermount_options(fsname: &str, o: &MountOptions) -> Vec<MountOption> {
    let mut v = vec![
        MountOption::FSName(fsname.to_owned()),
        MountOption::Subtype("dekfs".into()),
    ];
    v.extend(o.passthrough.iter().map(|s| match s.as_str() {
        "ro" => MountOption::RO,
        s => MountOption::CUSTOM(s.to_owned()),
    }));
    if o.default_permissions {
        v.push(MountOption::DefaultPermissions);
    }
    if o.suid {
        v.push(MountOption::Suid);
    }
    if o.dev {
        v.push(MountOption::Dev);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusermount_sees_generic_options_and_ours_as_flags() {
        let o = MountOptions::parse_str("ro,noexec,allow_other,suid,noxattr,nofail").unwrap();
        let v = fusermount_options("/c", &o);
        assert_eq!(
            v,
            vec![
                MountOption::FSName("/c".into()),
                MountOption::Subtype("dekfs".into()),
                MountOption::RO,
                MountOption::CUSTOM("noexec".into()),
                MountOption::DefaultPermissions,
                MountOption::Suid,
            ]
        );
    }
}
