#!/usr/bin/env bash
# bench-append.sh - the append+fsync loop of issue 17 on a v1-layout and a paged volume, same
# binary, same run, interleaved: an append-only log of 100-byte records with fdatasync after
# every record (and, second row, after every 10th), N records per run, REPS runs per layout.
# Prints records/s (median, min, max) per layout and mode. Needs root and /dev/fuse.
#
#   sudo scripts/bench-append.sh            N=2000 REPS=5 under /var/tmp
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEKFS=${DEKFS:-${CARGO_TARGET_DIR:-$REPO/target}/release/dekfs}
N=${N:-2000}
REPS=${REPS:-5}
BASE=$(mktemp -d "${BENCH_DIR:-/var/tmp}/dekfs-append.XXXXXX")
trap 'for m in "$BASE"/*/mnt; do umount "$m" 2>/dev/null || true; done; rm -rf "$BASE"' EXIT
echo pw >"$BASE/pw"
for layout in v1 paged; do
    d=$BASE/$layout
    mkdir -p "$d/c" "$d/mnt"
    opt=(); [ "$layout" = v1 ] && opt=(--v1-layout)
    "$DEKFS" init "$d/c" --passfile "$BASE/pw" --no-recovery-key --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 "${opt[@]}" >/dev/null 2>&1
    "$DEKFS" mount "$d/c" "$d/mnt" --passfile "$BASE/pw"
done
loop='
import os, sys, time
path, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rec = b"x" * 99 + b"\n"
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
t = time.perf_counter()
for i in range(n):
    os.write(fd, rec)
    if (i + 1) % every == 0:
        os.fdatasync(fd)
os.close(fd)
print(n / (time.perf_counter() - t))
'
declare -A res
for r in $(seq "$REPS"); do
    for every in 1 10; do
        for layout in v1 paged; do
            v=$(python3 -c "$loop" "$BASE/$layout/mnt/log" "$N" "$every")
            res[$layout,$every]+="$v "
        done
    done
done
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  N=$N REPS=$REPS  dir=$(df --output=fstype "$BASE" | tail -1)"
printf '%-6s %-16s %10s %10s %10s\n' layout mode median min max
for every in 1 10; do
    for layout in v1 paged; do
        # shellcheck disable=SC2086 # a list of numbers
        python3 -c 'import sys,statistics as s; v=[float(x) for x in sys.argv[3:]]; print("%-6s %-16s %10.0f %10.0f %10.0f" % (sys.argv[1], "fdatasync/"+sys.argv[2]+" rec", s.median(v), min(v), max(v)))' "$layout" "$every" ${res[$layout,$every]}
    done
done
