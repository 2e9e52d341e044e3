# Shared helpers for trawl's end-to-end tests (bash). Each test creates its
# own network namespaces (names carry the test's PID so runs never collide),
# starts real processes, and removes everything it made on exit.
#
# Topology made by e2e_topology:
#   ns $TX  [tx0] ==veth== [cap0]  ns $AG   (captured link, MTU 65535, no IP)
#   ns $TX  [tx1] ==veth== [cap1]  ns $AG   (second captured link)
#   ns $AG  [up0 10.77.0.1/24] ==veth== [dn0 10.77.0.2/24] ns $CO  (agent -> collector)
set -euo pipefail

: "${TRAWL:?TRAWL must point at the trawl binary}"
: "${PCAPGEN:?PCAPGEN must point at the pcapgen binary}"
PCAPS=${PCAPS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../shared/pcaps" && pwd)}
ID=$$
TX=trawl-tx-$ID
AG=trawl-ag-$ID
CO=trawl-co-$ID
WORK=$(mktemp -d /tmp/trawl-e2e.XXXXXX)
chmod 755 "$WORK"  # the agent drops to nobody and must reach its spool
PIDS=()
COLLECTOR_IP=10.77.0.2

log() { echo "[$(date +%T)] $*" >&2; }
fail() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)" >&2; tail -n 30 "$f" >&2; }; done
  exit 1
}

MAIN_PID=$BASHPID
cleanup() {
  local rc=$?
  # Subshells ($(...), pipelines) inherit the trap; only the test's own
  # shell tears things down.
  [ "$BASHPID" = "$MAIN_PID" ] || exit $rc
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  # Under the sanitizer build, any report in any process's log fails the test.
  if grep -l -E "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:" "$WORK"/*.log 2>/dev/null; then
    echo "FAIL: sanitizer report in the logs above" >&2
    grep -h -A20 -E "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:" "$WORK"/*.log >&2 || true
    [ $rc -eq 0 ] && rc=1
  fi
  for ns in "$TX" "$AG" "$CO"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ $rc -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

require_root() {
  if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root for network namespaces" >&2; exit 77; fi
  for t in ip tcpreplay tshark capinfos tcpdump; do
    command -v $t >/dev/null || { echo "SKIP: $t missing (run scripts/setup.sh)" >&2; exit 77; }
  done
}

nsq() { ip netns exec "$@"; }

quiet_ns() {  # no IPv6 (router solicitations, MLD) in test namespaces
  nsq "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  nsq "$1" ip link set lo up
}

e2e_topology() {
  local mtu=${1:-65535}
  ip netns add "$TX"; ip netns add "$AG"; ip netns add "$CO"
  for ns in "$TX" "$AG" "$CO"; do quiet_ns "$ns"; done
  for i in 0 1; do
    ip link add tx$i-$ID netns "$TX" type veth peer name cap$i-$ID netns "$AG"
    nsq "$TX" ip link set tx$i-$ID name tx$i
    nsq "$AG" ip link set cap$i-$ID name cap$i
    nsq "$TX" sysctl -qw net.ipv6.conf.tx$i.disable_ipv6=1
    nsq "$AG" sysctl -qw net.ipv6.conf.cap$i.disable_ipv6=1
    nsq "$TX" ip link set tx$i mtu "$mtu" up
    nsq "$AG" ip link set cap$i mtu "$mtu" up
  done
  ip link add up0-$ID netns "$AG" type veth peer name dn0-$ID netns "$CO"
  nsq "$AG" ip link set up0-$ID name up0
  nsq "$CO" ip link set dn0-$ID name dn0
  nsq "$AG" ip addr add 10.77.0.1/24 dev up0
  nsq "$CO" ip addr add $COLLECTOR_IP/24 dev dn0
  nsq "$AG" ip link set up0 up
  nsq "$CO" ip link set dn0 up
}

# start_bg NAME NS CMD... : runs CMD in NS in the background, log in $WORK/NAME.log
start_bg() {
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  eval "PID_${name//-/_}=$pid"
}

# wait_for SECONDS CMD... : polls CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" 2>/dev/null; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

stop_pid() {  # SIGTERM, then wait up to 20 s, then SIGKILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

start_collector() {  # start_collector NAME EXTRA_ARGS... ; sets PORT and PID_<NAME>
  local name=$1; shift
  rm -f "$WORK/$name.port"
  start_bg "$name" "$CO" "$TRAWL" collector --listen 0.0.0.0:${FIXED_PORT:-0} --port-file "$WORK/$name.port" --min-free 0 "$@"
  wait_for 10 test -s "$WORK/$name.port" || fail "collector $name did not start"
  PORT=$(cat "$WORK/$name.port")
}

# Hex dump of every packet in the given files, one block per packet, in
# order, without timestamps: identical output = identical packets.
# tcpdump (libpcap) does not read .zst; those are piped through zstd -dc.
packet_dump() {
  local f
  for f in "$@"; do
    case "$f" in
      *.zst) zstd -dcq "$f" | tcpdump -r - -t -nn -S -xx 2>/dev/null ;;
      *) tcpdump -r "$f" -t -nn -S -xx 2>/dev/null ;;
    esac
  done
}

# Sealed segments (plain or zstd) of an agent directory, in time order.
# (ls fails when one of the patterns matches nothing; that is not an error.)
segments_of() { { ls "$1"/*.pcapng "$1"/*.pcapng.zst 2>/dev/null || true; } | sort; }
# Open segments (not their .idx.part index journals).
parts_of() { { ls "$1"/*.pcapng.part "$1"/*.pcapng.zst.part 2>/dev/null || true; } | sort; }

check_segments_readable() {
  local f
  for f in "$@"; do
    tshark -r "$f" -c 1 >/dev/null 2>"$WORK/tshark.err" || fail "tshark cannot read $f: $(cat "$WORK/tshark.err")"
    capinfos "$f" >/dev/null 2>"$WORK/capinfos.err" || fail "capinfos cannot read $f: $(cat "$WORK/capinfos.err")"
  done
}

count_packets() { local n=0 f; for f in "$@"; do n=$((n + $(capinfos -M -c "$f" | awk '/Number of packets/ {print $NF}'))); done; echo $n; }
