//! The one grammar of dekfs mount options (`dekfs mount -o`, fstab, the
//! mount helper): parses the option list into a typed `MountOptions`. It must
//! not read files, unlock anything or talk to the kernel; callers act on the
//! result, and an option it does not know is an error naming it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Mount flags the kernel understands, as the values of mount(2)'s flags.
pub mod flag {
    pub const RDONLY: u64 = libc::MS_RDONLY;
    pub const NOEXEC: u64 = libc::MS_NOEXEC;
    pub const NOATIME: u64 = libc::MS_NOATIME;
    pub const NODIRATIME: u64 = libc::MS_NODIRATIME;
    pub const RELATIME: u64 = libc::MS_RELATIME;
    pub const SYNCHRONOUS: u64 = libc::MS_SYNCHRONOUS;
    pub const DIRSYNC: u64 = libc::MS_DIRSYNC;
}

/// Who besides the mount's owner may enter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    Owner,
    OwnerAndRoot,
    All,
}

/// Which credential unlocks the volume (`keysource=`); `Auto` when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeySourceOpt {
    /// The TPM first, then `passfile=` or the terminal (the behaviour of `dekfs mount`).
    #[default]
    Auto,
    /// The TPM; when it refuses, ask for the passphrase unless `nofail` or
    /// `headless`.
    Tpm,
    /// `passfile=` or the terminal; never the TPM.
    Passphrase,
    /// The terminal, else `systemd-ask-password`; never the TPM.
    Ask,
    /// The recovery key, from the file `passfile=` names, else asked for.
    Recovery,
    /// The KMIP key manager; when it refuses, ask for the passphrase unless `nofail` or
    /// `headless`.
    Kmip,
}

/// A parsed option list. Later options override earlier ones (`ro,rw` is rw).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub access: Access,
    /// The kernel checks permissions; implied by `allow_other` because the
    /// daemon would otherwise let every user do what its own uid may.
    pub default_permissions: bool,
    pub read_only: bool,
    pub suid: bool,
    pub dev: bool,
    pub writeback_cache: bool,
    /// False with `noxattr`.
    pub xattr: bool,
    /// Read the passphrase from this file, as `--passfile` does.
    pub passfile: Option<PathBuf>,
    /// `keysource=`.
    pub keysource: KeySourceOpt,
    /// `idle=DURATION`: unmount after this long without a request.
    pub idle: Option<Duration>,
    /// `nofail`: boot goes on without this mount, so never wait for a person.
    pub nofail: bool,
    /// `headless`: never wait for a person either. systemd drops `nofail`
    /// (and `auto`/`noauto`) before it runs mount(8), so a mount unit only
    /// reaches the helper with this one.
    pub headless: bool,
    /// `tpm_tcti=` / `tcti=`, rejoined across the commas it contains.
    pub tcti: Option<String>,
    /// mount(2) flags from generic options (`noexec`, `noatime`, ...).
    pub kernel_flags: u64,
    /// Generic options the kernel (or fusermount3) takes as they are:
    /// `exec`, `nodev`, `max_read=N`, ... in the order given.
    pub passthrough: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptError {
    /// An option nobody knows; holds it as given.
    Unknown(String),
    /// A known option with a missing or malformed value.
    BadValue(String),
}

impl fmt::Display for OptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptError::Unknown(o) => write!(f, "unknown mount option `{o}`"),
            OptError::BadValue(o) if o.ends_with('=') => {
                write!(f, "mount option `{o}` needs a value")
            }
            OptError::BadValue(o) => write!(f, "mount option `{o}` has a malformed value"),
        }
    }
}

impl std::error::Error for OptError {}

/// Options that only fstab, mount(8) or systemd act on; the kernel never sees them.
const BOOKKEEPING: &[&str] = &[
    "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "owner", "group",
    "comment",
];

/// Key prefixes that continue a TCTI after its first comma (`swtpm:host=H,port=N`).
const TCTI_PARTS: &[&str] = &["host=", "port=", "path="];

impl MountOptions {
    /// Parses a comma-separated string (`"ro,passfile=/k"`); empty parts are skipped.
    pub fn parse_str(s: &str) -> Result<MountOptions, OptError> {
        Self::parse(&s.split(',').collect::<Vec<_>>())
    }

    /// Parses options already split at commas (as clap and mount(8) hand them over).
    pub fn parse<S: AsRef<str>>(opts: &[S]) -> Result<MountOptions, OptError> {
        let mut o = MountOptions {
            xattr: true,
            ..Default::default()
        };
        let mut in_tcti = false;
        for raw in opts {
            let opt = raw.as_ref().trim();
            if opt.is_empty() {
                continue;
            }
            if in_tcti && TCTI_PARTS.iter().any(|p| opt.starts_with(p)) {
                if let Some(t) = o.tcti.as_mut() {
                    t.push(',');
                    t.push_str(opt);
                }
                continue;
            }
            in_tcti = false;
            if let Some(v) = opt
                .strip_prefix("tpm_tcti=")
                .or_else(|| opt.strip_prefix("tcti="))
            {
                o.tcti = Some(nonempty(opt, v)?.to_owned());
                in_tcti = true;
                continue;
            }
            o.apply(opt)?;
        }
        Ok(o)
    }

    fn apply(&mut self, opt: &str) -> Result<(), OptError> {
        match opt {
            "allow_other" => {
                self.access = Access::All;
                self.default_permissions = true;
            }
            "allow_root" => self.access = Access::OwnerAndRoot,
            "default_permissions" => self.default_permissions = true,
            "ro" => {
                self.read_only = true;
                self.kernel_flags |= flag::RDONLY;
            }
            "rw" => {
                self.read_only = false;
                self.kernel_flags &= !flag::RDONLY;
            }
            "suid" => self.suid = true,
            "nosuid" => self.suid = false,
            "dev" => self.dev = true,
            "nodev" => self.dev = false,
            "writeback_cache" => self.writeback_cache = true,
            "noxattr" => self.xattr = false,
            "noexec" => self.kernel_flags |= flag::NOEXEC,
            "exec" => self.kernel_flags &= !flag::NOEXEC,
            "noatime" => self.kernel_flags |= flag::NOATIME,
            "relatime" => self.kernel_flags |= flag::RELATIME,
            "nodiratime" => self.kernel_flags |= flag::NODIRATIME,
            "sync" => self.kernel_flags |= flag::SYNCHRONOUS,
            "dirsync" => self.kernel_flags |= flag::DIRSYNC,
            "atime" | "async" | "diratime" => {}
            "nofail" => {
                self.nofail = true;
                return Ok(());
            }
            "headless" => {
                self.headless = true;
                return Ok(());
            }
            s if BOOKKEEPING.contains(&s) || s.starts_with("x-") || s.starts_with("comment=") => {
                return Ok(())
            }
            s => {
                if let Some(v) = s.strip_prefix("passfile=") {
                    self.passfile = Some(PathBuf::from(nonempty(s, v)?));
                    return Ok(());
                }
                if let Some(v) = s.strip_prefix("keysource=") {
                    self.keysource = match v {
                        "tpm" => KeySourceOpt::Tpm,
                        "passphrase" => KeySourceOpt::Passphrase,
                        "ask" => KeySourceOpt::Ask,
                        "recovery" => KeySourceOpt::Recovery,
                        "kmip" => KeySourceOpt::Kmip,
                        _ => return Err(OptError::BadValue(s.to_owned())),
                    };
                    return Ok(());
                }
                if let Some(v) = s.strip_prefix("idle=") {
                    let d = parse_duration(v).ok_or_else(|| OptError::BadValue(s.to_owned()))?;
                    self.idle = Some(d);
                    return Ok(());
                }
                let numeric = ["max_read=", "blksize="]
                    .iter()
                    .find_map(|p| s.strip_prefix(p));
                match numeric {
                    Some(v) if v.parse::<u32>().is_ok() => {}
                    Some(_) => return Err(OptError::BadValue(s.to_owned())),
                    None => return Err(OptError::Unknown(s.to_owned())),
                }
            }
        }
        // What reached here is a generic option fusermount3 must see too.
        if !matches!(
            opt,
            "allow_other"
                | "allow_root"
                | "default_permissions"
                | "suid"
                | "dev"
                | "writeback_cache"
                | "noxattr"
        ) {
            self.passthrough.push(opt.to_owned());
        }
        Ok(())
    }

    /// The data string options of mount(2) for a FUSE mount, besides fd/rootmode/ids.
    pub fn kernel_data(&self) -> Vec<String> {
        let mut d = Vec::new();
        if self.access != Access::Owner {
            d.push("allow_other".to_owned());
        }
        if self.default_permissions {
            d.push("default_permissions".to_owned());
        }
        d.extend(
            self.passthrough
                .iter()
                .filter(|s| s.starts_with("max_read=") || s.starts_with("blksize="))
                .cloned(),
        );
        d
    }
}

/// `90`, `90s`, `15min`, `2h`, `1d` (systemd's spellings of one unit);
/// zero and overflow are malformed.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    let secs = n.checked_mul(mult)?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn nonempty<'a>(opt: &str, v: &'a str) -> Result<&'a str, OptError> {
    if v.is_empty() {
        Err(OptError::BadValue(opt.to_owned()))
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MountOptions, OptError> {
        MountOptions::parse_str(s)
    }

    #[test]
    fn accepted_options_set_the_right_fields() {
        let base = parse("").unwrap();
        type Check = fn(&MountOptions) -> bool;
        let table: &[(&str, Check)] = &[
            ("allow_other", |o| {
                o.access == Access::All && o.default_permissions
            }),
            ("allow_root", |o| o.access == Access::OwnerAndRoot),
            ("default_permissions", |o| o.default_permissions),
            ("ro", |o| o.read_only && o.kernel_flags & flag::RDONLY != 0),
            ("ro,rw", |o| {
                !o.read_only && o.kernel_flags & flag::RDONLY == 0
            }),
            ("suid", |o| o.suid),
            ("suid,nosuid", |o| !o.suid),
            ("dev", |o| o.dev),
            ("writeback_cache", |o| o.writeback_cache),
            ("noxattr", |o| !o.xattr),
            ("noexec", |o| o.kernel_flags == flag::NOEXEC),
            ("noexec,exec", |o| o.kernel_flags == 0),
            ("noatime,nodiratime", |o| {
                o.kernel_flags == flag::NOATIME | flag::NODIRATIME
            }),
            ("relatime", |o| o.kernel_flags == flag::RELATIME),
            ("passfile=/etc/k", |o| {
                o.passfile.as_deref() == Some(std::path::Path::new("/etc/k"))
            }),
            ("tcti=device:/dev/tpmrm0", |o| {
                o.tcti.as_deref() == Some("device:/dev/tpmrm0")
            }),
            ("keysource=tpm", |o| o.keysource == KeySourceOpt::Tpm),
            ("keysource=passphrase", |o| {
                o.keysource == KeySourceOpt::Passphrase
            }),
            ("keysource=ask", |o| o.keysource == KeySourceOpt::Ask),
            ("keysource=kmip", |o| o.keysource == KeySourceOpt::Kmip),
            ("keysource=recovery", |o| {
                o.keysource == KeySourceOpt::Recovery
            }),
            ("idle=15min", |o| o.idle == Some(Duration::from_secs(900))),
            ("idle=90", |o| o.idle == Some(Duration::from_secs(90))),
            ("nofail", |o| o.nofail),
            ("headless", |o| o.headless),
            ("max_read=131072", |o| {
                o.kernel_data() == ["max_read=131072"]
            }),
        ];
        for (opts, check) in table {
            let o = parse(opts).unwrap_or_else(|e| panic!("{opts}: {e}"));
            assert!(check(&o), "{opts}: {o:?}");
            assert_ne!(o, base, "{opts} changed nothing");
        }
    }

    #[test]
    fn generic_options_are_accepted_and_change_nothing_of_ours() {
        for opt in [
            "defaults",
            "auto",
            "noauto",
            "nofail",
            "_netdev",
            "user",
            "users",
            "nouser",
            "owner",
            "group",
            "x-systemd.automount",
            "x-gvfs-hide",
            "comment=x",
            "rw",
            "nosuid",
            "nodev",
            "exec",
            "atime",
            "async",
        ] {
            let o = parse(opt).unwrap_or_else(|e| panic!("{opt}: {e}"));
            assert_eq!(o.access, Access::Owner, "{opt}");
            assert!(!o.read_only && !o.suid && !o.dev && o.xattr, "{opt}");
            assert_eq!(
                (o.kernel_flags, o.passfile, o.tcti),
                (0, None, None),
                "{opt}"
            );
        }
    }

    #[test]
    fn unknown_or_malformed_options_are_named() {
        let table = [
            ("bogus", OptError::Unknown("bogus".into())),
            ("ro,bogus=1,rw", OptError::Unknown("bogus=1".into())),
            ("passfile", OptError::Unknown("passfile".into())),
            ("passfile=", OptError::BadValue("passfile=".into())),
            ("tcti=", OptError::BadValue("tcti=".into())),
            ("max_read=lots", OptError::BadValue("max_read=lots".into())),
            (
                "keysource=yubikey",
                OptError::BadValue("keysource=yubikey".into()),
            ),
            ("keysource=", OptError::BadValue("keysource=".into())),
            ("idle=0", OptError::BadValue("idle=0".into())),
            ("idle=5y", OptError::BadValue("idle=5y".into())),
            ("idle=", OptError::BadValue("idle=".into())),
            (
                "idle=99999999999999999d",
                OptError::BadValue("idle=99999999999999999d".into()),
            ),
            // A TCTI part outside a TCTI is not an option of ours.
            ("port=2321", OptError::Unknown("port=2321".into())),
        ];
        for (opts, want) in table {
            assert_eq!(parse(opts), Err(want.clone()), "{opts}");
        }
        assert_eq!(
            OptError::Unknown("bogus".into()).to_string(),
            "unknown mount option `bogus`"
        );
        assert_eq!(
            OptError::BadValue("idle=5y".into()).to_string(),
            "mount option `idle=5y` has a malformed value"
        );
    }

    #[test]
    fn tcti_is_rejoined_across_its_commas() {
        for key in ["tpm_tcti", "tcti"] {
            let o = parse(&format!(
                "ro,{key}=swtpm:host=127.0.0.1,port=2321,allow_other"
            ))
            .unwrap();
            assert_eq!(o.tcti.as_deref(), Some("swtpm:host=127.0.0.1,port=2321"));
            assert!(o.read_only && o.access == Access::All);
            assert_eq!(o.passthrough, ["ro"]);
        }
        let split = ["tpm_tcti=swtpm:path=/run/s", "ro"];
        let o = MountOptions::parse(&split).unwrap();
        assert_eq!(o.tcti.as_deref(), Some("swtpm:path=/run/s"));
    }

    #[test]
    fn kernel_data_follows_access() {
        assert!(parse("").unwrap().kernel_data().is_empty());
        assert_eq!(parse("allow_root").unwrap().kernel_data(), ["allow_other"]);
        assert_eq!(
            parse("allow_other").unwrap().kernel_data(),
            ["allow_other", "default_permissions"]
        );
    }
}
