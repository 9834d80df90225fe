#!/usr/bin/env bash
# demo.sh - quick start: build dekfs, create a demo volume, mount it, write a
# file through it and show what lands on disk. Leaves the volume mounted.
#
#   sudo scripts/demo.sh
#
# Demo volume: /var/tmp/dekfs-demo/{cipher,mnt,passfile,recovery-key.txt,daemon.log}
# Re-runnable: a previous demo is unmounted and removed first.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${DEMO_DIR:-/var/tmp/dekfs-demo}
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo scripts/demo.sh)" >&2; exit 1; }

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say() { printf '\n%s$ %s%s\n' "$B" "$*" "$N"; }

"$REPO/scripts/deps.sh"
(cd "$REPO" && cargo build --release)
DEKFS=$REPO/target/release/dekfs

# clean up a previous demo
if mountpoint -q "$DEMO/mnt" 2>/dev/null; then
    "$DEKFS" umount "$DEMO/mnt" || fusermount3 -uz "$DEMO/mnt" || umount -l "$DEMO/mnt"
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/cipher" "$DEMO/mnt"
chmod 700 "$DEMO"

# a random passphrase in a root-only passfile
umask 077
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$DEMO/passfile"
umask 022

say "dekfs init $DEMO/cipher --passfile $DEMO/passfile"
"$DEKFS" init "$DEMO/cipher" --passfile "$DEMO/passfile" | tee "$DEMO/init.out"
grep '^Recovery key:' "$DEMO/init.out" >"$DEMO/recovery-key.txt" && chmod 600 "$DEMO/recovery-key.txt" || true
rm -f "$DEMO/init.out"

say "dekfs mount $DEMO/cipher $DEMO/mnt --passfile $DEMO/passfile --log-file $DEMO/daemon.log"
"$DEKFS" mount "$DEMO/cipher" "$DEMO/mnt" --passfile "$DEMO/passfile" --log-file "$DEMO/daemon.log"

say "echo 'Hello from dekfs' > $DEMO/mnt/hello.txt; mkdir $DEMO/mnt/docs; ..."
echo "Hello from dekfs, $(date)" >"$DEMO/mnt/hello.txt"
mkdir "$DEMO/mnt/docs"
echo "a secret plan" >"$DEMO/mnt/docs/plan.txt"

say "cat $DEMO/mnt/hello.txt"
cat "$DEMO/mnt/hello.txt"

say "ls -lR $DEMO/mnt          # the plaintext view"
ls -lR "$DEMO/mnt"

say "ls -lR $DEMO/cipher       # what is stored on disk: encrypted names and contents"
ls -lR "$DEMO/cipher"

say "dekfs status $DEMO/mnt"
"$DEKFS" status "$DEMO/mnt"

cat <<MSG

The demo volume stays mounted at $DEMO/mnt.
  passphrase file : $DEMO/passfile
  recovery key    : $DEMO/recovery-key.txt   (printed once by init; keep it offline)
  daemon log      : $DEMO/daemon.log
Unmount with:
  $DEKFS umount $DEMO/mnt
Mount again with:
  $DEKFS mount $DEMO/cipher $DEMO/mnt --passfile $DEMO/passfile
MSG
