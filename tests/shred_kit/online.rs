//! Running `dekfs shred` against a mounted volume from the online shred
//! tests. It must not arm failpoints.

use crate::common::*;
use std::ffi::OsStr;

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `dekfs shred ARGS... --yes`.
pub fn shred_online(args: &[&OsStr]) -> Out {
    let mut a: Vec<&OsStr> = vec![OsStr::new("shred")];
    a.extend(args);
    a.push(OsStr::new("--yes"));
    dekfs(a)
}
