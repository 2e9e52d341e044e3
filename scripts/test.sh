#!/bin/sh
# The project's test command (README, .ci/run): installs dependencies,
# builds, runs every test (unit + end-to-end in network namespaces), then
# the ASan+UBSan build's tests and a short bounded fuzz run.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
JOBS=$(nproc)

echo "== build (RelWithDebInfo)"
./scripts/build.sh
echo "== tests"
(cd build && ctest --output-on-failure -j"$JOBS" -LE e2e)
(cd build && ctest --output-on-failure -L e2e)

echo "== sanitizer build (ASan+UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTRAWL_SANITIZE=ON >/dev/null
cmake --build build-asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$JOBS" -LE e2e)
(cd build-asan && ctest --output-on-failure -L e2e)

echo "== fuzz (libFuzzer, bounded)"
./scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
echo "== all tests passed"
