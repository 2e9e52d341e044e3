#!/bin/bash
# What the delivery guarantees cost, in one run:
#  1. highest loss-free rate with the disk spool + durable (fdatasync'ed)
#     acks, versus the same pipeline with the spool in RAM (tmpfs) and acks
#     sent after write(2) without fdatasync (--no-fsync);
#  2. how long the agent takes to drain a 1 GiB spool after an outage.
#
#   TRAWL=build/trawl PCAPGEN=build/tests/e2e/pcapgen bench/delivery_cost.sh
# Needs root. Bounded: each step sends at most rate x SECS packets.
source "$(dirname "$0")/../tests/e2e/lib.sh"
require_root
SECS=${SECS:-2}
SIZE=${SIZE:-1500}
RATES=${RATES:-"100000 200000 300000 400000 500000 600000"}
DRAIN_BYTES=${DRAIN_BYTES:-$((1 << 30))}
e2e_topology 65535
"$TRAWL" pki init "$WORK/pki" >/dev/null 2>&1
"$TRAWL" pki issue "$WORK/pki" bench >/dev/null 2>&1
RAM=$(mktemp -d /dev/shm/trawl-bench.XXXXXX); chmod 755 "$RAM"
trap 'rm -rf "$RAM"' RETURN

replay() {
  nsq "$TX" tcpreplay -i tx0 --pps="$2" "$1" >"$WORK/replay.log" 2>&1 || true
  ACTUAL_PPS=$(awk '/Rated:/ {for (i = 1; i <= NF; i++) if ($i == "pps") print int($(i-1))}' "$WORK/replay.log")
}

run() {  # run MODE FILE RATE -> STORED
  local mode=$1 spool=$WORK/spool coll_args=()
  if [ "$mode" = off ]; then spool=$RAM/spool; coll_args=(--no-fsync); fi
  rm -rf "$WORK/data" "$spool"
  start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0 "${coll_args[@]}"
  start_bg agent "$AG" "$TRAWL" agent --name bench --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" -i cap0 \
    --ring-size 256MiB --spool-dir "$spool" --spool-size 2GiB --drain-timeout 60s
  wait_for 15 grep -q "connected to" "$WORK/agent.log" || fail "agent did not connect"
  replay "$2" "$3"
  sleep 2
  stop_pid "$PID_agent"; stop_pid "$PID_collector"
  STORED=$(count_packets $(segments_of "$WORK"/data/bench))
}

"$PCAPGEN" "$WORK/gen.pcap" $(( ${RATES##* } * SECS )) "$SIZE"
best_on=0; best_off=0
for rate in $RATES; do
  n=$((rate * SECS))
  editcap -r "$WORK/gen.pcap" "$WORK/step.pcap" 1-$n 2>/dev/null
  run on "$WORK/step.pcap" "$rate"; on=$STORED; on_pps=$ACTUAL_PPS
  run off "$WORK/step.pcap" "$rate"; off=$STORED; off_pps=$ACTUAL_PPS
  log "$SIZE-byte frames at $rate pps: sent $n; durable stored $on ($on_pps pps), in-RAM/no-fsync stored $off ($off_pps pps)"
  if [ "$on" -ge "$n" ] && [ "$on_pps" -gt "$best_on" ]; then best_on=$on_pps; fi
  if [ "$off" -ge "$n" ] && [ "$off_pps" -gt "$best_off" ]; then best_off=$off_pps; fi
done
printf "loss-free rate, %s-byte frames: guarantees on %s pps, off %s pps, on/off %s\n" "$SIZE" "$best_on" "$best_off" \
  "$(awk -v a=$best_on -v b=$best_off 'BEGIN { if (b) printf "%.2f", a / b; else print "n/a" }')"

# 2. Drain: fill the spool while no collector listens, then start one and
# time until the spool is empty.
rm -rf "$WORK/data" "$WORK/spool"
start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0
stop_pid "$PID_collector"   # learn a free port, then leave it closed
FIXED_PORT=$PORT
start_bg agent "$AG" "$TRAWL" agent --name bench --collector $COLLECTOR_IP:$FIXED_PORT --pki "$WORK/pki" -i cap0 \
  --ring-size 256MiB --spool-dir "$WORK/spool" --spool-size $((DRAIN_BYTES / 1048576 + 256))MiB --drain-timeout 120s
wait_for 10 grep -q "capturing on" "$WORK/agent.log" || fail "agent did not start"
n=$(( DRAIN_BYTES / SIZE + 1 ))
"$PCAPGEN" "$WORK/drain.pcap" "$n" "$SIZE"
replay "$WORK/drain.pcap" 100000
spool_bytes() { du -sb "$WORK/spool" | awk '{print $1}'; }
spool_at_least() { [ "$(spool_bytes)" -ge "$1" ]; }
spool_below() { [ "$(spool_bytes)" -lt "$1" ]; }
wait_for 30 spool_at_least "$DRAIN_BYTES" || fail "spool holds only $(spool_bytes) bytes"
filled=$(spool_bytes)
t0=$(date +%s.%N)
start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0
wait_for 300 spool_below $((64 << 20)) || fail "spool did not drain"
t1=$(date +%s.%N)
stop_pid "$PID_agent"; stop_pid "$PID_collector"
stored=$(count_packets $(segments_of "$WORK"/data/bench))
[ "$stored" = "$n" ] || fail "drain stored $stored of $n packets"
awk -v b="$filled" -v t0="$t0" -v t1="$t1" -v n="$n" 'BEGIN {
  d = t1 - t0; printf "drained a %.2f GiB spool (%d packets) in %.1f s: %.0f MB/s\n", b / 1073741824, n, d, b / d / 1e6 }'
