#!/usr/bin/env bash
# fsx.sh - the File System eXerciser (the `fsx` crate, version pinned in
# scripts/pins.sh, installed by scripts/deps.sh) against dekfs mounts, as root.
#
#   sudo scripts/fsx.sh
#   FSX_OPS=200000 FSX_MOUNTS=writeback scripts/fsx.sh    # a longer soak
#
# It inits a fresh volume, and for each mount flavour (FSX_MOUNTS, default
# "default writeback": a plain mount and one with -o writeback_cache) mounts
# it, runs fsx once per mode (FSX_MODES) on its own file, unmounts, and runs
# `dekfs fsck` on the volume. fsx checks every byte it reads against its own
# model of the file, so a wrong byte, a wrong size or an error fails the run.
# Modes (each an fsx.toml written below; fsx's defaults otherwise):
#   rw      pread/pwrite, truncate, fsync, fdatasync, close/reopen; no mmap
#   mmap    the same plus mmap reads and writes and msync(MS_INVALIDATE)
#   small   ops of at most 600 bytes on a file of at most 20 KiB: every op is
#           a partial-block read-modify-write, blocks straddle pages
#   big     ops up to 1 MiB on a file up to 8 MiB (extends and shrinks across
#           many blocks), FSX_OPS/10 ops
#   misc    sendfile, posix_fadvise and copy_file_range with reads and writes
# Env:
#   FSX_OPS     operations per run (default 10000, about 2 minutes for
#               all ten runs on a 2-core machine; big runs a tenth)
#   FSX_MODES   default "rw mmap small big misc"
#   FSX_MOUNTS  default "default writeback"
#   FSX_SEED    fsx seed (default: random, printed, so a failure replays
#               with FSX_SEED=N FSX_MODES=mode FSX_MOUNTS=flavour)
#   DEKFS       dekfs binary (default target/release/dekfs, built if missing)
#   FSX         fsx binary (default: the pinned one on PATH)
#   FSX_OUT     where the logs and fsx artifacts of failed runs are kept
#               (default /var/tmp/dekfs-fsx-failures)
# Output: one line per run, the tail of fsx's log on a failure, and last
# "fsx: N passed, N failed" (every fsx run and every fsck count as one).
# Exit 0 when nothing failed. The work directory (/tmp/dekfs-fsx.*) is
# removed on exit, also on failure or Ctrl-C.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
# shellcheck source=pins.sh
. "$REPO/scripts/pins.sh"
OPS=${FSX_OPS:-10000}
MODES=${FSX_MODES:-"rw mmap small big misc"}
MOUNTS=${FSX_MOUNTS:-"default writeback"}
SEED=${FSX_SEED:-$((RANDOM * 32768 + RANDOM))}
DEKFS=${DEKFS:-$REPO/target/release/dekfs}

[ "$(id -u)" = 0 ] || { echo "fsx.sh: run as root (FUSE mounts)" >&2; exit 1; }
if [ -z "${FSX:-}" ]; then
    require_pinned_tool fsx "$FSX_VERSION" fsx || exit 1
    FSX=$(command -v fsx)
fi
if [ ! -x "$DEKFS" ]; then
    (cd "$REPO" && cargo build --release) || exit 1
fi

WORK=$(mktemp -d /tmp/dekfs-fsx.XXXXXX)
BACK=$WORK/back
MNT=$WORK/mnt
mkdir -p "$BACK" "$MNT" "$WORK/cfg"
echo "fsx-password-$$" >"$WORK/pw"

is_mnt() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }
unmount() {
    is_mnt "$MNT" || return 0
    timeout 60 "$DEKFS" umount "$MNT" || fusermount3 -uz "$MNT" || umount -l "$MNT"
}
cleanup() {
    unmount
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# config MODE: the fsx.toml of a mode (weights not named here are fsx's
# defaults: read, write, mapread, mapwrite 10 each, truncate 10, others 0)
config() {
    case $1 in
    rw) cat <<'TOML' ;;
[weights]
mapread = 0
mapwrite = 0
close_open = 1
fsync = 1
fdatasync = 1
TOML
    mmap) cat <<'TOML' ;;
[weights]
close_open = 1
invalidate = 1
fsync = 1
TOML
    small) cat <<'TOML' ;;
flen = 20480
[opsize]
max = 600
[weights]
mapread = 2
mapwrite = 2
close_open = 1
TOML
    big) cat <<'TOML' ;;
flen = 8388608
[opsize]
max = 1048576
[weights]
mapread = 2
mapwrite = 2
truncate = 4
fsync = 1
TOML
    misc) cat <<'TOML' ;;
[weights]
mapread = 0
mapwrite = 0
sendfile = 4
posix_fadvise = 2
copy_file_range = 4
close_open = 1
TOML
    *) return 1 ;;
    esac
}

PASSED=0
FAILED=0
T0=$SECONDS
echo "fsx: pinned $FSX_VERSION ($FSX), seed $SEED, $OPS ops per run, modes: $MODES; mounts: $MOUNTS"
"$DEKFS" init "$BACK" --passfile "$WORK/pw" --no-recovery-key \
    --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 >"$WORK/init.log" 2>&1 ||
    { cat "$WORK/init.log"; echo "fsx: 0 passed, 1 failed (init)"; exit 1; }

for flavour in $MOUNTS; do
    case $flavour in
    default) opts=() ;;
    writeback) opts=(-o writeback_cache) ;;
    *) echo "fsx: unknown mount flavour $flavour (default writeback)" >&2; FAILED=$((FAILED + 1)); continue ;;
    esac
    if ! timeout 120 "$DEKFS" mount "$BACK" "$MNT" --passfile "$WORK/pw" "${opts[@]}" \
            --log-file "$WORK/daemon-$flavour.log" || ! is_mnt "$MNT"; then
        echo "fsx: $flavour: mount FAILED"; tail -5 "$WORK/daemon-$flavour.log"
        FAILED=$((FAILED + 1)); continue
    fi
    for mode in $MODES; do
        cfg=$WORK/cfg/$mode.toml
        if ! config "$mode" >"$cfg"; then
            echo "fsx: unknown mode $mode (rw mmap small big misc)" >&2; FAILED=$((FAILED + 1)); continue
        fi
        n=$OPS; [ "$mode" = big ] && n=$(( (OPS + 9) / 10 ))
        art=$WORK/artifacts/$flavour-$mode; mkdir -p "$art"
        t=$SECONDS
        # fsx logs each failing op at error level; RUST_LOG=warn keeps the
        # log to failures and the summary
        if RUST_LOG=warn timeout 900 "$FSX" -f "$cfg" -N "$n" -S "$SEED" -P "$art" \
                "$MNT/fsx-$mode" >"$WORK/$flavour-$mode.log" 2>&1; then
            PASSED=$((PASSED + 1))
            echo "fsx: $flavour/$mode: ok ($n ops, $((SECONDS - t)) s)"
        else
            FAILED=$((FAILED + 1))
            echo "fsx: $flavour/$mode: FAILED after $((SECONDS - t)) s (replay: FSX_SEED=$SEED FSX_OPS=$OPS FSX_MODES=$mode FSX_MOUNTS=$flavour):"
            tail -25 "$WORK/$flavour-$mode.log" | sed 's/^/    /'
            grep -iE 'error|integrity|panic' "$WORK/daemon-$flavour.log" | tail -5 | sed 's/^/    daemon: /'
            keep=${FSX_OUT:-/var/tmp/dekfs-fsx-failures}/$flavour-$mode-$SEED
            mkdir -p "$keep" && cp -r "$art" "$WORK/$flavour-$mode.log" "$cfg" "$keep/" &&
                cp "$WORK/daemon-$flavour.log" "$keep/" && echo "    kept in $keep"
        fi
    done
    unmount
    if is_mnt "$MNT"; then
        echo "fsx: $flavour: unmount FAILED"; FAILED=$((FAILED + 1)); continue
    fi
    if "$DEKFS" fsck "$BACK" --passfile "$WORK/pw" >"$WORK/fsck-$flavour.log" 2>&1; then
        PASSED=$((PASSED + 1))
        echo "fsx: $flavour: fsck clean"
    else
        FAILED=$((FAILED + 1))
        echo "fsx: $flavour: fsck FAILED:"; tail -15 "$WORK/fsck-$flavour.log" | sed 's/^/    /'
    fi
done

echo "fsx: $((SECONDS - T0)) s"
echo "fsx: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
