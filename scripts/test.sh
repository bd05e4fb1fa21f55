#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script):
# installs what the tests need (the real OpenBao 2.7.2 binary, openssl, and
# the Debian tools the deployment tests use: systemd, dpkg-dev, binutils,
# umoci), builds the release binary the image tests pack,
# checks formatting, lints and the dependency policy (deny.toml), then runs
# unit and integration tests against
# real OpenBao servers over HTTPS with real JWT auth and the real Unix socket.
#
# Integration tests create sockets under /run/openbao-kms (the only place the
# provider accepts them), and tests/deploy.rs creates throwaway users and
# runs the provider as one of them, so run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BAO_BIN="$(scripts/install-test-deps.sh | tail -n 1)"
export "${BAO_BIN?}"

# 0755: tests/deploy.rs's non-root users must be able to pass through it.
if [ ! -w /run/openbao-kms ] && ! mkdir -p -m 0755 /run/openbao-kms 2>/dev/null; then
  echo "test.sh: /run/openbao-kms is not writable; run as root or create it for your user" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
# After clippy, which has fetched every crate: --frozen reads Cargo.lock and
# the local registry only (advisories need the network: docs/release.md).
echo "== cargo deny check licenses bans sources (deny.toml)"
PATH="$(scripts/install-cargo-tool.sh cargo-deny | tail -n 1):$PATH" \
  cargo deny --frozen check --hide-inclusion-graph licenses bans sources
# Once, before the tests and not during them: tests/image.rs packs this
# binary (twice) and would otherwise compile it, for minutes, while the
# timing-sensitive integration tests run.
echo "== scripts/build-release.sh (the binary the image and the .deb ship)"
started=$SECONDS
scripts/build-release.sh
echo "release build: $((SECONDS - started)) s"
echo "== cargo test"
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
cargo test 2>&1 | tee "$RESULTS"
echo "== scripts/quickstart.sh (the README's first command, debug build)"
QUICKSTART_PROFILE=debug scripts/quickstart.sh
# One closing line over every test binary (the last cargo line is the doc-test
# run, which has no tests of its own).
sum() { grep -Eo "[0-9]+ $1" "$RESULTS" | awk '{ n += $1 } END { print n + 0 }'; }
echo "tests: $(sum passed) passed, $(sum failed) failed"
