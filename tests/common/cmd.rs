//! Running the CLI under test (and other programs) with captured output and
//! a time limit. Must not interpret what it runs beyond the exit-code checks.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{CMD_TIMEOUT, DEKFS};

/// Result of one CLI run.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panics with the full output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: expected exit code {code}, got {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
    /// The error-output contract: one line starting "dekfs: ", optionally
    /// followed by one line starting "hint: ".
    #[track_caller]
    pub fn expect_one_line_error(&self, what: &str) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        let ok = match lines.as_slice() {
            [first] => first.starts_with("dekfs: "),
            [first, second] => first.starts_with("dekfs: ") && second.starts_with("hint: "),
            _ => false,
        };
        assert!(
            ok,
            "{what}: stderr must be one line \"dekfs: ...\" (+ optional \"hint: ...\"), got:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `dekfs ARGS...` with stdin from /dev/null (or `stdin` bytes), stdout
/// and stderr captured through files (a daemon that keeps them open cannot
/// block the test), killed after [`CMD_TIMEOUT`].
pub fn dekfs<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(DEKFS, args, None)
}

pub fn dekfs_stdin<I, S>(args: I, stdin: &[u8]) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(DEKFS, args, Some(stdin))
}

pub fn run_cmd<I, S>(prog: &str, args: I, stdin: Option<&[u8]>) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut outf = tempfile::tempfile().expect("tempfile");
    let mut errf = tempfile::tempfile().expect("tempfile");
    let mut cmd = Command::new(prog);
    cmd.args(&args)
        .stdout(Stdio::from(outf.try_clone().unwrap()))
        .stderr(Stdio::from(errf.try_clone().unwrap()))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    if let Some(data) = stdin {
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(data);
        drop(si);
    }
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if t0.elapsed() > CMD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::io::Seek;
    let read_all = |f: &mut fs::File| {
        let mut s = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s).into_owned()
    };
    let stdout = read_all(&mut outf);
    let mut stderr = read_all(&mut errf);
    let code = match status {
        Some(st) => st.code(),
        None => {
            stderr.push_str(&format!(
                "\n[harness: {prog} {args:?} killed after {CMD_TIMEOUT:?}]"
            ));
            None
        }
    };
    Out {
        code,
        stdout,
        stderr,
    }
}
