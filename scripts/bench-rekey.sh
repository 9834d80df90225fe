#!/usr/bin/env bash
# bench-rekey.sh - offline KEK rotation speed: headers rewrapped per second.
# Makes a volume on a private tmpfs (or under $REKEY_DIR on disk when set),
# fills it through a mount with REKEY_FILES small files in REKEY_DIRS
# directories, unmounts, then times `dekfs rekey --json` (fast KDF, so the
# passphrase KDF does not count). Prints one CSV row:
#
#   medium,files,rewrap_walk_objects_per_s,command_seconds,command_objects_per_s
#
#   rewrap walk: objects rewrapped / time of the rewrap walk (final syncfs
#   included); command: every object / wall time of the whole command (two
#   KDF runs, the counting, rewrap and verify walks, two config writes).
#
#   sudo scripts/bench-rekey.sh                 10,000 files on tmpfs
#   REKEY_FILES=100000 sudo scripts/bench-rekey.sh
#   REKEY_DIR=/var/tmp sudo scripts/bench-rekey.sh   on disk
#
# Online section (REKEY_ONLINE=1, or `scripts/bench.sh rekey-online`): the
# volume stays mounted and `dekfs rekey MOUNTPOINT` runs through the daemon,
# once alone (headers/s online), then under load: a sequential reader (a
# 256 MiB file, page cache dropped first) and a small-file create loop run
# through the mount, with and without rotations. Prints:
#
#   medium,files,online_objects_per_s,online_seconds,rotations_under_load,
#   read_mb_s_base,read_mb_s_during,create_per_s_base,create_per_s_during,
#   read_slowdown_pct,create_slowdown_pct
#
# "Under load" runs rotations back to back for REKEY_WINDOW seconds (5)
# while both loops run, alternating REKEY_ROUNDS (3) times with windows of
# the loops alone; rates are summed over the rounds of each kind.
#
# Also reachable as `scripts/bench.sh rekey`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEKFS=${DEKFS:-$ROOT/target/release/dekfs}
FILES=${REKEY_FILES:-10000}
DIRS=${REKEY_DIRS:-20}
[ -x "$DEKFS" ] || (cd "$ROOT" && cargo build --release --bin dekfs)
W=$(mktemp -d /tmp/dekfs-bench-rekey.XXXXXX)
medium=tmpfs
cleanup() {
    fusermount3 -u "$W/mnt" 2>/dev/null || umount -l "$W/mnt" 2>/dev/null || true
    if [ "$medium" = tmpfs ]; then umount -l "$W/cipher" 2>/dev/null || true; fi
    rm -rf "$W" "${DISK:-}"
}
trap cleanup EXIT
mkdir -p "$W/mnt" "$W/cipher"
if [ -n "${REKEY_DIR:-}" ]; then
    medium=disk
    DISK=$(mktemp -d "$REKEY_DIR/dekfs-bench-rekey.XXXXXX")
    rmdir "$W/cipher"; ln -s "$DISK" "$W/cipher"
else
    mount -t tmpfs -o size=2g tmpfs "$W/cipher"
fi
printf 'bench passphrase\n' > "$W/pass"

# One online rotation; prints "objects seconds" from its finished line.
online_rekey() {
    "$DEKFS" rekey "$W/mnt" --passfile "$W/pass" --json > "$W/online.json"
    grep -q '"destroyed":true' "$W/online.json" || { echo "online rekey did not finish" >&2; cat "$W/online.json" >&2; exit 1; }
    fin=$(grep '"event":"finished"' "$W/online.json")
    echo "$(echo "$fin" | sed 's/.*"rewrapped":\([0-9]*\).*/\1/') $(echo "$fin" | sed 's/.*"rewrap_seconds":\([0-9.e-]*\).*/\1/')"
}

# The two loops (sequential read, small-file create): each starts at once,
# counts from when $W/go exists until $W/stop exists and writes its rate
# (bytes/s or files/s) to $W/<name>.rate.
loops() {
    rm -f "$W/go" "$W/stop"
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    python3 - "$W/mnt/big" "$W" read <<'PY' &
import os, sys, time
big, w, name = sys.argv[1:4]
go, stop = os.path.join(w, 'go'), os.path.join(w, 'stop')
while not os.path.exists(go):
    time.sleep(0.01)
n, t0 = 0, time.monotonic()
while not os.path.exists(stop):
    with open(big, 'rb', buffering=0) as f:
        while not os.path.exists(stop):
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
open(os.path.join(w, name + '.rate'), 'w').write(str(n / (time.monotonic() - t0)))
PY
    python3 - "$W/mnt/small" "$W" create <<'PY' &
import os, sys, time
d, w, name = sys.argv[1:4]
go, stop = os.path.join(w, 'go'), os.path.join(w, 'stop')
os.makedirs(d, exist_ok=True)
while not os.path.exists(go):
    time.sleep(0.01)
n, t0 = 0, time.monotonic()
while not os.path.exists(stop):
    with open(os.path.join(d, 'c%d' % n), 'wb') as f:
        f.write(b'small file %d\n' % n)
    # A bounded directory: the loop measures creates, not a growing tree.
    if n >= 100:
        os.unlink(os.path.join(d, 'c%d' % (n - 100)))
    n += 1
open(os.path.join(w, name + '.rate'), 'w').write(str(n / (time.monotonic() - t0)))
PY
    sleep 1
}

online_section() {
    dd if=/dev/urandom of="$W/mnt/big" bs=1M count=256 status=none
    read -r objs secs < <(online_rekey)
    rate=$(awk -v n="$objs" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    # Under load: rotations back to back for WINDOW seconds, alternating
    # with windows of the loops alone (ROUNDS of each), so that a change in
    # the machine's other load hits both sides alike.
    window=${REKEY_WINDOW:-5}
    n=0; rb=0; rd=0; cb=0; cd_=0
    for _ in $(seq 1 "${REKEY_ROUNDS:-3}"); do
        loops
        touch "$W/go"; sleep "$window"; touch "$W/stop"; wait
        rb=$(awk -v a="$rb" -v b="$(cat "$W/read.rate")" 'BEGIN { print a + b }')
        cb=$(awk -v a="$cb" -v b="$(cat "$W/create.rate")" 'BEGIN { print a + b }')
        rm -rf "$W/mnt/small"
        loops
        touch "$W/go"
        t0=$(date +%s)
        while [ $(( $(date +%s) - t0 )) -lt "$window" ]; do online_rekey > /dev/null; n=$((n + 1)); done
        touch "$W/stop"; wait
        rd=$(awk -v a="$rd" -v b="$(cat "$W/read.rate")" 'BEGIN { print a + b }')
        cd_=$(awk -v a="$cd_" -v b="$(cat "$W/create.rate")" 'BEGIN { print a + b }')
        rm -rf "$W/mnt/small"
    done
    awk -v m="$medium" -v n="$FILES" -v r="$rate" -v s="$secs" -v k="$n" \
        -v rb="$rb" -v rd="$rd" -v cb="$cb" -v cd="$cd_" -v R="${REKEY_ROUNDS:-3}" 'BEGIN {
        mb = 1048576;
        printf "medium,files,online_objects_per_s,online_seconds,rotations_under_load,read_mb_s_base,read_mb_s_during,create_per_s_base,create_per_s_during,read_slowdown_pct,create_slowdown_pct\n";
        printf "%s,%d,%s,%.3f,%d,%.1f,%.1f,%.0f,%.0f,%.1f,%.1f\n", m, n, r, s, k,
            rb / mb / R, rd / mb / R, cb / R, cd / R, 100 * (1 - rd / rb), 100 * (1 - cd / cb) }'
    "$DEKFS" umount "$W/mnt"
}
C=$(readlink -f "$W/cipher")
"$DEKFS" init "$C" --passfile "$W/pass" --no-recovery-key \
    --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 >/dev/null
"$DEKFS" mount "$C" "$W/mnt" --passfile "$W/pass"
for d in $(seq 1 "$DIRS"); do mkdir "$W/mnt/d$d"; done
for i in $(seq 1 "$FILES"); do
    printf 'file %d\n' "$i" > "$W/mnt/d$(( i % DIRS + 1 ))/f$i"
done
if [ -n "${REKEY_ONLINE:-}" ]; then
    online_section
    exit 0
fi
"$DEKFS" umount "$W/mnt"
t0=$(date +%s.%N)
"$DEKFS" rekey "$C" --passfile "$W/pass" --json > "$W/out.json"
t1=$(date +%s.%N)
fin=$(grep '"event":"finished"' "$W/out.json")
objs=$(echo "$fin" | sed 's/.*"rewrapped":\([0-9]*\).*/\1/')
secs=$(echo "$fin" | sed 's/.*"rewrap_seconds":\([0-9.e-]*\).*/\1/')
walk=$(awk -v n="$objs" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
grep -q '"destroyed":true' "$W/out.json" || { echo "rekey did not finish" >&2; cat "$W/out.json" >&2; exit 1; }
awk -v m="$medium" -v n="$FILES" -v d="$DIRS" -v w="$walk" -v a="$t0" -v b="$t1" \
    'BEGIN { s = b - a; printf "medium,files,rewrap_walk_objects_per_s,command_seconds,command_objects_per_s\n%s,%d,%s,%.3f,%.0f\n", m, n, w, s, (n + d + 1) / s }'
