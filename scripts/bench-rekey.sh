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
C=$(readlink -f "$W/cipher")
"$DEKFS" init "$C" --passfile "$W/pass" --no-recovery-key \
    --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 >/dev/null
"$DEKFS" mount "$C" "$W/mnt" --passfile "$W/pass"
for d in $(seq 1 "$DIRS"); do mkdir "$W/mnt/d$d"; done
for i in $(seq 1 "$FILES"); do
    printf 'file %d\n' "$i" > "$W/mnt/d$(( i % DIRS + 1 ))/f$i"
done
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
