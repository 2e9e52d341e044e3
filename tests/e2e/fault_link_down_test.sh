#!/bin/bash
# Fault: the agent <-> collector link goes down for 20 s while traffic flows
# (ip link set up0 down, then up). The agent keeps capturing into its spool;
# once the link is back it delivers the backlog. Stored = sent, exactly once.
source "$(dirname "$0")/seq_lib.sh"
fault_setup

COUNT=50000
gen_traffic traffic $COUNT 300 1
collector_up collector
agent_up agent
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"

log "replaying $COUNT packets at 5000 pps; link down after 2 s, for 20 s"
replay_bg traffic 5000
sleep 2
nsq "$AG" ip link set up0 down
sleep 20
nsq "$AG" ip link set up0 up
t_up=$(date +%s)
log "link up again"
replay_wait
# The backlog (the whole outage) must arrive without stopping the agent:
# wait until its spool is acknowledged.
wait_delivered 45 || fail "spool not acknowledged 45 s after the link came back"
log "spool acknowledged $(( $(date +%s) - t_up )) s after the link came back"
log "stopping the agent and the collector"
stop_and_expect_exact $COUNT
grep -E "connected to|retrying" "$AGENT_LOG" | sed 's/^/  /' >&2 || true
echo PASS
