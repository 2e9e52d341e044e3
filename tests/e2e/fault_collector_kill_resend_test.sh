#!/bin/bash
# Fault: the collector is kill -9'd while it holds batches the agent still
# has as unacknowledged, and again while the agent is re-sending a backlog.
#   1. The collector's outgoing traffic (its ACKs) is black-holed (pfifo
#      with limit 0 on dn0) while it keeps receiving and storing batches;
#      then it is killed. The agent's spool ack point is now behind what the
#      collector stored; after the restart the collector recovers its .part
#      segment and its WELCOME must name a higher seq than the agent's ack
#      point, and nothing the agent re-offers may be stored twice.
#   2. The agent catches up on the backlog over a link limited to 24 Mbit/s;
#      the collector is killed again in the middle of it and restarted.
# Stored = sent, exactly once.
source "$(dirname "$0")/seq_lib.sh"
fault_setup

COUNT=60000
gen_traffic traffic $COUNT 300 1
collector_up collector
agent_up agent
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
nsq "$AG" tc qdisc add dev up0 root tbf rate 24mbit burst 64kb latency 500ms
welcome_seq() { grep "connected to" "$AGENT_LOG" | tail -n 1 | sed -E 's/.*collector holds up to seq ([0-9]+).*/\1/'; }

log "replaying $COUNT packets at 5000 pps (12 s)"
replay_bg traffic 5000
sleep 1.5
log "1. black-holing the collector's ACKs for 1.5 s, then kill -9"
nsq "$CO" tc qdisc add dev dn0 root pfifo limit 0
sleep 1.5
kill9 "$COLLECTOR_PID"
nsq "$CO" tc qdisc del dev dn0 root
acked=$(spool_acked "$SPOOL")
log "agent's spool ack point at the kill: seq $acked"
sleep 1
collector_up collector2
wait_for 20 at_least 2 "$AGENT_LOG" "connected to" || fail "agent did not reconnect"
grep -q "recovery: sealed" "$WORK/collector2.log" || fail "the .part segment was not recovered"
log "agent reconnected: $(grep "connected to" "$AGENT_LOG" | tail -n 1 | sed 's/.*(//; s/)$//')"
[ "$(welcome_seq)" -gt "$acked" ] ||
  fail "the collector held nothing beyond the agent's ack point ($(welcome_seq) <= $acked): ACKs were not held back"

log "2. kill -9 of the collector 1.5 s into the catch-up"
sleep 1.5
kill9 "$COLLECTOR_PID"
unacked_files=$(ls "$SPOOL"/*.spool 2>/dev/null | wc -l)
parts=$(parts_of "$DATA/$AGENT" | wc -l)
log "collector killed: ack point seq $(spool_acked "$SPOOL"), $unacked_files spool file(s) unacknowledged, $parts .part segment(s)"
[ "$unacked_files" -gt 0 ] || fail "the catch-up was already over at the kill"
[ "$parts" -gt 0 ] || fail "the collector had written nothing of the catch-up at the kill"
sleep 1
collector_up collector3
wait_for 20 at_least 3 "$AGENT_LOG" "connected to" || fail "agent did not reconnect"
grep -q "recovery: sealed" "$WORK/collector3.log" || fail "the .part segment was not recovered"
log "agent reconnected: $(grep "connected to" "$AGENT_LOG" | tail -n 1 | sed 's/.*(//; s/)$//')"
replay_wait
wait_delivered 45 || fail "spool not acknowledged after the traffic ended"
stop_and_expect_exact $COUNT
grep -h "recovery: sealed\|resuming after" "$WORK"/collector*.log | sed 's/^/  /' >&2
echo PASS
