#!/bin/bash
# End-to-end: a subscriber that stops reading while traffic flows loses
# packets (counted, per subscriber), and nothing else does: the stored data
# is complete (exact count), and a second subscriber gets every packet.
# One subscriber stops reading for 30 s while 2000 packets/s flow for 32 s;
# its queue is 256 KiB (--live-queue), so it overflows well within the stall.
source "$(dirname "$0")/live_lib.sh"
live_setup

FILE=$PCAPS/sip_rtp/SIP_CALL_RTP_G711.pcap
LOOPS=15
start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0 --metrics-listen 127.0.0.1:0 \
  --zmq tcp://127.0.0.1:0 --live-queue 256KiB
ZPORT=$(port_from "$WORK/collector.log" "ZeroMQ publisher on port ([0-9]+)")
MPORT=$(port_from "$WORK/collector.log" "metrics on port ([0-9]+)")
WANT=$(( $(count_packets "$FILE") * LOOPS ))

start_bg fast "$CO" "$ZMQ_SUB" tcp://127.0.0.1:$ZPORT --topic data. --ready "$WORK/fast.ready" --idle 5 --max 80
start_bg slow "$CO" "$ZMQ_SUB" tcp://127.0.0.1:$ZPORT --topic data. --ready "$WORK/slow.ready" --stall 30 --idle 3 --max 80
wait_for 10 test -e "$WORK/fast.ready" || fail "fast subscriber not ready"
wait_for 10 test -e "$WORK/slow.ready" || fail "slow subscriber not ready"
live_agent edge1 cap0

log "replaying $(basename "$FILE") x$LOOPS ($WANT packets) at 2000 packets/s; one subscriber stalls for 30 s"
nsq "$TX" tcpreplay -q -i tx0 --pps=2000 --loop=$LOOPS "$FILE" >"$WORK/replay.log" 2>&1 || fail "tcpreplay: $(cat "$WORK/replay.log")"
scrape "$MPORT"
SLOW_DROPS_LIVE=$(metric "$(grep -o 'trawl_live_subscriber_dropped_packets_total{[^}]*}' "$WORK/collector.metrics" | while read -r k; do
  [ "$(metric "$k")" != 0 ] && echo "$k"; done | head -n 1)")
log "while connected: the stalled subscriber's drop counter reads ${SLOW_DROPS_LIVE:-nothing}"
[ -n "$SLOW_DROPS_LIVE" ] && [ "$SLOW_DROPS_LIVE" -gt 0 ] || fail "no per-subscriber drops visible: $(grep subscriber_dropped "$WORK/collector.metrics")"

stop_pid "$PID_edge1"
grep -q "0 batches unacknowledged" "$WORK/edge1.log" || fail "edge1 left batches unacknowledged"
wait "$PID_fast" || fail "fast subscriber: $(cat "$WORK/fast.log")"
wait "$PID_slow" || fail "slow subscriber: $(cat "$WORK/slow.log")"
scrape "$MPORT"
stop_pid "$PID_collector"

read -r F1 F2 _ < <(tail -n 1 "$WORK/fast.log")
read -r S1 S2 _ < <(tail -n 1 "$WORK/slow.log")
STORED=$(count_packets $(segments_of "$WORK/data/edge1"))
DROPPED=$(metric 'trawl_live_dropped_packets_total{output="zmq"}')
SENT=$(metric 'trawl_live_sent_packets_total{output="zmq"}')
log "stored $STORED of $WANT; fast got v1 $F1 v2 $F2; slow got v1 $S1 v2 $S2; zmq dropped $DROPPED, sent $SENT"
[ "$STORED" = "$WANT" ] || fail "stored $STORED packets, replayed $WANT"
[ "$F1" = "$WANT" ] && [ "$F2" = "$WANT" ] || fail "the fast subscriber lost packets"
[ $((S1 + S2)) -lt $((2 * WANT)) ] || fail "the stalled subscriber lost nothing (queue too large for the test?)"
# Exact accounting: every message for the stalled one was either delivered or counted as dropped.
[ "$DROPPED" = $((2 * WANT - S1 - S2)) ] || fail "drops counted $DROPPED, stalled subscriber missed $((2 * WANT - S1 - S2))"
[ "$SENT" = $((2 * WANT + S1 + S2)) ] || fail "sent $SENT, want $((2 * WANT + S1 + S2))"
[ "$(metric 'trawl_live_output_dropped_batches_total{output="zmq"}')" = 0 ] || fail "the publisher's own queue dropped batches"
echo PASS
