//! The online KEK rotation inside the daemon: once the config holds KEK v+1
//! (active) beside v (retiring), the core switches to writing under v+1
//! while still reading v, the walker rewraps every key file and header
//! through the live core (each object held against the daemon's own writes
//! and moves), a verify walk must find no slot of v, and only then KEK v
//! leaves the config and the core's memory. Used by the `rekey` control
//! request and by a mount that finds a rotation pending. It must not write
//! the config's begin step (the CLI does, with the credentials), read
//! credentials, or destroy KEK v while an object may still need it (unless
//! forced).

use crate::crypto::VolumeKeys;
use crate::engine::rekey::{self, Report, Rewritten, Stats};
use crate::fs::CoreFs;
use crate::volume::rotate;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rewrap passes before the remaining objects count as blockers. A pass
/// misses only what the workload moved or created under the old KEK while
/// it ran; each later pass is shorter.
const MAX_PASSES: u32 = 4;

/// How long to wait for requests that took the old key set before the
/// swap to end (a write under the old KEK after the walk passed it would
/// otherwise be missed by the first pass).
const DRAIN: Duration = Duration::from_secs(10);

/// One rotation at a time per daemon (the control request and a mount's
/// background resume meet here).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Held while a rotation runs; clears the flag on drop.
pub struct Running(());

impl Running {
    /// `None` when a rotation already runs in this daemon.
    pub fn try_start() -> Option<Running> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(Running(()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// What one step of the rotation did so far (for progress frames).
#[derive(Clone, Copy)]
pub struct Step {
    /// "rewrap" or "verify".
    pub name: &'static str,
    pub done: u64,
    pub total: u64,
    pub rewrapped: u64,
}

/// The outcome of a rotation.
pub struct Outcome {
    pub old: u32,
    pub new: u32,
    /// Counts of the first rewrap pass, `rewrapped` summed over all passes.
    pub stats: Stats,
    pub passes: u32,
    pub rewrap_time: Duration,
    pub blockers: Vec<String>,
    pub destroyed: bool,
}

/// Runs the rotation from KEK `old` to the active KEK of `keys` (which must
/// hold both) on the live core. `_running` proves no other one runs. The
/// walks run on a thread of their own at the lowest CPU priority, so the
/// mount's requests go first; `progress` is called on the caller's thread.
pub fn run(
    _running: &Running,
    core: &CoreFs,
    cipherdir: &Path,
    keys: Arc<VolumeKeys>,
    old: u32,
    force: bool,
    progress: &mut dyn FnMut(&Step),
) -> Result<Outcome, String> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Step>();
        let walker = std::thread::Builder::new()
            .name("dekfs-rekey-walk".into())
            .spawn_scoped(scope, move || {
                lower_priority();
                let mut send = |s: &Step| {
                    let _ = tx.send(*s);
                };
                rotate_on(core, cipherdir, keys, old, force, &mut send)
            })
            .map_err(|e| format!("no thread for the rotation: {e}"))?;
        for s in rx {
            progress(&s);
        }
        walker
            .join()
            .unwrap_or_else(|_| Err("the rotation thread panicked".into()))
    })
}

/// Nice 19 for the calling thread only (Linux applies a thread id's nice
/// value to that thread). Best effort: a rotation at normal priority is
/// only slower for the workload.
fn lower_priority() {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(tid) = tid {
        if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
            log::info!("rekey: walking at normal priority ({e})");
        }
    }
}

fn rotate_on(
    core: &CoreFs,
    cipherdir: &Path,
    keys: Arc<VolumeKeys>,
    old: u32,
    force: bool,
    progress: &mut dyn FnMut(&Step),
) -> Result<Outcome, String> {
    let new = keys.active_kek_version();
    if !keys.kek_versions().contains(&old) || old == new {
        return Err(format!("the keys do not hold KEK {old} beside KEK {new}"));
    }
    let prev = core
        .replace_keys(keys.clone())
        .map_err(|e| format!("cannot install KEK {new}: {e}"))?;
    log::info!("rekey: writing under KEK {new}; rewrapping every object from KEK {old}");
    crate::audit::record(
        crate::audit::Event::new("rotation-rewrap")
            .key_version(new)
            .detail(format!("from KEK {old}, online")),
    );
    if !Arc::ptr_eq(&prev, &keys) {
        drain(prev);
    }
    // The request path keeps the activity clock from here on (cheap).
    core.activity.watch();
    let mut pacer = Pacer::new(core);
    let total = rekey::count_in(core.live_source()).map_err(|e| format!("count: {e}"))?;
    let t0 = Instant::now();
    let mut stats = Stats::default();
    let mut passes = 0;
    let mut throttle = Throttle::default();
    let verify = loop {
        passes += 1;
        let cell = Rewritten::default();
        let mut pace = || pacer.step();
        let source = core.rekey_source(cell.clone()).paced(&mut pace);
        let r = rekey::rewrap_live(source, cipherdir, &keys, old, cell, &mut |s| {
            throttle.step(progress, "rewrap", s, total)
        })
        .map_err(|e| format!("rewrap walk: {e}"))?;
        if passes == 1 {
            stats = r.stats.clone();
        } else {
            stats.rewrapped += r.stats.rewrapped;
        }
        let v = verify(core, cipherdir, &keys, old, total, &mut pacer, progress)?;
        log::info!(
            "rekey: pass {passes}: {} rewrapped, {} objects still on KEK {old}",
            r.stats.rewrapped,
            v.old_slots.len()
        );
        if v.old_slots.is_empty() || passes == MAX_PASSES {
            break v;
        }
    };
    let rewrap_time = t0.elapsed();
    let blockers = verify.blockers();
    let destroyed = blockers.is_empty() || force;
    if destroyed {
        destroy(core, cipherdir, &keys, old, blockers.len())?;
    } else {
        log::warn!(
            "rekey: KEK {old} kept: {} objects could not be moved to KEK {new} (first: {})",
            blockers.len(),
            blockers.first().map_or("", String::as_str)
        );
    }
    crate::audit::record(
        crate::audit::Event::new("rotation-finish")
            .key_version(new)
            .detail(if destroyed {
                format!("KEK {old} destroyed, {} objects rewrapped", stats.rewrapped)
            } else {
                format!("KEK {old} kept: {} blockers", blockers.len())
            }),
    );
    Ok(Outcome {
        old,
        new,
        stats,
        passes,
        rewrap_time,
        blockers,
        destroyed,
    })
}

/// Waits until no request holds the replaced key set any more.
fn drain(prev: Arc<VolumeKeys>) {
    let until = Instant::now() + DRAIN;
    while Arc::strong_count(&prev) > 1 {
        if Instant::now() > until {
            log::warn!("rekey: a request still holds the old key set; the verify walk covers it");
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn verify(
    core: &CoreFs,
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    total: u64,
    pacer: &mut Pacer<'_>,
    progress: &mut dyn FnMut(&Step),
) -> Result<Report, String> {
    let mut throttle = Throttle::default();
    let mut pace = || pacer.step();
    let source = core.live_source().paced(&mut pace);
    rekey::verify_live(source, cipherdir, keys, old, &mut |s| {
        throttle.step(progress, "verify", s, total)
    })
    .map_err(|e| format!("verify walk: {e}"))
}

/// KEK `old` leaves the config (every protector record of it too), then the
/// core's memory: the last set holding it is dropped (wiped) once the
/// requests using it end.
fn destroy(
    core: &CoreFs,
    cipherdir: &Path,
    keys: &VolumeKeys,
    old: u32,
    blockers: usize,
) -> Result<(), String> {
    let new = keys.active_kek_version();
    if blockers > 0 {
        log::warn!("rekey: destroying KEK {old} although {blockers} objects may need it (--force)");
    }
    crate::audit::link_rotation(keys, new);
    rotate::destroy(cipherdir, keys, old).map_err(|e| format!("destroying KEK {old}: {e}"))?;
    let only_new = keys.without_kek(old).map_err(|e| e.to_string())?;
    let prev = core
        .replace_keys(Arc::new(only_new))
        .map_err(|e| format!("dropping KEK {old} from memory: {e}"))?;
    drop(prev);
    log::info!("rekey: KEK {old} destroyed; KEK {new} is the only key");
    crate::audit::record(
        crate::audit::Event::new("kek-destroyed")
            .key_version(old)
            .detail(format!("KEK {new} is the only key")),
    );
    Ok(())
}

/// Gives way to the mount's own requests: while the mount served one in the
/// last few milliseconds, the walk sleeps as long as it worked, every few
/// objects (half the time at most, only under load; nice 19 alone does not
/// stop a walk's lock and cache traffic from slowing the workload).
struct Pacer<'a> {
    core: &'a CoreFs,
    objects: u32,
    since: Instant,
}

impl<'a> Pacer<'a> {
    const EVERY: u32 = 32;
    const BUSY: Duration = Duration::from_millis(5);

    fn new(core: &'a CoreFs) -> Pacer<'a> {
        Pacer {
            core,
            objects: 0,
            since: Instant::now(),
        }
    }

    fn step(&mut self) {
        self.objects += 1;
        if self.objects < Self::EVERY {
            return;
        }
        self.objects = 0;
        if self.core.activity.idle_for() < Self::BUSY {
            std::thread::sleep(self.since.elapsed().min(Duration::from_millis(50)));
        }
        self.since = Instant::now();
    }
}

/// Progress at most every 200 ms (and always at the end of a walk is the
/// caller's final answer).
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn step(&mut self, progress: &mut dyn FnMut(&Step), name: &'static str, s: &Stats, total: u64) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        progress(&Step {
            name,
            done: s.dirs + s.files,
            total,
            rewrapped: s.rewrapped,
        });
    }
}

/// For a mount that found a rotation pending: finishes it in the background
/// while the volume serves (read-write mounts only). A rotation that cannot
/// finish stays pending, logged.
pub fn resume_in_background(core: Arc<CoreFs>, cipherdir: std::path::PathBuf) {
    let Ok(Some((old, new))) = rotate::pending_rotation(&cipherdir) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("dekfs-rekey".into())
        .spawn(move || {
            let Some(running) = Running::try_start() else {
                return;
            };
            let Some(keys) = core.current_keys() else {
                log::warn!("rekey: volume locked: the pending rotation waits for the next mount");
                return;
            };
            if keys.active_kek_version() != new || !keys.kek_versions().contains(&old) {
                log::warn!("rekey: this mount lacks KEK {old} or {new}: rotation left pending");
                return;
            }
            log::info!("rekey: finishing an interrupted rotation (KEK {old} -> {new}) online");
            crate::audit::record(
                crate::audit::Event::new("rotation-start")
                    .key_version(new)
                    .detail(format!("from KEK {old}, resumed by the mount")),
            );
            match run(&running, &core, &cipherdir, keys, old, false, &mut |_| {}) {
                Ok(o) if o.destroyed => log::info!(
                    "rekey: rotation finished: {} objects rewrapped in {} pass(es), KEK {old} destroyed",
                    o.stats.rewrapped,
                    o.passes
                ),
                Ok(o) => log::warn!(
                    "rekey: rotation still unfinished: {} objects still need KEK {old}; run \
                     `dekfs fsck` and `dekfs rekey --resume`",
                    o.blockers.len()
                ),
                Err(e) => log::error!("rekey: the pending rotation failed: {e}"),
            }
        });
    if let Err(e) = spawned {
        log::error!("rekey: no thread for the pending rotation ({e}); it stays pending");
    }
}
