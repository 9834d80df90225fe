#!/usr/bin/env bash
# check-tmp-clean.sh - fails when a test run leaves dekfs work dirs or mounts
# behind in the temp dirs (issue 13 item 21). Two calls around the run:
#
#   scripts/check-tmp-clean.sh snapshot "$LOGS/tmp-before.txt"
#   ... cargo test, fuzz, pjdfstest ...
#   scripts/check-tmp-clean.sh compare "$LOGS/tmp-before.txt" [AFTER_LISTING]
#
# A listing has one line per entry: paths in $TMPDIR (default /tmp) and
# /var/tmp whose name starts with "dekfs-" (TestVolume, scratch_dir, fuzz.sh,
# the fuzz targets and tpm-smoke.sh all name their work dirs so), and
# "mount:PATH" for every mount point below such a path. `compare` lists the
# entries of AFTER (default: the state now) that are not in BEFORE and exits
# 1 if there are any, 0 otherwise. Entries that were there before the run
# (from an earlier run, or the long-lived /var/tmp/dekfs-test-logs,
# -demo, -bench, -pjd dirs of the scripts) are never blamed on it.
# Env: CHECK_TMP_DIRS overrides the directories searched (space-separated).
# Other processes writing dekfs-* entries meanwhile (a second run on the
# same machine) would be reported too: run it where the run is alone, as CI.
set -euo pipefail

DIRS=${CHECK_TMP_DIRS:-"${TMPDIR:-/tmp} /var/tmp"}

listing() {
    local d
    for d in $DIRS; do
        [ -d "$d" ] || continue
        find "$d" -mindepth 1 -maxdepth 1 -name 'dekfs-*' -print 2>/dev/null
    done
    # Mount points inside such dirs: a leaked mount also keeps its dir.
    awk '{print $5}' /proc/self/mountinfo | while read -r m; do
        for d in $DIRS; do
            case "$m" in "${d%/}"/dekfs-*) echo "mount:$m" ;; esac
        done
    done
}

usage() { echo "usage: $0 snapshot FILE | compare BEFORE [AFTER]" >&2; exit 2; }

case "${1:-}" in
    snapshot)
        [ $# = 2 ] || usage
        listing | sort -u >"$2"
        ;;
    compare)
        [ $# = 2 ] || [ $# = 3 ] || usage
        [ -r "$2" ] || { echo "check-tmp-clean: cannot read $2" >&2; exit 2; }
        after=$(mktemp)
        trap 'rm -f "$after"' EXIT
        if [ $# = 3 ]; then sort -u "$3" >"$after"; else listing | sort -u >"$after"; fi
        left=$(comm -13 <(sort -u "$2") "$after")
        if [ -n "$left" ]; then
            echo "check-tmp-clean: the run left $(echo "$left" | wc -l) entries behind:"
            echo "$left" | sed 's/^/  /'
            exit 1
        fi
        echo "check-tmp-clean: nothing left behind"
        ;;
    *) usage ;;
esac
