#!/bin/bash
# End-to-end: two agents capture replayed real traffic on veths in their own
# namespace and stream it over mutual TLS to a collector in another
# namespace. Checks that the stored segments hold exactly the replayed
# packets (count, bytes, order) across several rotated segments, that two
# agents land in separate series, that tshark/capinfos read every segment,
# that an agent from another CA is refused, and that peers sending garbage
# (before and after the TLS handshake) are disconnected while the real
# agents keep streaming.
source "$(dirname "$0")/lib.sh"
require_root

FILE1=$PCAPS/mixed/pcapplusplus_example.pcap
FILE2=$PCAPS/sip_rtp/SIP_CALL_RTP_G711.pcap
e2e_topology 65535

log "credentials"
"$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" edge1 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" edge2 2>/dev/null
"$TRAWL" pki init "$WORK/rogue" 2>/dev/null
"$TRAWL" pki issue "$WORK/rogue" edge1 2>/dev/null

start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-size 256KiB --rotate-every 0 \
  --metrics-listen 127.0.0.1:0
log "collector on port $PORT"

start_agent() {  # start_agent NAME IFACE PKI
  start_bg "$1" "$AG" "$TRAWL" agent --name "$1" --collector $COLLECTOR_IP:$PORT --pki "$3" -i "$2" \
    --spool-dir "$WORK/spool-$1" --drain-timeout 20s
}
start_agent edge1 cap0 "$WORK/pki"
start_agent edge2 cap1 "$WORK/pki"
wait_for 15 grep -q "connected to" "$WORK/edge1.log" || fail "edge1 did not connect"
wait_for 15 grep -q "connected to" "$WORK/edge2.log" || fail "edge2 did not connect"

log "agent from another CA"
start_bg rogue "$AG" "$TRAWL" agent --name edge1 --collector $COLLECTOR_IP:$PORT --pki "$WORK/rogue" -i cap0 \
  --spool-dir "$WORK/spool-rogue" --user ""
wait_for 15 grep -q "refused .*TLS handshake failed" "$WORK/collector.log" || fail "collector did not refuse the rogue agent"
kill -KILL "$PID_rogue"

log "replaying $(basename "$FILE1") on cap0 and $(basename "$FILE2") on cap1, with garbage peers"
nsq "$TX" tcpreplay -q -i tx0 --pps=5000 "$FILE1" >"$WORK/replay1.log" 2>&1 &
R1=$!
nsq "$TX" tcpreplay -q -i tx1 --pps=5000 "$FILE2" >"$WORK/replay2.log" 2>&1 &
R2=$!
# Random bytes instead of a TLS ClientHello.
head -c 65536 /dev/urandom | nsq "$AG" timeout 10 bash -c "cat > /dev/tcp/$COLLECTOR_IP/$PORT" 2>/dev/null || true
# A real certificate, then garbage frames inside TLS.
head -c 65536 /dev/urandom | nsq "$AG" timeout 10 openssl s_client -quiet -connect $COLLECTOR_IP:$PORT \
  -cert "$WORK/pki/agents/edge2.crt" -key "$WORK/pki/agents/edge2.key" -CAfile "$WORK/pki/ca.crt" \
  >/dev/null 2>&1 || true
wait $R1 || fail "tcpreplay 1 failed: $(cat "$WORK/replay1.log")"
wait $R2 || fail "tcpreplay 2 failed: $(cat "$WORK/replay2.log")"
wait_for 10 grep -q "bad frame magic" "$WORK/collector.log" || fail "garbage inside TLS was not reported"
# The refusals are counted by reason.
MPORT=$(sed -nE 's/.*metrics on port ([0-9]+).*/\1/p' "$WORK/collector.log" | head -n 1)
nsq "$CO" curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$WORK/collector.metrics" || fail "collector /metrics"
metric() { awk -v k="$1" '$1 == k {print $2}' "$WORK/collector.metrics"; }
[ "$(metric 'trawl_collector_tls_failures_total{reason="untrusted_certificate"}')" -ge 1 ] || fail "rogue agent not counted: $(grep tls_failures "$WORK/collector.metrics")"
[ "$(metric 'trawl_collector_tls_failures_total{reason="not_tls"}')" -ge 1 ] || fail "random bytes not counted: $(grep tls_failures "$WORK/collector.metrics")"
[ "$(metric 'trawl_collector_malformed_frames_total{reason="bad_header"}')" -ge 1 ] || fail "garbage frames not counted: $(grep malformed "$WORK/collector.metrics")"

log "stopping agents (they drain their spools) and the collector (it seals)"
stop_pid "$PID_edge1"
stop_pid "$PID_edge2"
stop_pid "$PID_collector"
grep -q "0 batches unacknowledged" "$WORK/edge1.log" || fail "edge1 left batches unacknowledged"
grep -q "0 batches unacknowledged" "$WORK/edge2.log" || fail "edge2 left batches unacknowledged"

ls "$WORK/data"/*/*.part 2>/dev/null && fail "unsealed segments left after a clean stop"
[ -d "$WORK/data/edge1" ] && [ -d "$WORK/data/edge2" ] || fail "missing per-agent directories"
mapfile -t S1 < <(segments_of "$WORK/data/edge1")
mapfile -t S2 < <(segments_of "$WORK/data/edge2")
log "edge1: ${#S1[@]} segments, edge2: ${#S2[@]} segments"
[ "${#S1[@]}" -ge 3 ] || fail "expected rotation into several segments for edge1, got ${#S1[@]}"
check_segments_readable "${S1[@]}" "${S2[@]}"

for pair in "edge1:$FILE1" "edge2:$FILE2"; do
  agent=${pair%%:*}; file=${pair#*:}
  mapfile -t segs < <(segments_of "$WORK/data/$agent")
  want=$(count_packets "$file"); got=$(count_packets "${segs[@]}")
  [ "$want" = "$got" ] || fail "$agent: stored $got packets, replayed $want"
  packet_dump "$file" >"$WORK/want-$agent.txt"
  packet_dump "${segs[@]}" >"$WORK/got-$agent.txt"
  cmp -s "$WORK/want-$agent.txt" "$WORK/got-$agent.txt" || fail "$agent: stored bytes/order differ from the replayed capture"
  log "$agent: $got packets stored, byte-identical and in order"
done
# Interface and agent identity in the files.
tshark -r "${S1[0]}" -T fields -e frame.interface_name -c 1 | grep -qx cap0 || fail "IDB does not name cap0"
capinfos "${S1[0]}" | grep -q "edge1" || fail "SHB does not name the agent"
echo PASS
