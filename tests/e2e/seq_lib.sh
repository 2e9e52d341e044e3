# Helpers for the fault tests (tests/e2e/fault_*_test.sh): traffic whose
# every packet carries a unique sequence number (pcapgen: UDP payload
# "TRWL" + big-endian u64), and exact accounting of what was sent, what the
# collector stored, what the agent spooled and what it dropped by policy.
# Source this instead of lib.sh (it sources lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AGENT=edge1
DATA=$WORK/data
SPOOL=$WORK/spool

# fault_setup: namespaces, PKI for one agent ($AGENT).
fault_setup() {
  require_root
  command -v perl >/dev/null || { echo "SKIP: perl missing" >&2; exit 77; }
  e2e_topology 65535
  "$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP >/dev/null 2>&1 || fail "pki init"
  "$TRAWL" pki issue "$WORK/pki" $AGENT >/dev/null 2>&1 || fail "pki issue"
}

# collector_up NAME [ARGS...]: (re)starts the collector on $DATA. The first
# start picks a port; later starts reuse it (FIXED_PORT), like a restarted
# service would.
collector_up() {
  local name=$1; shift
  FIXED_PORT=${PORT:-0} start_collector "$name" --data "$DATA" --pki "$WORK/pki" --rotate-size 1MiB --rotate-every 0 "$@"
  eval "COLLECTOR_PID=\$PID_${name//-/_}"
  log "collector $name up on port $PORT (pid $COLLECTOR_PID)"
}

# agent_up NAME [ARGS...]: starts the agent (same spool every time).
agent_up() {
  local name=$1; shift
  start_bg "$name" "$AG" "$TRAWL" agent --name $AGENT --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" -i cap0 \
    --spool-dir "$SPOOL" --drain-timeout 30s "$@"
  eval "AGENT_PID=\$PID_${name//-/_}"
  AGENT_LOG=$WORK/$name.log
  wait_for 10 grep -q "capturing on" "$AGENT_LOG" || fail "agent $name did not start"
}

# metrics_port LOG: the port from the "metrics on port N" log line.
metrics_port() {
  wait_for 10 grep -q "metrics on port" "$1" || fail "no metrics listener in $1"
  sed -nE 's/.*metrics on port ([0-9]+).*/\1/p' "$1" | head -n 1
}

# spool_empty: no spool file left, i.e. the collector acknowledged every
# batch (acked files are deleted whole; stats-only batches come and go).
spool_empty() { ! ls "$SPOOL"/*.spool >/dev/null 2>&1; }
# wait_delivered SECONDS: after the traffic stopped, the last packets are
# sealed within the batch age (50 ms) plus the ring's block timeout (20 ms);
# then the spool must become empty.
wait_delivered() { sleep 0.3; wait_for "$1" spool_empty; }

# count_in FILE PATTERN: number of lines of FILE matching PATTERN (0 if none).
count_in() { grep -c -- "$2" "$1" 2>/dev/null || true; }
# at_least N FILE PATTERN: FILE has at least N lines matching PATTERN.
at_least() { [ "$(count_in "$2" "$3")" -ge "$1" ]; }

kill9() {  # kill9 PID: SIGKILL and reap
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# gen_traffic NAME COUNT FRAME_BYTES FIRST_SEQ: $WORK/NAME.pcap
gen_traffic() { "$PCAPGEN" "$WORK/$1.pcap" "$2" "$3" "$4" || fail "pcapgen $*"; }

# replay_bg NAME PPS: replays $WORK/NAME.pcap onto tx0 in the background
# (REPLAY_PID); replay_wait checks that tcpreplay sent every packet.
replay_bg() {
  REPLAY_NAME=$1
  # REPLAY_PID is timeout(1); tcpreplay is its only child.
  timeout 120 ip netns exec "$TX" tcpreplay -i tx0 --pps="$2" "$WORK/$1.pcap" >"$WORK/replay-$1.log" 2>&1 &
  REPLAY_PID=$!
}
replay_wait() {
  wait "$REPLAY_PID" || fail "tcpreplay $REPLAY_NAME failed: $(cat "$WORK/replay-$REPLAY_NAME.log")"
  local want ok failed
  want=$(capinfos -M -c "$WORK/$REPLAY_NAME.pcap" | awk '/Number of packets/ {print $NF}')
  ok=$(awk -F: '/Successful packets/ {gsub(/ /, "", $2); print $2}' "$WORK/replay-$REPLAY_NAME.log")
  failed=$(awk -F: '/Failed packets/ {gsub(/ /, "", $2); print $2}' "$WORK/replay-$REPLAY_NAME.log")
  [ "$ok" = "$want" ] && [ "$failed" = 0 ] ||
    fail "tcpreplay $REPLAY_NAME sent $ok of $want packets ($failed failed)"
}
replay() { replay_bg "$1" "$2"; replay_wait; }

# seqs_of FILES...: the sequence number of every packet in FILES (pcap or
# pcapng), in file order, one decimal per line, read by tshark. A packet that
# is not pcapgen's (no "TRWL" at the start of the UDP payload) prints
# "foreign", so it cannot go unnoticed.
seqs_of() {
  local f
  for f in "$@"; do
    tshark -r "$f" -T fields -e data.data 2>/dev/null || fail "tshark cannot read $f"
  done | perl -ne '
    chomp; my $h = lc $_; $h =~ s/[:,]//g;
    if ($h =~ /^5452574c([0-9a-f]{16})/) { print hex($1), "\n" } else { print "foreign\n" }'
}

# spool_seqs DIR: the sequence numbers of the packets in the agent's spool
# files (batches are stored uncompressed; a packet is found by its UDP
# header from port 40000 to port 9 followed by "TRWL"). Only the records
# recovery would keep are searched (docs/spool.md, "Record" and "Recovery"):
# a file whose 40-byte header names the seq in its file name (else it is a
# spare renamed before its new header was written), then its records up to
# the first one with a bad magic, a length past the end of the file, or a
# seq that does not increase (the first must be the file's first seq). What
# follows is a torn record or the stale tail of a reused file, whose old
# packets were acknowledged long ago. (CRCs are not checked.)
spool_seqs() {
  perl -e '
    for my $f (sort glob("$ARGV[0]/*.spool")) {
      open(my $fh, "<:raw", $f) or die "$f: $!"; local $/; my $d = <$fh>;
      my $n = length $d;
      my ($name) = $f =~ m{(\d{20})\.spool$};
      next if $n < 40 || substr($d, 0, 8) ne "TRWLSPL1" || unpack("Q<", substr($d, 24, 8)) != $name;
      my ($off, $prev, $first) = (40, 0, $name);
      while ($off + 48 <= $n) {
        my ($magic, $len, $seq) = unpack("V V Q<", substr($d, $off, 16));
        last if $magic != 0x52575254 || $off + 48 + $len > $n;
        last if $prev ? $seq <= $prev : $seq != $first;
        my $payload = substr($d, $off + 48, $len);
        while ($payload =~ /\x9c\x40\x00\x09..\x00\x00TRWL(.{8})/sg) { print unpack("Q>", $1), "\n" }
        ($prev, $off) = ($seq, $off + 48 + $len);
      }
    }' "$1"
}

# spool_acked DIR: the ack point in the agent's spool state file (the valid
# slot with the higher generation; see docs/spool.md, "State file").
spool_acked() {
  perl -e '
    open(my $fh, "<:raw", "$ARGV[0]/state") or die "$ARGV[0]/state: $!"; local $/; my $d = <$fh>;
    my ($gen, $acked) = (-1, undef);
    for my $slot (0, 1) {
      my $s = substr($d, 64 * $slot, 64);
      next unless length($s) == 64 && substr($s, 0, 8) eq "TRWLSTA1";
      my ($g, $a) = (unpack("Q<", substr($s, 16, 8)), unpack("Q<", substr($s, 40, 8)));
      ($gen, $acked) = ($g, $a) if $g > $gen;
    }
    die "no valid state slot\n" unless defined $acked;
    print "$acked\n";' "$1"
}

# gap_records FILES...: one line "packets bytes reason from_ns" per trawl GAP record
# (pcapng custom option, PEN 32473, record type 2, in an NRB; see
# docs/storage.md), parsed from the raw blocks.
gap_records() {
  perl -e '
    for my $f (@ARGV) {
      my $fh;
      if ($f =~ /\.zst$/) { open($fh, "-|", "zstd", "-dcq", $f) or die "$f: $!"; binmode $fh; }
      else { open($fh, "<:raw", $f) or die "$f: $!"; }
      local $/; my $d = <$fh>;
      my $off = 0; my $n = length $d;
      while ($off + 12 <= $n) {
        my ($type, $len) = unpack("V V", substr($d, $off, 8));
        die "$f: bad block length $len at $off\n" if $len < 12 || $len % 4 || $off + $len > $n;
        if ($type == 4) {  # NRB: name records, then options
          my ($p, $end) = ($off + 8, $off + $len - 4);
          while ($p + 4 <= $end) {
            my ($rt, $rl) = unpack("v v", substr($d, $p, 4)); $p += 4;
            last if $rt == 0;
            $p += ($rl + 3) & ~3;
          }
          while ($p + 4 <= $end) {
            my ($oc, $ol) = unpack("v v", substr($d, $p, 4)); $p += 4;
            last if $oc == 0;
            my $v = substr($d, $p, $ol); $p += ($ol + 3) & ~3;
            next unless ($oc == 2988 || $oc == 2989 || $oc == 19372 || $oc == 19373) && $ol >= 8 + 40;
            my ($pen, $rtype) = unpack("V C", $v);
            next unless $pen == 32473 && $rtype == 2;
            my ($iface, $reason, $from, $to, $pk, $by) = unpack("V C x3 Q< Q< Q< Q<", substr($v, 8));
            print "$pk $by $reason $from\n";
          }
        }
        $off += $len;
      }
    }' "$@"
}

# gap_comment_packets FILES...: sum of N over the "trawl gap: ... lost N
# packets" comments that tshark shows on stored packets.
gap_comment_packets() {
  local f
  for f in "$@"; do tshark -r "$f" -Y frame.comment -T fields -e frame.comment 2>/dev/null; done |
    perl -ne '$s += $1 while /trawl gap: agent \S+ lost (\d+) packets/g; END { print $s + 0, "\n" }'
}

# agent_final FIELD LOG: a number from the agent's last "stopped;" line:
# captured | kernel | dropped | unacked.
agent_final() {
  local line
  line=$(grep "stopped;" "$2" | tail -n 1)
  [ -n "$line" ] || fail "no final line in $2"
  case $1 in
    captured) sed -E 's/.*stopped; ([0-9]+) packets captured.*/\1/' <<<"$line" ;;
    dropped) sed -E 's/.* ([0-9]+) dropped by spool policy.*/\1/' <<<"$line" ;;
    kernel) sed -E 's/.* ([0-9]+) dropped by the kernel.*/\1/' <<<"$line" ;;
    unacked) sed -E 's/.* ([0-9]+) batches unacknowledged.*/\1/' <<<"$line" ;;
  esac
}

# stored_seqs OUT: all segments of $AGENT must be sealed and readable; writes
# their sequence numbers to OUT (file order) and sets SEGS.
stored_seqs() {
  ls "$DATA/$AGENT"/*.part 2>/dev/null && fail "unsealed segments left"
  mapfile -t SEGS < <(segments_of "$DATA/$AGENT")
  [ "${#SEGS[@]}" -gt 0 ] || fail "no segments stored"
  check_segments_readable "${SEGS[@]}"
  seqs_of "${SEGS[@]}" >"$1"
  grep -q foreign "$1" && fail "stored data holds $(grep -c foreign "$1") packets that nobody replayed"
  local n
  n=$(count_packets "${SEGS[@]}")
  [ "$n" = "$(wc -l <"$1")" ] || fail "capinfos counts $n packets, tshark $(wc -l <"$1")"
}

# no_duplicates FILE: every line of FILE is unique.
no_duplicates() {
  local d
  d=$(sort -n "$1" | uniq -d | head -n 5 | tr '\n' ' ')
  [ -z "$d" ] || fail "duplicated sequence numbers stored ($(sort -n "$1" | uniq -d | wc -l) of them), e.g. $d"
}

# expect_range FILE FIRST LAST: FILE holds exactly the numbers FIRST..LAST,
# each once (in any order).
expect_range() {
  no_duplicates "$1"
  local want=$(( $3 - $2 + 1 )) got
  got=$(wc -l <"$1")
  if [ "$got" != "$want" ] || [ "$(sort -n "$1" | head -n 1)" != "$2" ] || [ "$(sort -n "$1" | tail -n 1)" != "$3" ]; then
    missing_report "$1" "$2" "$3"
    fail "stored $got packets, sent $want (seq $2..$3)"
  fi
}

# missing_of FILE FIRST LAST: the numbers of FIRST..LAST that FILE lacks.
missing_of() { seq "$2" "$3" | sort >"$WORK/range.tmp"; sort -u "$1" | comm -23 "$WORK/range.tmp" - | sort -n; }

# missing_ranges: "a-b c-d ..." for a sorted list of numbers on stdin.
missing_ranges() {
  sort -n | awk 'NR == 1 {s = p = $1; next} $1 == p + 1 {p = $1; next} {printf "%s-%s ", s, p; s = p = $1}
                 END {if (NR) printf "%s-%s", s, p}'
}

missing_report() {
  local n
  n=$(missing_of "$1" "$2" "$3" | wc -l)
  [ "$n" = 0 ] || log "missing $n: $(missing_of "$1" "$2" "$3" | missing_ranges | cut -c1-300)"
}

# stop_and_expect_exact COUNT: stops the agent (it drains) and the collector,
# then asserts the agent captured COUNT, dropped none, left nothing
# unacknowledged, and the segments hold sequence numbers 1..COUNT exactly once.
stop_and_expect_exact() {
  local count=$1
  stop_pid "$AGENT_PID"
  stop_pid "$COLLECTOR_PID"
  [ "$(agent_final unacked "$AGENT_LOG")" = 0 ] || fail "agent left batches unacknowledged"
  [ "$(agent_final dropped "$AGENT_LOG")" = 0 ] || fail "agent dropped packets by spool policy"
  [ "$(agent_final captured "$AGENT_LOG")" = "$count" ] || fail "agent captured $(agent_final captured "$AGENT_LOG") of $count"
  stored_seqs "$WORK/stored.txt"
  expect_range "$WORK/stored.txt" 1 "$count"
  log "sent $count, stored $(wc -l <"$WORK/stored.txt") in ${#SEGS[@]} segments, no duplicates, none missing"
}
