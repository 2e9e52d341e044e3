#!/bin/bash
# Fault: a spool too small for the outage (--spool-size 4MiB): the collector
# goes away while ~15 MB of traffic flows, then comes back. Three rounds:
#   drop-newest, collector frozen (SIGSTOP) 0.5 s into the outage and killed
#                1 s later, so batches are in flight (sent, unacked) at the
#                disconnect;
#   drop-oldest, collector killed at the start of the outage;
#   drop-oldest, frozen then killed as in the first round.
# The agent must account for every packet it lost:
#   - its final log line "N dropped by spool policy" names the exact number;
#   - the stored segments carry GAP records whose packet counts sum to N
#     (the gap comments that tshark shows on stored packets account for at
#     most N: a gap in the last batch of a segment has no packet to go on);
#   - stored + N = sent, with no duplicates and nothing foreign (a batch the
#     collector may hold is never reported dropped);
#   - drop-newest keeps the start of the outage; drop-oldest keeps its end
#     (one run of older packets is lost) -- except that batches in flight at
#     the disconnect are not evicted before the next WELCOME says whether
#     the collector has them (docs/spool.md), so after a freeze drop-oldest
#     can only drop newer batches.
source "$(dirname "$0")/seq_lib.sh"
fault_setup

BEFORE=5000   # collector up: all stored
DURING=15000  # collector down: ~15 MB into a 4 MiB spool
AFTER=5000    # collector back: all stored, and the first of them carry the gap comment
FRAME=1000
gen_traffic before $BEFORE $FRAME 1
gen_traffic during $DURING $FRAME $((BEFORE + 1))
gen_traffic after $AFTER $FRAME $((BEFORE + DURING + 1))
SENT=$((BEFORE + DURING + AFTER))

round() {  # round POLICY kill|freeze
  local policy=$1 how=$2 r=$1-$2
  DATA=$WORK/data-$r SPOOL=$WORK/spool-$r
  log "=== $policy, collector $( [ "$how" = freeze ] && echo "frozen, then killed" || echo killed )"
  collector_up collector-$r
  agent_up agent-$r --spool-size 4MiB --spool-policy "$policy" --batch-size 256KiB
  wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
  replay before 5000
  wait_delivered 20 || fail "spool not acknowledged before the outage"
  if [ "$how" = freeze ]; then
    # The agent keeps sending into the TCP buffers of the frozen collector:
    # those batches are in flight, unacked, when it is killed.
    log "replaying $DURING packets of $FRAME bytes; collector frozen after 0.5 s, killed after 1.5 s"
    replay_bg during 5000
    sleep 0.5
    kill -STOP "$COLLECTOR_PID"
    sleep 1
    kill9 "$COLLECTOR_PID"
  else
    kill9 "$COLLECTOR_PID"
    log "collector killed; replaying $DURING packets of $FRAME bytes"
    replay_bg during 5000
  fi
  replay_wait
  sleep 0.5  # the last batch is sealed (50 ms) before the collector returns
  grep -q "spool full: dropping batches ($policy policy)" "$AGENT_LOG" || fail "agent did not report a full spool"
  local spool_bytes
  spool_bytes=$(cat "$SPOOL"/*.spool | wc -c)
  log "spool holds $spool_bytes bytes in $(ls "$SPOOL"/*.spool | wc -l) files"
  [ "$spool_bytes" -le $((4 << 20)) ] || fail "spool holds $spool_bytes bytes, over its 4 MiB cap"
  spool_seqs "$SPOOL" >"$WORK/spooled-$r.txt"
  collector_up collector2-$r
  wait_for 40 at_least 2 "$AGENT_LOG" "connected to" || fail "agent did not reconnect"
  # The full spool must drain before the "after" traffic: with drop-newest,
  # batches sealed while it is still full are refused (and counted), which
  # would be a loss outside the outage.
  wait_delivered 30 || fail "spool not acknowledged after the reconnect"
  replay after 5000
  wait_delivered 30 || fail "spool not acknowledged after the outage"
  stop_pid "$AGENT_PID"
  stop_pid "$COLLECTOR_PID"
  [ "$(agent_final unacked "$AGENT_LOG")" = 0 ] || fail "agent left batches unacknowledged"
  [ "$(agent_final captured "$AGENT_LOG")" = $SENT ] || fail "agent captured $(agent_final captured "$AGENT_LOG") of $SENT"
  local dropped stored gaps kdrops comments missing
  dropped=$(agent_final dropped "$AGENT_LOG")
  stored_seqs "$WORK/stored-$r.txt"
  no_duplicates "$WORK/stored-$r.txt"
  stored=$(wc -l <"$WORK/stored-$r.txt")
  gap_records "${SEGS[@]}" >"$WORK/gaps-$r.txt"
  kdrops=$(awk '$3 == 2 {s += $1} END {print s + 0}' "$WORK/gaps-$r.txt")
  [ "$kdrops" = 0 ] || fail "$r: the kernel dropped $kdrops packets (capture ring overrun: machine too slow for the test rate)"
  gaps=$(awk '$3 == 1 {s += $1} END {print s + 0}' "$WORK/gaps-$r.txt")
  comments=$(gap_comment_packets "${SEGS[@]}")
  missing_of "$WORK/stored-$r.txt" 1 $SENT >"$WORK/missing-$r.txt"
  missing=$(wc -l <"$WORK/missing-$r.txt")
  log "$r: sent $SENT, stored $stored, dropped $dropped (agent log), gap records $(wc -l <"$WORK/gaps-$r.txt") summing to $gaps packets, gap comments $comments packets"
  log "$r: missing seqs: $(missing_ranges <"$WORK/missing-$r.txt" | cut -c1-200)"
  [ "$dropped" -gt 0 ] || fail "$r: nothing dropped; the outage did not overflow the spool"
  [ $((stored + dropped)) = $SENT ] || fail "$r: stored $stored + dropped $dropped != sent $SENT"
  [ "$missing" = "$dropped" ] || fail "$r: $missing seqs missing, agent says $dropped dropped"
  [ "$gaps" = "$dropped" ] || fail "$r: gap records sum to $gaps packets, agent dropped $dropped"
  # The interface statistics blocks count the spool drops too (the agent's
  # final statistics are the last ISB stored).
  local isb
  isb=$(for s in "${SEGS[@]}"; do
          case "$s" in *.zst) zstd -dcq "$s" ;; *) cat "$s" ;; esac |
            grep -aoE "trawl: agent $AGENT dropped [0-9]+ packets on cap0" || true
        done |
    sed -E 's/.*dropped ([0-9]+) packets.*/\1/' | sort -n | tail -n 1)
  [ "${isb:-0}" = "$dropped" ] || fail "$r: the last ISB counts ${isb:-0} spool drops, agent dropped $dropped"
  # A gap's comment goes on the next packet stored in the same segment; a
  # gap in a segment's last batch is only the GAP record (docs/storage.md).
  [ "$comments" -gt 0 ] && [ "$comments" -le "$dropped" ] ||
    fail "$r: gap comments sum to $comments packets, agent dropped $dropped"
  awk '$3 != 1 {exit 1}' "$WORK/gaps-$r.txt" || fail "$r: a gap record with an unexpected reason: $(cat "$WORK/gaps-$r.txt")"
  # Nothing was lost before or after the outage; what the spool held at the
  # end of the outage was all delivered.
  awk -v lo=$BEFORE -v hi=$((BEFORE + DURING)) '$1 <= lo || $1 > hi {exit 1}' "$WORK/missing-$r.txt" ||
    fail "$r: packets lost outside the outage"
  [ -z "$(comm -23 <(sort "$WORK/spooled-$r.txt") <(sort "$WORK/stored-$r.txt"))" ] ||
    fail "$r: spooled packets were not delivered"
  local lo hi
  lo=$(head -n 1 "$WORK/missing-$r.txt"); hi=$(tail -n 1 "$WORK/missing-$r.txt")
  if [ "$policy" = drop-newest ]; then
    # the start of the outage is kept: the first lost packet is well inside it
    [ "$lo" -gt $((BEFORE + 1000)) ] || fail "drop-newest lost seq $lo, near the start of the outage"
  elif [ "$how" = kill ]; then
    # the end of the outage is kept: the loss is one run of its older part
    [ "$hi" -lt $((BEFORE + DURING - 1000)) ] || fail "drop-oldest lost seq $hi, near the end of the outage"
    [ $((hi - lo + 1)) = "$missing" ] || fail "drop-oldest kept older packets than some it dropped"
  fi
}

round drop-newest freeze
round drop-oldest kill
round drop-oldest freeze
echo PASS
