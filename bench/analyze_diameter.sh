#!/bin/bash
# `trawl analyze diameter` versus
#   tshark -Y diameter -T fields -e diameter.cmd.code -e diameter.flags.request
#          -e diameter.hopbyhopid -e diameter.Result-Code
#          -e diameter.Experimental-Result-Code
# on the same file in the same run: a >= 100 MB capture made by repeating a
# real Diameter-over-SCTP capture as successive time windows (each copy
# starts 10 s after the previous one ended). tshark's SCTP dissector tracks
# associations by ports and verification tag and does not dissect DATA
# chunks whose TSN it has already seen (they are "retransmissions"), so a
# plain editcap -t / mergecap copy is dissected only once; each copy i > 0
# therefore gets its SCTP verification tags XORed with i << 20, making every
# copy a fresh association for tshark (trawl does not look at tags). The
# SCTP CRC32c is left as it was (neither tool checks it by default).
# Checks that both see the same transactions (command code, hop-by-hop id,
# answered/unanswered/unsolicited, Result-Code, Experimental-Result-Code),
# then prints timings and the ratio.
#
#   TRAWL=build/trawl bench/analyze_diameter.sh
# Env: SRC (Ethernet/IPv4 capture to repeat; default the Gx/Gy SCTP one),
# MIN_MB (default 100), RUNS (timed runs per tool, best kept; default 1).
# Needs tshark, editcap, capinfos, python3. Not root.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAWL=${TRAWL:-build/trawl}
SRC=${SRC:-../shared/pcaps/diameter/magma_gx_gy_combined_03.pcapng}
MIN_MB=${MIN_MB:-100}
RUNS=${RUNS:-1}
WORK=$(mktemp -d /tmp/trawl-bench-diameter.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

editcap -F pcap "$SRC" "$WORK/one.pcap"
size=$(stat -c %s "$WORK/one.pcap")
copies=$(( (MIN_MB * 1000 * 1000 + size - 1) / size + 1 ))
python3 - "$WORK/one.pcap" "$WORK/big.pcap" "$copies" <<'PY'
import math, struct, sys
src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
magic, = struct.unpack("<I", data[:4])
if magic not in (0xA1B2C3D4, 0xA1B23C4D) or struct.unpack("<I", data[20:24])[0] != 1:
    sys.exit("little-endian classic pcap with Ethernet expected")
recs, off = [], 24
while off + 16 <= len(data):
    sec, frac, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    recs.append((sec, frac, orig, bytes(data[off + 16:off + 16 + incl])))
    off += 16 + incl
step = math.ceil(max(r[0] for r in recs) - min(r[0] for r in recs) + 1) + 10

def vtag_offset(p):  # Ethernet [802.1Q...] IPv4 (unfragmented) SCTP
    o = 12
    while o + 2 <= len(p) and p[o:o + 2] in (b"\x81\x00", b"\x88\xa8"):
        o += 4
    if p[o:o + 2] != b"\x08\x00" or o + 22 > len(p) or p[o + 11] != 132:
        return None
    o += 2
    if struct.unpack(">H", p[o + 6:o + 8])[0] & 0x3FFF:
        return None
    v = o + (p[o] & 15) * 4 + 4
    return v if v + 4 <= len(p) else None

offsets = [vtag_offset(r[3]) for r in recs]
with open(dst, "wb") as out:
    out.write(data[:24])
    for i in range(copies):
        for (sec, frac, orig, p), v in zip(recs, offsets):
            if v is not None and i:
                tag, = struct.unpack(">I", p[v:v + 4])
                p = p[:v] + struct.pack(">I", tag ^ (i << 20)) + p[v + 4:]
            out.write(struct.pack("<IIII", sec + i * step, frac, len(p), orig))
            out.write(p)
PY
F=$WORK/big.pcap
bytes=$(stat -c %s "$F")
packets=$(capinfos -c -M -T -r "$F" | cut -f2)
echo "capture: $copies x $(basename "$SRC") = $bytes bytes, $packets packets"

source "$(dirname "$0")/lib.sh"  # best
t_tshark=$(best "$WORK/tshark.txt" tshark -r "$F" -Y diameter -T fields -E occurrence=a -E aggregator=, \
  -e diameter.cmd.code -e diameter.flags.request -e diameter.hopbyhopid -e diameter.Result-Code \
  -e diameter.Experimental-Result-Code)
t_trawl=$(best "$WORK/trawl.json" "$TRAWL" analyze diameter -r "$F")

python3 - "$WORK/tshark.txt" "$WORK/trawl.json" <<'PY'
import collections, json, sys
# tshark: one line per message; pair each answer with the oldest open request
# of the same command code and hop-by-hop id.
open_req = collections.defaultdict(collections.deque)
txns, messages = [], 0
for line in open(sys.argv[1]):
    w = line.rstrip("\n").split("\t")
    if len(w) < 5:
        continue
    if "," in w[0]:
        sys.exit("several Diameter messages in one frame: " + line)
    messages += 1
    cmd, hbh = int(w[0]), int(w[2], 16)
    if w[1] in ("1", "True"):
        t = [cmd, hbh, "unanswered", "", ""]
        txns.append(t)
        open_req[(cmd, hbh)].append(t)
    elif open_req[(cmd, hbh)]:
        t = open_req[(cmd, hbh)].popleft()
        t[2:] = ["answered", w[3], w[4]]
    else:
        txns.append([cmd, hbh, "unsolicited", w[3], w[4]])
codes = {}
theirs = collections.Counter()
for cmd, hbh, st, rc, exp in txns:
    codes[(cmd, hbh)] = rc
    theirs[(cmd, hbh, st, rc if "," not in rc else "nested", exp)] += 1
ours = collections.Counter()
bad_nested = 0
for line in open(sys.argv[2]):
    j = json.loads(line)
    if j.get("kind") != "diameter":
        continue
    cmd, hbh = j["command_code"], j["hop_by_hop"]
    rc = "" if j["result_code"] is None else str(j["result_code"])
    lst = codes.get((cmd, hbh), "")
    if "," in lst:
        bad_nested += rc not in lst.split(",")
        rc = "nested"
    exp = "" if j["experimental_result_code"] is None else str(j["experimental_result_code"])
    ours[(cmd, hbh, j["status"], rc, exp)] += 1
def by_code(c):
    out = collections.Counter()
    for (cmd, _, st, rc, exp), n in c.items():
        out[(cmd, st, rc, exp)] += n
    return out
bt, bo = by_code(theirs), by_code(ours)
print("  command status result-code exp-result: tshark trawl")
for k in sorted(set(bt) | set(bo), key=str):
    print(f"  {k[0]} {k[1]} {k[2] or '-'} {k[3] or '-'}: {bt.get(k, 0)} {bo.get(k, 0)}")
if theirs != ours or bad_nested or not theirs:
    diff = (theirs - ours) + (ours - theirs)
    print(f"MISMATCH between tshark and trawl ({sum(diff.values())} transactions differ, "
          f"{bad_nested} top-level Result-Codes not among tshark's)")
    sys.exit(1)
print(f"identical transactions: {sum(ours.values())} ({messages} messages), "
      f"same hop-by-hop ids and result codes")
PY
python3 -c "
t, r = $t_tshark, $t_trawl
print(f'tshark -T fields (diameter) : {t:.2f} s')
print(f'trawl analyze diameter      : {r:.2f} s ({$bytes / r / 1e6:.0f} MB/s)')
print(f'ratio                       : {t / r:.1f}x')"
