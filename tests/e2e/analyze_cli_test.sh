#!/bin/bash
# `trawl analyze` as an operator runs it, unprivileged: a capture on stdin
# (plain, gzip, zstd), -r files, JSON lines and Elasticsearch bulk output,
# bad input. No namespaces needed.
source "$(dirname "$0")/lib.sh"
SIP=$PCAPS/sip_rtp/SIP_CALL_RTP_G711.pcap
[ -f "$SIP" ] || { echo "no shared captures"; exit 77; }
cp "$SIP" "$WORK/call.pcap"
chmod 644 "$WORK/call.pcap"
# Never needs root: drop to nobody when we have it.
AS=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
an() { "${AS[@]}" "$TRAWL" analyze "$@"; }

log "stdin, plain"
an all <"$WORK/call.pcap" >"$WORK/plain.json" 2>"$WORK/plain.log" || fail "analyze on stdin failed"
[ "$(grep -c '"kind":"rtp"' "$WORK/plain.json")" = 5 ] || fail "expected 5 RTP streams"
grep -q '"kind":"summary"' "$WORK/plain.json" || fail "no summary records"

log "stdin, gzip and zstd (two frames)"
gzip -c "$WORK/call.pcap" | an all >"$WORK/gz.json" 2>"$WORK/gz.log" || fail "gzip input"
cmp -s "$WORK/plain.json" "$WORK/gz.json" || fail "gzip output differs"
{ head -c 300000 "$WORK/call.pcap" | zstd -q -c; tail -c +300001 "$WORK/call.pcap" | zstd -q -c; } >"$WORK/call.pcap.zst"
chmod 644 "$WORK/call.pcap.zst"
an all -r "$WORK/call.pcap.zst" >"$WORK/zst.json" 2>"$WORK/zst.log" || fail "zstd input"
cmp -s "$WORK/plain.json" "$WORK/zst.json" || fail "zstd output differs"

log "es-bulk to a file"
an rtp dns --format es-bulk -o "$WORK/out/bulk.ndjson" -r "$WORK/call.pcap" 2>"$WORK/bulk.log" && fail "wrote into a missing directory"
mkdir -m 777 "$WORK/out"
an rtp dns --format es-bulk -o "$WORK/out/bulk.ndjson" -r "$WORK/call.pcap" 2>"$WORK/bulk.log" || fail "es-bulk"
python3 - "$WORK/out/bulk.ndjson" <<'PY' || fail "bad bulk format"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) % 2 == 0 and lines, len(lines)
for action, doc in zip(lines[::2], lines[1::2]):
    a, d = json.loads(action), json.loads(doc)
    assert a == {"index": {"_index": "trawl-" + d["kind"]}}, (a, d)
PY

log "bad input"
set +e
an smtp -r "$WORK/call.pcap" >/dev/null 2>"$WORK/bad.log"; rc=$?
[ $rc = 2 ] || fail "unknown decoder: exit $rc"
head -c 500000 "$WORK/call.pcap" >"$WORK/cut.pcap"; chmod 644 "$WORK/cut.pcap"
an rtp -r "$WORK/cut.pcap" >"$WORK/cut.json" 2>"$WORK/cut.log"; rc=$?
set -e
[ $rc = 1 ] || fail "truncated file: exit $rc"
grep -q "truncated record" "$WORK/cut.log" || fail "truncation not reported"
grep -q '"kind":"rtp"' "$WORK/cut.json" || fail "frames before the truncation not analysed"

if [ -n "${LIVEPUB:-}" ] && [ -x "$LIVEPUB" ]; then
  log "live feed: --count stops after every frame; records equal the file's"
  port=$((20000 + RANDOM % 20000))
  frames=$(capinfos -c -M -T -r "$WORK/call.pcap" | cut -f2)
  # Started directly (not through the an function) so $! is trawl itself.
  "${AS[@]}" "$TRAWL" analyze all --live "tcp://127.0.0.1:$port" --agent edge1 --count "$frames" \
    -o "$WORK/out/live.json" 2>"$WORK/live.log" &
  apid=$!
  PIDS+=("$apid")
  "$LIVEPUB" "tcp://127.0.0.1:$port" edge1 "$WORK/call.pcap" 1000 2>"$WORK/livepub.log" || fail "livepub"
  for _ in $(seq 1 100); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
  wait "$apid" || fail "analyze --live exited $?"
  an all -r "$WORK/call.pcap" >"$WORK/file.json" 2>/dev/null
  diff <(grep -v '"kind":"summary"' "$WORK/file.json") <(grep -v '"kind":"summary"' "$WORK/out/live.json") \
    >"$WORK/live.diff" || fail "live records differ from the file's (see live.diff)"

  log "live feed: --duration and SIGTERM stop and flush"
  an rtp --live "tcp://127.0.0.1:$port" --duration 1s >"$WORK/dur.json" 2>"$WORK/dur.log" || fail "--duration"
  grep -q '"kind":"summary"' "$WORK/dur.json" || fail "no summary after --duration"
  "${AS[@]}" "$TRAWL" analyze rtp --live "tcp://127.0.0.1:$port" >"$WORK/term.json" 2>"$WORK/term.log" &
  tpid=$!
  PIDS+=("$tpid")
  sleep 0.5
  kill -TERM "$tpid"
  wait "$tpid" || fail "SIGTERM: exit $?"
  grep -q '"kind":"summary"' "$WORK/term.json" || fail "no summary after SIGTERM"
else
  log "live part skipped (LIVEPUB not set)"
fi
log "PASS"
