#!/bin/bash
# Jumbo frames arrive whole: MTU 9000 on the captured veth, 9014-byte frames
# replayed, every one stored byte-identical. Also checks that the agent
# runs unprivileged with no capabilities once its capture is open.
source "$(dirname "$0")/lib.sh"
require_root
e2e_topology 9000
"$TRAWL" pki init "$WORK/pki" 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" jumbo 2>/dev/null
start_collector collector --data "$WORK/data" --pki "$WORK/pki"
start_bg agent "$AG" "$TRAWL" agent --name jumbo --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" -i cap0 \
  --spool-dir "$WORK/spool" --drain-timeout 20s
wait_for 15 grep -q "connected to" "$WORK/agent.log" || fail "agent did not connect"

# The capture is open, so the agent must now be nobody with no capability.
apid=$(pgrep -P "$PID_agent" -f "trawl agent" || echo "$PID_agent")
[ "$(awk '/^Uid:/ {print $3}' /proc/$apid/status)" = "$(id -u nobody)" ] || fail "agent still runs as uid $(awk '/^Uid:/ {print $3}' /proc/$apid/status)"
for c in CapEff CapPrm CapInh CapAmb; do
  [ "$(awk -v k=$c: '$1 == k {print $2}' /proc/$apid/status)" = 0000000000000000 ] || fail "agent keeps capabilities ($c)"
done
grep -q "^NoNewPrivs:[[:space:]]*1" /proc/$apid/status || fail "agent lacks no_new_privs"

"$PCAPGEN" "$WORK/jumbo.pcap" 500 9014
nsq "$TX" tcpreplay -q -i tx0 --pps=2000 "$WORK/jumbo.pcap" >"$WORK/replay.log" 2>&1 || fail "tcpreplay: $(cat "$WORK/replay.log")"
stop_pid "$PID_agent"
stop_pid "$PID_collector"
mapfile -t segs < <(segments_of "$WORK/data/jumbo")
check_segments_readable "${segs[@]}"
got=$(count_packets "${segs[@]}")
[ "$got" = 500 ] || fail "stored $got of 500 jumbo frames"
tshark -r "${segs[0]}" -T fields -e frame.cap_len -e frame.len | sort -u | grep -qx $'9014\t9014' || fail "frames not 9014 bytes"
packet_dump "$WORK/jumbo.pcap" >"$WORK/want.txt"
packet_dump "${segs[@]}" >"$WORK/got.txt"
cmp -s "$WORK/want.txt" "$WORK/got.txt" || fail "jumbo frames differ from what was sent"
echo PASS
