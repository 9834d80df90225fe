//! libFuzzer entry for the `ttlv` target; the body lives in src/lib.rs so the
//! stable harness runs the same code. Must not contain logic of its own.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dekfs_fuzz::ttlv(data));
