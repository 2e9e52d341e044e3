#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for N seconds
# (default 30). Usage: scripts/fuzz.sh [SECONDS]
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-30}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRAWL_FUZZ=ON >/dev/null
cmake --build build-fuzz --target fuzz_targets
for t in build-fuzz/tests/fuzz/*_fuzz; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  corpus=build-fuzz/corpus/$name
  mkdir -p "$corpus"
  # Seed the pcapng reader with the real captures beside the repository.
  if [ "$name" = pcapng_reader_fuzz ] && [ -d ../shared/pcaps ] && [ -z "$(ls "$corpus")" ]; then
    find ../shared/pcaps -name '*.pcapng' -size -64k -exec cp {} "$corpus/" \;
  fi
  echo "-- $name (${SECS}s)"
  "$t" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=0 "$corpus" \
    2>build-fuzz/$name.log || { tail -n 40 build-fuzz/$name.log; exit 1; }
  grep -E "^#[0-9]+.*DONE" build-fuzz/$name.log | tail -n 1 || true
done
