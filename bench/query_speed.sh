#!/bin/bash
# Query speed, storage cost and freshness (issue 4), in one run:
#  1. store >= BYTES (default 5 GiB) of replayed mixed traffic: every
#     Ethernet capture in ../shared/pcaps (minus malformed/) pushed through
#     the real SegmentWriter by tests/tools/store_fill (zstd:1, 1 MiB frames,
#     1 GiB segments, batches of 256 packets, a sync per batch, no fsync);
#     repetitions are shifted in time and get distinct IPv4 hosts; the same
#     packets are written as one plain nanosecond pcap;
#  2. extract one TCP conversation and one host's traffic over the whole
#     range with `trawl query` versus `tcpdump -r <plain pcap>` with the same
#     filter (same packet counts required; both from a warm page cache);
#  3. bytes on disk per captured byte: trawl (segments + indexes), plain
#     pcap, gzip -6 (on a GZIP_SAMPLE prefix of the pcap, extrapolated) and
#     zstd -1 (whole pcap);
#  4. capture-to-queryable latency: a marker packet is synced into an open
#     segment, `trawl query` is polled until it returns it.
# The data is deleted at the end.
#
#   BUILD=build bench/query_speed.sh        (BYTES=5GiB GZIP_SAMPLE=1GiB)
set -euo pipefail
BUILD=${BUILD:-build}
TRAWL=${TRAWL:-$BUILD/trawl}
FILL=${FILL:-$BUILD/tests/e2e/store_fill}
BYTES=${BYTES:-5GiB}
GZIP_SAMPLE=${GZIP_SAMPLE:-1GiB}
PCAPS=${PCAPS:-$(cd "$(dirname "$0")/../../shared/pcaps" && pwd)}
CONV="host 10.0.0.1 and host 54.192.94.30 and tcp port 55291 and tcp port 80"
HOST="host 200.57.7.196"
W=$(mktemp -d /tmp/trawl-bench-query.XXXXXX)
trap 'rm -rf "$W"' EXIT
now() { echo "$EPOCHREALTIME"; }  # no fork: it would be timed too
secs() { echo "$2 - $1" | bc; }
size() { du -sb "$@" | awk '{s += $1} END {printf "%.0f\n", s}'; }

echo "== fill ($BYTES)"
mapfile -t inputs < <(ls "$PCAPS"/*/*.pcap "$PCAPS"/*/*.pcapng 2>/dev/null | grep -v /malformed/)
t0=$(now)
"$FILL" --data "$W/data" --agent bench --bytes "$BYTES" --frame "${FRAME:-1MiB}" --pcap-out "$W/plain.pcap" "${inputs[@]}" 2>"$W/fill.err" |
  tee "$W/fill.txt"
t1=$(now)
captured=$(awk '/^stored/ {print $4}' "$W/fill.txt")
echo "fill took $(secs $t0 $t1) s"

run_query() {  # run_query NAME FILTER
  local name=$1 best=999 t a b n
  for i in 1 2 3; do
    a=$(now)
    "$TRAWL" query --data "$W/data" -q --stats -w "$W/q-$name.pcapng" $2 2>"$W/q-$name.stats"
    b=$(now); t=$(secs $a $b)
    best=$(echo "if ($t < $best) $t else $best" | bc)
  done
  a=$(now)
  tcpdump -r "$W/plain.pcap" -w "$W/r-$name.pcap" $2 2>/dev/null
  b=$(now)
  local tt; tt=$(secs $a $b)
  n=$(capinfos -M -c "$W/q-$name.pcapng" | awk '/Number of packets/ {print $NF}')
  local m; m=$(capinfos -M -c "$W/r-$name.pcap" | awk '/Number of packets/ {print $NF}')
  [ "$n" = "$m" ] || { echo "MISMATCH $name: trawl $n packets, tcpdump $m"; exit 1; }
  printf '%-13s | %7s packets | trawl query %8.3f s | tcpdump -r %8.3f s | %7.0fx\n' "$name" "$n" "$best" "$tt" \
    "$(echo "$tt / $best" | bc -l)"
  sed 's/^/    /' "$W/q-$name.stats"
}
echo "== queries over the whole range (best of 3 for trawl; one tcpdump scan)"
run_query conversation "$CONV"
run_query host "$HOST"

echo "== bytes on disk per captured byte ($captured captured bytes)"
store=$(size "$W/data/bench")
idx=$(size "$W"/data/bench/*.idx)
pcap=$(size "$W/plain.pcap")
zstd1=$(zstd -1 -T1 -c "$W/plain.pcap" | wc -c)
sample=$(numfmt --from=iec "${GZIP_SAMPLE%iB}")
[ "$sample" -gt "$pcap" ] && sample=$pcap
gz_sample=$(head -c "$sample" "$W/plain.pcap" | gzip -6 | wc -c)
gz=$(echo "$gz_sample * $pcap / $sample" | bc)
ratio() { echo "scale=4; $1 / $captured" | bc; }
echo "plain pcap      $(ratio $pcap)"
echo "gzip -6         $(ratio $gz)   (from a $GZIP_SAMPLE prefix)"
echo "zstd -1         $(ratio $zstd1)"
echo "trawl           $(ratio $store)   (of which index $(ratio $idx)); vs zstd -1: $(echo "scale=2; 100 * ($store - $zstd1) / $zstd1" | bc)%"

echo "== capture-to-queryable latency"
"$FILL" --data "$W/live" --agent live --bytes 64MiB --marker-ip 198.51.100.77 --hold-s 10 "${inputs[@]}" \
  >"$W/live.txt" 2>/dev/null &
FILL_PID=$!
for _ in $(seq 300); do grep -q "marker synced" "$W/live.txt" && break; sleep 0.02; done
synced=$(awk '/marker synced/ {print $4}' "$W/live.txt")
for _ in $(seq 500); do
  "$TRAWL" query --data "$W/live" -q -w "$W/m.pcapng" host 198.51.100.77 2>/dev/null || true
  n=$(capinfos -M -c "$W/m.pcapng" 2>/dev/null | awk '/Number of packets/ {print $NF}' || true)
  [ "${n:-0}" = 1 ] && break
done
done_ns=$(date +%s%N)
[ "${n:-0}" = 1 ] || { echo "marker never became queryable"; exit 1; }
echo "marker packet queryable $(( (done_ns - synced) / 1000000 )) ms after its batch was synced (open segment)"
kill "$FILL_PID" 2>/dev/null || true; wait "$FILL_PID" 2>/dev/null || true
