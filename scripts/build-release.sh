#!/usr/bin/env bash
# Builds the release binary that the .deb and the OCI image ship, the same
# way every time, so two builds of one commit give the same bytes:
#   - build metadata from git, not from the clock: BAO_KMS_PROVIDER_COMMIT,
#     BAO_KMS_PROVIDER_DIRTY, and BAO_KMS_PROVIDER_BUILD_DATE from
#     $SOURCE_DATE_EPOCH if set, else the commit's committer time;
#   - --remap-path-prefix for the checkout, $CARGO_HOME and the target
#     directory, so the binary names no build-machine path and does not
#     depend on where the checkout lives;
#   - `--locked`, so the dependency versions are Cargo.lock's;
#   - `cargo auditable build`, which embeds the resolved dependency list
#     (name, version, source of every crate compiled in) as a compressed
#     JSON in the `.dep-v0` section, so scanners (cargo audit bin, syft,
#     trivy) read it from the installed file. Installs the pinned
#     cargo-auditable into .tools/ when missing.
# Byte-identical output also needs the same rustc (rust-toolchain) and,
# for the image, the same Debian libc6/libgcc-s1 packages.
#
# Usage: scripts/build-release.sh
# stdout: the binary's path, last line (cargo's output goes to stderr).
# scripts/test.sh runs it before `cargo test`, so tests/image.rs finds the
# release build up to date instead of compiling it while other tests run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  COMMIT="$(git -C "$ROOT" rev-parse HEAD)"
  # Tracked files only: build output and tool caches are not the source.
  if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then DIRTY=true; else DIRTY=false; fi
  EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct HEAD)}"
else
  COMMIT=unknown
  DIRTY=unknown
  EPOCH="${SOURCE_DATE_EPOCH:-}"
fi
if [ -z "$EPOCH" ]; then
  echo "build-release: no git history here; set SOURCE_DATE_EPOCH" >&2
  exit 1
fi
# Not passed on as SOURCE_DATE_EPOCH (unset for cargo below, even when the
# caller exported it, as build-deb.sh, build-image.sh and release.sh do):
# ring's build script reruns when it changes, and with it ring, rustls and
# everything above them; the binary only needs the date string.
BUILD_DATE="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
# The target directory last: rustc applies the last matching prefix, and
# generated code (OUT_DIR) lives there, inside the checkout or not.
FLAGS="${RUSTFLAGS:+$RUSTFLAGS }--remap-path-prefix=$ROOT=/build/bao-kms-provider --remap-path-prefix=$CARGO_HOME_DIR=/cargo --remap-path-prefix=$TARGET_DIR=/build/target"

# Run from a test (tests/image.rs), cargo's per-crate variables are in the
# environment; build scripts that track them (ring: CARGO_MANIFEST_DIR,
# CARGO_PKG_*) would rerun and the whole release build with them.
UNSET=(-u SOURCE_DATE_EPOCH)
while IFS= read -r var; do
  case "$var" in
    CARGO|CARGO_PKG_*|CARGO_MANIFEST_*|CARGO_CRATE_NAME|CARGO_BIN_*|CARGO_PRIMARY_PACKAGE|CARGO_TARGET_TMPDIR|CARGO_CFG_*|CARGO_RUSTC_CURRENT_DIR|OUT_DIR)
      UNSET+=(-u "$var") ;;
  esac
done < <(env | sed -n 's/^\([A-Za-z_][^=]*\)=.*/\1/p')

AUDITABLE_BIN="$(scripts/install-cargo-tool.sh cargo-auditable | tail -n 1)"
echo "build-release: cargo auditable build --release --locked (commit $COMMIT, dirty $DIRTY, date $BUILD_DATE)" >&2
env "${UNSET[@]}" PATH="$AUDITABLE_BIN:$PATH" \
  BAO_KMS_PROVIDER_COMMIT="$COMMIT" BAO_KMS_PROVIDER_DIRTY="$DIRTY" \
  BAO_KMS_PROVIDER_BUILD_DATE="$BUILD_DATE" RUSTFLAGS="$FLAGS" \
  cargo auditable build --release --locked >&2
echo "$TARGET_DIR/release/bao-kms-provider"
