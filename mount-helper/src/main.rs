fn main() {
    eprintln!("mount.fuse.dekfs: not implemented yet; use `dekfs mount`");
    std::process::exit(1);
}
