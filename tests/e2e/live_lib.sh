# Helpers for the live-channel tests (live_*_test.sh, osmo_*_test.sh).
# Source this instead of lib.sh (it sources lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ZMQ_SUB:?ZMQ_SUB must point at the zmq_sub test consumer}"
: "${OSMO_CLIENT:?OSMO_CLIENT must point at the osmo_client test client}"

# port_from LOG REGEX: the first number captured by REGEX ("... on port ([0-9]+)") in LOG.
port_from() {
  wait_for 10 grep -qE "$2" "$1" || fail "no '$2' in $1"
  sed -nE "s/.*$2.*/\\1/p" "$1" | head -n 1
}

# live_setup: namespaces and PKI for agents edge1, edge2.
live_setup() {
  require_root
  e2e_topology 65535
  "$TRAWL" pki init "$WORK/pki" --collector-name $COLLECTOR_IP >/dev/null 2>&1 || fail "pki init"
  "$TRAWL" pki issue "$WORK/pki" edge1 >/dev/null 2>&1 || fail "pki issue"
  "$TRAWL" pki issue "$WORK/pki" edge2 >/dev/null 2>&1 || fail "pki issue"
}

# live_agent NAME IFACE [ARGS...]
live_agent() {
  local name=$1 iface=$2; shift 2
  start_bg "$name" "$AG" "$TRAWL" agent --name "$name" --collector $COLLECTOR_IP:$PORT --pki "$WORK/pki" -i "$iface" \
    --spool-dir "$WORK/spool-$name" --drain-timeout 20s "$@"
  wait_for 15 grep -q "connected to" "$WORK/$name.log" || fail "$name did not connect"
}

# metrics_of PORT: scrape the collector's /metrics into $WORK/collector.metrics
scrape() { nsq "$CO" curl -fsS "http://127.0.0.1:$1/metrics" >"$WORK/collector.metrics" || fail "collector /metrics"; }
metric() { awk -v k="$1" '$1 == k {print $2}' "$WORK/collector.metrics"; }
