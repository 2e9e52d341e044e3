#!/bin/bash
# End-to-end: `trawl query` and the collector's /api/v1/query over data a
# real collector is still writing. Two agents capture replayed captures;
# right after the replay ends, the query (CLI and HTTP) must return every
# replayed packet, including those in the open segment (measured: time
# from the end of the replay until the query returns them all), byte-
# identical and in order; a BPF filter selects what tcpdump selects from the
# original capture; the two agents merge; trawl ls lists the segments.
source "$(dirname "$0")/lib.sh"
require_root
command -v curl >/dev/null || { echo "SKIP: curl missing" >&2; exit 77; }

FILE1=$PCAPS/mixed/pcapplusplus_example.pcap
FILE2=$PCAPS/sip_rtp/SIP_CALL_RTP_G711.pcap
FILTER="host 10.0.0.6 and tcp port 44150"
e2e_topology 65535

"$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" edge1 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" edge2 2>/dev/null
DATA=$WORK/data
start_collector collector --data "$DATA" --pki "$WORK/pki" --rotate-size 512KiB --rotate-every 0 \
  --compression zstd:1 --frame-size 256KiB --metrics-listen 127.0.0.1:0
MPORT=$(sed -nE 's/.*metrics on port ([0-9]+).*/\1/p' "$WORK/collector.log" | head -n 1)
for a in edge1:cap0 edge2:cap1; do
  start_bg "${a%%:*}" "$AG" "$TRAWL" agent --name "${a%%:*}" --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" \
    -i "${a#*:}" --spool-dir "$WORK/spool-${a%%:*}" --drain-timeout 20s
done
wait_for 15 grep -q "connected to" "$WORK/edge1.log" || fail "edge1 did not connect"
wait_for 15 grep -q "connected to" "$WORK/edge2.log" || fail "edge2 did not connect"

want1=$(count_packets "$FILE1"); want2=$(count_packets "$FILE2")
log "replaying $(basename "$FILE1") ($want1) on cap0 and $(basename "$FILE2") ($want2) on cap1"
nsq "$TX" tcpreplay -q -i tx1 --pps=4000 "$FILE2" >"$WORK/replay2.log" 2>&1 &
R2=$!
nsq "$TX" tcpreplay -q -i tx0 --pps=4000 "$FILE1" >"$WORK/replay1.log" 2>&1 || fail "tcpreplay 1: $(cat "$WORK/replay1.log")"
t_end=$(date +%s%N)
wait $R2 || fail "tcpreplay 2: $(cat "$WORK/replay2.log")"

queried() { "$TRAWL" query --data "$DATA" --agent "$1" -q -w "$WORK/q-$1.pcapng" 2>>"$WORK/query.err"; count_packets "$WORK/q-$1.pcapng"; }
all_there() { [ "$(queried edge1)" = "$want1" ]; }
wait_for 20 all_there || fail "query returned $(queried edge1) of $want1 packets: $(tail -3 "$WORK/query.err")"
t_ok=$(date +%s%N)
log "capture-to-queryable: all $want1 packets of edge1 queryable $(( (t_ok - t_end) / 1000000 )) ms after the replay ended"
[ -n "$(parts_of "$DATA/edge1")" ] || fail "expected an open segment for edge1"
ls "$DATA/edge1"/*.idx.part >/dev/null 2>&1 || log "note: no index journal yet (open segment read from its bytes)"
[ "$(ls "$DATA/edge1"/*.pcapng.zst 2>/dev/null | wc -l)" -ge 2 ] || fail "expected several sealed .zst segments"

packet_dump "$FILE1" >"$WORK/want1.txt"
packet_dump "$WORK/q-edge1.pcapng" >"$WORK/got1.txt"
cmp -s "$WORK/want1.txt" "$WORK/got1.txt" || fail "edge1: query output differs from the replayed capture"
capinfos "$WORK/q-edge1.pcapng" >/dev/null || fail "capinfos cannot read the query output"

log "filter: $FILTER"
tcpdump -r "$FILE1" -w "$WORK/ref.pcap" "$FILTER" 2>/dev/null
"$TRAWL" query --data "$DATA" --agent edge1 -q -w "$WORK/f.pcapng" $FILTER || fail "filtered query failed"
packet_dump "$WORK/ref.pcap" >"$WORK/want-f.txt"
packet_dump "$WORK/f.pcapng" >"$WORK/got-f.txt"
[ -s "$WORK/want-f.txt" ] || fail "the filter selects nothing in the capture"
cmp -s "$WORK/want-f.txt" "$WORK/got-f.txt" || fail "filtered query differs from tcpdump's selection"
log "filtered query: $(count_packets "$WORK/f.pcapng") packets, as tcpdump selects"

log "HTTP /api/v1/query"
enc=$(printf '%s' "$FILTER" | sed 's/ /%20/g')
nsq "$CO" curl -fsS -o "$WORK/h.pcapng" "http://127.0.0.1:$MPORT/api/v1/query?agent=edge1&filter=$enc" ||
  fail "HTTP query failed"
packet_dump "$WORK/h.pcapng" >"$WORK/got-h.txt"
cmp -s "$WORK/want-f.txt" "$WORK/got-h.txt" || fail "HTTP query differs from tcpdump's selection"
n_pipe=$(nsq "$CO" curl -fsS "http://127.0.0.1:$MPORT/api/v1/query?agent=edge2" | tshark -r - 2>/dev/null | wc -l)
[ "$n_pipe" = "$want2" ] || fail "curl | tshark -r - saw $n_pipe of $want2 packets"
code=$(nsq "$CO" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/api/v1/query?filter=not%20a%20filter%20((")
[ "$code" = 400 ] || fail "bad filter gave HTTP $code, not 400"
nsq "$CO" curl -fsS "http://127.0.0.1:$MPORT/metrics" >/dev/null || fail "/metrics after queries"

log "both agents, merged"
"$TRAWL" query --data "$DATA" -q -w "$WORK/both.pcapng" || fail "two-agent query failed"
[ "$(count_packets "$WORK/both.pcapng")" = $((want1 + want2)) ] || fail "two-agent query: wrong count"
tshark -r "$WORK/both.pcapng" -T fields -e frame.interface_name 2>/dev/null | sort -u >"$WORK/ifs.txt"
grep -qx edge1/cap0 "$WORK/ifs.txt" && grep -qx edge2/cap1 "$WORK/ifs.txt" || fail "IDBs: $(cat "$WORK/ifs.txt")"
tshark -r "$WORK/both.pcapng" -T fields -e frame.time_epoch 2>/dev/null | sort -c -g || fail "merged output not in time order"
"$TRAWL" ls --data "$DATA" >"$WORK/ls.txt" || fail "trawl ls failed"
grep -q "^edge1: " "$WORK/ls.txt" && grep -q "open" "$WORK/ls.txt" || fail "trawl ls: $(cat "$WORK/ls.txt")"

stop_pid "$PID_edge1"; stop_pid "$PID_edge2"; stop_pid "$PID_collector"
[ -z "$(parts_of "$DATA/edge1")" ] || fail "open segment left after stop"
"$TRAWL" query --data "$DATA" --agent edge1 -q -w "$WORK/sealed.pcapng" || fail "query after seal"
packet_dump "$WORK/sealed.pcapng" | cmp -s - "$WORK/want1.txt" || fail "after sealing: query output differs"
echo PASS
