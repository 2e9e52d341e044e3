#!/bin/bash
# Fault: the collector is frozen (SIGSTOP) for 10 s while traffic flows, then
# continued (SIGCONT). Its TCP connection stays up but nothing is read or
# acknowledged; the agent spools, and delivers the backlog after the
# SIGCONT. Stored = sent, exactly once.
source "$(dirname "$0")/seq_lib.sh"
fault_setup

COUNT=40000
gen_traffic traffic $COUNT 300 1
collector_up collector
agent_up agent
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"

log "replaying $COUNT packets at 5000 pps; SIGSTOP of the collector after 2 s, for 10 s"
replay_bg traffic 5000
sleep 2
kill -STOP "$COLLECTOR_PID"
sleep 10
kill -CONT "$COLLECTOR_PID"
t_cont=$(date +%s)
log "collector continued"
replay_wait
wait_delivered 45 || fail "spool not acknowledged 45 s after SIGCONT"
log "spool acknowledged $(( $(date +%s) - t_cont )) s after SIGCONT"
stop_and_expect_exact $COUNT
grep -E "connected to|retrying" "$AGENT_LOG" | sed 's/^/  /' >&2 || true
echo PASS
