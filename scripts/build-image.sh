#!/usr/bin/env bash
# Builds the bao-kms-provider OCI image without a registry or a base image:
# one layer with the release binary, exactly the shared libraries `ldd` lists
# for it, and an /etc/passwd and /etc/group naming the non-root user 65532.
# No shell, no package manager, nothing else. Debian's umoci assembles it.
#
# Usage: scripts/build-image.sh [--binary PATH] [--out DIR] [--pin-static-pod]
#   --binary          the dynamic release binary to ship (default: build it
#                     with scripts/build-release.sh)
#   --out             output directory (default: <cargo target dir>/image)
#   --pin-static-pod  write the digest into deploy/static-pod/bao-kms-provider.yaml
#                     (refused on a dirty tree: the pin names a commit)
# Writes into --out:
#   oci/                      the OCI image layout, tagged with the package version
#   bao-kms-provider-oci.tar  the same layout as one tar (ctr images import,
#                             skopeo's oci-archive: transport)
#   bao-kms-provider          the binary exactly as it is in the image
#   digest                    the manifest digest
#   SHA256SUMS                sha256sum of the tar and the binary (sha256sum -c)
# stdout: the manifest digest (sha256:...), last line.
#
# Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: the commit's
# committer time), no history entries, owners 0:0, sorted tar entries, so two
# builds of one commit with the same toolchain and libc6/libgcc-s1 give the
# same manifest digest (tests/image.rs builds twice and compares).
# Why the dynamic binary and not static-pie: docs/decisions.md, "Container image".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BINARY=""
OUT="$TARGET_DIR/image"
PIN=0
MANIFEST=deploy/static-pod/bao-kms-provider.yaml
IMAGE_NAME=registry.example.internal/bao-kms-provider

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --pin-static-pod) PIN=1; shift ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR] [--pin-static-pod]" >&2; exit 2 ;;
  esac
done

log() { printf 'build-image: %s\n' "$*" >&2; }
for tool in umoci ldd strip tar sha256sum; do
  command -v "$tool" >/dev/null || { log "missing $tool (scripts/install-test-deps.sh installs it)"; exit 1; }
done

COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$PIN" = 1 ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  log "--pin-static-pod needs a clean tree: the pinned digest must be a commit's image"
  exit 1
fi
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD 2>/dev/null || true)}"
[ -n "$SOURCE_DATE_EPOCH" ] || { log "no git history here; set SOURCE_DATE_EPOCH"; exit 1; }
export SOURCE_DATE_EPOCH
CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
VERSION="$(awk '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/,"",$0); sub(/^version=/,"",$0); print; exit}' Cargo.toml)"
[ -n "$VERSION" ] || { log "no version in Cargo.toml"; exit 1; }

if [ -z "$BINARY" ]; then
  BINARY="$(scripts/build-release.sh | tail -n 1)"
fi
[ -x "$BINARY" ] || { log "not an executable: $BINARY"; exit 1; }

umask 022
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
OCI="$WORK/oci"
BUNDLE="$WORK/bundle"
ROOTFS="$BUNDLE/rootfs"

umoci init --layout "$OCI"
umoci new --image "$OCI:$VERSION"
umoci unpack --image "$OCI:$VERSION" "$BUNDLE" >&2

install -D -m 0755 "$BINARY" "$ROOTFS/usr/bin/bao-kms-provider"
# Same as the .deb's binary (scripts/build-deb.sh strips it the same way).
strip --strip-unneeded "$ROOTFS/usr/bin/bao-kms-provider"
# Exactly what the dynamic loader needs, at the paths ldd reports (the ELF
# interpreter /lib64/ld-linux-x86-64.so.2 among them), as regular files.
LIBS="$(ldd "$ROOTFS/usr/bin/bao-kms-provider" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | LC_ALL=C sort -u)"
[ -n "$LIBS" ] || { log "ldd listed no libraries: is $BINARY dynamic?"; exit 1; }
for lib in $LIBS; do
  install -D -m 0755 "$(readlink -f "$lib")" "$ROOTFS$lib"
done
# 65532 is distroless's "nonroot"; root is listed so files owned by 0 in
# mounted host directories have a name. Neither has a shell.
install -d -m 0755 "$ROOTFS/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ROOTFS/etc/group"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"
chown -R 0:0 "$ROOTFS"
chmod 0755 "$ROOTFS"
# The build machine's clock must not reach the layer.
find "$ROOTFS" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

umoci repack --no-history --image "$OCI:$VERSION" "$BUNDLE" >&2
umoci config --no-history --image "$OCI:$VERSION" \
  --created "$CREATED" \
  --architecture amd64 --os linux \
  --config.user 65532:65532 \
  --config.entrypoint /usr/bin/bao-kms-provider \
  --config.workingdir / \
  --config.label "org.opencontainers.image.title=bao-kms-provider" \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.revision=$COMMIT" \
  --config.label "org.opencontainers.image.created=$CREATED" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0"
# `new`, `repack` and `config` each left a superseded config/manifest blob.
umoci gc --layout "$OCI"

DIGEST="$(grep -o '"digest":"sha256:[0-9a-f]\{64\}"' "$OCI/index.json" | cut -d'"' -f4)"
[ "$(printf '%s\n' "$DIGEST" | grep -c .)" = 1 ] || { log "expected one manifest in index.json, got: $DIGEST"; exit 1; }

mkdir -p "$OUT"
rm -rf "$OUT/oci"
cp -a "$OCI" "$OUT/oci"
find "$OUT/oci" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$OUT/oci" -cf "$OUT/bao-kms-provider-oci.tar" .
install -m 0755 "$ROOTFS/usr/bin/bao-kms-provider" "$OUT/bao-kms-provider"
echo "$DIGEST" > "$OUT/digest"
(cd "$OUT" && sha256sum bao-kms-provider-oci.tar bao-kms-provider > SHA256SUMS)

if [ "$PIN" = 1 ]; then
  # The manifest keeps its comments; only the image line and the note above
  # it change (tests/deploy.rs checks that note against the package version).
  sed -i \
    -e "s|^\(      # image: scripts/build-image.sh --pin-static-pod\).*|\1, bao-kms-provider $VERSION, commit $COMMIT|" \
    -e "s|^\(      image: \).*@sha256:[0-9a-f]\{64\}$|\1$IMAGE_NAME@$DIGEST|" \
    "$MANIFEST"
  grep -q "image: $IMAGE_NAME@$DIGEST$" "$MANIFEST" || { log "could not write the digest into $MANIFEST"; exit 1; }
  log "pinned $DIGEST in $MANIFEST"
fi

LAYOUT_KB="$(du -sk "$OUT/oci" | cut -f1)"
ROOTFS_KB="$(du -sk "$ROOTFS" | cut -f1)"
log "image $IMAGE_NAME:$VERSION ($COMMIT, created $CREATED): layout ${LAYOUT_KB} KiB, unpacked ${ROOTFS_KB} KiB, in $OUT"
echo "$DIGEST"
