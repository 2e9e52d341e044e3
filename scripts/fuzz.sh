#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for N seconds
# (default 30), but never longer than FUZZ_BUDGET seconds in total
# (default 240): with many targets each gets FUZZ_BUDGET / targets.
# Usage: scripts/fuzz.sh [SECONDS]
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-30}
BUDGET=${FUZZ_BUDGET:-240}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRAWL_FUZZ=ON >/dev/null
cmake --build build-fuzz --target fuzz_targets
n=0
for t in build-fuzz/tests/fuzz/*_fuzz; do [ -x "$t" ] && n=$((n + 1)); done
[ "$n" -gt 0 ] || exit 0
PER=$((BUDGET / n))
[ "$PER" -lt "$SECS" ] && SECS=$PER
[ "$SECS" -lt 1 ] && SECS=1
for t in build-fuzz/tests/fuzz/*_fuzz; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  corpus=build-fuzz/corpus/$name
  mkdir -p "$corpus"
  # Seed the capture readers with the real captures beside the repository.
  if [ -d ../shared/pcaps ] && [ -z "$(ls "$corpus")" ]; then
    case "$name" in
      pcapng_reader_fuzz) find ../shared/pcaps -name '*.pcapng' -size -64k -exec cp {} "$corpus/" \; ;;
      capture_reader_fuzz) find ../shared/pcaps -name '*.pcap*' -size -16k -exec cp {} "$corpus/" \; ;;
    esac
  fi
  echo "-- $name (${SECS}s)"
  "$t" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=0 \
    -artifact_prefix=build-fuzz/"$name"- "$corpus" \
    2>build-fuzz/$name.log || { tail -n 40 build-fuzz/$name.log; exit 1; }
  grep -E "^#[0-9]+.*DONE" build-fuzz/$name.log | tail -n 1 || true
done
