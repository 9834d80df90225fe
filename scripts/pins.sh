# pins.sh - the exact versions of the test tools installed with `cargo install`.
# Sourced by deps.sh (which installs them), pjdfstest.sh, fuzz.sh and fsx.sh
# (which refuse to install anything mid-run). Not executable on its own.
# Changing a pin is a reviewed commit, like a Cargo.lock change.
# shellcheck shell=bash
PJDFSTEST_VERSION=0.2.2   # POSIX conformance suite (scripts/pjdfstest.sh)
CARGO_FUZZ_VERSION=0.13.2 # libFuzzer driver (scripts/fuzz.sh)
FSX_VERSION=0.3.2         # File System eXerciser (scripts/fsx.sh)

# pinned_tool_version CRATE: the version `cargo install` recorded for CRATE,
# or nothing when it is not installed that way.
pinned_tool_version() {
    cargo install --list 2>/dev/null | sed -nE "s/^$1 v([^ :]+).*/\\1/p" | head -1
}

# require_pinned_tool CRATE VERSION BINARY: exit 0 when BINARY is the pinned
# version; otherwise say which command installs it and return 1.
require_pinned_tool() {
    local crate=$1 want=$2 bin=$3 have
    have=$(pinned_tool_version "$crate")
    if [ -z "$have" ] && ! command -v "$bin" >/dev/null 2>&1; then
        echo "$bin not installed: run scripts/deps.sh (cargo install --locked $crate --version $want)" >&2
        return 1
    fi
    if [ -n "$have" ] && [ "$have" != "$want" ]; then
        echo "$bin is $crate $have, pinned $want: run scripts/deps.sh" >&2
        return 1
    fi
    return 0
}
