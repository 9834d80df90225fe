#!/usr/bin/env bash
# fuzz.sh - runs every cargo-fuzz target in fuzz/ for FUZZ_SECS seconds each
# (default 60), FUZZ_JOBS at a time (default 2), from a copy of the seed
# corpus (fuzz/corpus/<target>, taken from the frozen example volume).
#
#   scripts/fuzz.sh                 # CI: 60 s per target
#   FUZZ_SECS=3600 scripts/fuzz.sh  # soak
#   FUZZ_TARGETS="config header" scripts/fuzz.sh
#
# cargo-fuzz needs nightly features; on the stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1 (libFuzzer + AddressSanitizer). Without
# cargo-fuzz, or with FUZZ_STABLE=1, it runs the same target bodies through
# the stable harness (fuzz/tests/stable_harness.rs, random mutations, no
# coverage guidance). A crash leaves its input in fuzz/artifacts/<target>/:
# copy it to fuzz/regressions/<target>/: every run (both modes) replays it.
# Last line: "fuzz: N targets, N execs, N crashes". Exit non-zero on a crash.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO/fuzz"
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$REPO/fuzz/target}"
SECS=${FUZZ_SECS:-60}
JOBS=${FUZZ_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-"config protector dirmeta header names geometry unlock"}
WORK=$(mktemp -d /tmp/dekfs-fuzz.XXXXXX)

if ! command -v cargo-fuzz >/dev/null && [ "${FUZZ_STABLE:-0}" != 1 ]; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked >"$WORK/install.log" 2>&1 || tail -5 "$WORK/install.log"
fi
if [ "${FUZZ_STABLE:-0}" = 1 ] || ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: cargo-fuzz unavailable or FUZZ_STABLE=1: stable harness, $SECS s per target"
    DEKFS_FUZZ_STABLE_SECS=$SECS cargo test --release -- --nocapture 2>&1 | tee "$WORK/stable.log"
    rc=${PIPESTATUS[0]}
    n=$(echo "$TARGETS" | wc -w)
    execs=$(grep -oE '[0-9]+ mutations' "$WORK/stable.log" | awk '{s+=$1} END{print s+0}')
    echo "fuzz: $n targets, $execs execs, $([ "$rc" = 0 ] && echo 0 || echo 1) crashes (stable harness)"
    exit "$rc"
fi

export RUSTC_BOOTSTRAP=1
echo "fuzz: building targets"
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

running=0
for t in $TARGETS; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

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
