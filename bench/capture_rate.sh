#!/bin/bash
# Highest loss-free packet rate: trawl (agent -> TLS -> collector -> disk)
# versus `tcpdump -B 262144 -w` on the same veth, in the same run.
#
#   TRAWL=build/trawl PCAPGEN=build/tests/e2e/pcapgen bench/capture_rate.sh [SECONDS_PER_STEP]
#
# For each workload (64/512/1500-byte synthetic frames, a real mixed
# capture) it replays at a ladder of rates with tcpreplay and records, per
# tool, the highest rate at which every packet was stored. Prints a table
# and the trawl/tcpdump ratio; the log also gives, per step, the CPU time
# each tool (agent and collector apart) and tcpreplay used per million
# packets. COLLECTOR_ARGS adds collector flags (e.g.
# "--compression none" to see what segment compression costs). Needs root
# (network namespaces). Bounded:
# every step sends at most rate x SECONDS packets and stops by itself.
source "$(dirname "$0")/../tests/e2e/lib.sh"
require_root
SECS=${1:-2}
RATES=${RATES:-"50000 100000 200000 400000 600000 800000 0"}  # 0 = tcpreplay --topspeed
e2e_topology 65535
"$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" bench 2>/dev/null

# Replays FILE at RATE pps (0 = as fast as tcpreplay can) and sets
# ACTUAL_PPS to the rate tcpreplay reports it achieved and GEN_CPU_MS to
# the CPU time (user + system) tcpreplay used.
replay() {
  local speed=(--pps="$2")
  [ "$2" = 0 ] && speed=(--topspeed)
  local TIMEFORMAT='%3U %3S'
  { time nsq "$TX" tcpreplay -i tx0 "${speed[@]}" "$1" >"$WORK/replay.log" 2>&1 || true; } 2>"$WORK/replay.time"
  ACTUAL_PPS=$(awk '/Rated:/ {for (i = 1; i <= NF; i++) if ($i == "pps") print int($(i-1))}' "$WORK/replay.log")
  GEN_CPU_MS=$(awk '{printf "%d", ($1 + $2) * 1000}' "$WORK/replay.time")
}

# CPU time (user + system, every thread) a process has used so far, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%d", ($12 + $13) * 1000 / hz}' "/proc/$1/stat"; }

# The run_* functions set STORED (no $(...) subshells: lib.sh's exit trap
# would tear the namespaces down when a subshell exits).
run_tcpdump() {  # file rate
  local file=$1 out=$WORK/tcpdump.pcap
  rm -f "$out"
  ip netns exec "$AG" tcpdump -i cap0 -B 262144 -s 262144 -w "$out" -Z root >"$WORK/tcpdump.log" 2>&1 &
  local pid=$!
  wait_for 10 grep -q "listening on" "$WORK/tcpdump.log" || fail "tcpdump did not start"
  local c0; c0=$(cpu_ms $pid)
  replay "$file" "$2"
  sleep 2  # let both tools retire their last ring block (tcpdump: 1 s timeout)
  TOOL_CPU_MS=$(( $(cpu_ms $pid) - c0 ))
  kill -INT $pid; wait $pid 2>/dev/null || true
  STORED=$(count_packets "$out")
}

run_trawl() {  # file rate
  local file=$1
  rm -rf "$WORK/data" "$WORK/spool"
  # shellcheck disable=SC2086  # COLLECTOR_ARGS: extra flags, e.g. "--compression none"
  start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0 ${COLLECTOR_ARGS:-}
  local port=$PORT
  # Same kernel buffer as tcpdump -B 262144 (KiB).
  start_bg agent "$AG" "$TRAWL" agent --name bench --collector $COLLECTOR_IP:$port --pki "$WORK/pki" -i cap0 \
    --ring-size 256MiB --spool-dir "$WORK/spool" --spool-size 2GiB --drain-timeout 60s
  wait_for 15 grep -q "connected to" "$WORK/agent.log" || fail "agent did not connect"
  # PERF_OUT=FILE: a system-wide profile (perf record -a -g) while trawl's replay runs.
  local perf_pid=
  if [ -n "${PERF_OUT:-}" ]; then
    perf record -a -g -F 499 -o "$PERF_OUT" -- sleep "$SECS" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local a0 c0; a0=$(cpu_ms "$PID_agent"); c0=$(cpu_ms "$PID_collector")
  replay "$file" "$2"
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  sleep 2  # let both tools retire their last ring block (tcpdump: 1 s timeout)
  AGENT_CPU_MS=$(( $(cpu_ms "$PID_agent") - a0 ))
  COLLECTOR_CPU_MS=$(( $(cpu_ms "$PID_collector") - c0 ))
  AGENT_RSS_KB=$(awk '/^VmHWM:/ {print $2}' /proc/$PID_agent/status)
  stop_pid "$PID_agent"
  stop_pid "$PID_collector"
  STORED=$(count_packets $(segments_of "$WORK"/data/bench))
}

printf "%-10s %14s %14s %8s %16s\n" workload "tcpdump pps" "trawl pps" ratio "agent peak RSS"
for wl in ${WORKLOADS:-64 512 1500 mixed}; do
  best_td=0; best_tr=0
  max_rss=0
  for rate in $RATES; do
    n=$((rate * SECS)); [ "$rate" = 0 ] && n=$((1000000 * SECS))
    if [ $wl = mixed ]; then
      # Repeat the real capture until it holds n packets.
      base=$PCAPS/mixed/pcapplusplus_example.pcap
      per=$(count_packets "$base"); reps=$(( (n + per - 1) / per ))
      file=$WORK/mixed.pcap
      args=(); for _ in $(seq $reps); do args+=("$base"); done
      mergecap -a -w "$file" "${args[@]}" 2>/dev/null
      n=$((per * reps))
    else
      file=$WORK/gen-$wl.pcap
      "$PCAPGEN" "$file" "$n" "$wl"
    fi
    run_tcpdump "$file" "$rate"; td=$STORED; td_pps=$ACTUAL_PPS; td_gen=$GEN_CPU_MS
    run_trawl "$file" "$rate"; tr=$STORED; tr_pps=$ACTUAL_PPS; tr_gen=$GEN_CPU_MS
    [ "$AGENT_RSS_KB" -gt "$max_rss" ] && max_rss=$AGENT_RSS_KB
    log "workload $wl asked $rate pps: sent $n; tcpdump stored $td at $td_pps pps; trawl stored $tr at $tr_pps pps; agent peak RSS ${AGENT_RSS_KB} KiB"
    # CPU per million packets sent (user + system, all threads; kernel work
    # done in softirq on the sender's CPU is charged to tcpreplay).
    per_m() { awk -v ms="$1" -v n="$n" 'BEGIN { printf "%.0f", ms * 1e6 / n }'; }
    log "  CPU ms per 1M packets: tcpdump $(per_m "$TOOL_CPU_MS") (tcpreplay beside it $(per_m "$td_gen")); trawl agent $(per_m "$AGENT_CPU_MS") + collector $(per_m "$COLLECTOR_CPU_MS") (tcpreplay beside them $(per_m "$tr_gen"))"
    if [ "$td" -ge "$n" ] && [ "$td_pps" -gt "$best_td" ]; then best_td=$td_pps; fi
    if [ "$tr" -ge "$n" ] && [ "$tr_pps" -gt "$best_tr" ]; then best_tr=$tr_pps; fi
  done
  ratio=$(awk -v a="$best_tr" -v b="$best_td" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }')
  printf "%-10s %14s %14s %8s %13s MiB\n" "$wl" "$best_td" "$best_tr" "$ratio" $((max_rss / 1024))
done
