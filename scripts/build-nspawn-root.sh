#!/usr/bin/env bash
# Builds the Debian root that tests/systemd_boot.rs boots with systemd-nspawn,
# once, and caches it at <repo>/.tools/nspawn-root (~250 MB; ~70-90 s on two
# cores, mostly download and dpkg).
#
#   debootstrap --variant=minbase --include=systemd,dbus,softhsm2 bookworm
#
# systemd and dbus make it bootable; softhsm2 gives the PKCS#11 unit a token
# module. The test boots it with --volatile=overlay, so a run never changes
# the cache.
#
# Usage: scripts/build-nspawn-root.sh
# stdout: the root's path, last line. Needs root and debootstrap.
# Environment: BKP_DEBIAN_MIRROR (default http://deb.debian.org/debian, the
# mirror this machine's apt uses; it is the only one reachable here).
#
# A root is reused only if its recipe stamp (/.bkp-recipe inside it) equals
# the recipe below, so changing the package list rebuilds it. It is built in
# a temporary directory next to the cache and renamed into place, under a
# lock: an interrupted build leaves only a temporary directory, which the
# next build removes, never a half-built root under the cache's name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
DEST="$TOOLS/nspawn-root"
MIRROR="${BKP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
INCLUDE=systemd,dbus,softhsm2
# The mirror is not part of the recipe: any mirror gives the same suite.
RECIPE="debootstrap --variant=minbase --include=$INCLUDE $SUITE"

log() { printf 'build-nspawn-root: %s\n' "$*" >&2; }

stamp_ok() { [ -f "$DEST/.bkp-recipe" ] && [ "$(cat "$DEST/.bkp-recipe")" = "$RECIPE" ]; }

if stamp_ok; then
  log "reusing $DEST ($RECIPE)"
  echo "$DEST"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
command -v debootstrap >/dev/null || { log "missing debootstrap: apt-get install debootstrap"; exit 1; }

mkdir -p "$TOOLS"
exec 9>"$TOOLS/nspawn-root.lock"
flock 9
# Another build may have finished while we waited for the lock.
if stamp_ok; then
  log "reusing $DEST (built while waiting)"
  echo "$DEST"
  exit 0
fi
# Under the lock, every temporary directory is a dead build's.
rm -rf --one-file-system "$TOOLS"/nspawn-root.tmp.*
WORK="$(mktemp -d "$TOOLS/nspawn-root.tmp.XXXXXX")"
trap 'rm -rf --one-file-system "$WORK"' EXIT

log "$RECIPE $MIRROR (takes a minute or two)"
started=$SECONDS
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$WORK/root" "$MIRROR" > "$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  log "debootstrap failed (full log above, last 30 lines)"
  exit 1
fi
printf '%s\n' "$RECIPE" > "$WORK/root/.bkp-recipe"
# rename(2) cannot replace a non-empty directory: move a stale root aside
# first (into $WORK, removed on exit), then put the new one in place.
if [ -e "$DEST" ]; then mv "$DEST" "$WORK/stale"; fi
mv "$WORK/root" "$DEST"
log "built $DEST in $((SECONDS - started)) s ($(du -sh "$DEST" | cut -f1))"
echo "$DEST"
