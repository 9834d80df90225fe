#!/usr/bin/env bash
# test.sh - everything CI checks, in one command (as root):
#
#   sudo scripts/test.sh
#
#   1. scripts/deps.sh                    (skip: SKIP_DEPS=1; installs the
#                                          pinned pjdfstest, cargo-fuzz and fsx
#                                          of scripts/pins.sh when missing)
#   2. cargo fmt --all --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo test --release --workspace   (unit, KAT, format and the real-FUSE
#                                          mount_* / cli_* integration tests)
#   5. scripts/pjdfstest.sh               (skip: SKIP_PJD=1; thresholds
#                                          PJD_MIN_PASS / PJD_MAX_FAIL)
#   6. scripts/fsx.sh                     (skip: SKIP_FSX=1; fsx modes on a
#                                          default and a writeback_cache mount,
#                                          then fsck; FSX_OPS per run)
#   7. scripts/fuzz.sh                    (skip: SKIP_FUZZ=1; FUZZ_SECS per
#                                          target, default 60, 2 in parallel)
#   8. scripts/tpm-smoke.sh               (skip: SKIP_TPM=1; the CLI against its
#                                          own swtpm, started and stopped there)
#   9. tests/e2e/systemd.sh               (skip: SKIP_E2E_SYSTEMD=1; mount at boot
#                                          in a Debian 12 booted by systemd-nspawn;
#                                          its checks count one each, its SKIPPED
#                                          lines are listed, never counted passed;
#                                          cold cache ~100-160 s, cached ~11-15 s)
#  10. tests/powercut/run.sh             (skip: SKIP_POWERCUT=1; simulated power
#                                          cuts: loop devices, fsfreeze, copies,
#                                          journal replay, read-back; dekfs beside
#                                          plain ext4 and gocryptfs; POWERCUT_*
#                                          knobs in the script, ~2-3 min)
#  11. clean tree                         (git status --porcelain is empty: no
#                                          step may modify or add a file that
#                                          .gitignore does not cover; when the
#                                          tree was already dirty, the run must
#                                          not change it)
#  12. leftovers                          (scripts/check-tmp-clean.sh: no
#                                          dekfs-* dir or mount the run made in
#                                          /tmp or /var/tmp is left behind)
#
# Every step runs even if an earlier one failed, so one run shows everything.
# The last line is "N passed, N failed" summing all of it (fmt and clippy
# count as one check each); the exit code is non-zero on any failure.
# Logs: $TEST_LOG_DIR (default /var/tmp/dekfs-test-logs).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
LOGS=${TEST_LOG_DIR:-/var/tmp/dekfs-test-logs}
mkdir -p "$LOGS"
# The run's volumes keep their config-rollback records here, not in /var/lib/dekfs.
export DEKFS_STATE_DIR=${DEKFS_STATE_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/dekfs-test-state}
# What dekfs-* temp entries and mounts exist now, to find what the run leaves.
scripts/check-tmp-clean.sh snapshot "$LOGS/tmp-before.txt"
T_START=$SECONDS

PASSED=0
FAILED=0
FAILED_STEPS=()
step() { echo; echo "=== $* ($(date +%T), +$((SECONDS - T_START)) s)"; }
check_ok() { PASSED=$((PASSED + 1)); echo "--- ok: $1"; }
check_fail() { FAILED=$((FAILED + 1)); FAILED_STEPS+=("$1"); echo "--- FAILED: $1"; }

# tree_state: what step 10 compares (empty on a clean tree)
tree_state() {
    git status --porcelain 2>&1
    git diff HEAD --binary 2>/dev/null | sha256sum | sed 's/^/diff /'
    git ls-files -z --others --exclude-standard 2>/dev/null | xargs -0r sha256sum 2>&1
}
IN_GIT=0
git rev-parse --is-inside-work-tree >/dev/null 2>&1 && IN_GIT=1
TREE_CLEAN_AT_START=0
[ "$IN_GIT" = 1 ] && [ -z "$(git status --porcelain 2>&1)" ] && TREE_CLEAN_AT_START=1
TREE_BEFORE=$(tree_state)
[ "$IN_GIT" = 0 ] || [ "$TREE_CLEAN_AT_START" = 1 ] || echo "test.sh: WARNING: the git tree is dirty before the run; step 10 only checks that the run changes nothing" >&2

[ "$(id -u)" = 0 ] || echo "test.sh: WARNING: not root; FUSE mount tests and pjdfstest will be skipped or fail" >&2

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    step "deps"
    if [ "$(id -u)" = 0 ]; then
        scripts/deps.sh || { echo "test.sh: deps.sh failed" >&2; check_fail deps; }
    else
        echo "not root: skipping deps.sh"
    fi
fi

step "cargo fmt --check"
if cargo fmt --all -- --check >"$LOGS/fmt.log" 2>&1; then check_ok fmt; else
    head -40 "$LOGS/fmt.log"; check_fail "cargo fmt --check"; fi

step "cargo clippy --all-targets -D warnings"
if cargo clippy --workspace --all-targets --release -- -D warnings >"$LOGS/clippy.log" 2>&1; then
    check_ok clippy
else
    grep -E '^(error|warning)' -A6 "$LOGS/clippy.log" | head -80; check_fail "cargo clippy"; fi

step "cargo test --release"
# the mount tests need the release binary (CARGO_BIN_EXE_dekfs) - cargo builds it
timeout "${CARGO_TEST_TIMEOUT:-1200}" cargo test --release --workspace --no-fail-fast 2>&1 | tee "$LOGS/cargo-test.log"
rc=${PIPESTATUS[0]}
tp=$(grep -E '^test result:' "$LOGS/cargo-test.log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END{print s+0}')
tf=$(grep -E '^test result:' "$LOGS/cargo-test.log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END{print s+0}')
PASSED=$((PASSED + tp)); FAILED=$((FAILED + tf))
if [ "$rc" != 0 ]; then
    ((tf > 0)) || { FAILED=$((FAILED + 1)); }   # build failure, timeout, crash
    FAILED_STEPS+=("cargo test (exit $rc)")
    echo "--- FAILED: cargo test (exit $rc): $tp passed, $tf failed"
    grep -E '^test .* FAILED$|^    [a-z_:]+$' "$LOGS/cargo-test.log" | sort -u | head -50
else
    echo "--- ok: cargo test: $tp passed, $tf failed"
fi
grep -E 'SKIPPED \(needs root' "$LOGS/cargo-test.log" | head -3

if [ "${SKIP_PJD:-0}" != 1 ]; then
    step "pjdfstest"
    OUT="$LOGS/pjd-results" scripts/pjdfstest.sh dekfs 2>&1 | tee "$LOGS/pjdfstest.log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^pjdfstest: [0-9]+ passed, [0-9]+ failed' "$LOGS/pjdfstest.log" | tail -1)
    pp=$(sed -E 's/^pjdfstest: ([0-9]+) passed.*/\1/' <<<"$line"); pp=${pp:-0}
    pf=$(sed -E 's/^pjdfstest: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line"); pf=${pf:-0}
    PASSED=$((PASSED + pp)); FAILED=$((FAILED + pf))
    if [ "$rc" != 0 ]; then
        ((pf > 0)) || FAILED=$((FAILED + 1))   # threshold missed or setup failed
        FAILED_STEPS+=("pjdfstest (exit $rc: $pp passed, $pf failed)")
    fi
fi

if [ "${SKIP_FSX:-0}" != 1 ]; then
    step "fsx (${FSX_OPS:-default} ops per run)"
    scripts/fsx.sh 2>&1 | tee "$LOGS/fsx.log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^fsx: [0-9]+ passed, [0-9]+ failed' "$LOGS/fsx.log" | tail -1)
    xp=$(sed -E 's/^fsx: ([0-9]+) passed.*/\1/' <<<"$line"); xp=${xp:-0}
    xf=$(sed -E 's/^fsx: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line"); xf=${xf:-0}
    PASSED=$((PASSED + xp)); FAILED=$((FAILED + xf))
    if [ "$rc" != 0 ]; then
        ((xf > 0)) || FAILED=$((FAILED + 1))   # setup failed
        FAILED_STEPS+=("fsx (exit $rc: $xp passed, $xf failed)")
    fi
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    step "fuzz (${FUZZ_SECS:-60} s per target)"
    if scripts/fuzz.sh 2>&1 | tee "$LOGS/fuzz.log"; [ "${PIPESTATUS[0]}" = 0 ]; then
        check_ok fuzz
    else
        check_fail "fuzz ($(tail -1 "$LOGS/fuzz.log"))"
    fi
fi

if [ "${SKIP_TPM:-0}" != 1 ]; then
    step "TPM smoke (CLI against a private swtpm)"
    if scripts/tpm-smoke.sh </dev/null 2>&1 | tee "$LOGS/tpm-smoke.log"; [ "${PIPESTATUS[0]}" = 0 ]; then
        check_ok tpm-smoke
    else
        check_fail "tpm smoke"
    fi
fi

if [ "${SKIP_E2E_SYSTEMD:-0}" != 1 ]; then
    step "e2e: mount at boot under systemd (tests/e2e/systemd.sh)"
    tests/e2e/systemd.sh </dev/null 2>&1 | tee "$LOGS/e2e-systemd.log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^e2e-systemd: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$LOGS/e2e-systemd.log" | tail -1)
    ep=$(sed -E 's/^e2e-systemd: ([0-9]+) passed.*/\1/' <<<"$line"); ep=${ep:-0}
    ef=$(sed -E 's/^e2e-systemd: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line"); ef=${ef:-0}
    PASSED=$((PASSED + ep)); FAILED=$((FAILED + ef))
    grep -E '^SKIPPED' "$LOGS/e2e-systemd.log" || true
    if [ "$rc" != 0 ]; then
        ((ef > 0)) || FAILED=$((FAILED + 1))   # setup failed
        FAILED_STEPS+=("e2e systemd (exit $rc: $ep passed, $ef failed)")
    fi
fi

if [ "${SKIP_POWERCUT:-0}" != 1 ]; then
    step "power cuts (tests/powercut/run.sh)"
    tests/powercut/run.sh </dev/null 2>&1 | tee "$LOGS/powercut.log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^powercut: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$LOGS/powercut.log" | tail -1)
    cp_=$(sed -E 's/^powercut: ([0-9]+) passed.*/\1/' <<<"$line"); cp_=${cp_:-0}
    cf=$(sed -E 's/^powercut: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line"); cf=${cf:-0}
    PASSED=$((PASSED + cp_)); FAILED=$((FAILED + cf))
    grep -E '^(SKIPPED|KNOWN)' "$LOGS/powercut.log" || true
    if [ "$rc" != 0 ]; then
        ((cf > 0)) || FAILED=$((FAILED + 1))   # setup failed
        FAILED_STEPS+=("power cuts (exit $rc: $cp_ passed, $cf failed)")
    fi
fi

step "clean tree (git status --porcelain)"
if [ "$IN_GIT" = 0 ]; then
    echo "not a git checkout: nothing to compare"
elif [ "$TREE_CLEAN_AT_START" = 1 ] && [ -z "$(git status --porcelain 2>&1)" ]; then
    check_ok "clean tree"
elif [ "$TREE_CLEAN_AT_START" = 0 ] && [ "$(tree_state)" = "$TREE_BEFORE" ]; then
    check_ok "clean tree (dirty before the run, unchanged by it)"
else
    echo "the run left files that are neither committed nor ignored:"
    git status --porcelain 2>&1 | head -20
    check_fail "clean tree: the run modified the git tree"
fi

step "temp dirs and mounts left behind (scripts/check-tmp-clean.sh)"
if scripts/check-tmp-clean.sh compare "$LOGS/tmp-before.txt"; then
    check_ok "nothing left in the temp dirs"
else
    check_fail "the run left dekfs-* temp dirs or mounts behind"
fi

echo
echo "=== summary ($((SECONDS - T_START)) s; logs in $LOGS)"
if [ "${#FAILED_STEPS[@]}" -gt 0 ]; then
    printf 'failed: %s\n' "${FAILED_STEPS[@]}"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] && [ "${#FAILED_STEPS[@]}" = 0 ]
