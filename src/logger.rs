//! Daemon log sink: one line per event to a file, stderr or syslog. It must
//! not format secrets; callers log paths and error kinds only.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

enum Sink {
    File(std::fs::File),
    Stderr,
    Syslog(UnixDatagram),
    Null,
}

struct Logger {
    sink: Mutex<Sink>,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) || !r.target().starts_with("dekfs") {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::File(f) => {
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let _ = writeln!(
                    f,
                    "{ts} dekfs[{}] {}: {}",
                    std::process::id(),
                    r.level(),
                    r.args()
                );
            }
            Sink::Stderr => eprintln!("dekfs {}: {}", r.level(), r.args()),
            Sink::Syslog(s) => {
                // RFC 3164-style; facility daemon (3), severity from level.
                let sev = match r.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    _ => 6,
                };
                let msg = format!(
                    "<{}>dekfs[{}]: {}",
                    3 * 8 + sev,
                    std::process::id(),
                    r.args()
                );
                let _ = s.send(msg.as_bytes());
            }
            Sink::Null => {}
        }
    }

    fn flush(&self) {
        if let Sink::File(f) = &mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = f.flush();
        }
    }
}

/// Installs the process-wide logger: `file` if given, else stderr when
/// `foreground`, else syslog (silently nothing if there is none).
pub fn init(file: Option<&std::path::Path>, foreground: bool) -> std::io::Result<()> {
    let sink = match file {
        Some(p) => Sink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None if foreground => Sink::Stderr,
        None => match UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|_| s)) {
            Ok(s) => Sink::Syslog(s),
            Err(_) => Sink::Null,
        },
    };
    let _ = log::set_boxed_logger(Box::new(Logger {
        sink: Mutex::new(sink),
    }));
    log::set_max_level(log::LevelFilter::Info);
    Ok(())
}
