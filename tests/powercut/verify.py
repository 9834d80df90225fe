#!/usr/bin/env python3
"""Reads back one power-cut snapshot through a mount and compares it with
the workload's log (workload.py), up to the log length the harness saw
while the image was frozen.

    verify.py ROOT LOG LOG_BYTES CUT_TIME OLD_SECONDS

Prints one line of key=value counts:
    committed      fsync-committed files the log promises at the cut
    lost           of those, found under none of their names
    wrong          of those, found but not byte-exact (or with an EIO block)
    dirs_bad       directories that could not be listed
    dirs_bad_old   of those, made more than OLD_SECONDS before the cut
                   (unknown age counts as old)
    files          regular files read
    eio_files      files with at least one 4 KiB block reading EIO
    eio_blocks     such blocks
    wrong_records  16-byte records that are neither zero nor a record the
                   workload wrote at that offset of that file
It must not write to ROOT.
"""
import errno
import hashlib
import os
import struct
import sys

REC = 16
BLOCK = 4096


def record_ok(rec, off):
    fid, idx, gen, check = struct.unpack("<IIII", rec)
    if fid == 0 and idx == 0 and gen == 0 and check == 0:
        return True
    return idx == off // REC and check == (fid * 2654435761 ^ idx * 40503 ^ gen * 97) & 0xFFFFFFFF


def read_file(path):
    """(bytes with EIO blocks left as None marks, eio block count)."""
    fd = os.open(path, os.O_RDONLY)
    chunks, eio, off = [], 0, 0
    try:
        while True:
            try:
                b = os.pread(fd, BLOCK, off)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                eio += 1
                chunks.append(None)
                off += BLOCK
                if off > os.fstat(fd).st_size:
                    break
                continue
            if not b:
                break
            chunks.append(b)
            off += len(b)
    finally:
        os.close(fd)
    return chunks, eio


def main():
    root, log_path, limit, cut, old = sys.argv[1:6]
    limit, cut, old = int(limit), float(cut), float(old)
    with open(log_path, "rb") as f:
        text = f.read(limit).decode()
    lines = text.split("\n")[:-1]  # a last line without newline is unfinished
    made = {}
    names = {}  # committed file -> every name it may have now
    expect = {}  # first name -> (size, sha)
    current = {}  # a name -> first name
    for ln in lines:
        parts = ln.split(" ")
        if parts[0] == "M":
            made[parts[2]] = float(parts[1])
        elif parts[0] == "C":
            p = parts[2]
            expect[p] = (int(parts[3]), parts[4])
            names[p] = [p]
            current[p] = p
        elif parts[0] == "R":
            first = current.pop(parts[2], None)
            if first is not None:
                names[first].append(parts[3])
                current[parts[3]] = first

    c = dict(committed=len(expect), lost=0, wrong=0, dirs_bad=0, dirs_bad_old=0,
             files=0, eio_files=0, eio_blocks=0, wrong_records=0)
    seen = {}  # relative path -> (chunks, eio)

    def walk(rel):
        path = os.path.join(root, rel) if rel else root
        try:
            entries = os.listdir(path)
        except OSError:
            c["dirs_bad"] += 1
            t = made.get(rel)
            if t is None or cut - t > old:
                c["dirs_bad_old"] += 1
                print("verify: old directory unreadable: %s (%s)" %
                      (rel, "age unknown" if t is None else "%.1f s" % (cut - t)), file=sys.stderr)
            return
        for e in entries:
            r = os.path.join(rel, e) if rel else e
            p = os.path.join(root, r)
            if os.path.isdir(p) and not os.path.islink(p):
                walk(r)
            elif os.path.isfile(p):
                c["files"] += 1
                try:
                    chunks, eio = read_file(p)
                except OSError:
                    chunks, eio = [None], 1
                seen[r] = (chunks, eio)
                if eio:
                    c["eio_files"] += 1
                    c["eio_blocks"] += eio
                off = 0
                for ch in chunks:
                    if ch is None:
                        off += BLOCK
                        continue
                    for i in range(0, len(ch) - len(ch) % REC, REC):
                        if not record_ok(ch[i:i + REC], off + i):
                            c["wrong_records"] += 1
                    off += len(ch)

    walk("")
    for first, (size, sha) in expect.items():
        found = [n for n in names[first] if n in seen]
        if not found:
            c["lost"] += 1
            print("verify: committed file lost: %s (names %s)" % (first, names[first]), file=sys.stderr)
            continue
        chunks, eio = seen[found[0]]
        data = b"".join(ch for ch in chunks if ch is not None)
        if eio or len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            c["wrong"] += 1
            print("verify: committed file wrong: %s (eio %d, %d of %d bytes)" %
                  (found[0], eio, len(data), size), file=sys.stderr)
    print(" ".join("%s=%d" % kv for kv in c.items()))


if __name__ == "__main__":
    main()
