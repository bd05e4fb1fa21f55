#!/usr/bin/env bash
# Builds a release from a clean checkout: the release binary, the .deb, the
# OCI image and a CycloneDX SBOM, written with SHA256SUMS and, given a
# minisign secret key, SHA256SUMS.minisig. Anyone with the same commit and
# toolchain rebuilds the same bytes (docs/release.md says how to check).
#
#   - the tree must be clean (no edits, no untracked files): a release is a
#     commit, and `version` in the binary says which one;
#   - SOURCE_DATE_EPOCH is the commit's committer time (unless set), for
#     the binary's build date, the .deb and the image;
#   - scripts/build-release.sh: `cargo auditable build --release --locked`
#     with --remap-path-prefix for the checkout, CARGO_HOME and the target
#     directory (so the bytes do not depend on where they are);
#   - scripts/build-deb.sh and scripts/build-image.sh package that binary;
#   - cargo-cyclonedx writes the SBOM of the same resolved tree (the release
#     features, this target), with the checkout's path replaced by the same
#     /build/bao-kms-provider the binary's paths are remapped to.
#
# Usage: scripts/release.sh [--out DIR] [--sign-key FILE]
#   --out       where the artifacts go; must not exist or be empty
#               (default: <cargo target dir>/dist, replaced on each run)
#   --sign-key  a minisign secret key (minisign -G); signs SHA256SUMS. An
#               encrypted key asks for its password on the terminal.
# Writes into --out (VERSION: the package's, from Cargo.toml; ARCH from dpkg):
#   bao-kms-provider-VERSION-linux-ARCH      the binary, as the .deb installs it
#   bao-kms-provider_VERSION_ARCH.deb
#   bao-kms-provider-VERSION-oci.tar         OCI layout (skopeo oci-archive:)
#   bao-kms-provider-VERSION-oci.digest      its manifest digest (sha256:...)
#   bao-kms-provider-VERSION.cdx.json        CycloneDX 1.5 SBOM
#   SHA256SUMS                               sha256sum -c SHA256SUMS
#   SHA256SUMS.minisig                       with --sign-key
# stdout: the output directory, last line. Needs what the three build
# scripts need, plus minisign with --sign-key; installs the pinned
# cargo-auditable and cargo-cyclonedx into .tools/ when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT=""
SIGN_KEY=""

usage() { echo "usage: $0 [--out DIR] [--sign-key FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || usage; OUT="$2"; shift 2 ;;
    --sign-key) [ $# -ge 2 ] || usage; SIGN_KEY="$2"; shift 2 ;;
    *) usage ;;
  esac
done

log() { printf 'release: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }
started=$SECONDS
step() { log "[$((SECONDS - started)) s] $*"; }

git rev-parse --verify -q HEAD >/dev/null 2>&1 || fail "not a git checkout: a release is built from a commit"
[ -z "$(git status --porcelain --untracked-files=normal)" ] \
  || fail "the checkout is not clean (git status): commit or stash first; a release is exactly one commit"
if [ -n "$SIGN_KEY" ]; then
  [ -f "$SIGN_KEY" ] && [ -r "$SIGN_KEY" ] || fail "--sign-key: not a readable file: $SIGN_KEY"
  command -v minisign >/dev/null || fail "--sign-key needs minisign (apt-get install minisign)"
fi

if [ -z "$OUT" ]; then
  OUT="$TARGET_DIR/dist"
  rm -rf "$OUT"
elif [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  fail "--out $OUT is not empty; refusing to mix releases"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

COMMIT="$(git rev-parse HEAD)"
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}"
export SOURCE_DATE_EPOCH
ARCH="$(dpkg --print-architecture)"
NAME="bao-kms-provider"
log "release of commit $COMMIT (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) into $OUT"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step "release binary (scripts/build-release.sh)"
BINARY="$(scripts/build-release.sh | tail -n 1)"

step ".deb (scripts/build-deb.sh)"
DEB="$(scripts/build-deb.sh --binary "$BINARY" --out "$WORK/deb" | tail -n 1)"
# The package's version: build-deb.sh took it from Cargo.toml and checked
# that the binary reports it.
VERSION="$(dpkg-deb --field "$DEB" Version)"
cp "$DEB" "$OUT/"
cp "$WORK/deb/$NAME" "$OUT/$NAME-$VERSION-linux-$ARCH"

step "OCI image (scripts/build-image.sh)"
DIGEST="$(scripts/build-image.sh --binary "$BINARY" --out "$WORK/image" | tail -n 1)"
cp "$WORK/image/$NAME-oci.tar" "$OUT/$NAME-$VERSION-oci.tar"
printf '%s\n' "$DIGEST" > "$OUT/$NAME-$VERSION-oci.digest"

step "SBOM (cargo cyclonedx)"
CYCLONEDX_BIN="$(scripts/install-cargo-tool.sh cargo-cyclonedx | tail -n 1)"
# cargo-cyclonedx writes next to Cargo.toml; the name is unique to this run
# and the file is moved out at once, so the checkout stays clean.
SBOM_NAME="sbom-$$-$RANDOM"
PATH="$CYCLONEDX_BIN:$PATH" cargo cyclonedx --quiet --format json --spec-version 1.5 \
  --target "$(rustc -vV | sed -n 's/^host: //p')" --override-filename "$SBOM_NAME"
mv "$SBOM_NAME.json" "$WORK/sbom.json"
# The root package's bom-ref names the checkout's path (path+file:///...);
# the same path the binary remaps, so the SBOM does not depend on it either.
python3 - "$WORK/sbom.json" "$ROOT" "$OUT/$NAME-$VERSION.cdx.json" <<'PY'
import json, sys
source, root, target = sys.argv[1:]
text = open(source, encoding="utf-8").read()
text = text.replace("path+file://" + root, "path+file:///build/bao-kms-provider")
sbom = json.loads(text)
with open(target, "w", encoding="utf-8") as out:
    json.dump(sbom, out, indent=2, sort_keys=True)
    out.write("\n")
PY

step "SHA256SUMS"
(cd "$OUT" && LC_ALL=C ls | grep -v '^SHA256SUMS' | xargs sha256sum > SHA256SUMS)
if [ -n "$SIGN_KEY" ]; then
  step "signing SHA256SUMS (minisign)"
  # A fixed trusted comment (no timestamp): signed along with the file, so a
  # verifier sees which release the key vouched for.
  minisign -S -s "$SIGN_KEY" -m "$OUT/SHA256SUMS" -x "$OUT/SHA256SUMS.minisig" \
    -t "$NAME $VERSION commit $COMMIT" >&2
else
  log "no --sign-key: SHA256SUMS is not signed"
fi
step "done"
(cd "$OUT" && cat SHA256SUMS >&2)
echo "$OUT"
