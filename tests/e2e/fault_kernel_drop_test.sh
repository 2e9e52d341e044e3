#!/bin/bash
# Kernel ring drops are data: an agent with a deliberately tiny ring is
# flooded, the kernel drops packets, and every one of those drops reaches
# the stored segments as a kernel-drop gap record. Accounting is exact:
#   stored = captured by the agent, gap records = the agent's pcap_stats drops,
#   stored + kernel drops + drops before the socket (softnet backlog) = sent.
source "$(dirname "$0")/seq_lib.sh"
fault_setup

softnet_drops() {  # packets dropped by full per-CPU backlogs, all CPUs (hex column 2)
  local s=0 a b rest
  while read -r a b rest; do s=$((s + 0x$b)); done </proc/net/softnet_stat
  echo $s
}

COUNT=100000
gen_traffic traffic $COUNT 1500 1
collector_up collector
agent_up agent --ring-size 1MiB
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
backlog_before=$(softnet_drops)
log "flooding $COUNT 1500-byte frames at top speed into a 1 MiB ring"
nsq "$TX" tcpreplay -q -i tx0 --topspeed "$WORK/traffic.pcap" >"$WORK/replay.log" 2>&1 || fail "tcpreplay failed"
backlog=$(( $(softnet_drops) - backlog_before ))
sleep 1
stop_pid "$AGENT_PID"
stop_pid "$COLLECTOR_PID"
captured=$(agent_final captured "$AGENT_LOG")
kernel=$(agent_final kernel "$AGENT_LOG")
[ "$(agent_final dropped "$AGENT_LOG")" = 0 ] || fail "the spool dropped packets; this test is about the kernel ring"
[ "$(agent_final unacked "$AGENT_LOG")" = 0 ] || fail "agent left batches unacknowledged"
[ "$kernel" -gt 0 ] || fail "the kernel dropped nothing; the test did not overload the ring"

stored_seqs "$WORK/stored.txt"
no_duplicates "$WORK/stored.txt"
stored=$(wc -l <"$WORK/stored.txt")
gaps=$(gap_records "${SEGS[@]}" | awk '$3 == 2 { s += $1 } END { print s + 0 }')
log "sent $COUNT: stored $stored, kernel drops $kernel (gap records: $gaps), dropped before the socket $backlog"
[ "$stored" = "$captured" ] || fail "stored $stored but the agent captured $captured"
[ "$gaps" = "$kernel" ] || fail "kernel-drop gap records say $gaps, the agent's pcap_stats $kernel"
[ $((stored + kernel + backlog)) = $COUNT ] || fail "stored + kernel drops + backlog drops = $((stored + kernel + backlog)), sent $COUNT"
# The completeness ledger says the same: the window is incomplete, with
# exactly these kernel drops and stored packets.
rc=0
"$TRAWL" coverage --data "$DATA" --agent $AGENT --from -10m --to now --json >"$WORK/coverage.json" || rc=$?
[ "$rc" = 3 ] || fail "coverage exit $rc, want 3 (incomplete)"
cov() { perl -MJSON::PP -e 'local $/; my $j = decode_json(<STDIN>); print $j->{total}{$ARGV[0]}' "$1" <"$WORK/coverage.json"; }
[ "$(cov kernel_dropped_packets)" = "$kernel" ] || fail "ledger: $(cov kernel_dropped_packets) kernel drops, agent $kernel"
[ "$(cov stored_packets)" = "$stored" ] || fail "ledger: $(cov stored_packets) stored, segments $stored"
echo PASS
