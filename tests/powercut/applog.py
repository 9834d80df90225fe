#!/usr/bin/env python3
"""The append-only log scenario of the power-cut harness (issue 17).

    applog.py writer FILE LOG SECONDS INTERVAL   append 100-byte records to
        FILE, fsync every INTERVAL seconds (0: after every record), and log
        "F <records>" outside the image after each fsync returned
    applog.py other DIR SECONDS                  another process fsyncing
        elsewhere (small writes + fsync in a loop), so that the backing
        filesystem commits its journal often, moving the log's size on disk
    applog.py check FILE LOG LOG_BYTES           prints "fsynced=N intact=M
        lost=K": records promised by the log, records readable from the
        start of FILE up to the first unreadable or wrong one, and the
        promised records missing from them
It must not read FILE while writing it.
"""
import os
import struct
import sys
import time

RECLEN = 100


def rec(i):
    head = struct.pack("<QQ", i, i * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)
    return head + bytes((i + k) & 0xFF for k in range(RECLEN - len(head) - 1)) + b"\n"


def writer(path, log_path, seconds, interval):
    log = open(log_path, "a", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    end = time.time() + seconds
    n, last = 0, time.time()
    while time.time() < end:
        os.write(fd, rec(n))
        n += 1
        if interval == 0 or time.time() - last >= interval:
            os.fsync(fd)
            last = time.time()
            log.write("F %d\n" % n)
        if interval != 0:
            time.sleep(0.01)
    os.close(fd)


def other(d, seconds):
    os.makedirs(d, exist_ok=True)
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        fd = os.open(os.path.join(d, "o%d" % (i % 50)), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, os.urandom(3000))
        os.fsync(fd)
        os.close(fd)
        i += 1
        time.sleep(0.05)


def check(path, log_path, limit):
    with open(log_path, "rb") as f:
        lines = f.read(limit).decode().split("\n")[:-1]
    fsynced = max([int(ln.split()[1]) for ln in lines if ln.startswith("F ")] or [0])
    intact = 0
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        fd = None
    if fd is not None:
        off = 0
        while True:
            try:
                b = os.pread(fd, RECLEN, off)
            except OSError:
                break
            if len(b) < RECLEN or b != rec(intact):
                break
            intact += 1
            off += RECLEN
        os.close(fd)
    print("fsynced=%d intact=%d lost=%d" % (fsynced, intact, max(0, fsynced - intact)))


def main():
    mode = sys.argv[1]
    if mode == "writer":
        writer(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    elif mode == "other":
        other(sys.argv[2], float(sys.argv[3]))
    elif mode == "check":
        check(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: applog.py writer|other|check ...")


if __name__ == "__main__":
    main()
