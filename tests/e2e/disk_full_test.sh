#!/bin/bash
# The collector's disk: a 40 MiB tmpfs for the data directory (segments
# uncompressed, so that the generated traffic really fills it).
#   1. sustained traffic of ~3x the disk, with a 12 MiB free-space floor:
#      the collector keeps running, evicts the oldest segments (metrics say
#      so), every segment left is readable, and what is left is exactly the
#      newest packets, contiguous up to the last one sent (nothing lost in
#      the middle: the agent spooled whatever the collector refused);
#   2. the disk fills up with a file retention cannot delete: /readyz fails
#      (503) while the liveness check still answers, the collector stops
#      acknowledging and the agent spools; the file goes: /readyz is ok and
#      every packet sent meanwhile is stored.
source "$(dirname "$0")/seq_lib.sh"
fault_setup
command -v curl >/dev/null || { echo "SKIP: curl missing" >&2; exit 77; }
DISK=$WORK/disk
mkdir -p "$DISK"
mount -t tmpfs -o size=40m tmpfs "$DISK" || { echo "SKIP: cannot mount tmpfs" >&2; exit 77; }
unmount_then_cleanup() {
  local rc=$?
  [ "$BASHPID" = "$MAIN_PID" ] && umount -l "$DISK" 2>/dev/null
  (exit $rc)
  cleanup
}
trap unmount_then_cleanup EXIT
DATA=$DISK/data

N1=120000 N2=5000 FRAME=1000
gen_traffic flood $N1 $FRAME 1
gen_traffic later $N2 $FRAME $((N1 + 1))
SENT=$((N1 + N2))

collector_up c1 --metrics-listen 127.0.0.1:0 --rotate-size 2MiB --min-free 12MiB --compression ${COMPRESSION:-none}
MPORT=$(metrics_port "$WORK/c1.log")
agent_up a1 --spool-size 512MiB
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"
http() { nsq "$CO" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT$1"; }
[ "$(http /readyz)" = 200 ] || fail "/readyz not ok at start"

log "1. $N1 packets of $FRAME bytes into a 40 MiB disk with a 12 MiB floor"
replay flood 20000
wait_delivered 90 || fail "spool not acknowledged after the flood"
metric() { nsq "$CO" curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
evicted=$(metric 'trawl_collector_retention_evictions_total{reason="free-space"}')
log "evictions (free-space): $evicted; disk: $(df -h "$DISK" | tail -n 1)"
[ "$evicted" -gt 0 ] || fail "nothing evicted although the traffic was larger than the disk"
kill -0 "$COLLECTOR_PID" || fail "collector died"

log "2. the disk fills up with something retention cannot delete"
# Retention answers a fill by evicting sealed segments; fill again until it
# has nothing left to delete (the disk stays full for a while).
avail() { df --output=avail -B1 "$DISK" | tail -n 1 | tr -d ' '; }
for i in 1 2 3 4 5 6 7 8; do
  dd if=/dev/zero of="$DISK/ballast$i" bs=64k 2>/dev/null || true   # until ENOSPC
  sleep 2.5
  [ "$(avail)" -lt 65536 ] && break
done
[ "$(avail)" -lt 65536 ] || fail "could not keep the disk full"
wait_for 10 sh -c "[ \"\$(ip netns exec $CO curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/readyz)\" = 503 ]" ||
  fail "/readyz still $(http /readyz) on a full disk"
[ "$(http /healthz)" = 200 ] || fail "/healthz failed while storage is full"
replay later 5000
sleep 1
spool_empty && fail "the agent's spool is empty although the collector cannot store"
kill -0 "$COLLECTOR_PID" || fail "collector died on a full disk"
rm -f "$DISK"/ballast*
wait_for 10 sh -c "[ \"\$(ip netns exec $CO curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/readyz)\" = 200 ]" ||
  fail "/readyz not ok after space came back"
wait_delivered 60 || fail "spool not acknowledged after space came back"
stop_pid "$AGENT_PID"
stop_pid "$COLLECTOR_PID"
[ "$(agent_final dropped "$AGENT_LOG")" = 0 ] || fail "the agent dropped packets: its spool was big enough"
[ "$(agent_final unacked "$AGENT_LOG")" = 0 ] || fail "the agent left batches unacknowledged"

stored_seqs "$WORK/stored.txt"   # every segment left is sealed and readable
no_duplicates "$WORK/stored.txt"
first=$(awk 'NR == 1 || $1 < m { m = $1 } END { print m }' "$WORK/stored.txt")
expect_range "$WORK/stored.txt" "$first" $SENT
log "stored seqs $first..$SENT in ${#SEGS[@]} segments (the $((first - 1)) oldest were evicted)"
[ "$first" -gt 1 ] || fail "nothing was evicted from the stored data"
grep -q "disk nearly full" "$WORK/c1.log" || fail "the collector did not report evicting for space"
echo PASS
