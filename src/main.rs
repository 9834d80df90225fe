//! dekfs binary entry point; all behaviour lives in `dekfs::cli`.

fn main() {
    std::process::exit(dekfs::cli::main());
}
