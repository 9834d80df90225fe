#!/usr/bin/env bash
# fuzz.sh - runs every cargo-fuzz target in fuzz/ for FUZZ_SECS seconds each
# (default 60), FUZZ_JOBS at a time (default 2), from a copy of the seed
# corpus (fuzz/corpus/<target>, taken from the frozen example volume).
#
#   scripts/fuzz.sh                 # CI: 60 s per target
#   FUZZ_SECS=3600 scripts/fuzz.sh  # soak
#   FUZZ_TARGETS="config header" scripts/fuzz.sh
#
# cargo-fuzz (version pinned in scripts/pins.sh, installed by scripts/deps.sh;
# this script never installs it) needs nightly features; on the stable
# toolchain they are unlocked with RUSTC_BOOTSTRAP=1 (libFuzzer +
# AddressSanitizer). Without cargo-fuzz (a warning says so), or with
# FUZZ_STABLE=1, it runs the same target bodies through the stable harness
# (fuzz/tests/stable_harness.rs, random mutations, no coverage guidance).
# While the targets run it prints a progress line every FUZZ_PROGRESS_SECS
# (default 15) with each running target's executions so far. Its work
# directory (/tmp/dekfs-fuzz.*) is deleted on exit, also on Ctrl-C. A crash leaves its input in fuzz/artifacts/<target>/:
# copy it to fuzz/regressions/<target>/: every run (both modes) replays it.
# Last line: "fuzz: N targets, N execs, N crashes". Exit non-zero on a crash.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO/fuzz"
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$REPO/fuzz/target}"
SECS=${FUZZ_SECS:-60}
JOBS=${FUZZ_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-"config protector dirmeta header names geometry unlock ttlv"}
PROGRESS=${FUZZ_PROGRESS_SECS:-15}
# shellcheck source=pins.sh
. "$REPO/scripts/pins.sh"
WORK=$(mktemp -d /tmp/dekfs-fuzz.XXXXXX)
cleanup() {
    local pids
    pids=$(jobs -p)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || { kill $pids 2>/dev/null; wait 2>/dev/null; }
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The targets' own scratch files (the unlock target's volume dir) go under
# WORK, so they go with it.
mkdir -p "$WORK/tmp"
export TMPDIR="$WORK/tmp"

HAVE_FUZZ=1
if [ "${FUZZ_STABLE:-0}" != 1 ]; then
    require_pinned_tool cargo-fuzz "$CARGO_FUZZ_VERSION" cargo-fuzz || HAVE_FUZZ=0
    [ "$HAVE_FUZZ" = 1 ] || echo "fuzz: WARNING: no cargo-fuzz $CARGO_FUZZ_VERSION: falling back to the stable harness (no coverage guidance)" >&2
fi
if [ "${FUZZ_STABLE:-0}" = 1 ] || [ "$HAVE_FUZZ" = 0 ]; then
    echo "fuzz: cargo-fuzz unavailable or FUZZ_STABLE=1: stable harness, $SECS s per target"
    # the harness prints only at the end of each target: a heartbeat meanwhile
    (t0=$SECONDS; while sleep "$PROGRESS"; do echo "fuzz: +$((SECONDS - t0)) s (stable harness running)"; done) &
    beat=$!
    DEKFS_FUZZ_STABLE_SECS=$SECS cargo test --release -- --nocapture 2>&1 | tee "$WORK/stable.log"
    rc=${PIPESTATUS[0]}
    kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null
    n=$(echo "$TARGETS" | wc -w)
    execs=$(grep -oE '[0-9]+ mutations' "$WORK/stable.log" | awk '{s+=$1} END{print s+0}')
    echo "fuzz: $n targets, $execs execs, $([ "$rc" = 0 ] && echo 0 || echo 1) crashes (stable harness)"
    exit "$rc"
fi

export RUSTC_BOOTSTRAP=1
echo "fuzz: building targets (cargo-fuzz $(pinned_tool_version cargo-fuzz))"
cargo fuzz build -O --features libfuzzer >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; echo "fuzz: build failed"; exit 1; }

run_one() {
    local t=$1
    mkdir -p "$WORK/corpus/$t" "$REPO/fuzz/artifacts/$t"
    cp "$REPO/fuzz/corpus/$t/"* "$WORK/corpus/$t/" 2>/dev/null
    # saved crashes are replayed first (libFuzzer runs its corpus before fuzzing)
    cp "$REPO/fuzz/regressions/$t/"* "$WORK/corpus/$t/" 2>/dev/null
    local max_len=4096
    case $t in config|unlock|protector) max_len=70000 ;; esac
    cargo fuzz run -O --features libfuzzer "$t" "$WORK/corpus/$t" -- \
        -max_total_time="$SECS" -max_len=$max_len -rss_limit_mb=2048 -malloc_limit_mb=256 \
        -artifact_prefix="$REPO/fuzz/artifacts/$t/" -print_final_stats=1 >"$WORK/$t.log" 2>&1
    echo $? >"$WORK/$t.rc"
}

# execs_so_far T: the last "#N" libFuzzer printed for T (0 before the first)
execs_so_far() {
    grep -aoE '^#[0-9]+' "$WORK/$1.log" 2>/dev/null | tail -1 | tr -d '#' | grep . || echo 0
}
# progress: one line every $PROGRESS s while targets run, so a long run is
# never silent
progress() {
    local t0=$SECONDS t line
    while sleep "$PROGRESS"; do
        line=""
        for t in $TARGETS; do
            if [ -e "$WORK/$t.rc" ]; then line+=" $t:done"
            elif [ -e "$WORK/$t.log" ]; then line+=" $t:$(execs_so_far "$t")"
            fi
        done
        echo "fuzz: +$((SECONDS - t0)) s, execs so far:${line:- starting}"
    done
}

n_targets=$(echo "$TARGETS" | wc -w)
echo "fuzz: $n_targets targets, $SECS s each, $JOBS at a time: about $(( (n_targets + JOBS - 1) / JOBS * SECS )) s"
progress &
PROGRESS_PID=$!
running=0
PIDS=()
for t in $TARGETS; do
    run_one "$t" &
    PIDS+=($!)
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait "${PIDS[@]}"
kill "$PROGRESS_PID" 2>/dev/null; wait "$PROGRESS_PID" 2>/dev/null

total=0; crashes=0; n=0
for t in $TARGETS; do
    n=$((n + 1))
    execs=$(grep -E '^stat::number_of_executed_units' "$WORK/$t.log" | awk '{print $2}')
    rc=$(cat "$WORK/$t.rc")
    total=$((total + ${execs:-0}))
    if [ "$rc" != 0 ]; then
        crashes=$((crashes + 1))
        echo "fuzz: $t CRASHED (exit $rc):"; grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$WORK/$t.log" | head -10
    fi
    echo "fuzz: $t: ${execs:-?} execs in ${SECS} s, exit $rc"
done
echo "fuzz: $n targets, $total execs, $crashes crashes"
[ "$crashes" = 0 ]
