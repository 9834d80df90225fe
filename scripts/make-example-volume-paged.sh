#!/usr/bin/env bash
# Makes the frozen paged example volume tests/vectors/example-volume-paged-v1 through a real
# mount of the release binary: `dekfs init` (the default, paged layout), the tree below written
# by ordinary file I/O (the log by three fsynced appends, so the append path is what is frozen),
# unmounted. Run ONCE; the committed copy is authoritative and tests/format_example_volume_paged.rs
# must read it forever. Needs root and /dev/fuse. Prints the recovery key for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/vectors/example-volume-paged-v1
bin=${DEKFS_BIN:-${CARGO_TARGET_DIR:-target}/release/dekfs}
[ -e "$out" ] && { echo "$out exists: it is frozen, never regenerate it" >&2; exit 1; }
work=$(mktemp -d /tmp/dekfs-example-paged.XXXXXX)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$out" "$work/mnt"
printf 'dekfs example volume paged v1\n' > "$work/pass"
"$bin" init "$out" --passfile "$work/pass" --kdf-memory 8192 --kdf-time 1 --kdf-lanes 1 | tee "$work/init.out"
"$bin" mount "$out" "$work/mnt" --passfile "$work/pass"
m=$work/mnt
printf 'Hello, dekfs!\n' > "$m/hello.txt"
: > "$m/empty"
python3 -c 'import sys; sys.stdout.buffer.write(bytes((7*i+3)%251 for i in range(10000)))' > "$m/big.bin"
python3 -c 'import sys; sys.stdout.buffer.write(bytes(i%256 for i in range(4064)))' > "$m/page.bin"
for r in one two three; do
  python3 -c "import os,sys; f=open(sys.argv[1],'ab'); f.write(('record %s\n' % sys.argv[2]).encode()); f.flush(); os.fsync(f.fileno())" "$m/log.txt" "$r"
done
ln -s hello.txt "$m/link"
mkdir "$m/sub"
printf 'nested file\n' > "$m/sub/nested.txt"
printf 'long name\n' > "$m/sub/$(printf 'L%.0s' $(seq 200))"
"$bin" umount "$m"
rm -f "$out/dekfs.lock" "$out/dekfs.conf.lock"
echo "made $out"
