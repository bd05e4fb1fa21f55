#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time with the nightly
# toolchain (libFuzzer needs nightly's sanitizer flags), starting from the
# committed seeds in fuzz/seeds/<target>/. New inputs go to a working corpus
# under .tools/fuzz/corpus/<target>/ (kept between runs), crashes to
# fuzz/artifacts/<target>/. Installs the pinned cargo-fuzz into
# .tools/cargo-fuzz when missing (scripts/install-cargo-tool.sh). Not part of CI: CI runs the seeds on stable (tests/fuzz_seeds.rs).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60, all)
# Prints one line per target: executions, corpus size, crashes; exits 1 if
# any target crashed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_TARGET="${1:-60}"
shift || true
case "$SECONDS_PER_TARGET" in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

export PATH="$(scripts/install-cargo-tool.sh cargo-fuzz | tail -n 1):$PATH"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi

if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cd fuzz && cargo +nightly fuzz list)
fi

crashed=0
for target in "${TARGETS[@]}"; do
  corpus="$ROOT/.tools/fuzz/corpus/$target"
  mkdir -p "$corpus"
  log="$ROOT/.tools/fuzz/$target.log"
  status=0
  (cd fuzz && cargo +nightly fuzz run "$target" "$corpus" "seeds/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048) \
      >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  size="$(find "$corpus" -type f | wc -l)"
  crashes="$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)"
  printf '%-18s %10s execs in %ss, corpus %5s, crashes %s%s\n' \
    "$target" "${execs:-?}" "$SECONDS_PER_TARGET" "$size" "$crashes" \
    "$([ "$status" -ne 0 ] && echo " (exit $status, see $log)")"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    crashed=1
  fi
done
exit "$crashed"
