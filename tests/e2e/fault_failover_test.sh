#!/bin/bash
# Fault: the agent lists two collector addresses. The first collector is
# kill -9'd mid-stream; a standby collector on a second address (same data
# directory, as with shared storage) takes over. The agent fails over to
# it with backoff, re-sends what was not acknowledged, and the standby's
# dedupe (recovered from the segments) keeps every packet exactly once.
source "$(dirname "$0")/seq_lib.sh"
fault_setup
STANDBY_IP=10.77.0.3
nsq "$CO" ip addr add $STANDBY_IP/24 dev dn0

COUNT=30000
gen_traffic traffic $COUNT 300 1
collector_up primary
PRIMARY_PORT=$PORT
# The standby's port, learned now so the agent can list it from the start.
start_collector probe --data "$WORK/probe" --pki "$WORK/pki"
STANDBY_PORT=$PORT
stop_pid "$PID_probe"
start_bg agent "$AG" "$TRAWL" agent --name $AGENT --collector $COLLECTOR_IP:$PRIMARY_PORT \
  --collector $STANDBY_IP:$STANDBY_PORT --pki "$WORK/pki" -i cap0 --spool-dir "$SPOOL" --drain-timeout 30s
AGENT_PID=$PID_agent
AGENT_LOG=$WORK/agent.log
wait_for 15 grep -q "connected to $COLLECTOR_IP" "$AGENT_LOG" || fail "agent did not connect to the primary"

log "replaying $COUNT packets at 5000 pps; kill -9 of the primary after 2 s"
replay_bg traffic 5000
sleep 2
kill9 "$COLLECTOR_PID"
start_bg standby "$CO" "$TRAWL" collector --listen $STANDBY_IP:$STANDBY_PORT --data "$DATA" --pki "$WORK/pki" \
  --rotate-size 1MiB --rotate-every 0
COLLECTOR_PID=$PID_standby
wait_for 30 grep -q "connected to $STANDBY_IP" "$AGENT_LOG" || fail "agent did not fail over to the standby"
log "agent failed over: $(grep "connected to $STANDBY_IP" "$AGENT_LOG" | head -n 1 | sed 's/.*connected/connected/')"
replay_wait
wait_delivered 45 || fail "spool not acknowledged by the standby"
stop_and_expect_exact $COUNT
echo PASS
