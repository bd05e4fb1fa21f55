#!/usr/bin/env bash
# Builds the bao-kms-provider .deb with dpkg-deb from a staged tree.
#
# Usage: scripts/build-deb.sh [--binary PATH] [--out DIR] [--compression TYPE]
#                              [--version VERSION]
#   --binary       the bao-kms-provider executable to package (default: build
#                  it with `cargo build --release --locked` and use that)
#   --out          where to write the .deb (default: <cargo target dir>/debian)
#   --compression  dpkg-deb -Z type (default xz; the tests use gzip, which is
#                  ten times faster on a debug binary)
#   --version      the package version (default: the [package] version in
#                  Cargo.toml); tests/systemd_boot.rs builds a second, higher
#                  one (e.g. 0.1.0+upgrade1) to upgrade a package in place
# stdout: the path of the .deb, last line. Needs dpkg-deb, dpkg-shlibdeps
# (dpkg-dev) and strip (binutils).
#
# Why not cargo-deb: installing it compiles ~200 crates (minutes on two cores,
# in every fresh CI run), and it builds its own release binary, while the
# tests want to package the binary they already built. This script is the one
# place the package layout is written down; tests/deploy.rs checks the result.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BINARY=""
VERSION=""
OUT="$TARGET_DIR/debian"
COMPRESSION=xz

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --compression) COMPRESSION="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR] [--compression TYPE] [--version VERSION]" >&2; exit 2 ;;
  esac
done

log() { printf 'build-deb: %s\n' "$*" >&2; }

if [ -z "$BINARY" ]; then
  log "cargo build --release --locked"
  cargo build --release --locked >&2
  BINARY="$TARGET_DIR/release/bao-kms-provider"
fi
[ -x "$BINARY" ] || { log "not an executable: $BINARY"; exit 1; }

PACKAGE=bao-kms-provider
# The [package] version from Cargo.toml (the first `version =` after it).
[ -n "$VERSION" ] || VERSION="$(awk '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/,"",$0); sub(/^version=/,"",$0); print; exit}' Cargo.toml)"
ARCH="$(dpkg --print-architecture)"
[ -n "$VERSION" ] || { log "no version in Cargo.toml"; exit 1; }
# Debian's version syntax (upstream part starts with a digit; no epoch or
# revision here), so dpkg-deb cannot fail late on a typo.
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || { log "not a package version: $VERSION"; exit 2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/$PACKAGE"
DOC="$STAGE/usr/share/doc/$PACKAGE"
umask 022

# Regular files: install -D -m MODE SRC DEST (owner and group are root:root in
# the archive, --root-owner-group; postinst hands the config to openbao-kms).
install -D -m 0755 "$BINARY" "$STAGE/usr/bin/bao-kms-provider"
strip --strip-unneeded "$STAGE/usr/bin/bao-kms-provider"
install -D -m 0644 deploy/systemd/bao-kms-provider.service "$STAGE/lib/systemd/system/bao-kms-provider.service"
install -D -m 0644 deploy/systemd/bao-kms-provider-pkcs11.service "$STAGE/lib/systemd/system/bao-kms-provider-pkcs11.service"
install -D -m 0644 deploy/package/linux/tmpfiles.d/openbao-kms.conf "$STAGE/usr/lib/tmpfiles.d/openbao-kms.conf"
install -D -m 0644 deploy/package/linux/sysusers.d/openbao-kms.conf "$STAGE/usr/lib/sysusers.d/openbao-kms.conf"
install -d -m 0750 "$STAGE/etc/openbao-kms"
install -m 0640 deploy/config/provider-systemd.yaml "$STAGE/etc/openbao-kms/config.yaml"
install -D -m 0644 README.md "$DOC/README.md"
install -m 0644 docs/deploy-systemd.md docs/deploy-static-pod.md "$DOC/"
install -D -m 0644 deploy/README.md "$DOC/examples/README.md"
install -m 0644 deploy/config/provider-systemd.yaml deploy/config/provider-systemd-pkcs11.yaml \
  deploy/config/provider-static-pod.yaml deploy/static-pod/bao-kms-provider.yaml \
  deploy/encryption-config/encryption-config.yaml deploy/encryption-config/encryption-config-readers.yaml \
  "$DOC/examples/"
cat > "$DOC/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $PACKAGE

Files: *
Copyright: the $PACKAGE authors
License: Apache-2.0
 On Debian systems the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$DOC/copyright"

# Shared-library dependencies, computed the Debian way.
mkdir -p "$WORK/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PACKAGE" "$PACKAGE" > "$WORK/shlibs/debian/control"
DEPENDS="$(cd "$WORK/shlibs" && dpkg-shlibdeps -O -e"$STAGE/usr/bin/bao-kms-provider" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$DEPENDS" ] || { log "dpkg-shlibdeps found no dependencies"; exit 1; }

install -d -m 0755 "$STAGE/DEBIAN"
INSTALLED_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: $PACKAGE
Version: $VERSION
Architecture: $ARCH
Maintainer: bao-kms-provider maintainers <maintainers@bao-kms-provider.invalid>
Installed-Size: $INSTALLED_KB
Depends: $DEPENDS, passwd
Recommends: systemd
Section: admin
Priority: optional
Description: Kubernetes KMS v2 plugin backed by OpenBao Transit
 kube-apiserver talks gRPC to it over a local Unix socket; it wraps the
 apiserver's data-encryption seeds with an OpenBao Transit key, so Secrets
 in etcd are unreadable without Transit decrypt rights.
 .
 Installs a hardened systemd unit, tmpfiles.d and sysusers.d entries and a
 sample config. The service is not enabled or started: configure
 /etc/openbao-kms/config.yaml first (see deploy-systemd.md).
CONTROL
# dpkg keeps an operator's edits to conffiles across upgrades and asks
# before replacing them.
printf '/etc/openbao-kms/config.yaml\n' > "$STAGE/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "deploy/package/debian/$script" "$STAGE/DEBIAN/$script"
done
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

mkdir -p "$OUT"
DEB="$OUT/${PACKAGE}_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$STAGE" "$DEB" >&2
echo "$DEB"
