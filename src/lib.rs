//! dekfs: a transparent encrypting filesystem with per-file DEKs, per-directory
//! keys and a rotatable, protector-wrapped KEK. This crate root only wires
//! modules together; it must not contain logic.
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod audit;
pub mod crypto;
pub mod format;
pub mod layout;
pub mod secret;
pub mod volume;

pub mod cli;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod failpoint;
pub mod fs;
pub mod fuse_adapter;
pub mod kmip;
pub mod logger;
pub mod mount_opts;
pub mod sys;
pub mod tpm;
