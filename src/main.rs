//! dekfs binary entry point; all behaviour lives in `dekfs::cli`.
#![deny(unsafe_code)]

fn main() {
    std::process::exit(dekfs::cli::main());
}
