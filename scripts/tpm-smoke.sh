#!/usr/bin/env bash
# tpm-smoke.sh - the TPM2 protector against a real swtpm, from the CLI, without FUSE:
# starts swtpm on a free loopback port with a fresh state directory, seals a volume's KEK
# (init --tpm2), unlocks it through the TPM five times (protector list + a TPM-authorised
# `protector add --recovery-key`), prints the median unlock time, and stops swtpm on exit.
#   scripts/tpm-smoke.sh [path/to/dekfs]     (default: target/release/dekfs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEKFS=${1:-target/release/dekfs}
[ -x "$DEKFS" ] || cargo build --release -q
command -v swtpm >/dev/null || { echo "tpm-smoke: swtpm not installed (scripts/deps.sh)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/dekfs-tpm-smoke.XXXXXX)
SWTPM_PID=
cleanup() { [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]
    t=socket.socket()
    try: t.bind(("127.0.0.1",p+1)); print(p); break
    except OSError: pass'; }
PORT=$(free_port)
mkdir -p "$WORK/state"
swtpm socket --tpm2 --server "type=tcp,port=$PORT,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1" \
    --tpmstate "dir=$WORK/state" --flags not-need-init,startup-clear &
SWTPM_PID=$!
TCTI="swtpm:host=127.0.0.1,port=$PORT"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

echo "secret passphrase" >"$WORK/pass"
"$DEKFS" init "$WORK/c" --tpm2 --tpm-tcti "$TCTI" --passfile "$WORK/pass" \
    --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 >/dev/null
"$DEKFS" protector list "$WORK/c"
times=()
for i in 1 2 3 4 5; do
    t0=$(date +%s%N)
    "$DEKFS" protector add "$WORK/c" --recovery-key --tpm-tcti "$TCTI" >/dev/null 2>&1
    times+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "tpm-smoke: TPM-authorised protector add (TPM unlock + atomic config rewrite): ${times[*]} ms, median ${median} ms"
echo "tpm-smoke: ok ($(stat -c %s "$WORK/c/dekfs.conf") byte config)"
