#!/bin/bash
# Fault: the collector is kill -9'd mid-stream and restarted 5 s later on the
# same port and data directory. The killed collector's open .part segment is
# recovered and sealed at restart; the agent spools during the outage and
# re-sends everything the collector had not made durable. Stored = sent,
# exactly once, and every segment is readable.
source "$(dirname "$0")/seq_lib.sh"
fault_setup

COUNT=40000
gen_traffic traffic $COUNT 300 1
collector_up collector
agent_up agent
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"

log "replaying $COUNT packets at 5000 pps; kill -9 of the collector after 2.5 s"
replay_bg traffic 5000
sleep 2.5
ls "$DATA/$AGENT"/*.part >/dev/null 2>&1 || fail "no open segment at the kill"
kill9 "$COLLECTOR_PID"
stored_at_kill=$(seqs_of $(segments_of "$DATA/$AGENT") $(parts_of "$DATA/$AGENT") 2>/dev/null | wc -l)
log "collector killed; ~$stored_at_kill packets on disk, $(parts_of "$DATA/$AGENT" | wc -l) .part segment(s)"
sleep 5
collector_up collector2
wait_for 10 grep -q "recovery: sealed" "$WORK/collector2.log" || fail "the .part segment was not recovered at restart"
wait_for 40 at_least 2 "$AGENT_LOG" "connected to" || fail "agent did not reconnect"
replay_wait

log "stopping the agent (drains its spool) and the collector"
stop_and_expect_exact $COUNT
grep "recovery: sealed" "$WORK/collector2.log" | sed 's/^/  /' >&2
echo PASS
