#!/usr/bin/env bash
# check-fast.sh - the quick check to run before every commit, as any user,
# without root, FUSE or swtpm (under a minute on a warm build):
#
#   scripts/check-fast.sh
#
#   1. rustc is 1.95.x, the toolchain dekfs is tested with (rust-toolchain.toml
#      pins the channel; the number is checked here, see that file for why)
#   2. cargo fmt --all --check
#   3. cargo clippy --workspace --all-targets -- -D warnings   (debug profile)
#   4. the unit tests (cargo test --workspace --lib --bins) and tests/layering.rs;
#      not as root, without fs::tests (they need root, see below)
#
# It stops at the first failure. scripts/test.sh stays the full check (mounts,
# pjdfstest, TPM, fuzz; as root). If target/ is not writable (a normal user in
# a tree built by root) the build goes to $CHECK_FAST_TARGET_DIR, default
# ${TMPDIR:-/tmp}/check-fast-dekfs-$UID (kept as a build cache: not named
# dekfs-*, which check-tmp-clean.sh treats as a leak), and its first run is a
# cold build.
# Env: CHECK_FAST_ANY_RUSTC=1 skips step 1 (try another compiler on purpose).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
WANT_RUST=1.95
T0=$SECONDS

step() { echo "=== $* (+$((SECONDS - T0)) s)"; }
fail() { echo "check-fast: FAILED: $*" >&2; exit 1; }

step "toolchain"
command -v cargo >/dev/null || fail "cargo not found; install Rust $WANT_RUST with rustup (see scripts/deps.sh)"
ver=$(rustc --version) || fail "rustc does not run (is the toolchain of rust-toolchain.toml installed?)"
echo "$ver"
case "$ver" in
    "rustc $WANT_RUST."*) ;;
    *)
        [ "${CHECK_FAST_ANY_RUSTC:-0}" = 1 ] || fail "dekfs is built and tested with Rust $WANT_RUST.x, found: $ver
  Install it (rustup toolchain install $WANT_RUST --component rustfmt,clippy) and make it
  the stable toolchain of this checkout, or set CHECK_FAST_ANY_RUSTC=1 to try this one anyway."
        ;;
esac

if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -e target ] && ! [ -w target ]; then
    export CARGO_TARGET_DIR=${CHECK_FAST_TARGET_DIR:-${TMPDIR:-/tmp}/check-fast-dekfs-$(id -u)}
    echo "target/ is not writable by $(id -un); building in $CARGO_TARGET_DIR"
fi

step "cargo fmt --check"
cargo fmt --all -- --check || fail "cargo fmt --check (run cargo fmt --all)"

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings || fail "cargo clippy"

step "unit tests and layering"
skip=()
if [ "$(id -u)" != 0 ]; then
    # The core tests act as caller uid 0 and chown each new dekfs.dir to
    # root, which only root may do; as another user they fail with EPERM.
    echo "not root: skipping fs::tests (they run as root here and in scripts/test.sh)"
    skip=(--skip fs::tests)
fi
cargo test --workspace --lib --bins --quiet -- "${skip[@]}" || fail "unit tests"
cargo test --test layering --quiet || fail "tests/layering.rs"

step "ok: fmt, clippy, unit tests, layering"
