#!/bin/bash
# Diameter decoder vs tshark, decoder only (no pcap reading / TCP layer on
# our side; see bench/diameter_parse.cc):
#   BENCH=build/tests/unit/decode_diameter/diameter_parse_bench bench/diameter_parse.sh [MB]
# Build the driver first: cmake --build build --target diameter_parse_bench
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-20}
BENCH=${BENCH:-build/tests/unit/decode_diameter/diameter_parse_bench}
PCAPS=../shared/pcaps
TMP=$(mktemp -d /tmp/trawl-diameter-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
read -r msgs bytes secs records < <("$BENCH" "$MB" "$TMP/synth.pcap" \
  $PCAPS/diameter/*.pcap* $PCAPS/sip_rtp/open5gs_volte.pcapng)
start=$(date +%s.%N)
tshark_lines=$(tshark -r "$TMP/synth.pcap" -Y diameter -T fields -e diameter.cmd.code \
  -e diameter.flags.request -e diameter.hopbyhopid -e diameter.Result-Code 2>/dev/null | wc -l)
end=$(date +%s.%N)
awk -v m="$msgs" -v b="$bytes" -v s="$secs" -v r="$records" -v tl="$tshark_lines" \
    -v t0="$start" -v t1="$end" -v pb="$(stat -c %s "$TMP/synth.pcap")" 'BEGIN {
  ts = t1 - t0
  printf "trawl decoder: %d messages, %.1f MB, %.3f s, %.1f MB/s, %d records\n", m, b/1e6, s, b/1e6/s, r
  printf "tshark fields: %d messages, %.1f MB pcap, %.3f s, %.1f MB/s\n", tl, pb/1e6, ts, b/1e6/ts
  printf "ratio (same Diameter bytes): %.1fx\n", ts / s
}'
