#!/bin/bash
# `trawl analyze rtp` versus `tshark -q -z rtp,streams` on the same file in
# the same run: a >= 100 MB capture made by repeating a real SIP/RTP capture
# as successive time windows (editcap -t, mergecap -a). Checks that both
# report identical per-stream numbers, then prints the timings and ratio.
#
#   TRAWL=build/trawl bench/analyze_rate.sh
# Env: SRC (capture to repeat), COPIES (default: enough for 100 MB), RUNS
# (timed runs per tool, best kept; default 1). Needs tshark, editcap,
# mergecap, capinfos, python3. Not root.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAWL=${TRAWL:-build/trawl}
SRC=${SRC:-../shared/pcaps/sip_rtp/SIP_CALL_RTP_G711.pcap}
RUNS=${RUNS:-1}
WORK=$(mktemp -d /tmp/trawl-bench-analyze.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

size=$(stat -c %s "$SRC")
COPIES=${COPIES:-$(( (100 * 1000 * 1000 + size - 1) / size + 1 ))}
# Each copy starts after the previous one ended (plus 10 s).
dur=$(capinfos -u -T -r "$SRC" | cut -f2)
step=$(python3 -c "import math; print(math.ceil(float('$dur')) + 10)")
for i in $(seq 0 $((COPIES - 1))); do
  editcap -t $((i * step)) "$SRC" "$WORK/part_$(printf %05d "$i").pcap"
done
mergecap -a -w "$WORK/big.pcap" "$WORK"/part_*.pcap
rm -f "$WORK"/part_*.pcap
bytes=$(stat -c %s "$WORK/big.pcap")
packets=$(capinfos -c -M -T -r "$WORK/big.pcap" | cut -f2)
echo "capture: $COPIES x $(basename "$SRC") = $bytes bytes, $packets packets"

source "$(dirname "$0")/lib.sh"  # best
t_tshark=$(best "$WORK/tshark.txt" tshark -q -z rtp,streams -r "$WORK/big.pcap")
t_trawl=$(best "$WORK/trawl.json" "$TRAWL" analyze rtp --no-rtp-heuristic -r "$WORK/big.pcap")

python3 - "$WORK/tshark.txt" "$WORK/trawl.json" <<'PY'
import json, sys
theirs, ours = {}, {}
for line in open(sys.argv[1]):
    w = line.split()
    if len(w) < 17 or not w[6].startswith("0x"):
        continue
    last = len(w) - 2 if w[-1] == "X" else len(w) - 1
    theirs[" ".join(w[2:7])] = " ".join([w[last - 8], w[last - 7]] + w[last - 5:last + 1])
for line in open(sys.argv[2]):
    j = json.loads(line)
    if j["kind"] != "rtp":
        continue
    k = f'{j["src_ip"]} {j["src_port"]} {j["dst_ip"]} {j["dst_port"]} {j["ssrc_hex"]}'
    ours[k] = "%d %d %.3f %.3f %.3f %.3f %.3f %.3f" % (
        j["packets"], j["lost"], j["min_delta_ms"], j["mean_delta_ms"], j["max_delta_ms"],
        j["min_jitter_ms"], j["mean_jitter_ms"], j["max_jitter_ms"])
for k in sorted(set(theirs) | set(ours)):
    print(f"  {k}: tshark [{theirs.get(k)}] trawl [{ours.get(k)}]")
if theirs != ours or not theirs:
    print("MISMATCH between tshark and trawl")
    sys.exit(1)
print(f"identical numbers for {len(ours)} streams")
PY
python3 -c "
t, r = $t_tshark, $t_trawl
print(f'tshark -q -z rtp,streams : {t:.2f} s')
print(f'trawl analyze rtp        : {r:.2f} s ({$bytes / r / 1e6:.0f} MB/s)')
print(f'ratio                    : {t / r:.1f}x')"
