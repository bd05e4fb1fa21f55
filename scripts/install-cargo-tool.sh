#!/usr/bin/env bash
# Installs one of the project's pinned cargo tools from crates.io into
# .tools/<crate>/ (once; later calls find it there) and prints the directory
# of its executables, last line. `cargo install --locked` builds it with the
# tool's own Cargo.lock, so every machine gets the same dependency versions.
# The pins live here, and only here:
#   cargo-auditable  embeds the dependency list in the release binary
#   cargo-cyclonedx  writes the release SBOM
#   cargo-deny       the dependency policy (deny.toml) in scripts/test.sh
#   cargo-fuzz       scripts/fuzz.sh
#
# Usage: scripts/install-cargo-tool.sh CRATE
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 CRATE" >&2; exit 2; }
CRATE="$1"
case "$CRATE" in
  cargo-auditable) VERSION=0.7.7 ;;
  cargo-cyclonedx) VERSION=0.5.9 ;;
  cargo-deny) VERSION=0.20.2 ;;
  cargo-fuzz) VERSION=0.13.2 ;;
  *) echo "install-cargo-tool: no pinned version for '$CRATE'" >&2; exit 2 ;;
esac
TOOLS="$ROOT/.tools/$CRATE"

# `cargo install --list` names what the root holds, with versions.
if ! cargo install --root "$TOOLS" --list 2>/dev/null | grep -qx "$CRATE v$VERSION:" \
  || [ ! -x "$TOOLS/bin/$CRATE" ]; then
  echo "install-cargo-tool: installing $CRATE $VERSION into $TOOLS (once; minutes on two cores)" >&2
  started=$SECONDS
  # A one-shot build: incremental compilation would only cost disk. The
  # tools' own release profiles ask for (fat) LTO and one codegen unit,
  # which triples the build on two cores for tools that run for a second.
  CARGO_INCREMENTAL=0 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet --root "$TOOLS" "$CRATE" --version "$VERSION" >&2
  echo "install-cargo-tool: $CRATE $VERSION installed in $((SECONDS - started)) s" >&2
fi
echo "$TOOLS/bin"
