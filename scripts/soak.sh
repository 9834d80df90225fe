#!/usr/bin/env bash
# soak.sh - the long versions of the reliability battery, for use before
# releases (as root; hours with the defaults):
#
#   sudo scripts/soak.sh
#   SOAK_KILLS=20000 SOAK_STRESS_SECS=3600 SOAK_FUZZ_SECS=3600 scripts/soak.sh
#
#   crash:       tests/crash_kill9.rs with SOAK_KILLS kills (default 5000)
#                for each seed in SOAK_SEEDS (default "1 2 3 4")
#   concurrency: tests/concurrency_stress.rs, SOAK_STRESS_SECS per workload
#                (default 900), SOAK_ROUNDS rounds (default 2)
#   randomized:  mount_fsx + the tamper battery, SOAK_ROUNDS rounds
#   fuzz:        scripts/fuzz.sh with SOAK_FUZZ_SECS per target (default 1800)
# Last line: "soak: N passed, N failed"; exit non-zero on any failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
KILLS=${SOAK_KILLS:-5000}
SEEDS=${SOAK_SEEDS:-"1 2 3 4"}
STRESS=${SOAK_STRESS_SECS:-900}
ROUNDS=${SOAK_ROUNDS:-2}
FUZZ=${SOAK_FUZZ_SECS:-1800}
LOGS=${TEST_LOG_DIR:-/var/tmp/dekfs-soak-logs}
mkdir -p "$LOGS"
P=0; F=0
run() {
    local name=$1; shift
    echo "=== soak: $name ($(date +%T))"
    if "$@" >"$LOGS/$name.log" 2>&1; then P=$((P + 1)); echo "--- ok: $name"
    else F=$((F + 1)); echo "--- FAILED: $name (log $LOGS/$name.log)"; tail -20 "$LOGS/$name.log"; fi
}
cargo build --release --tests >/dev/null 2>&1 || { echo "soak: build failed"; exit 1; }
for s in $SEEDS; do
    run "crash-seed$s" env DEKFS_CRASH_KILLS="$KILLS" DEKFS_CRASH_SEED="$s" \
        cargo test --release --test crash_kill9 -- --nocapture
done
for r in $(seq 1 "$ROUNDS"); do
    run "concurrency-$r" env DEKFS_STRESS_SECS="$STRESS" cargo test --release --test concurrency_stress
    run "randomized-$r" cargo test --release --test mount_fsx --test 'tamper_*' --test fulldisk_enospc
done
run fuzz env FUZZ_SECS="$FUZZ" scripts/fuzz.sh
echo "soak: $P passed, $F failed"
[ "$F" = 0 ]
