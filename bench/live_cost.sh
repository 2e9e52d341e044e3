#!/bin/bash
# What live subscribers cost the collector's ingest, in one run: the same
# stream is pushed into the collector with no live output attached, and with
# three subscribers attached — a ZeroMQ subscriber reading v1 + v2, a
# ZeroMQ subscriber that never reads (deliberately slow: its queue fills and
# its packets are dropped and counted), and a PCAP-over-IP client — in
# alternating rounds; the median rates and their ratio are reported.
#
# The stream comes from the osmo-pcap test client over loopback as fast as
# the collector takes it (TCP back-pressure: loss-free by construction; the
# stored count is checked every round). It enters through the same store
# step as a native agent's batches (dedupe -> live publish -> segment
# writer), without the capture and TLS costs in front, so the collector's
# side is what is measured. Segments go to tmpfs (less disk noise).
#
#   TRAWL=build/trawl PCAPGEN=build/tests/e2e/pcapgen ZMQ_SUB=build/tests/e2e/zmq_sub \
#   OSMO_CLIENT=build/tests/e2e/osmo_client bench/live_cost.sh
# Needs root (a network namespace). Bounded: ROUNDS x 2 runs of COUNT packets.
# PERF_OUT=PREFIX records a system-wide profile of every run's ingest.
# Also reported: the collector's own CPU time (all its threads) for the
# same packets, with and without subscribers: what they cost the collector
# in work, apart from how the two vCPUs are shared that round.
source "$(dirname "$0")/../tests/e2e/live_lib.sh"
require_root
COUNT=${COUNT:-300000}
SIZE=${SIZE:-600}
ROUNDS=${ROUNDS:-3}
# nice level of the three consumer processes (0: same priority as the
# collector; 19: they only get CPU the collector leaves, as if they ran on
# other hosts; the collector's publishing threads run at --live-nice, 10 by default).
CONSUMER_NICE=${CONSUMER_NICE:-0}
# CONSUMER_IDLE=1: run the consumers under SCHED_IDLE (chrt --idle) instead:
# they get a CPU only when nothing else wants it, which is what consumers on
# other hosts cost this one. nice 19 still leaves them a share of the two
# cores (CFS gives every runnable task a slice) and their wake-ups delay the
# collector's session thread.
CONSUMER_IDLE=${CONSUMER_IDLE:-0}
# LIVE_ARGS: more collector flags for the rounds with subscribers, e.g.
# "--live-nice 0" to run the publishing threads at the collector's priority.
LIVE_ARGS=${LIVE_ARGS:-}
CONSUMER=(nice -n "$CONSUMER_NICE")
[ "$CONSUMER_IDLE" = 1 ] && CONSUMER=(chrt --idle 0)
ip netns add "$CO"
quiet_ns "$CO"
RAM=$(mktemp -d /dev/shm/trawl-bench.XXXXXX)
trap 'rm -rf "$RAM"' RETURN
"$PCAPGEN" "$WORK/gen.pcap" "$COUNT" "$SIZE" >/dev/null || fail "pcapgen"

run() {  # run none|three -> RATE (packets/s)
  rm -rf "$RAM/data"
  local live=()
  [ "$1" = three ] && live=(--zmq tcp://127.0.0.1:0 --pcap-listen 127.0.0.1:0 --live-queue 8MiB --metrics-listen 127.0.0.1:0 $LIVE_ARGS)
  start_collector collector --data "$RAM/data" --insecure --rotate-every 0 --osmo-listen 127.0.0.1:0 \
    --osmo-client 127.0.0.1=bench "${live[@]}"
  local oport zport pport subs=()
  oport=$(port_from "$WORK/collector.log" "osmo-pcap clients on port ([0-9]+)")
  if [ "$1" = three ]; then
    zport=$(port_from "$WORK/collector.log" "ZeroMQ publisher on port ([0-9]+)")
    pport=$(port_from "$WORK/collector.log" "PCAP-over-IP on port ([0-9]+)")
    start_bg fast "$CO" "${CONSUMER[@]}" "$ZMQ_SUB" tcp://127.0.0.1:$zport --topic data. --ready "$WORK/fast.ready" --idle 3 --max 120
    start_bg slow "$CO" "${CONSUMER[@]}" "$ZMQ_SUB" tcp://127.0.0.1:$zport --topic data. --ready "$WORK/slow.ready" --stall 1000 --max 120
    start_bg poip "$CO" "${CONSUMER[@]}" timeout 120 bash -c "cat </dev/tcp/127.0.0.1/$pport >/dev/null"
    subs=("$PID_fast" "$PID_slow" "$PID_poip")
    wait_for 10 test -e "$WORK/fast.ready" && wait_for 10 test -e "$WORK/slow.ready" || fail "subscribers"
    wait_for 10 bash -c "[ \$(grep -c 'subscriber #' '$WORK/collector.log') -ge 3 ]" || fail "subscribers did not connect"
    # Start with a stalled subscriber whose queue is already full.
    nsq "$CO" "$OSMO_CLIENT" 127.0.0.1:$oport "$WORK/gen.pcap" >/dev/null 2>&1 || fail "pre-fill"
  fi
  local t0 t1 perf_pid=
  # PERF_OUT=PREFIX: a system-wide profile (perf record -a) of each round's
  # ingest, written to PREFIX.none.N / PREFIX.three.N.
  if [ -n "${PERF_OUT:-}" ]; then
    perf record -a -F 999 -o "$PERF_OUT.$1.$ROUND" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
  fi
  local c0; c0=$(cpu_ms "$PID_collector")
  t0=$(date +%s.%N)
  nsq "$CO" "$OSMO_CLIENT" 127.0.0.1:$oport "$WORK/gen.pcap" >"$WORK/client.log" 2>&1 || fail "client: $(cat "$WORK/client.log")"
  t1=$(date +%s.%N)
  CPU=$(( $(cpu_ms "$PID_collector") - c0 ))  # the collector's CPU (all threads) for COUNT packets
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  if [ "$1" = three ]; then
    scrape "$(port_from "$WORK/collector.log" "metrics on port ([0-9]+)")"
    DROPS=$(metric 'trawl_live_dropped_packets_total{output="zmq"}')  # all zmq subscribers
    SENT=$(metric 'trawl_live_sent_packets_total{output="zmq"}')      # messages queued (v1 + v2), all of them
    [ "${DROPS:-0}" -gt 0 ] || fail "the stalled subscriber dropped nothing"
  fi
  stop_pid "$PID_collector"
  for p in "${subs[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  local want=$COUNT
  [ "$1" = three ] && want=$((2 * COUNT))
  local stored
  stored=$(count_packets $(segments_of "$RAM"/data/bench))
  [ "$stored" = "$want" ] || fail "$1: stored $stored, want $want"
  RATE=$(awk -v n="$COUNT" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
}
# CPU time (user + system, every thread) a process has used so far, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%d", ($12 + $13) * 1000 / hz}' "/proc/$1/stat"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END { print a[int((NR + 1) / 2)] }'; }

none=(); three=(); none_cpu=(); three_cpu=()
for r in $(seq "$ROUNDS"); do
  ROUND=$r
  run none; none+=("$RATE"); none_cpu+=("$CPU")
  run three; three+=("$RATE"); three_cpu+=("$CPU")
  log "round $r: no subscribers ${none[-1]} pps, three subscribers (one stalled; zmq messages queued $SENT, dropped $DROPS) ${three[-1]} pps; collector CPU ${none_cpu[-1]} / ${three_cpu[-1]} ms"
done
a=$(median "${none[@]}"); b=$(median "${three[@]}")
printf "collector ingest, %s-byte frames, %s packets, consumers at %s: no subscribers %s pps, three subscribers %s pps, with/without %s\n" \
  "$SIZE" "$COUNT" "${CONSUMER[*]}" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
c=$(median "${none_cpu[@]}"); d=$(median "${three_cpu[@]}")
printf "collector CPU for %s packets (all threads, median): no subscribers %s ms, three subscribers %s ms, with/without %s\n" \
  "$COUNT" "$c" "$d" "$(awk -v a="$c" -v b="$d" 'BEGIN { printf "%.2f", b / a }')"
