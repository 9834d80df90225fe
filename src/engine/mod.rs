//! Whole-tree work over a cipher directory: one walker (walk.rs) over the
//! layout/ rules and its visitors, fsck first. It must not define naming or
//! metadata rules of its own (that is layout/'s job) and must not know about
//! FUSE.

pub mod cause;
pub mod destroy;
pub mod fsck;
mod quarantine;
pub mod rekey;
mod rekey_io;
pub mod rekey_live;
pub mod renew;
pub mod rotation;
pub mod salvage;
pub mod scan;
pub mod shred;
pub mod source;
pub mod walk;

pub use walk::{Entry, Problem, ProblemKind, Visitor, Walker};
#[cfg(test)]
mod rekey_tests;
#[cfg(test)]
mod tests;
