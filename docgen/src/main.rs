//! Build-time tool run by scripts/install.sh: writes dekfs's man pages and
//! bash/zsh/fish completions from the CLI definitions (`dekfs::cli::command`)
//! into a directory. It must not run in, or be linked into, dekfs or the
//! mount helper; pages that have no clap definition are in `pages.rs`.

mod pages;

use clap::Command;
use clap_complete::Shell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dekfs-docgen OUTDIR  (writes OUTDIR/man/manN/*, OUTDIR/completions/*)");
        std::process::exit(2);
    };
    if let Err(e) = generate(&out) {
        eprintln!("dekfs-docgen: {}: {e}", out.display());
        std::process::exit(1);
    }
}

fn generate(out: &Path) -> io::Result<()> {
    let mut cmd = dekfs::cli::command();
    cmd.build();
    let man1 = out.join("man/man1");
    fs::create_dir_all(&man1)?;
    man_pages(&cmd, "dekfs", &man1)?;
    for (section, name, text) in pages::STATIC {
        let dir = out.join(format!("man/man{section}"));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("{name}.{section}")), text)?;
    }
    let comp = out.join("completions");
    fs::create_dir_all(&comp)?;
    for (shell, file) in [
        (Shell::Bash, "dekfs.bash"),
        (Shell::Zsh, "_dekfs"),
        (Shell::Fish, "dekfs.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "dekfs", &mut buf);
        fs::write(comp.join(file), buf)?;
    }
    Ok(())
}

/// dekfs(1) lists every subcommand; each gets its own dekfs-SUB(1), nested
/// ones dekfs-SUB-SUB(1), as git and cargo do.
fn man_pages(cmd: &Command, name: &str, dir: &Path) -> io::Result<()> {
    let page = cmd
        .clone()
        .name(name.to_owned())
        .bin_name(name.replace('-', " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    fs::write(dir.join(format!("{name}.1")), buf)?;
    for sub in cmd.get_subcommands() {
        man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
