#!/bin/bash
# Highest loss-free packet rate: trawl (agent -> TLS -> collector -> disk)
# versus `tcpdump -B 262144 -w` on the same veth, in the same run.
#
#   TRAWL=build/trawl PCAPGEN=build/tests/e2e/pcapgen bench/capture_rate.sh [SECONDS_PER_STEP]
#
# For each workload (64/512/1500-byte synthetic frames, a real mixed
# capture) it replays at a ladder of rates with tcpreplay and records, per
# tool, the highest rate at which every packet was stored. Prints a table
# and the trawl/tcpdump ratio. Needs root (network namespaces). Bounded:
# every step sends at most rate x SECONDS packets and stops by itself.
source "$(dirname "$0")/../tests/e2e/lib.sh"
require_root
SECS=${1:-2}
RATES=${RATES:-"25000 50000 100000 200000 400000 800000"}
e2e_topology 65535
"$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" bench 2>/dev/null

run_tcpdump() {  # file -> packets stored
  local file=$1 out=$WORK/tcpdump.pcap
  rm -f "$out"
  nsq "$AG" tcpdump -i cap0 -B 262144 -s 262144 -w "$out" -Z root >"$WORK/tcpdump.log" 2>&1 &
  local pid=$!
  wait_for 10 grep -q "listening on" "$WORK/tcpdump.log" || fail "tcpdump did not start"
  nsq "$TX" tcpreplay -q -i tx0 --pps="$2" "$file" >/dev/null 2>&1 || true
  sleep 0.5
  kill -INT $pid; wait $pid 2>/dev/null || true
  count_packets "$out"
}

run_trawl() {  # file rate -> packets stored
  local file=$1
  rm -rf "$WORK/data" "$WORK/spool"
  start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0
  local port=$PORT
  start_bg agent "$AG" "$TRAWL" agent --name bench --collector $COLLECTOR_IP:$port --pki "$WORK/pki" -i cap0 \
    --spool-dir "$WORK/spool" --spool-size 2GiB --drain-timeout 60s
  wait_for 15 grep -q "connected to" "$WORK/agent.log" || fail "agent did not connect"
  nsq "$TX" tcpreplay -q -i tx0 --pps="$2" "$file" >/dev/null 2>&1 || true
  sleep 0.5
  stop_pid "$PID_agent"
  stop_pid "$PID_collector"
  count_packets "$WORK"/data/bench/*.pcapng
}

printf "%-22s %12s %12s %8s\n" workload "tcpdump pps" "trawl pps" ratio
for wl in 64 512 1500 mixed; do
  best_td=0; best_tr=0
  for rate in $RATES; do
    n=$((rate * SECS))
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
    td=$(run_tcpdump "$file" "$rate"); tr=$(run_trawl "$file" "$rate")
    log "workload $wl rate $rate: sent $n, tcpdump $td, trawl $tr"
    [ "$td" -ge "$n" ] && best_td=$rate
    [ "$tr" -ge "$n" ] && best_tr=$rate
  done
  ratio=$(awk -v a="$best_tr" -v b="$best_td" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }')
  printf "%-22s %12s %12s %8s\n" "$wl" "$best_td" "$best_tr" "$ratio"
done
