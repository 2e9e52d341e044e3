#!/bin/bash
# End-to-end: osmo-pcap compatibility. Our osmo-pcap test client (written
# from the protocol description) streams a real capture from the agent
# namespace into the collector's --osmo-listen port; the client's address is
# mapped to an agent name. Checks that:
# - the stored segments hold exactly its packets (count, bytes, order), and
#   a libzmq subscriber sees them live (v2, byte-identical);
# - a reconnect (link header sent again) continues the same series;
# - while it streams, clients from another mapped address that send each
#   kind of impossible message are disconnected (counted per reason; the
#   packets they sent before the bad message are kept), an unmapped
#   address is refused, and the good client is not disturbed.
source "$(dirname "$0")/live_lib.sh"
require_root
e2e_topology 65535
nsq "$AG" ip addr add 10.77.0.3/24 dev up0
nsq "$AG" ip addr add 10.77.0.4/24 dev up0

FILE=$PCAPS/sip_rtp/SIP_CALL_RTP_G711.pcap
WANT=$(count_packets "$FILE")
start_collector collector --data "$WORK/data" --insecure --rotate-every 0 --metrics-listen 127.0.0.1:0 \
  --zmq tcp://127.0.0.1:0 --osmo-listen 0.0.0.0:0 --osmo-client 10.77.0.1=osmo1 --osmo-client 10.77.0.3=osmo2
OPORT=$(port_from "$WORK/collector.log" "osmo-pcap clients on port ([0-9]+)")
ZPORT=$(port_from "$WORK/collector.log" "ZeroMQ publisher on port ([0-9]+)")
MPORT=$(port_from "$WORK/collector.log" "metrics on port ([0-9]+)")
start_bg sub "$CO" "$ZMQ_SUB" tcp://127.0.0.1:$ZPORT --topic data.v2.osmo1 --topic event. --v2 "$WORK/live.pcap" \
  --events "$WORK/events.txt" --ready "$WORK/sub.ready" --idle 4 --max 50
wait_for 10 test -e "$WORK/sub.ready" || fail "subscriber not ready"

log "osmo1 (10.77.0.1) streams $(basename "$FILE") ($WANT packets, big-endian, ns), reconnecting once"
start_bg osmo1 "$AG" "$OSMO_CLIENT" $COLLECTOR_IP:$OPORT "$FILE" --bind 10.77.0.1 --pps 1500 --swap --nsec \
  --reconnect-after 1000
sleep 0.5
KINDS=(short-record caplen-over-payload unknown-type bad-link-header data-before-link)
for k in "${KINDS[@]}"; do
  after=5; [ "$k" = data-before-link ] && after=0
  nsq "$AG" "$OSMO_CLIENT" $COLLECTOR_IP:$OPORT "$FILE" --bind 10.77.0.3 --malformed "$k" --after $after \
    >"$WORK/bad-$k.log" 2>&1 || fail "malformed $k: $(cat "$WORK/bad-$k.log")"
  log "osmo2: $(tail -n 1 "$WORK/bad-$k.log")"
done
nsq "$AG" "$OSMO_CLIENT" $COLLECTOR_IP:$OPORT "$FILE" --bind 10.77.0.4 >"$WORK/unmapped.log" 2>&1 || true
wait_for 5 grep -q "refused osmo-pcap client 10.77.0.4" "$WORK/collector.log" || fail "unmapped client not refused"

wait "$PID_osmo1" || fail "osmo1 client: $(cat "$WORK/osmo1.log")"
wait "$PID_sub" || fail "subscriber: $(cat "$WORK/sub.log")"
scrape "$MPORT"
stop_pid "$PID_collector"

mapfile -t SEGS < <(segments_of "$WORK/data/osmo1")
[ "$(count_packets "${SEGS[@]}")" = "$WANT" ] || fail "osmo1: stored $(count_packets "${SEGS[@]}"), sent $WANT"
packet_dump "$FILE" >"$WORK/want.txt"
packet_dump "${SEGS[@]}" >"$WORK/got.txt"
cmp -s "$WORK/want.txt" "$WORK/got.txt" || fail "osmo1: stored packets differ from the capture"
tshark -r "$FILE" -T fields -e frame.time_epoch >"$WORK/ts-want.txt"
for s in "${SEGS[@]}"; do tshark -r "$s" -T fields -e frame.time_epoch; done >"$WORK/ts-got.txt"
cmp -s "$WORK/ts-want.txt" "$WORK/ts-got.txt" || fail "osmo1: timestamps differ"
log "osmo1: $WANT packets stored, byte-identical, same timestamps, across a reconnect"
packet_dump "$WORK/live.pcap" >"$WORK/live.txt"
cmp -s "$WORK/want.txt" "$WORK/live.txt" || fail "osmo1: live packets differ"
grep -q "^event.v1.connect.osmo1 10.77.0.1:" "$WORK/events.txt" || fail "no connect event"
grep -q "^event.v1.disconnect.osmo1 " "$WORK/events.txt" || fail "no disconnect event"
log "osmo1: the same packets live on ZeroMQ, with connect/disconnect events"

# osmo2: the 5 packets before each bad message (4 kinds send them) are kept.
mapfile -t SEGS2 < <(segments_of "$WORK/data/osmo2")
[ "$(count_packets "${SEGS2[@]}")" = 20 ] || fail "osmo2: stored $(count_packets "${SEGS2[@]}"), want 20"
for r in osmo_short_record osmo_caplen_over_payload osmo_unknown_type osmo_bad_link_header osmo_data_before_link_header; do
  [ "$(metric "trawl_collector_osmo_malformed_total{reason=\"$r\"}")" = 1 ] || fail "reason $r not counted once"
  grep -q "closing osmo-pcap connection from 10.77.0.3:[0-9]* (agent osmo2): $r" "$WORK/collector.log" || fail "no log line for $r"
done
log "every malformed message closed its connection, counted by reason, with a log line naming the peer"
echo PASS
