#!/bin/bash
# The agent never captures its own upload, whatever filter it is given: an
# agent capturing its own uplink with "tcp or icmp" stores the pings that
# cross the link and none of its TLS stream to the collector. The collector
# runs as an unprivileged user (it never needs root).
source "$(dirname "$0")/lib.sh"
require_root
command -v setpriv >/dev/null || { echo "SKIP: setpriv missing" >&2; exit 77; }
e2e_topology 65535
"$TRAWL" pki init "$WORK/pki" 2>/dev/null
"$TRAWL" pki issue "$WORK/pki" self 2>/dev/null
mkdir -p "$WORK/data"
chown -R nobody:nogroup "$WORK/data" "$WORK/pki"

rm -f "$WORK/data/collector.port"
start_bg collector "$CO" setpriv --reuid=nobody --regid=nogroup --clear-groups \
  "$TRAWL" collector --listen 0.0.0.0:0 --port-file "$WORK/data/collector.port" --data "$WORK/data" --pki "$WORK/pki"
wait_for 10 test -s "$WORK/data/collector.port" || fail "collector (as nobody) did not start"
PORT=$(cat "$WORK/data/collector.port")
[ "$(stat -c %U "$WORK/data/collector.port")" = nobody ] || fail "collector did not run as nobody"

# The user's filter tries to undo the exclusion with unbalanced parentheses;
# it must not compile into "capture the upload".
start_bg agent "$AG" "$TRAWL" agent --name self --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" -i up0 \
  --spool-dir "$WORK/spool" --drain-timeout 20s "tcp or icmp"
wait_for 15 grep -q "connected to" "$WORK/agent.log" || fail "agent did not connect"
nsq "$AG" ping -c 20 -i 0.05 -q $COLLECTOR_IP >/dev/null || fail "ping failed"
sleep 1
stop_pid "$PID_agent"
stop_pid "$PID_collector"
mapfile -t segs < <(segments_of "$WORK/data/self")
check_segments_readable "${segs[@]}"
icmp=0; tcp=0
for s in "${segs[@]}"; do
  icmp=$((icmp + $(tshark -r "$s" -Y icmp 2>/dev/null | wc -l)))
  tcp=$((tcp + $(tshark -r "$s" -Y "tcp.port == $PORT" 2>/dev/null | wc -l)))
done
log "stored $icmp ICMP packets and $tcp packets of the agent's own upload"
[ "$icmp" = 40 ] || fail "expected 40 ICMP packets (20 echo + 20 reply), stored $icmp"
[ "$tcp" = 0 ] || fail "the agent captured $tcp packets of its own upload"

# A filter crafted to break out of the parentheses is rejected, not obeyed.
if nsq "$AG" "$TRAWL" agent --name self --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" -i up0 \
    --spool-dir "$WORK/spool2" --duration 1s "tcp) or (tcp" >"$WORK/inject.log" 2>&1; then
  fail "a filter with unbalanced parentheses was accepted"
fi
grep -q "bad filter" "$WORK/inject.log" || fail "no clear error for a bad filter: $(cat "$WORK/inject.log")"
echo PASS
