#!/bin/bash
# End-to-end: the live channel. An agent streams a replayed real capture to
# a collector publishing on ZeroMQ and PCAP-over-IP. Checks that:
# - a libzmq SUB consumer receives every packet, in order, byte-identical,
#   in the osmo-pcap v1 format and in trawl's v2 format, plus connect,
#   closingtracefile and disconnect events (v1 and v2);
# - tshark reads the same packets live from the PCAP-over-IP listener
#   (`tshark -i TCP@127.0.0.1:PORT`), and a pcapng listener restricted to
#   one agent and a BPF filter delivers exactly the matching packets;
# - `trawl tail` prints summary lines;
# - a stream-only agent's packets are published but not stored, and its
#   batches are still acknowledged.
source "$(dirname "$0")/live_lib.sh"
live_setup

FILE1=$PCAPS/sip_rtp/SIP_CALL_RTP_G711.pcap
FILE2=$PCAPS/dns/pcapplusplus_DnsPackets.pcap
start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-size 256KiB --rotate-every 0 \
  --metrics-listen 127.0.0.1:0 --zmq tcp://127.0.0.1:0 --stream-only edge2 \
  --pcap-listen 127.0.0.1:0,agent=edge1 --pcap-listen "127.0.0.1:0,format=pcapng,agent=edge1,filter=udp and port 5060"
ZPORT=$(port_from "$WORK/collector.log" "ZeroMQ publisher on port ([0-9]+)")
MPORT=$(port_from "$WORK/collector.log" "metrics on port ([0-9]+)")
mapfile -t PPORTS < <(sed -nE 's/.*PCAP-over-IP on port ([0-9]+).*/\1/p' "$WORK/collector.log")
[ "${#PPORTS[@]}" = 2 ] || fail "expected two PCAP-over-IP listeners"
log "collector $PORT, zmq $ZPORT, pcap-over-ip ${PPORTS[*]}"

WANT1=$(count_packets "$FILE1")
WANT2=$(count_packets "$FILE2")
WANT_SIP=$(tcpdump -r "$FILE1" -nn "udp and port 5060" 2>/dev/null | wc -l)

# Consumers first (they only see what is published after they connect).
start_bg sub1 "$CO" "$ZMQ_SUB" tcp://127.0.0.1:$ZPORT --topic data.v1.edge1 --topic data.v2.edge1 --topic event. \
  --v1 "$WORK/v1.pcap" --v2 "$WORK/v2.pcap" --events "$WORK/events.txt" --ready "$WORK/sub1.ready" --idle 4 --max 50
start_bg sub2 "$CO" "$ZMQ_SUB" tcp://127.0.0.1:$ZPORT --topic data.v2.edge2 --v2 "$WORK/v2-edge2.pcap" \
  --ready "$WORK/sub2.ready" --idle 4 --max 50
start_bg tshark "$CO" timeout 40 tshark -i TCP@127.0.0.1:${PPORTS[0]} -c "$WANT1" -w "$WORK/poip.pcap"
start_bg tshark_ng "$CO" timeout 40 tshark -i TCP@127.0.0.1:${PPORTS[1]} -c "$WANT_SIP" -w "$WORK/poip-sip.pcapng"
start_bg tail "$CO" "$TRAWL" tail --zmq tcp://127.0.0.1:$ZPORT --agent edge1 -c 20 --duration 40s udp
wait_for 10 test -e "$WORK/sub1.ready" || fail "sub1 not ready"
wait_for 10 test -e "$WORK/sub2.ready" || fail "sub2 not ready"
wait_for 10 grep -q "Capturing on" "$WORK/tshark.log" || fail "tshark did not start"
wait_for 10 grep -q "Capturing on" "$WORK/tshark_ng.log" || fail "tshark (pcapng) did not start"
wait_for 10 bash -c "grep -c 'subscriber #' '$WORK/collector.log' | grep -qE '^[5-9]'" || fail "not every consumer connected"

live_agent edge1 cap0
live_agent edge2 cap1
log "replaying $(basename "$FILE1") ($WANT1 packets) on cap0, $(basename "$FILE2") ($WANT2) on cap1 (stream-only)"
nsq "$TX" tcpreplay -q -i tx0 --pps=4000 "$FILE1" >"$WORK/replay1.log" 2>&1 &
R1=$!
nsq "$TX" tcpreplay -q -i tx1 --pps=4000 "$FILE2" >"$WORK/replay2.log" 2>&1 &
R2=$!
wait $R1 || fail "tcpreplay 1: $(cat "$WORK/replay1.log")"
wait $R2 || fail "tcpreplay 2: $(cat "$WORK/replay2.log")"

log "stopping the agents (drain), then waiting for the consumers"
stop_pid "$PID_edge1"
stop_pid "$PID_edge2"
grep -q "0 batches unacknowledged" "$WORK/edge1.log" || fail "edge1 left batches unacknowledged"
grep -q "0 batches unacknowledged" "$WORK/edge2.log" || fail "edge2 (stream-only) left batches unacknowledged"
wait "$PID_tshark" || fail "tshark on PCAP-over-IP did not get $WANT1 packets: $(tail -3 "$WORK/tshark.log")"
wait "$PID_tshark_ng" || fail "tshark on the pcapng listener did not get $WANT_SIP packets"
wait "$PID_tail" || fail "trawl tail failed"
scrape "$MPORT"
# trawl status shows the stream-only agent's capture counters too.
nsq "$CO" "$TRAWL" status --collector 127.0.0.1:$MPORT --json >"$WORK/status.json" || fail "trawl status"
received=$(jq '[.agents[] | select(.agent == "edge2") | .interfaces[].received_packets] | add // 0' "$WORK/status.json")
[ "$received" -gt 0 ] || fail "status: no capture counters for stream-only edge2: $(cat "$WORK/status.json")"
log "trawl status: stream-only edge2 captured $received packets"
# Stopping seals the open segment; its closingtracefile event still goes out.
stop_pid "$PID_collector"
wait "$PID_sub1" || fail "sub1 failed: $(cat "$WORK/sub1.log")"
wait "$PID_sub2" || fail "sub2 failed: $(cat "$WORK/sub2.log")"

packet_dump "$FILE1" >"$WORK/want1.txt"
for out in v1.pcap v2.pcap poip.pcap; do  # (packet_dump uses $f)
  packet_dump "$WORK/$out" >"$WORK/got-$out.txt"
  cmp -s "$WORK/want1.txt" "$WORK/got-$out.txt" || fail "$out: packets differ from the replayed capture (count $(count_packets "$WORK/$out"), want $WANT1)"
  log "$out: $WANT1 packets, byte-identical and in order"
done
packet_dump "$FILE2" >"$WORK/want2.txt"
packet_dump "$WORK/v2-edge2.pcap" >"$WORK/got2.txt"
cmp -s "$WORK/want2.txt" "$WORK/got2.txt" || fail "stream-only edge2: live packets differ from the replay"
log "stream-only edge2: $WANT2 packets published, byte-identical"
[ "$(tcpdump -r "$WORK/poip-sip.pcapng" -nn 2>/dev/null | wc -l)" = "$WANT_SIP" ] || fail "filtered listener count"
tcpdump -r "$FILE1" -nn -t -xx "udp and port 5060" 2>/dev/null >"$WORK/want-sip.txt"
tcpdump -r "$WORK/poip-sip.pcapng" -nn -t -xx 2>/dev/null >"$WORK/got-sip.txt"
cmp -s "$WORK/want-sip.txt" "$WORK/got-sip.txt" || fail "filtered pcapng listener: packets differ"
tshark -r "$WORK/poip-sip.pcapng" -T fields -e frame.interface_name -c 1 | grep -qx "edge1/cap0" || fail "pcapng IDB name"
log "pcapng listener (agent edge1, filter 'udp and port 5060'): $WANT_SIP packets"

# Nanosecond timestamps survive in v2 and in the stored segment alike.
mapfile -t SEGS < <(segments_of "$WORK/data/edge1")
[ "${#SEGS[@]}" -ge 2 ] || fail "expected rotation (closingtracefile events), got ${#SEGS[@]} segments"
[ "$(count_packets "${SEGS[@]}")" = "$WANT1" ] || fail "stored count"
tshark -r "$WORK/v2.pcap" -T fields -e frame.time_epoch >"$WORK/ts-live.txt"
for s in "${SEGS[@]}"; do tshark -r "$s" -T fields -e frame.time_epoch; done >"$WORK/ts-stored.txt"
cmp -s "$WORK/ts-live.txt" "$WORK/ts-stored.txt" || fail "v2 timestamps differ from the stored ones"
[ -n "$(segments_of "$WORK/data/edge2")" ] && fail "stream-only agent edge2 was stored"

# Events, both versions.
for ev in "event.v1.connect.edge1 " "event.v2.connect.edge1 {" "event.v1.disconnect.edge1" "event.v2.disconnect.edge1" \
  "event.v1.connect.edge2" "event.v1.closingtracefile.edge1 $WORK/data/edge1/edge1-" "event.v2.closingtracefile.edge1 {\"agent\":\"edge1\",\"path\":"; do
  grep -qF -- "$ev" "$WORK/events.txt" || fail "event '$ev' missing: $(cat "$WORK/events.txt")"
done
SEALED_EVENTS=$(grep -c "^event.v1.closingtracefile.edge1 " "$WORK/events.txt")
[ "$SEALED_EVENTS" = "${#SEGS[@]}" ] || fail "$SEALED_EVENTS closingtracefile events for ${#SEGS[@]} segments"
log "events ok (one closingtracefile per segment: ${#SEGS[@]}, the last one sealed at stop)"
# every path named by an event is a sealed segment
for p in $(awk '$1 == "event.v1.closingtracefile.edge1" {print $2}' "$WORK/events.txt"); do
  [ -f "$p" ] || fail "closingtracefile names $p, which does not exist"
done

# trawl tail: 20 summary lines of edge1's UDP traffic.
[ "$(grep -c ' edge1/cap0 IP ' "$WORK/tail.log")" = 20 ] || fail "trawl tail: $(head -5 "$WORK/tail.log")"
grep -q "UDP, length" "$WORK/tail.log" || fail "trawl tail summary"
log "trawl tail: $(grep -m1 ' edge1/cap0 ' "$WORK/tail.log")"

# Metrics: nothing dropped, stream-only counted.
[ "$(metric trawl_live_dropped_packets_total'{output="zmq"}')" = 0 ] || fail "zmq drops: $(grep dropped "$WORK/collector.metrics")"
[ "$(metric trawl_collector_streamed_packets_total)" = "$WANT2" ] || fail "streamed packets: $(metric trawl_collector_streamed_packets_total)"
echo PASS
