#!/bin/bash
# Completeness accounting (trawl coverage, /api/v1/coverage, trawl status):
#   1. an outage longer than the spool can hold (collector killed while
#      ~15 MB flow into a 4 MiB spool, drop-newest): the ledger reports
#      exactly the packets the agent dropped, in the minutes the stored GAP
#      records name, and exactly the packets stored; the window is
#      "incomplete" (exit status 3); the API says the same as the file;
#   2. a clean run on a fresh collector: the window is complete (exit 0)
#      and the ledger counts every stored packet;
#   3. trawl status shows the connected agent and what it stored.
source "$(dirname "$0")/seq_lib.sh"
fault_setup
command -v jq >/dev/null || { echo "SKIP: jq missing" >&2; exit 77; }

BEFORE=3000 DURING=15000 AFTER=3000 FRAME=1000
gen_traffic before $BEFORE $FRAME 1
gen_traffic during $DURING $FRAME $((BEFORE + 1))
gen_traffic after $AFTER $FRAME $((BEFORE + DURING + 1))
SENT=$((BEFORE + DURING + AFTER))

# --- 1. outage beyond the spool ---------------------------------------------
START=$(date +%s)
collector_up c1
agent_up a1 --spool-size 4MiB --spool-policy drop-newest --batch-size 256KiB
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
replay before 5000
wait_delivered 20 || fail "spool not acknowledged before the outage"
kill9 "$COLLECTOR_PID"
log "collector killed; replaying $DURING packets of $FRAME bytes into a 4 MiB spool"
replay during 5000
sleep 0.5
collector_up c2 --metrics-listen 127.0.0.1:0
MPORT=$(metrics_port "$WORK/c2.log")
wait_for 40 at_least 2 "$AGENT_LOG" "connected to" || fail "agent did not reconnect"
# Let the full spool drain first: with drop-newest, traffic arriving while
# it is still full would be dropped too (correctly counted, but it makes
# the run's numbers depend on timing).
wait_delivered 30 || fail "spool not drained after the reconnect"
replay after 5000
wait_delivered 30 || fail "spool not acknowledged after the outage"
sleep 1.5  # ledger rows reach the file within a second

# The API answers while the collector runs, with the same numbers as the file.
rc=0
nsq "$CO" "$TRAWL" coverage --collector 127.0.0.1:$MPORT --agent $AGENT --from "$START" --to now --json \
  >"$WORK/api.json" || rc=$?
[ "$rc" = 3 ] || fail "coverage via the API: exit $rc, want 3 (incomplete)"
rc=0
"$TRAWL" coverage --data "$DATA" --agent $AGENT --from "$START" --to now --json >"$WORK/file.json" || rc=$?
[ "$rc" = 3 ] || fail "coverage from the data directory: exit $rc, want 3"
# (The agent keeps reporting every second, so compare what cannot change.)
same() { jq -S '[.complete, .total.agent_dropped_packets, .total.stored_packets,
                 [.rows[] | {minute, stored_packets, agent_dropped_packets, status}]]' "$1"; }
diff <(same "$WORK/api.json") <(same "$WORK/file.json") >/dev/null ||
  fail "API and file disagree: $(diff <(same "$WORK/api.json") <(same "$WORK/file.json") | head -5)"

# trawl status: the agent is up and has stored packets.
nsq "$CO" "$TRAWL" status --collector 127.0.0.1:$MPORT --json >"$WORK/status.json" || fail "trawl status --json"
[ "$(jq -r ".agents[] | select(.agent == \"$AGENT\") | .connected" "$WORK/status.json")" = true ] ||
  fail "status does not show $AGENT connected: $(cat "$WORK/status.json")"
[ "$(jq -r ".agents[] | select(.agent == \"$AGENT\") | .stored_packets" "$WORK/status.json")" -gt 0 ] ||
  fail "status shows nothing stored"
nsq "$CO" "$TRAWL" status --collector 127.0.0.1:$MPORT >"$WORK/status.txt" || fail "trawl status"
grep -qE "^$AGENT +up " "$WORK/status.txt" || fail "status table: $(cat "$WORK/status.txt")"
log "status: $(sed -n 2p "$WORK/status.txt")"

stop_pid "$AGENT_PID"
stop_pid "$COLLECTOR_PID"
dropped=$(agent_final dropped "$AGENT_LOG")
stored_seqs "$WORK/stored.txt"
stored=$(wc -l <"$WORK/stored.txt")
[ "$dropped" -gt 0 ] || fail "nothing dropped; the outage did not overflow the spool"
[ $((stored + dropped)) = $SENT ] || fail "stored $stored + dropped $dropped != sent $SENT"

rc=0
"$TRAWL" coverage --data "$DATA" --agent $AGENT --from "$START" --to now --json >"$WORK/final.json" || rc=$?
[ "$rc" = 3 ] || fail "final coverage: exit $rc, want 3"
"$TRAWL" coverage --data "$DATA" --agent $AGENT --from "$START" --to now >"$WORK/final.txt" || true
log "coverage table:"; cat "$WORK/final.txt" >&2
[ "$(jq .complete "$WORK/final.json")" = false ] || fail "window reported complete"
[ "$(jq .total.agent_dropped_packets "$WORK/final.json")" = "$dropped" ] ||
  fail "ledger: $(jq .total.agent_dropped_packets "$WORK/final.json") agent drops, the agent dropped $dropped"
[ "$(jq .total.stored_packets "$WORK/final.json")" = "$stored" ] ||
  fail "ledger: $(jq .total.stored_packets "$WORK/final.json") stored, the segments hold $stored"
[ "$(jq .total.kernel_dropped_packets "$WORK/final.json")" = 0 ] || fail "kernel drops: machine too slow for the test rate"
[ "$(jq .minutes_loss "$WORK/final.json")" -ge 1 ] || fail "no minute marked as loss"
grep -q INCOMPLETE "$WORK/final.txt" || fail "table does not say INCOMPLETE"
# Per minute, the ledger's agent drops equal the stored GAP records'.
gap_records "${SEGS[@]}" | awk '$3 == 1 { m = int($4 / 60e9) * 60; s[m] += $1 } END { for (k in s) print k, s[k] }' |
  sort >"$WORK/gap-minutes.txt"
jq -r '.rows[] | select(.agent_dropped_packets > 0) | "\(.minute_ns / 1e9 | floor) \(.agent_dropped_packets)"' \
  "$WORK/final.json" | sort >"$WORK/ledger-minutes.txt"
[ -s "$WORK/gap-minutes.txt" ] || fail "no GAP records stored"
diff "$WORK/gap-minutes.txt" "$WORK/ledger-minutes.txt" >/dev/null ||
  fail "per-minute drops differ: gap records $(tr '\n' ' ' <"$WORK/gap-minutes.txt"), ledger $(tr '\n' ' ' <"$WORK/ledger-minutes.txt")"
jq -e '[.rows[] | select(.agent_dropped_packets > 0) | .status] | all(. == "loss")' "$WORK/final.json" >/dev/null ||
  fail "a minute with drops is not marked loss"
log "outage: stored $stored, dropped $dropped, per minute $(tr '\n' ' ' <"$WORK/ledger-minutes.txt")"

# --- 2. a clean run is complete -----------------------------------------------
DATA=$WORK/data-clean SPOOL=$WORK/spool-clean
collector_up c3
agent_up a2
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
sleep 1.2
START=$(date +%s)
replay after 5000
wait_delivered 20 || fail "clean run not acknowledged"
# +1: date +%s truncates, and an --to on a minute boundary is exclusive, so
# packets captured in the second that started END's minute would fall out.
END=$(($(date +%s) + 1))
sleep 1.5  # the agent reports in END's minute before it stops
stop_pid "$AGENT_PID"
stop_pid "$COLLECTOR_PID"
rc=0
"$TRAWL" coverage --data "$DATA" --agent $AGENT --from "$START" --to "$END" >"$WORK/clean.txt" || rc=$?
cat "$WORK/clean.txt" >&2
[ "$rc" = 0 ] || fail "clean run: coverage exit $rc, want 0 (complete)"
grep -q COMPLETE "$WORK/clean.txt" || fail "clean run not reported COMPLETE"
"$TRAWL" coverage --data "$DATA" --agent $AGENT --from "$START" --to "$END" --json >"$WORK/clean.json"
[ "$(jq .total.stored_packets "$WORK/clean.json")" = $AFTER ] ||
  fail "clean run: ledger counts $(jq .total.stored_packets "$WORK/clean.json") stored, want $AFTER"
echo PASS
