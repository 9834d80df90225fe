//! Layering rules of the source tree, checked by reading src/ (no build of the
//! code under test, no mounts). It must stay a reader: it never edits files.
//!
//! The rules (docs/DESIGN.md "Habits"):
//! - src/format/** is pure data: it names nothing from crate::crypto (or any
//!   `crypto` path) and no crypto crate, and does no I/O.
//! - src/crypto/** does no I/O: no std::fs/io/net/process/os, rustix, libc,
//!   File or OpenOptions.
//! - src/cli/** holds no filesystem logic: no tree operations (std::fs
//!   read_dir/create_dir/remove_dir/rename/hard_link/copy/read_link/
//!   set_permissions), no *at or xattr syscalls, and from rustix::fs only the
//!   flag types and `open` (for device nodes such as /dev/fuse). Reading a
//!   passphrase file, /proc or a pidfile is allowed.
//! - unsafe code: `#![deny(unsafe_code)]` at the crate and binary roots;
//!   `allow(unsafe_code)` only in src/secret/ and src/sys.rs; every `unsafe`
//!   has a `// SAFETY:` comment directly above it (or on its line).
//!
//! Every .rs file under src/ is scanned, so modules added later (layout,
//! engine, daemon, control) fall under the unsafe rule at once, and under a
//! layer rule as soon as they live under one of the directories above.
//! Comments and string literals are removed before the path rules look.

use std::path::{Path, PathBuf};

const CRYPTO_CRATES: &[&str] = &[
    "ring",
    "aes",
    "aes_kw",
    "aes_siv",
    "aes_gcm",
    "hkdf",
    "hmac",
    "sha2",
    "argon2",
    "subtle",
    "getrandom",
];
const IO_ROOTS: &[&[&str]] = &[
    &["std", "fs"],
    &["std", "io"],
    &["std", "net"],
    &["std", "process"],
    &["std", "os"],
    &["rustix"],
    &["libc"],
    &["nix"],
    &["File"],
    &["OpenOptions"],
];
const STD_FS_TREE_OPS: &[&str] = &[
    "read_dir",
    "create_dir",
    "remove_dir",
    "remove_dir_all",
    "rename",
    "hard_link",
    "copy",
    "read_link",
    "set_permissions",
];
const RUSTIX_FS_ALLOWED_IN_CLI: &[&str] = &["Mode", "OFlags", "open"];
const FS_SYSCALLS: &[&str] = &[
    "openat",
    "openat2",
    "mkdirat",
    "mknodat",
    "unlinkat",
    "renameat",
    "renameat_with",
    "linkat",
    "symlinkat",
    "readlinkat",
    "statat",
    "fstatat",
    "accessat",
    "chmodat",
    "chownat",
    "utimensat",
    "getdents",
    "getxattr",
    "fgetxattr",
    "lgetxattr",
    "setxattr",
    "fsetxattr",
    "lsetxattr",
    "listxattr",
    "flistxattr",
    "removexattr",
    "fremovexattr",
];
/// Files (or directories, ending in `/`) where `unsafe` may be allowed.
const UNSAFE_MODULES: &[&str] = &["src/secret/", "src/sys.rs"];

fn unsafe_allowed(name: &str) -> bool {
    UNSAFE_MODULES
        .iter()
        .any(|m| name == *m || (m.ends_with('/') && name.starts_with(m)))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Tokens of `src` with 1-based line numbers; comments, string, byte-string,
/// raw-string and char literals are dropped.
fn tokens(src: &str) -> Vec<(usize, Tok)> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                line += usize::from(c[i] == '\n');
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if (ch == 'r' || (ch == 'b' && at(i + 1) == 'r')) && is_raw_string(&c, i) {
            i += 1 + usize::from(ch == 'b');
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1; // opening quote
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(c[i] == '\n');
                i += 1;
            }
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((line, Tok::Ident(c[s..i].iter().collect())));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((line, Tok::PathSep));
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push((line, Tok::Punct(ch)));
            }
            i += 1;
        }
    }
    out
}

/// A raw (byte) string starts at `i`: r"..", r#".."#, br".."; not r#ident.
fn is_raw_string(c: &[char], i: usize) -> bool {
    let mut k = i + if c[i] == 'b' { 2 } else { 1 };
    while c.get(k) == Some(&'#') {
        k += 1;
    }
    c.get(k) == Some(&'"')
}

/// Every path in the code (`a::b::c`, a lone identifier counts too) with its
/// line, `use` trees expanded (`use std::{fs, io::Read}` gives std::fs and
/// std::io::Read). The bool says whether a `(` follows (a call).
fn paths(toks: &[(usize, Tok)]) -> Vec<(usize, Vec<String>, bool)> {
    let mut out = Vec::new();
    let mut prefixes: Vec<Vec<String>> = Vec::new();
    let mut in_use = false;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].1 {
            Tok::Ident(w) if w == "use" => {
                in_use = true;
                prefixes = vec![Vec::new()];
                i += 1;
            }
            Tok::Punct(';') => {
                in_use = false;
                i += 1;
            }
            Tok::Punct('}') if in_use && prefixes.len() > 1 => {
                prefixes.pop();
                i += 1;
            }
            // `x as y` (a rename in a use tree, a cast): the alias is no path of its own.
            Tok::Ident(w) if w == "as" => i += 2,
            Tok::Ident(_) | Tok::PathSep => {
                let line = toks[i].0;
                let mut segs = if in_use {
                    prefixes.last().cloned().unwrap_or_default()
                } else {
                    Vec::new()
                };
                while i < toks.len() {
                    match &toks[i].1 {
                        Tok::Ident(w) if w == "as" && !segs.is_empty() => break,
                        Tok::Ident(w) => segs.push(w.clone()),
                        Tok::PathSep => {}
                        _ => break,
                    }
                    i += 1;
                }
                let next = toks.get(i).map(|t| t.1.clone());
                if in_use && next == Some(Tok::Punct('{')) {
                    prefixes.push(segs);
                    i += 1;
                } else {
                    out.push((line, segs, next == Some(Tok::Punct('('))));
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn starts_with(path: &[String], root: &[&str]) -> bool {
    path.len() >= root.len() && path.iter().zip(root).all(|(a, b)| a == b)
}

fn io_violation(p: &[String]) -> Option<String> {
    IO_ROOTS
        .iter()
        .find(|r| starts_with(p, r))
        .map(|r| format!("I/O through `{}`", r.join("::")))
}

fn format_rule(p: &[String], _call: bool) -> Option<String> {
    if p.iter().any(|s| s == "crypto") {
        return Some(format!("format names crypto (`{}`)", p.join("::")));
    }
    if let Some(c) = CRYPTO_CRATES.iter().find(|c| p.len() > 1 && p[0] == **c) {
        return Some(format!("format uses the crypto crate `{c}`"));
    }
    io_violation(p).map(|m| format!("format does {m}"))
}

fn crypto_rule(p: &[String], _call: bool) -> Option<String> {
    io_violation(p).map(|m| format!("crypto does {m}"))
}

fn cli_rule(p: &[String], call: bool) -> Option<String> {
    let last = p.last().map(String::as_str).unwrap_or("");
    for (k, w) in p.iter().enumerate() {
        let next = p.get(k + 1).map(String::as_str);
        if w == "fs" && k > 0 && p[k - 1] == "rustix" {
            if let Some(n) = next.filter(|n| !RUSTIX_FS_ALLOWED_IN_CLI.contains(n)) {
                return Some(format!("cli uses rustix::fs::{n} (filesystem logic)"));
            }
        }
        if w == "fs" && next.is_some_and(|n| STD_FS_TREE_OPS.contains(&n)) {
            return Some(format!("cli does a tree operation `{}`", p.join("::")));
        }
    }
    if FS_SYSCALLS.contains(&last) && (call || p.len() > 1) {
        return Some(format!("cli calls `{last}` (filesystem logic)"));
    }
    None
}

type Rule = fn(&[String], bool) -> Option<String>;

fn check_text(text: &str, rule: Rule) -> Vec<(usize, String)> {
    paths(&tokens(text))
        .into_iter()
        .filter_map(|(line, p, call)| rule(&p, call).map(|m| (line, m)))
        .collect()
}

/// `unsafe` tokens (in code, not comments or strings) without a SAFETY
/// comment on their line or in the comment/attribute lines right above.
fn unsafe_without_safety(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut bad = Vec::new();
    for (line, t) in tokens(text) {
        if t != Tok::Ident("unsafe".into()) {
            continue;
        }
        let own = lines.get(line - 1).copied().unwrap_or("");
        let mut ok = own.contains("SAFETY:");
        let mut k = line - 1;
        while !ok && k > 0 {
            k -= 1;
            let l = lines[k].trim_start();
            if !(l.starts_with("//") || l.starts_with("#[")) {
                break;
            }
            ok = l.contains("SAFETY:");
        }
        if !ok {
            bad.push(line);
        }
    }
    bad
}

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn layer_violations(layer: &str, rule: Rule) -> Vec<String> {
    let dir = src_root().join(layer);
    let mut files = Vec::new();
    rs_files(&dir, &mut files);
    assert!(
        !files.is_empty(),
        "layering rule for src/{layer} matches no .rs file; update tests/layering.rs"
    );
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source");
        for (line, msg) in check_text(&text, rule) {
            out.push(format!("{}:{line}: {msg}", rel(&f)));
        }
    }
    out
}

fn assert_none(what: &str, v: Vec<String>) {
    assert!(v.is_empty(), "{what} broken:\n  {}", v.join("\n  "));
}

#[test]
fn format_names_no_crypto_and_does_no_io() {
    assert_none("format layer", layer_violations("format", format_rule));
}

#[test]
fn crypto_does_no_io() {
    assert_none("crypto layer", layer_violations("crypto", crypto_rule));
}

#[test]
fn cli_holds_no_filesystem_logic() {
    assert_none("cli layer", layer_violations("cli", cli_rule));
}

#[test]
fn unsafe_code_is_denied_outside_secret_and_sys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    for top in ["src/lib.rs", "src/main.rs"] {
        let text = std::fs::read_to_string(root.join(top)).expect("read crate root");
        if !text.lines().any(|l| l.trim() == "#![deny(unsafe_code)]") {
            bad.push(format!("{top}:1: missing #![deny(unsafe_code)]"));
        }
    }
    let mut files = Vec::new();
    rs_files(&src_root(), &mut files);
    for f in files {
        let name = rel(&f);
        let text = std::fs::read_to_string(&f).expect("read source");
        for (i, l) in text.lines().enumerate() {
            let allows = l.contains("allow(unsafe_code)") && !l.trim_start().starts_with("//");
            if allows && !unsafe_allowed(&name) {
                bad.push(format!(
                    "{name}:{}: allow(unsafe_code) outside {UNSAFE_MODULES:?}",
                    i + 1
                ));
            }
        }
        for line in unsafe_without_safety(&text) {
            bad.push(format!(
                "{name}:{line}: `unsafe` without a `// SAFETY:` comment above it"
            ));
        }
    }
    assert_none("unsafe rule", bad);
}

// The checks above pass on today's tree; these show each one can fail.

#[test]
fn format_rule_catches_crypto_in_use_trees_and_paths() {
    let src =
        "use crate::{format::X,\n  crypto::names};\nfn f() { let _ = sha2::Sha256::new(); }\n";
    let v = check_text(src, format_rule);
    assert_eq!(
        v.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![2, 3],
        "{v:?}"
    );
    assert!(check_text("use super::super::crypto::kdf;", format_rule).len() == 1);
    assert!(check_text(
        "// crypto::x in a comment\nlet s = \"ring::x\";",
        format_rule
    )
    .is_empty());
}

#[test]
fn crypto_rule_catches_io() {
    let src =
        "use std::{fs, io::Read};\nfn f() { let _ = File::open(\"x\"); rustix::fs::openat(); }";
    let lines: Vec<usize> = check_text(src, crypto_rule).iter().map(|x| x.0).collect();
    assert_eq!(lines, vec![1, 1, 2, 2]);
}

#[test]
fn cli_rule_catches_tree_ops_and_at_calls() {
    let src = "fn f() {\n std::fs::read_dir(p);\n rustix::fs::mkdirat(d, n, m);\n let _ = openat(d);\n}\nuse rustix::fs::{Mode, OFlags, Dir};";
    let lines: Vec<usize> = check_text(src, cli_rule).iter().map(|x| x.0).collect();
    assert_eq!(lines, vec![2, 3, 4, 6]);
    let ok = "fn f() { std::fs::read_to_string(\"/proc/self/mountinfo\"); rustix::fs::open(\"/dev/fuse\", OFlags::RDWR, Mode::empty()); let o = Opts { rename: 1 }; }";
    assert!(check_text(ok, cli_rule).is_empty());
    // A rename inside a use tree once made the path scanner loop forever.
    let alias =
        "use super::kmip::{self as k, X};\nfn f() { std::fs::read_dir(p); let n = 1 as u8; }";
    let lines: Vec<usize> = check_text(alias, cli_rule).iter().map(|x| x.0).collect();
    assert_eq!(lines, vec![2]);
}

#[test]
fn unsafe_rule_wants_a_safety_comment() {
    let src = "// SAFETY: fine\nlet a = unsafe { f() };\n// why\nlet b = unsafe { g() };\nlet s = \"unsafe\";\n// SAFETY: x\n#[allow(x)]\nunsafe impl Send for T {}\n";
    assert_eq!(unsafe_without_safety(src), vec![4]);
}

#[test]
fn tokenizer_reaches_the_end_of_every_source_file() {
    // A literal or comment the tokenizer misreads would hide the rest of its
    // file from every rule above.
    let mut files = Vec::new();
    rs_files(&src_root(), &mut files);
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source") + "\nfn end_marker_() {}\n";
        let last = tokens(&text).into_iter().rev().nth(4).map(|t| t.1);
        if last != Some(Tok::Ident("end_marker_".into())) {
            bad.push(format!(
                "{}: tokenizer lost its way before the end",
                rel(&f)
            ));
        }
    }
    assert_none("tokenizer", bad);
}
