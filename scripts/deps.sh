#!/usr/bin/env bash
# deps.sh - install what dekfs needs to build, test and benchmark, on a fresh
# Debian/Ubuntu machine, as root. Idempotent: re-running does nothing new.
#
#   sudo scripts/deps.sh
#
# Installs (apt): FUSE 3 (fusermount3, libfuse3-dev for passthrough_ll), the C
# toolchain, fio/jq (benchmarks), attr (getfattr/setfattr), gocryptfs (peer in
# the benchmarks), util-linux (mountpoint, losetup, fsfreeze), e2fsprogs
# (mkfs.ext4, e2fsck: tests/powercut), debootstrap, systemd-container
# and iproute2 (tests/e2e/systemd.sh). Adds the `tests` dummy user that
# pjdfstest switches to. Rust (cargo, rustfmt, clippy) must come from rustup;
# this script does not download toolchains, it only tells you how.
# Then it builds the test tools from crates.io at the exact versions pinned in
# scripts/pins.sh (pjdfstest, cargo-fuzz, fsx), with `cargo install --locked`;
# the first run takes several minutes of compiling and says so. No other
# script installs anything.
# It also puts PyKMIP (a real KMIP server for tests/kmip.rs) into its own venv,
# /opt/dekfs-kmip-venv (or $DEKFS_KMIP_VENV), from the Python package index at
# pinned versions.
# Env: DEPS_SKIP_APT=1 skips apt (for machines where you manage packages);
#      DEPS_SKIP_CARGO_TOOLS=1 skips the cargo-installed tools;
#      DEPS_SKIP_KMIP=1 skips the PyKMIP venv.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=pins.sh
. "$REPO/scripts/pins.sh"

[ "$(id -u)" = 0 ] || { echo "deps.sh: run as root (sudo scripts/deps.sh)" >&2; exit 1; }

PKGS=(fuse3 libfuse3-dev pkg-config fio jq attr gocryptfs gcc make build-essential
      util-linux e2fsprogs procps psmisc strace tar python3 ca-certificates
      swtpm swtpm-tools libtss2-dev libtss2-tcti-swtpm0 tpm2-tools
      debootstrap systemd-container iproute2 python3-venv openssl)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ "${DEPS_SKIP_APT:-0}" != 1 ]; then
    echo "deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "deps.sh: apt packages present"
fi

# pjdfstest switches to nobody:nogroup and tests:tests
getent group nogroup >/dev/null || groupadd --system nogroup
if ! id tests >/dev/null 2>&1; then
    useradd --system --no-create-home --user-group --shell /usr/sbin/nologin \
        --comment "Dummy User for pjdfstest" tests
    echo "deps.sh: added user tests"
fi

# FUSE device
if [ ! -e /dev/fuse ]; then
    modprobe fuse 2>/dev/null || true
    [ -e /dev/fuse ] || echo "deps.sh: WARNING: /dev/fuse missing (container without FUSE?); mount tests will be skipped" >&2
fi

# PyKMIP for the KMIP protector tests, pinned: with these versions it serves KMIP 1.4
# (AES-256-GCM with associated data and tag) over TLS 1.2 with ECDSA certificates.
KMIP_VENV=${DEKFS_KMIP_VENV:-/opt/dekfs-kmip-venv}
KMIP_PINS=(pykmip==0.11.0 cryptography==50.0.2 SQLAlchemy==2.1.9)
if [ "${DEPS_SKIP_KMIP:-0}" != 1 ]; then
    have=$("$KMIP_VENV/bin/python" -m pip freeze 2>/dev/null | grep -iE '^(pykmip|cryptography|sqlalchemy)==' | sort -f | tr '\n' ' ')
    want=$(printf '%s\n' "${KMIP_PINS[@]}" | sort -f | tr '\n' ' ')
    if [ "${have,,}" = "${want,,}" ]; then
        echo "deps.sh: PyKMIP venv present ($KMIP_VENV)"
    else
        # Debian's interpreter, not one a version manager put first on PATH.
        py=/usr/bin/python3
        [ -x "$py" ] || py=$(command -v python3)
        echo "deps.sh: creating the PyKMIP venv $KMIP_VENV (${KMIP_PINS[*]})"
        "$py" -m venv "$KMIP_VENV"
        "$KMIP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${KMIP_PINS[@]}"
    fi
fi

# Rust toolchain: never downloaded by this script.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    cat >&2 <<'MSG'
deps.sh: cargo not found.
  Install the Rust toolchain with rustup (https://rustup.rs), for example
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile default
  then `source $HOME/.cargo/env` and re-run this script. dekfs needs Rust >= 1.85
  with the rustfmt and clippy components (rustup component add rustfmt clippy).
MSG
    exit 1
fi
for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add "$c" || echo "deps.sh: WARNING: could not add rustup component $c" >&2
        else
            echo "deps.sh: WARNING: cargo $c missing; install the $c component" >&2
        fi
    fi
done

# Test tools, pinned. Each is built only when missing or at another version.
if [ "${DEPS_SKIP_CARGO_TOOLS:-0}" != 1 ]; then
    for spec in "pjdfstest $PJDFSTEST_VERSION" "cargo-fuzz $CARGO_FUZZ_VERSION" "fsx $FSX_VERSION"; do
        read -r crate want <<<"$spec"
        have=$(pinned_tool_version "$crate")
        if [ "$have" = "$want" ]; then
            echo "deps.sh: $crate $want present"
            continue
        fi
        echo "deps.sh: installing $crate $want${have:+ (replacing $have)} with cargo install --locked; compiling takes a few minutes"
        t0=$SECONDS
        cargo install --locked --force "$crate" --version "$want" --quiet
        echo "deps.sh: $crate $want installed in $((SECONDS - t0)) s"
    done
fi
echo "deps.sh: ok ($(cargo --version))"
