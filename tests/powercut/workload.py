#!/usr/bin/env python3
"""Power-cut workload: file system traffic through a mount, with a log kept
outside the image of what an application may rely on after a power cut.

    workload.py ROOT LOG SEED SECONDS

Operations (weights below): new directories, new files, appends, in-place
overwrites, truncates, renames within and across directories, deletes, and
commits: a new file written and fsynced, whose name, size and SHA-256 are
logged only after fsync returned. Committed files are never modified or
deleted again, only renamed (an "R old new" line before the rename, so the
verifier accepts either name). Every byte written anywhere belongs to a
16-byte record that names its file, offset and generation (see record()),
so the verifier can tell "old or new or zero" from wrong bytes.

Log lines (one per event, flushed, never fsynced: only the workload process
may die, not the machine holding the log):
    M <t> <dir>                        directory made
    C <t> <path> <size> <sha256>       fsync of a new file returned
    R <t> <old> <new>                  a committed file is being renamed
It must not read back through the mount: verify.py does that on a copy.
"""
import hashlib
import os
import random
import struct
import sys
import time

REC = 16


def record(fid, off, gen):
    """The 16 bytes at offset `off` (a multiple of 16) of file `fid`."""
    idx = off // REC
    check = (fid * 2654435761 ^ idx * 40503 ^ gen * 97) & 0xFFFFFFFF
    return struct.pack("<IIII", fid, idx, gen, check)


def content(fid, off, length, gen):
    return b"".join(record(fid, o, gen) for o in range(off, off + length, REC))


def main():
    root, log_path, seed, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    rnd = random.Random(seed)
    log = open(log_path, "a", buffering=1)
    dirs = [""]  # relative to root; "" is the root itself
    plain = {}  # path -> (fid, size, gen): files the workload still changes
    committed = {}  # path -> fid
    next_id = [1]

    def new_id():
        next_id[0] += 1
        return next_id[0]

    def full(rel):
        return os.path.join(root, rel) if rel else root

    def pick_dir():
        # Recent directories are favoured: entries in new directories are
        # where keys and names are most at risk.
        if len(dirs) > 4 and rnd.random() < 0.6:
            return rnd.choice(dirs[-4:])
        return rnd.choice(dirs)

    def now():
        return "%.3f" % time.time()

    def new_name(prefix):
        return "%s%d" % (prefix, new_id())

    def op_mkdir():
        parent = pick_dir()
        if parent.count("/") >= 3:
            parent = ""
        d = os.path.join(parent, new_name("d"))
        os.mkdir(full(d))
        dirs.append(d)
        log.write("M %s %s\n" % (now(), d))

    def op_create():
        p = os.path.join(pick_dir(), new_name("f"))
        fid = next_id[0]
        size = rnd.randrange(0, 40000) // REC * REC
        with open(full(p), "wb") as f:
            f.write(content(fid, 0, size, 1))
        plain[p] = (fid, size, 1)

    def pick_plain():
        return rnd.choice(list(plain)) if plain else None

    def op_append():
        p = pick_plain()
        if p is None:
            return
        fid, size, gen = plain[p]
        n = rnd.randrange(1, 600) * REC
        with open(full(p), "r+b") as f:
            f.seek(size)
            f.write(content(fid, size, n, gen + 1))
        plain[p] = (fid, size + n, gen + 1)

    def op_overwrite():
        p = pick_plain()
        if p is None or plain[p][1] == 0:
            return
        fid, size, gen = plain[p]
        off = rnd.randrange(0, size // REC) * REC
        n = min(size - off, rnd.randrange(1, 512) * REC)
        fd = os.open(full(p), os.O_WRONLY)
        try:
            os.pwrite(fd, content(fid, off, n, gen + 1), off)
        finally:
            os.close(fd)
        plain[p] = (fid, size, gen + 1)

    def op_truncate():
        p = pick_plain()
        if p is None:
            return
        fid, size, gen = plain[p]
        # Growing adds zeros (allowed anywhere by the verifier).
        new = rnd.randrange(0, size + 8192) // REC * REC
        os.truncate(full(p), new)
        plain[p] = (fid, new, gen + 1)

    def op_rename(across):
        pool = committed if (committed and rnd.random() < 0.5) else plain
        if not pool:
            return
        old = rnd.choice(list(pool))
        d = pick_dir() if across else os.path.dirname(old)
        new = os.path.join(d, new_name("f"))
        if pool is committed:
            log.write("R %s %s %s\n" % (now(), old, new))
        os.rename(full(old), full(new))
        pool[new] = pool.pop(old)

    def op_delete():
        p = pick_plain()
        if p is None:
            return
        os.unlink(full(p))
        del plain[p]

    def op_commit():
        p = os.path.join(pick_dir(), new_name("c"))
        fid = next_id[0]
        data = content(fid, 0, rnd.randrange(1, 3000) * REC, 1)
        fd = os.open(full(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        committed[p] = fid
        log.write("C %s %s %d %s\n" % (now(), p, len(data), hashlib.sha256(data).hexdigest()))

    ops = [
        (op_mkdir, 6),
        (op_create, 16),
        (op_append, 16),
        (op_overwrite, 12),
        (op_truncate, 6),
        (lambda: op_rename(False), 8),
        (lambda: op_rename(True), 8),
        (op_delete, 8),
        (op_commit, 12),
    ]
    funcs = [f for f, _ in ops]
    weights = [w for _, w in ops]
    end = time.time() + seconds
    count = 0
    while time.time() < end:
        rnd.choices(funcs, weights)[0]()
        count += 1
        # Bounded footprint: the oldest changing files go.
        while len(plain) > 400:
            p = next(iter(plain))
            os.unlink(full(p))
            del plain[p]
    print("workload: %d ops, %d dirs, %d committed" % (count, len(dirs), len(committed)))


if __name__ == "__main__":
    main()
