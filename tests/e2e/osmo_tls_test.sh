#!/bin/bash
# End-to-end: osmo-pcap clients over TLS (--osmo-tls). The collector's
# certificate serves the osmo listener; a client presents a certificate from
# the same CA and is still identified by its source address. The client side
# is `openssl s_client` replaying an osmo-pcap byte stream made by our test
# client from a real capture; the stored segment must hold exactly its
# packets. A client without a certificate is refused.
source "$(dirname "$0")/live_lib.sh"
require_root
e2e_topology 65535
"$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP >/dev/null 2>&1 || fail "pki init"
"$TRAWL" pki issue "$WORK/pki" probe >/dev/null 2>&1 || fail "pki issue"

FILE=$PCAPS/dns/pcapplusplus_DnsPackets.pcap
WANT=$(count_packets "$FILE")
"$OSMO_CLIENT" --out "$WORK/stream.bin" "$FILE" || fail "making the osmo stream"
start_collector collector --data "$WORK/data" --pki "$WORK/pki" --rotate-every 0 \
  --osmo-listen 0.0.0.0:0 --osmo-tls --osmo-client 10.77.0.1=osmo1
OPORT=$(port_from "$WORK/collector.log" "osmo-pcap clients on port ([0-9]+) \\(TLS")

log "no client certificate: refused"
nsq "$AG" timeout 10 openssl s_client -quiet -no_ign_eof -connect $COLLECTOR_IP:$OPORT -CAfile "$WORK/pki/ca.crt" \
  <"$WORK/stream.bin" >/dev/null 2>&1 || true
wait_for 10 grep -q "refused osmo-pcap client 10.77.0.1:[0-9]*: TLS handshake failed" "$WORK/collector.log" ||
  fail "a client without certificate was not refused"

log "with a certificate from the collector's CA: $WANT packets over TLS"
nsq "$AG" timeout 20 openssl s_client -quiet -no_ign_eof -connect $COLLECTOR_IP:$OPORT -CAfile "$WORK/pki/ca.crt" \
  -cert "$WORK/pki/agents/probe.crt" -key "$WORK/pki/agents/probe.key" <"$WORK/stream.bin" >"$WORK/s_client.log" 2>&1 || true
wait_for 10 grep -q "osmo-pcap client 10.77.0.1:[0-9]* (agent osmo1) disconnected" "$WORK/collector.log" ||
  fail "the TLS client's session did not end cleanly"
stop_pid "$PID_collector"
mapfile -t SEGS < <(segments_of "$WORK/data/osmo1")
[ "$(count_packets "${SEGS[@]}")" = "$WANT" ] || fail "stored $(count_packets "${SEGS[@]}"), sent $WANT"
packet_dump "$FILE" >"$WORK/want.txt"
packet_dump "${SEGS[@]}" >"$WORK/got.txt"
cmp -s "$WORK/want.txt" "$WORK/got.txt" || fail "stored packets differ"
log "osmo1 over TLS: $WANT packets stored, byte-identical"
echo PASS
