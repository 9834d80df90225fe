//! mount(8)'s helper argument convention, parsed by hand: `SRC MNT` and the
//! flags mount(8) and libmount pass (`-o OPTS`, `-n`, `-s`, `-f`, `-v`,
//! `-r`, `-w`, `-t TYPE`, `-N NS`). It must not interpret the option list;
//! that is `dekfs::mount_opts`'s job.

pub const USAGE_TEXT: &str = "\
usage: mount.fuse.dekfs CIPHERDIR MOUNTPOINT [-o OPTIONS] [-n] [-s] [-f] [-v]
Mounts a dekfs volume for mount(8) and /etc/fstab (type fuse.dekfs) by
running `dekfs mount CIPHERDIR MOUNTPOINT -o OPTIONS`; see mount.fuse.dekfs(8).
";

pub struct HelperArgs {
    pub source: String,
    pub mountpoint: String,
    /// Every option of every `-o`, split at commas, in order.
    pub options: Vec<String>,
    /// `-f`: check everything, mount nothing.
    pub fake: bool,
}

pub enum ParseOutcome {
    Run(HelperArgs),
    Help,
}

pub fn parse(argv: &[String]) -> Result<ParseOutcome, String> {
    let mut pos = Vec::new();
    let mut options = Vec::new();
    let mut fake = false;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(ParseOutcome::Help),
            "-o" => {
                let v = it.next().ok_or("-o needs an option list")?;
                options.extend(split(v));
            }
            s if s.starts_with("-o") => options.extend(split(&s[2..])),
            // -n: no /etc/mtab to write; -s: sloppy, which here loosens
            // nothing (an unknown dekfs option is still an error); -v: dekfs
            // prints nothing on success anyway.
            "-n" | "-s" | "-v" => {}
            "-f" => fake = true,
            "-r" => options.push("ro".into()),
            "-w" => options.push("rw".into()),
            "-t" => {
                let t = it.next().ok_or("-t needs a type")?;
                if !matches!(t.as_str(), "fuse.dekfs" | "dekfs") {
                    return Err(format!("this helper mounts fuse.dekfs, not {t}"));
                }
            }
            "-N" => return Err("-N (mount namespace) is not supported".into()),
            "--" => pos.extend(it.by_ref().cloned()),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown argument `{s}`"));
            }
            s => pos.push(s.to_owned()),
        }
    }
    let [source, mountpoint]: [String; 2] = pos
        .try_into()
        .map_err(|_| format!("expected CIPHERDIR MOUNTPOINT\n{USAGE_TEXT}"))?;
    Ok(ParseOutcome::Run(HelperArgs {
        source,
        mountpoint,
        options,
        fake,
    }))
}

fn split(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',').filter(|s| !s.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<HelperArgs, String> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&v)? {
            ParseOutcome::Run(a) => Ok(a),
            ParseOutcome::Help => Err("help".into()),
        }
    }

    #[test]
    fn mount_8_conventions() {
        let a = run(&["/c", "/m", "-o", "rw,nofail", "-n", "-s", "-v", "-oro"]).unwrap();
        assert_eq!((a.source.as_str(), a.mountpoint.as_str()), ("/c", "/m"));
        assert_eq!(a.options, ["rw", "nofail", "ro"]);
        assert!(!a.fake);
        let a = run(&["-f", "-r", "/c", "/m", "-t", "fuse.dekfs"]).unwrap();
        assert!(a.fake);
        assert_eq!(a.options, ["ro"]);
    }

    #[test]
    fn malformed_invocations_are_refused() {
        for bad in [
            &["/c"][..],
            &["/c", "/m", "/x"],
            &["/c", "/m", "-o"],
            &["/c", "/m", "-t", "ext4"],
            &["/c", "/m", "-N", "/proc/1/ns/mnt"],
            &["/c", "/m", "--bogus"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }
}
