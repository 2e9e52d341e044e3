#!/bin/bash
# Metrics that a real Prometheus can use: the agent and the collector serve
# /metrics (checked by promtool), /healthz and /readyz; a Prometheus server
# (Debian's package, started here on a generated config) scrapes both during
# a replay, and its HTTP API returns the replayed packet count for both, and
# a non-zero kernel drop counter after a deliberately overloaded run.
source "$(dirname "$0")/seq_lib.sh"
fault_setup
for t in prometheus promtool curl; do command -v $t >/dev/null || { echo "SKIP: $t missing" >&2; exit 77; }; done


collector_up collector --metrics-listen 0.0.0.0:0
CPORT=$(metrics_port "$WORK/collector.log")
agent_up agent --metrics-listen 0.0.0.0:0
APORT=$(metrics_port "$AGENT_LOG")
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not connect"

# A Prometheus in the collector's namespace scrapes both every second.
cat >"$WORK/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: collector
    static_configs: [{ targets: ['127.0.0.1:$CPORT'] }]
  - job_name: agent
    static_configs: [{ targets: ['10.77.0.1:$APORT'] }]
YAML
mkdir -p "$WORK/prom"
PROM=9090  # the collector's namespace is this test's own: the port is free
start_bg prometheus "$CO" prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
  --web.listen-address=127.0.0.1:$PROM --log.level=info
wait_for 20 grep -q "Server is ready to receive web requests" "$WORK/prometheus.log" || fail "prometheus did not start"

prom_value() {  # prom_value QUERY: the first sample's value (empty if none)
  nsq "$CO" curl -fsS --get "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode "query=$1" |
    perl -ne 'print $1 if /"value":\[[^,]+,"([^"]+)"\]/'
}
prom_equals() { [ "$(prom_value "$1")" = "$2" ]; }

COUNT=20000
gen_traffic traffic $COUNT 300 1
replay traffic 5000
wait_delivered 30 || fail "spool not acknowledged"

log "Prometheus at 127.0.0.1:$PROM; waiting for it to see $COUNT packets"
wait_for 20 prom_equals 'trawl_agent_captured_packets_total{agent="edge1"}' $COUNT ||
  fail "prometheus: agent captured = $(prom_value 'trawl_agent_captured_packets_total{agent="edge1"}'), want $COUNT"
wait_for 20 prom_equals 'trawl_collector_stored_packets_total{agent="edge1"}' $COUNT ||
  fail "prometheus: collector stored = $(prom_value 'trawl_collector_stored_packets_total{agent="edge1"}'), want $COUNT"
fsyncs=$(prom_value 'trawl_collector_fsync_latency_seconds_count{agent="edge1"}')
[ "${fsyncs:-0}" -gt 0 ] || fail "prometheus: no fsync latency observations ('$fsyncs')"
p99=$(prom_value 'histogram_quantile(0.99, sum by (le) (trawl_collector_fsync_latency_seconds_bucket{agent="edge1"}))')
log "prometheus: $fsyncs group commits, fsync p99 ${p99}s"
prom_equals 'trawl_collector_agent_connected{agent="edge1"}' 1 || fail "prometheus: agent not shown connected"
# Everything is acknowledged, and freed spool files are kept as spares for
# reuse: the disk the spool takes is more than its (few, stats-only) records.
# (The exact accounting is checked against the directory by spool_model_test.)
disk=$(prom_value 'trawl_agent_spool_disk_bytes{agent="edge1"}')
recs=$(prom_value 'trawl_agent_spool_bytes{agent="edge1"}')
[ "${disk:-0}" -gt "${recs:-0}" ] || fail "prometheus: spool disk bytes '$disk', records '$recs': no spares counted"
ls "$SPOOL"/*.spare >/dev/null 2>&1 || fail "no spare spool file kept for reuse: $(ls "$SPOOL")"
prom_equals 'up{job="agent"}' 1 || fail "agent target not up"
prom_equals 'up{job="collector"}' 1 || fail "collector target not up"

log "promtool check metrics, health endpoints"
nsq "$CO" curl -fsS "http://127.0.0.1:$CPORT/metrics" >"$WORK/collector.metrics" || fail "collector /metrics"
nsq "$AG" curl -fsS "http://127.0.0.1:$APORT/metrics" >"$WORK/agent.metrics" || fail "agent /metrics"
for m in collector agent; do
  promtool check metrics <"$WORK/$m.metrics" >"$WORK/promtool-$m.log" 2>&1 || fail "promtool on the $m's metrics: $(cat "$WORK/promtool-$m.log")"
done
grep -q '^trawl_build_info{version=' "$WORK/agent.metrics" || fail "no build info"
nsq "$CO" curl -fsS "http://127.0.0.1:$CPORT/healthz" | grep -qx ok || fail "collector /healthz"
nsq "$CO" curl -fsS "http://127.0.0.1:$CPORT/readyz" | grep -qx ok || fail "collector /readyz"
nsq "$AG" curl -fsS "http://127.0.0.1:$APORT/healthz" | grep -qx ok || fail "agent /healthz"

log "overload: a 1 MiB ring flooded at top speed"
stop_pid "$AGENT_PID"
agent_up agent2 --metrics-listen 0.0.0.0:$APORT --ring-size 1MiB
wait_for 15 grep -q "connected to" "$AGENT_LOG" || fail "agent did not reconnect"
gen_traffic flood 100000 1500 100001
nsq "$TX" tcpreplay -q -i tx0 --topspeed "$WORK/flood.pcap" >/dev/null 2>&1 || fail "tcpreplay failed"
drops() { prom_value 'sum(trawl_agent_interface_kernel_dropped_packets_total{agent="edge1"})'; }
nonzero_drops() { local v; v=$(drops); [ -n "$v" ] && [ "$v" != 0 ]; }
wait_for 20 nonzero_drops || fail "prometheus does not see kernel drops (value '$(drops)')"
log "prometheus sees $(drops) kernel drops on the overloaded agent"
echo PASS
