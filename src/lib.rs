//! dekfs: a transparent encrypting filesystem with per-file DEKs, per-directory
//! keys and a rotatable, protector-wrapped KEK. This crate root only wires
//! modules together; it must not contain logic.
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod crypto;
pub mod format;
pub mod secret;
pub mod volume;

pub mod cli;
pub mod fs;
pub mod fsck;
pub mod fuse_adapter;
pub mod logger;
pub mod sys;
pub mod tpm;
