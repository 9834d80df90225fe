//! Asks a person for a passphrase when there is no terminal (boot, a mount
//! unit): through `systemd-ask-password` and whichever agent answers
//! (console, plymouth, `systemd-tty-ask-password-agent`). It must not put
//! the secret in argv or the environment (it arrives on a pipe only), and it
//! must never wait without bound: boot goes on after `ASK_TIMEOUT`.

use super::exit::{CliError, CliResult, USAGE};
use super::secret_input;
use crate::secret::SecretBytes;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the agents may take; systemd's own default for ask-password.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(90);
/// Grace beyond `ASK_TIMEOUT` before the asker itself is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Asks with `message`; `id` lets agents tell the queries apart
/// (`dekfs:/mnt/point`). Nothing answered in time is an error, not a hang.
pub fn ask(message: &str, id: &str) -> CliResult<SecretBytes> {
    let mut child = Command::new("systemd-ask-password")
        .arg(format!("--timeout={}", ASK_TIMEOUT.as_secs()))
        .arg(format!("--id={id}"))
        .arg("--icon=drive-harddisk")
        .arg(message)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CliError::new(USAGE, format!("cannot run systemd-ask-password: {e}"))
                .hint("use passfile=FILE, or install systemd")
        })?;
    let pid = child.id();
    let (done, watch) = mpsc::channel::<()>();
    // The child is reaped only after this thread ends, so the pid it may
    // kill is still ours.
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(ASK_TIMEOUT + KILL_GRACE).is_err() {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    });
    let line = match child.stdout.take() {
        Some(out) => secret_input::first_line(out),
        None => Err(CliError::new(USAGE, "systemd-ask-password gave no output")),
    };
    let _ = done.send(());
    let _ = watchdog.join();
    let status = child.wait()?;
    let line = line?;
    if !status.success() || line.is_empty() {
        return Err(CliError::new(
            USAGE,
            format!(
                "no passphrase from systemd-ask-password within {} s",
                ASK_TIMEOUT.as_secs()
            ),
        )
        .hint("answer with systemd-tty-ask-password-agent, or use passfile=FILE"));
    }
    Ok(line)
}
