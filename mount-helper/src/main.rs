//! mount(8) helper for `mount -t fuse.dekfs` (stub until its own issue): it
//! must only translate mount(8)'s argument convention into `dekfs mount`.

fn main() {
    eprintln!("mount.fuse.dekfs: not implemented yet; use `dekfs mount CIPHERDIR MOUNTPOINT`");
    std::process::exit(1);
}
