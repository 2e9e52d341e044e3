#!/bin/bash
# Fault: the agent is kill -9'd mid-stream while the collector is down, then
# both are restarted. Everything the agent had spooled arrives exactly once;
# the only loss is what the killed process had not sealed into the spool yet
# (docs/spool.md, "What can be lost": packets still in the kernel capture
# ring, the batch being built, at most one batch whose append was under
# way) -- a contiguous run of the newest packets, bounded by a few batch
# ages of traffic -- plus what was replayed after the kill before the
# replay could be stopped (nobody was capturing).
source "$(dirname "$0")/seq_lib.sh"
fault_setup

RATE=5000          # packets/s
BEFORE=5000
DURING=20000       # 4 s at RATE; the agent dies after ~2 s of it
AFTER=5000
gen_traffic before $BEFORE 300 1
gen_traffic during $DURING 300 $((BEFORE + 1))
gen_traffic after $AFTER 300 $((BEFORE + DURING + 1))

tx_packets() { nsq "$TX" cat /sys/class/net/tx0/statistics/tx_packets; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

collector_up collector
agent_up agent
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
replay before $RATE
wait_delivered 20 || fail "spool not acknowledged before the outage"

kill9 "$COLLECTOR_PID"
log "collector killed; replaying at $RATE pps and killing the agent after ~2 s"
tx0=$(tx_packets)
replay_bg during $RATE
sleep 2.2
t_kill=$(now_ms)
kill9 "$AGENT_PID"
# Stop the replay at once (tcpreplay runs under timeout(1), our child).
pkill -KILL -P "$REPLAY_PID" 2>/dev/null || true
wait "$REPLAY_PID" 2>/dev/null || true
t_stop=$(now_ms)
sent_during=$(( $(tx_packets) - tx0 ))
[ "$sent_during" -gt 0 ] && [ "$sent_during" -lt $DURING ] || fail "the replay was not stopped mid-stream ($sent_during sent)"
log "agent killed; $sent_during packets of the outage were sent; replay stopped $((t_stop - t_kill)) ms after the kill"

# What survived in the spool: one run without holes, from the oldest
# unacknowledged packet (possibly from before the outage) into the outage.
spool_seqs "$SPOOL" | sort -n >"$WORK/spooled.txt"
no_duplicates "$WORK/spooled.txt"
spooled=$(wc -l <"$WORK/spooled.txt")
first=$(head -n 1 "$WORK/spooled.txt"); last=$(tail -n 1 "$WORK/spooled.txt")
[ "$spooled" -gt 0 ] && [ "$first" -le $((BEFORE + 1)) ] && [ "$last" -gt $BEFORE ] &&
  [ "$last" = $((first + spooled - 1)) ] ||
  fail "spool holds $spooled packets, seq ${first:-}..${last:-}: not one run into the outage"
lost=$(( BEFORE + sent_during - last ))
# The bound: ring block timeout (20 ms) + the batch being built (batch age
# 50 ms) + one batch being appended (50 ms), plus the packets replayed
# between the kill and the replay's stop, plus 50 ms of slack for scheduling.
bound=$(( RATE * (20 + 50 + 50 + 50 + t_stop - t_kill) / 1000 ))
after_kill=$(( RATE * (t_stop - t_kill) / 1000 ))
log "sent $sent_during during the outage; spool holds seq $first..$last ($spooled packets); $lost lost at the kill (bound $bound):"
log "  ~$after_kill replayed after the kill, ~$((lost - after_kill)) not yet sealed by the agent (~$(( (lost - after_kill) * 1000 / RATE )) ms of traffic)"
[ "$lost" -ge 0 ] && [ "$lost" -le "$bound" ] || fail "lost $lost packets at the kill, more than the bound $bound"

collector_up collector2
agent_up agent2
grep -q "([1-9][0-9]* batches pending)" "$AGENT_LOG" || fail "the restarted agent found no pending batches"
wait_for 30 grep -q "connected to" "$AGENT_LOG" || fail "agent did not reconnect"
replay after $RATE
wait_delivered 30 || fail "spool not acknowledged after the restart"
stop_pid "$AGENT_PID"
stop_pid "$COLLECTOR_PID"
[ "$(agent_final unacked "$AGENT_LOG")" = 0 ] || fail "agent left batches unacknowledged"
[ "$(agent_final dropped "$AGENT_LOG")" = 0 ] || fail "agent dropped packets by spool policy"
[ "$(agent_final captured "$AGENT_LOG")" = $AFTER ] || fail "restarted agent captured $(agent_final captured "$AGENT_LOG") of $AFTER"

stored_seqs "$WORK/stored.txt"
no_duplicates "$WORK/stored.txt"
{ seq 1 $BEFORE; cat "$WORK/spooled.txt"; seq $((BEFORE + DURING + 1)) $((BEFORE + DURING + AFTER)); } | sort >"$WORK/want.txt"
sort "$WORK/stored.txt" >"$WORK/got.txt"
if ! cmp -s "$WORK/want.txt" "$WORK/got.txt"; then
  log "not stored: $(comm -23 "$WORK/want.txt" "$WORK/got.txt" | missing_ranges | cut -c1-200)"
  log "stored but not expected: $(comm -13 "$WORK/want.txt" "$WORK/got.txt" | missing_ranges | cut -c1-200)"
  fail "stored packets != sent before + spooled + sent after"
fi
total_sent=$((BEFORE + sent_during + AFTER))
log "sent $total_sent, stored $(wc -l <"$WORK/stored.txt") (all of the spooled $spooled exactly once), lost $lost at the kill"
echo PASS
