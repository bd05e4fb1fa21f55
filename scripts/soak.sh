#!/usr/bin/env bash
# A benchmark-driven soak: the release provider from `scripts/quickstart.sh
# --keep` (real OpenBao, JWT auth, its socket) under `bao-kms-provider
# benchmark --mode socket` for DURATION, with a Transit key rotation half
# way through. Reports the provider's RSS, open fds and threads at the start
# and the end, the benchmark's errors, and whether the rotated version was
# promoted (Status key_id changed). Goals (docs/performance.md): RSS growth
# <= 5 MiB, no fd or thread growth, 0 errors.
#
# Usage: scripts/soak.sh [DURATION_SECONDS] [CONCURRENCY]   (default 600, 8)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${1:-600}"
CONCURRENCY="${2:-8}"
case "$DURATION$CONCURRENCY" in
  *[!0-9]*) echo "usage: $0 [DURATION_SECONDS] [CONCURRENCY]" >&2; exit 2 ;;
esac
OUT="$(mktemp -d "${TMPDIR:-/tmp}/bao-kms-soak.XXXXXX")"

"$ROOT/scripts/quickstart.sh" --keep > "$OUT/quickstart.log" 2>&1 || {
  cat "$OUT/quickstart.log" >&2
  exit 1
}
line="$(grep 'Left running: provider pid' "$OUT/quickstart.log")"
PID="$(sed -n 's/.*provider pid \([0-9]*\),.*/\1/p' <<<"$line")"
LAB="$(sed -n 's/.*OpenBao in \([^;]*\);.*/\1/p' <<<"$line")"
CONFIG="$(sed -n 's/.*config \(.*\)$/\1/p' <<<"$line")"
SOCKET="$(sed -n 's/^  socketPath: //p' "$CONFIG")"
PROVIDER="$ROOT/target/release/bao-kms-provider"
. "$ROOT/scripts/lab.sh"

cleanup() {
  cp "$(dirname "$LAB")/provider.log" "$OUT/provider.log" 2>/dev/null || true
  kill "$PID" 2>/dev/null || true
  lab_stop "$LAB" 2>/dev/null || true
  rm -rf "$(dirname "$LAB")" 2>/dev/null || true
  rmdir "$(dirname "$SOCKET")" 2>/dev/null || true
}
trap cleanup EXIT

sample() {
  printf '%s rss_kib=%s threads=%s fds=%s\n' "$1" \
    "$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")" \
    "$(awk '/^Threads:/ {print $2}' "/proc/$PID/status")" \
    "$(find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l)"
}
status_key_id() {
  "$PROVIDER" probe --socket "$SOCKET" --output json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(next(c["message"] for c in r["checks"] if c["id"]=="kms.key_id"))'
}

# Warm-up with the same shape (storm included): connections, token and
# caches exist before the first sample, so growth means a leak.
"$PROVIDER" benchmark --mode socket --socket "$SOCKET" --duration 10s \
  --concurrency "$CONCURRENCY" --storm 256 > /dev/null
sample start | tee "$OUT/samples"
status_key_id > "$OUT/key_id.before"

"$PROVIDER" benchmark --mode socket --socket "$SOCKET" --duration "${DURATION}s" \
  --concurrency "$CONCURRENCY" --storm 256 --output json > "$OUT/benchmark.json" &
BENCH=$!
sleep $((DURATION / 2))
lab_bao "$LAB" write -f transit/keys/k8s-etcd/rotate > /dev/null
echo "rotated transit/keys/k8s-etcd at $((DURATION / 2)) s" | tee -a "$OUT/samples"
wait "$BENCH"
sample end | tee -a "$OUT/samples"
status_key_id > "$OUT/key_id.after"

echo "benchmark (JSON): $OUT/benchmark.json; provider log: $OUT/provider.log"
# Warnings and errors the provider logged, by message (bounded fields only).
cleanup
trap - EXIT
grep -E 'WARN|ERROR' "$OUT/provider.log" | sed -E 's/^[^ ]+ +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -20 || true
python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
report = json.loads((out / "benchmark.json").read_text())
print(json.dumps(report, indent=1)[:4000])
s = {l.split()[0]: dict(kv.split("=") for kv in l.split()[1:]) for l in (out / "samples").read_text().splitlines() if "=" in l}
print("rss growth MiB: %.2f" % ((int(s["end"]["rss_kib"]) - int(s["start"]["rss_kib"])) / 1024))
print("threads: %s -> %s, fds: %s -> %s" % (s["start"]["threads"], s["end"]["threads"], s["start"]["fds"], s["end"]["fds"]))
print("status before rotation:", (out / "key_id.before").read_text().strip())
print("status after:          ", (out / "key_id.after").read_text().strip())
PY
