#!/usr/bin/env bash
# install.sh - build and install dekfs, its mount helper, man pages, shell
# completions and systemd units, as root; or remove exactly what it installed.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--no-build]
#   scripts/install.sh --uninstall [--prefix DIR] [--destdir DIR]
#   scripts/install.sh --check [--prefix DIR]   # verify units, render pages
#
# Installs (PREFIX defaults to /usr/local):
#   PREFIX/bin/dekfs, /sbin/mount.fuse.dekfs (libmount looks only in /sbin),
#   PREFIX/share/man/man{1,5,8}/ (generated from the CLI by dekfs-docgen),
#   bash, zsh and fish completions under PREFIX/share,
#   PREFIX/lib/systemd/system/dekfs-rekey@.{service,timer},
#   PREFIX/lib/systemd/user/dekfs-mount@.service,
#   PREFIX/share/doc/dekfs/ (FORMAT.md, the example .mount/.automount pair).
# Every installed path is listed in PREFIX/share/dekfs/installed-files, which
# --uninstall reads; it removes nothing else. Units name PREFIX/bin/dekfs.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PREFIX=/usr/local DESTDIR= MODE=install BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift ;;
        --destdir) DESTDIR=$2; shift ;;
        --no-build) BUILD=0 ;;
        --uninstall) MODE=uninstall ;;
        --check) MODE=check ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
case "$PREFIX" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
ROOT=$DESTDIR
MANIFEST=$PREFIX/share/dekfs/installed-files
SYSTEM_UNITS=$PREFIX/lib/systemd/system
USER_UNITS=$PREFIX/lib/systemd/user
DOC=$PREFIX/share/doc/dekfs

reload_systemd() {
    if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
}

uninstall() {
    local m=$ROOT$MANIFEST
    [ -f "$m" ] || { echo "install.sh: nothing to uninstall ($m not found)"; return 0; }
    while IFS= read -r f; do
        rm -f -- "$ROOT$f"
    done < "$m"
    rm -f -- "$m"
    # Only the directories of our own that are now empty.
    rmdir --ignore-fail-on-non-empty "$ROOT$PREFIX/share/dekfs" "$ROOT$DOC/examples" "$ROOT$DOC" 2>/dev/null || true
    reload_systemd
    echo "install.sh: removed dekfs from $ROOT$PREFIX and $ROOT/sbin"
}

# put SRC DEST MODE: install one file and record it.
put() {
    install -D -m "$3" "$1" "$ROOT$2"
    echo "$2" >> "$STAGE/manifest"
}

# A unit with the binary path of this prefix.
put_unit() {
    sed "s|/usr/local/bin/dekfs|$PREFIX/bin/dekfs|g" "$1" > "$STAGE/unit"
    put "$STAGE/unit" "$2" 0644
}

install_all() {
    local target=${CARGO_TARGET_DIR:-$REPO/target}/release
    if [ "$BUILD" = 1 ]; then
        (cd "$REPO" && DEKFS_BIN=$PREFIX/bin/dekfs cargo build --release --locked \
            -p dekfs -p mount-helper -p docgen)
    fi
    for b in dekfs dekfs-mount-helper dekfs-docgen; do
        [ -x "$target/$b" ] || { echo "install.sh: $target/$b missing (build first)" >&2; exit 1; }
    done
    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
    "$target/dekfs-docgen" "$STAGE/gen"
    # A reinstall first removes what the last one installed.
    [ -f "$ROOT$MANIFEST" ] && uninstall >/dev/null
    : > "$STAGE/manifest"
    put "$target/dekfs" "$PREFIX/bin/dekfs" 0755
    put "$target/dekfs-mount-helper" /sbin/mount.fuse.dekfs 0755
    local page sec
    for page in "$STAGE"/gen/man/man*/*; do
        sec=$(basename "$(dirname "$page")")
        put "$page" "$PREFIX/share/man/$sec/$(basename "$page")" 0644
    done
    put "$STAGE/gen/completions/dekfs.bash" "$PREFIX/share/bash-completion/completions/dekfs" 0644
    put "$STAGE/gen/completions/_dekfs" "$PREFIX/share/zsh/site-functions/_dekfs" 0644
    put "$STAGE/gen/completions/dekfs.fish" "$PREFIX/share/fish/vendor_completions.d/dekfs.fish" 0644
    put_unit "$REPO/dist/systemd/dekfs-rekey@.service" "$SYSTEM_UNITS/dekfs-rekey@.service"
    put_unit "$REPO/dist/systemd/dekfs-rekey@.timer" "$SYSTEM_UNITS/dekfs-rekey@.timer"
    put_unit "$REPO/dist/systemd/user/dekfs-mount@.service" "$USER_UNITS/dekfs-mount@.service"
    put "$REPO/dist/systemd/srv-vault.mount" "$DOC/examples/srv-vault.mount" 0644
    put "$REPO/dist/systemd/srv-vault.automount" "$DOC/examples/srv-vault.automount" 0644
    put "$REPO/docs/FORMAT.md" "$DOC/FORMAT.md" 0644
    echo "$MANIFEST" >> "$STAGE/manifest"
    install -D -m 0644 "$STAGE/manifest" "$ROOT$MANIFEST"
    reload_systemd
    echo "install.sh: installed dekfs into $ROOT$PREFIX and mount.fuse.dekfs into $ROOT/sbin"
}

# check: every unit verifies clean (templates as an instance) and every page
# renders without warnings. Needs an install without --destdir.
check() {
    local tmp rc=0 u page
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    cp "$REPO/dist/systemd/srv-vault.mount" "$REPO/dist/systemd/srv-vault.automount" "$tmp/"
    sed "s|/usr/local/bin/dekfs|$PREFIX/bin/dekfs|g" "$REPO/dist/systemd/dekfs-rekey@.service" > "$tmp/dekfs-rekey@srv-vault.enc.service"
    sed "s|/usr/local/bin/dekfs|$PREFIX/bin/dekfs|g" "$REPO/dist/systemd/dekfs-rekey@.timer" > "$tmp/dekfs-rekey@srv-vault.enc.timer"
    sed "s|/usr/local/bin/dekfs|$PREFIX/bin/dekfs|g" "$REPO/dist/systemd/user/dekfs-mount@.service" > "$tmp/dekfs-mount@vault.service"
    for u in "$tmp"/*; do
        out=$(systemd-analyze verify "$u" 2>&1) || rc=1
        if [ -n "$out" ]; then echo "$out"; rc=1; fi
        echo "verify $(basename "$u"): $([ -z "$out" ] && echo clean || echo FAILED)"
    done
    while IFS= read -r page; do
        case "$page" in */share/man/*) ;; *) continue ;; esac
        out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || rc=1
        if [ -n "$out" ]; then echo "$page: $out"; rc=1; fi
    done < "$MANIFEST"
    echo "man -l: $(grep -c /share/man/ "$MANIFEST") pages checked"
    return $rc
}

[ "$(id -u)" = 0 ] || [ -n "$DESTDIR" ] || [ "$MODE" = check ] ||
    { echo "install.sh: run as root (or with --destdir)" >&2; exit 1; }
case "$MODE" in
    install) install_all ;;
    uninstall) uninstall ;;
    check) check ;;
esac
