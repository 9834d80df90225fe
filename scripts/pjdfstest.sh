#!/usr/bin/env bash
# pjdfstest.sh - POSIX conformance of dekfs with pjdfstest (the Rust rewrite
# from crates.io, version pinned in scripts/pins.sh and installed by
# scripts/deps.sh; this script never installs it), as root, on a fresh volume mounted
# -o allow_other,default_permissions.
#
# Usage: sudo scripts/pjdfstest.sh [dekfs] [native] [gocryptfs]
#   default target: dekfs. "native" (a plain directory on the same disk) and
#   "gocryptfs" are for comparison; thresholds apply to dekfs only.
# Env:
#   PJD_MIN_PASS (default 382)  fail if dekfs passes fewer tests
#   PJD_MAX_FAIL (default 2)    fail if dekfs fails more tests
#   DEKFS        dekfs binary (default target/release/dekfs, built if missing)
#   PJD          pjdfstest binary (default: the pinned one on PATH)
#   PJD_DIR      scratch dir (default /var/tmp/dekfs-pjd)
#   OUT          results dir (default $PJD_DIR-results)
# Output: per target "Summary" and a line "TARGET: passed=N failed=N skipped=N",
# the list of FAILED tests, then "pjdfstest: N passed, N failed" for dekfs.
# Exit: 0 when thresholds hold, 1 otherwise (or on setup failure).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PJD_DIR=${PJD_DIR:-/var/tmp/dekfs-pjd}
OUT=${OUT:-$PJD_DIR-results}
PJD_MIN_PASS=${PJD_MIN_PASS:-382}
PJD_MAX_FAIL=${PJD_MAX_FAIL:-2}
# shellcheck source=pins.sh
. "$REPO/scripts/pins.sh"
TARGETS=${*:-dekfs}
PW=pjdfstest-password-$$
export PATH="$HOME/.cargo/bin:$PATH"
DEKFS=${DEKFS:-$REPO/target/release/dekfs}

[ "$(id -u)" = 0 ] || { echo "pjdfstest.sh: run as root" >&2; exit 1; }
if [ -z "${PJD:-}" ]; then
    require_pinned_tool pjdfstest "$PJDFSTEST_VERSION" pjdfstest || exit 1
    PJD=$(command -v pjdfstest)
fi
id tests >/dev/null 2>&1 || useradd --system --no-create-home --user-group \
    --shell /usr/sbin/nologin --comment "Dummy User for pjdfstest" tests || exit 1
if [[ " $TARGETS " == *" dekfs "* ]] && [ ! -x "$DEKFS" ]; then
    (cd "$REPO" && cargo build --release) || exit 1
fi

mkdir -p "$OUT" "$PJD_DIR"
# Upstream's ci/linux-ext4.toml features + rename_ctime (the same config for
# every target, so dekfs, native and gocryptfs are comparable); erofs tests
# stay skipped.
CFG=$OUT/pjdfstest.toml
cat >"$CFG" <<'TOML'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["tests", "tests"],
]
TOML

# is_mnt PATH: listed in /proc/mounts (works on dead/hung FUSE mounts too)
is_mnt() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

UNDO=()   # "kind|mountpoint|pid"
undo() {
    local i kind path pid n
    for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do
        IFS='|' read -r kind path pid <<<"${UNDO[i]}"
        if is_mnt "$path"; then
            case $kind in
            dekfs) timeout 60 "$DEKFS" umount "$path" || fusermount3 -uz "$path" || umount -l "$path" ;;
            *) for n in 1 2 3 4 5; do fusermount3 -u "$path" && break; sleep 1; done
               is_mnt "$path" && fusermount3 -uz "$path" ;;
            esac
        fi
        if [ -n "$pid" ]; then
            for n in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill "$pid"
            wait "$pid" 2>/dev/null
        fi
    done
    UNDO=()
}
trap 'undo; rm -rf "$PJD_DIR"' EXIT
trap 'exit 130' INT TERM

start() { # MNT CMD... ; daemon must stay in the foreground
    local mnt=$1 t0=$SECONDS; shift
    "$@" </dev/null >>"$OUT/daemon-$T.log" 2>&1 &
    local pid=$!
    UNDO+=("fuse|$mnt|$pid")
    until is_mnt "$mnt"; do
        kill -0 "$pid" 2>/dev/null || { echo "$T: daemon died" >&2; return 1; }
        ((SECONDS - t0 > 180)) && { echo "$T: mount timeout" >&2; return 1; }
        sleep 0.2
    done
}

RC=0
DEKFS_P=""; DEKFS_F=""
printf '%s\n' "# target,passed,failed,skipped,expected_failures,total" >"$OUT/summary.csv"
for T in $TARGETS; do
    D=$PJD_DIR/$T; rm -rf "$D"; mkdir -p "$D/mnt" "$D/back"; echo "$PW" >"$D/pw"
    M=$D/mnt
    : >"$OUT/daemon-$T.log"
    case $T in
    native) M=$D/back ;;
    dekfs)
        "$DEKFS" init "$D/back" --passfile "$D/pw" --no-recovery-key \
            --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 >>"$OUT/daemon-$T.log" 2>&1 &&
            { UNDO+=("dekfs|$M|"); timeout 120 "$DEKFS" mount "$D/back" "$M" --passfile "$D/pw" \
                -o allow_other,default_permissions --log-file "$OUT/daemon-$T.log"; } &&
            is_mnt "$M" && timeout 30 stat "$M" >/dev/null ;;
    gocryptfs) # -allow_other makes gocryptfs add default_permissions itself
        gocryptfs -init -q -passfile "$D/pw" "$D/back" &&
            start "$M" gocryptfs -fg -q -allow_other -passfile "$D/pw" "$D/back" "$M" ;;
    *) echo "unknown target $T (dekfs native gocryptfs)" >&2; RC=1; continue ;;
    esac || { echo "$T: setup FAILED (see $OUT/daemon-$T.log)" >&2; tail -5 "$OUT/daemon-$T.log" >&2
              echo "$T,setup failed" >>"$OUT/summary.csv"; undo; [ "$T" = dekfs ] && RC=1; continue; }
    grep " $M " /proc/mounts >"$OUT/mount-$T.txt"
    # secondary fs for the EXDEV tests: a directory on another filesystem
    SEC=/dev/shm/pjd-sec-$$; mkdir -p "$SEC"
    chmod 755 "$M"
    echo "$T: running pjdfstest on $M ..."
    (cd / && timeout 1800 "$PJD" -c "$CFG" -p "$M" -s "$SEC") >"$OUT/$T.out" 2>&1
    rm -rf "$SEC"
    s=$(grep -a '^Summary' "$OUT/$T.out" | sed 's/\x1b\[[0-9;]*m//g')
    echo "$T: ${s:-no summary (pjdfstest crashed? see $OUT/$T.out)}"
    sed 's/\x1b\[[0-9;]*m//g' "$OUT/$T.out" | awk '
        / FAILED$/ { print; getline; print; next }
        / skipped$/ { print; next }
        /^Summary/ { print }' >"$OUT/$T.txt"
    n() { grep -o "[0-9]* $1" <<<"$s" | head -1 | cut -d' ' -f1; }
    p=$(n passed); f=$(n failed); k=$(n skipped)
    echo "$T: passed=${p:-?} failed=${f:-?} skipped=${k:-?}"
    if grep -q ' FAILED$' "$OUT/$T.txt"; then
        echo "$T: failed tests:"; grep -A1 ' FAILED$' "$OUT/$T.txt" | sed 's/^/    /'
    fi
    echo "$T,${p},${f},${k},$(n expected),$(n total)" >>"$OUT/summary.csv"
    if [ "$T" = dekfs ]; then
        DEKFS_P=${p:-0}; DEKFS_F=${f:-0}
        [ -n "$p" ] || DEKFS_F=$((DEKFS_F + 1))
    fi
    undo
    rm -rf "$D"
done
cat "$OUT/summary.csv"
if [[ " $TARGETS " == *" dekfs "* ]]; then
    echo "pjdfstest: $DEKFS_P passed, $DEKFS_F failed (thresholds: passed >= $PJD_MIN_PASS, failed <= $PJD_MAX_FAIL)"
    if [ -z "$DEKFS_P" ] || [ "$DEKFS_P" -lt "$PJD_MIN_PASS" ] || [ "$DEKFS_F" -gt "$PJD_MAX_FAIL" ]; then
        echo "pjdfstest: THRESHOLD NOT MET" >&2
        RC=1
    fi
fi
exit $RC
