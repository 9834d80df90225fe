//! mount(8) helper for `mount -t fuse.dekfs` and fstab lines, installed as
//! /sbin/mount.fuse.dekfs: translates mount(8)'s argument convention
//! (`SRC MNT [-o OPTS] [-n] [-s] [-f] [-v] ...`) into `dekfs mount SRC MNT
//! -o OPTS` and execs it. It must not unlock, read credentials or parse
//! options with a grammar of its own: options are checked by
//! `dekfs::mount_opts` so an unknown one fails here, naming it.

mod args;

use args::{HelperArgs, ParseOutcome};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit code for a usage error, as dekfs's own (docs/CLI-ABI.md).
const USAGE: i32 = 2;
/// Where the installer puts dekfs unless the build says otherwise.
const DEFAULT_DEKFS: &str = match option_env!("DEKFS_BIN") {
    Some(p) => p,
    None => "/usr/local/bin/dekfs",
};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match args::parse(&argv) {
        Ok(ParseOutcome::Run(a)) => a,
        Ok(ParseOutcome::Help) => {
            print!("{}", args::USAGE_TEXT);
            return;
        }
        Err(msg) => fail(USAGE, &msg),
    };
    if let Err(e) = dekfs::mount_opts::MountOptions::parse(&a.options) {
        fail(USAGE, &e.to_string());
    }
    if a.fake {
        // mount -f: everything checked, nothing mounted.
        return;
    }
    let dekfs = find_dekfs().unwrap_or_else(|| {
        fail(
            1,
            &format!("cannot find the dekfs binary (next to this helper, {DEFAULT_DEKFS} or PATH)"),
        )
    });
    let err = command(&dekfs, &a).exec();
    fail(1, &format!("cannot run {}: {err}", dekfs.display()));
}

fn command(dekfs: &Path, a: &HelperArgs) -> Command {
    let mut c = Command::new(dekfs);
    c.arg("mount").arg(&a.source).arg(&a.mountpoint);
    if !a.options.is_empty() {
        c.arg("-o").arg(a.options.join(","));
    }
    c
}

/// dekfs next to the helper's real file (a build tree, or a package that
/// installs both in one place), then the compile-time path, then PATH.
fn find_dekfs() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dekfs")));
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("dekfs")).collect())
        .unwrap_or_default();
    beside
        .into_iter()
        .chain([
            PathBuf::from(DEFAULT_DEKFS),
            PathBuf::from("/usr/bin/dekfs"),
        ])
        .chain(path_dirs)
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("mount.fuse.dekfs: {msg}");
    std::process::exit(code);
}
