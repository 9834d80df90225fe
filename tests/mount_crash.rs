//! Crash of the daemon (kill -9) while files are being written: `dekfs
//! umount` cleans up the dead mount, the volume mounts again, every fsynced
//! byte is there, and a file that was being written holds, per 4 KiB block,
//! either the written data or zeros. The one documented exception
//! (THREAT-MODEL.md, "torn block"): SIGKILL can cut the daemon's pwrite
//! between pages, so blocks of the single 64 KiB write in flight at the kill
//! may be torn; they must read as EIO (never wrong bytes) and can only be the
//! file's last 16 blocks.

mod common;

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[test]
fn kill_daemon_during_writes() {
    require_fuse!();
    let v = TestVolume::new("crash");
    v.mount();
    fs::create_dir(v.p("d")).unwrap();
    let mut synced = Vec::new();
    for i in 0..5u64 {
        let data = random_bytes(900 + i, 3000 + 7000 * i as usize);
        let rel = format!("d/synced-{i}");
        let mut f = fs::File::create(v.p(&rel)).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        synced.push((rel, data));
    }
    // fsync of the directory too (the new entries)
    fs::File::open(v.p("d")).unwrap().sync_all().unwrap();

    let busy_data = Arc::new(random_bytes(999, 8 << 20));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let path = v.p("d/busy");
        let data = busy_data.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let Ok(mut f) = fs::File::create(&path) else {
                return;
            };
            let mut off = 0;
            while !stop.load(Ordering::Relaxed) && off < data.len() {
                let end = (off + 65536).min(data.len());
                if f.write_all(&data[off..end]).is_err() {
                    return; // the daemon is gone: ENOTCONN
                }
                off = end;
                if off == data.len() {
                    off = 0;
                    if f.set_len(0).is_err() {
                        return;
                    }
                    use std::io::Seek;
                    if f.rewind().is_err() {
                        return;
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let pids = pids_mentioning(&v.cipher);
    assert_eq!(pids.len(), 1, "expected one daemon process, found {pids:?}");
    // SAFETY: plain kill(2) of the daemon this test started.
    let r = unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // the dead mount is cleaned up by dekfs umount
    v.umount();
    v.mount();
    for (rel, data) in &synced {
        let got = read_file(&v.p(rel)).unwrap_or_else(|e| panic!("{rel} after crash: {e}"));
        assert!(got == *data, "fsynced {rel} changed by the crash");
    }
    let f = fs::File::open(v.p("d/busy")).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    assert!(len <= busy_data.len());
    let nblocks = len.div_ceil(4096);
    let mut torn = Vec::new();
    for i in 0..nblocks {
        let n = 4096.min(len - i * 4096);
        let mut chunk = vec![0u8; n];
        match std::os::unix::fs::FileExt::read_exact_at(&f, &mut chunk, (i * 4096) as u64) {
            Ok(()) => {
                let want = &busy_data[i * 4096..i * 4096 + n];
                assert!(
                    chunk == want || chunk.iter().all(|&b| b == 0),
                    "d/busy block {i} holds neither the written data nor zeros"
                );
            }
            Err(e) if errno(&e) == libc::EIO => torn.push(i),
            Err(e) => panic!("d/busy block {i}: {e}"),
        }
    }
    drop(f);
    assert!(
        torn.iter().all(|&i| i + 16 >= nblocks),
        "EIO outside the write in flight at the kill: blocks {torn:?} of {nblocks}\nlog:\n{}",
        v.log()
    );
    // and the volume is fully usable
    fs::write(v.p("d/after"), b"after").unwrap();
    v.remount();
    assert_eq!(read_file(&v.p("d/after")).unwrap(), b"after");
}
