//! CLI transcripts: tests/transcripts/*.txt are both the script and the
//! expected result. Each `$ dekfs ...` line is run in order in a fresh
//! scratch directory; its stdout (`> `), stderr (`! `) and exit code (`= `)
//! must match the lines that follow it, after volatile parts are normalised.
//! `BLESS=1 cargo test --test cli_transcripts` rewrites the files from what
//! the commands print now (review the diff before committing it).
//!
//! In commands: `$D` is the scratch directory (holding `c/` an empty cipher
//! directory, `m/` a mount point, `pf` and `pf2` passphrase files, `bad` a
//! wrong passphrase, `notvol/` an empty directory, `plain` a regular file),
//! `$KDF` the fast KDF arguments, `<id:N>` an id printed earlier, and
//! `$D/rk` holds the last recovery key printed. A file whose first line is
//! `# needs: fuse` is skipped where FUSE mounts are impossible.

mod common;

use common::{fuse_available, run_cmd, scratch_dir, DEKFS, FAST_KDF};
use std::fs;
use std::path::{Path, PathBuf};

/// Normalises volatile output and remembers what it replaced, so later
/// commands can name an id by its placeholder.
#[derive(Default)]
struct Normaliser {
    root: String,
    ids: Vec<String>,
    recovery: Vec<String>,
}

/// Replaces ISO 8601 UTC times (`2026-12-03T17:04:39Z`) with `<time>`.
fn iso_free(l: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    let b = l.as_bytes();
    let fits = |at: usize| {
        b.len() >= at + SHAPE.len()
            && SHAPE.iter().zip(&b[at..]).all(|(s, c)| match s {
                b'd' => c.is_ascii_digit(),
                s => s == c,
            })
    };
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if fits(i) {
            out.push_str("<time>");
            i += SHAPE.len();
        } else {
            let ch = l[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Replaces the number after "pid " with `<pid>`.
fn pid_free(l: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(at) = rest.find("pid ") {
        let (head, tail) = rest.split_at(at + 4);
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("<pid>");
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

impl Normaliser {
    fn line(&mut self, l: &str) -> String {
        let mut l = l.replace(&self.root, "$D");
        for k in &self.recovery {
            l = l.replace(k.as_str(), "<recovery-key>");
        }
        let l = pid_free(&iso_free(&l));
        let mut out = String::new();
        let mut word = String::new();
        for c in l.chars().chain(std::iter::once('\n')) {
            if c.is_ascii_alphanumeric() {
                word.push(c);
                continue;
            }
            out.push_str(&self.word(&word));
            word.clear();
            out.push(c);
        }
        out.pop();
        // A daemon's pid and uptime (`dekfs status` of a mounted volume).
        for (key, with) in [
            ("pid ", "<pid>"),
            ("\"pid\":", "<pid>"),
            (", up ", "<secs>"),
            ("\"uptime_secs\":", "<secs>"),
        ] {
            out = mask_number_after(&out, key, with);
        }
        out
    }

    fn word(&mut self, w: &str) -> String {
        let hex = |w: &str| w.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if w.len() == 32 && hex(w) {
            let n = match self.ids.iter().position(|x| x == w) {
                Some(i) => i + 1,
                None => {
                    self.ids.push(w.to_owned());
                    self.ids.len()
                }
            };
            format!("<id:{n}>")
        } else if w.len() == 10 && w.bytes().all(|b| b.is_ascii_digit()) {
            // Unix times; nothing else the CLI prints has ten digits.
            "<time>".to_owned()
        } else {
            w.to_owned()
        }
    }

    /// Expands `$D`, `$KDF` and `<id:N>` in a command line.
    fn command(&self, cmd: &str) -> Vec<String> {
        let mut args = Vec::new();
        for a in cmd.split_whitespace() {
            if a == "$KDF" {
                args.extend(FAST_KDF.iter().map(|s| s.to_string()));
                continue;
            }
            let mut a = a.replace("$D", &self.root);
            for (i, id) in self.ids.iter().enumerate() {
                a = a.replace(&format!("<id:{}>", i + 1), id);
            }
            args.push(a);
        }
        args
    }
}

/// Replaces the number right after each `key` in `l` by `with`.
fn mask_number_after(l: &str, key: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(with);
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Unmounts `$D/m` if a failed transcript left it mounted.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if common::is_mounted(&self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

fn scratch(root: &Path) {
    for d in ["c", "m", "notvol"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    fs::write(root.join("pf"), "transcript passphrase one\n").unwrap();
    fs::write(root.join("pf2"), "transcript passphrase two\n").unwrap();
    fs::write(root.join("bad"), "not the passphrase\n").unwrap();
    fs::write(root.join("plain"), "just a file\n").unwrap();
}

fn run_transcript(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/transcripts")
        .join(format!("{name}.txt"));
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    if expected.starts_with("# needs: fuse") {
        if let Err(why) = fuse_available() {
            eprintln!("SKIPPED (needs root and /dev/fuse): {why}");
            return;
        }
    }
    let dir = scratch_dir("dekfs-transcript-");
    let root = dir.path().canonicalize().unwrap();
    scratch(&root);
    let _cleanup = Cleanup(root.join("m"));
    let mut n = Normaliser {
        root: root.display().to_string(),
        ..Default::default()
    };
    let mut actual = String::new();
    for line in expected.lines() {
        if line.starts_with('#') {
            actual.push_str(line);
            actual.push('\n');
            continue;
        }
        let Some(cmd) = line.strip_prefix("$ ") else {
            continue;
        };
        let args = n.command(cmd);
        let (prog, rest) = args.split_first().expect("empty command");
        assert_eq!(prog, "dekfs", "{name}: transcripts only run dekfs");
        let out = run_cmd(DEKFS, rest, None);
        if let Some(k) = common::parse_recovery_key(&out.stdout) {
            fs::write(root.join("rk"), format!("{k}\n")).unwrap();
            n.recovery.push(k);
        }
        if !actual.is_empty() && !actual.ends_with("\n\n") {
            actual.push('\n');
        }
        actual.push_str(&format!("$ {cmd}\n"));
        for (prefix, text) in [("> ", &out.stdout), ("! ", &out.stderr)] {
            for l in text.lines() {
                let l = format!("{prefix}{}", n.line(l));
                actual.push_str(l.trim_end());
                actual.push('\n');
            }
        }
        let code = out.code.map_or("killed".to_owned(), |c| c.to_string());
        actual.push_str(&format!("= {code}\n"));
    }
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        fs::write(&path, &actual).unwrap();
        return;
    }
    if actual != expected {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: transcript differs from {} at line {} (BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_transcript(stringify!($name));
            }
        )*
    };
}

transcripts!(init_status, mount_umount, protector, errors, usage);
