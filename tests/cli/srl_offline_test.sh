#!/usr/bin/env bash
# srl run on capture files, against tcpdump.
# 1. A capture made with a snap length, read by srl and by tcpdump: what
# measures a block uses its length on the wire (the record's original
# length), not the bytes kept, in `len`, in tcpdump expressions (`greater`,
# `less`, `len`) and in the byte counters; a pcap sink writes the original
# length again (docs/filter-semantics.md).
# 2. A sink that cannot write says so (path and reason), counts what it
# lost, and the run ends non-zero.
# Skipped (77) without tcpdump.
# Usage: srl_offline_test.sh SRL
set -uo pipefail
srl=$(realpath "$1")
command -v tcpdump >/dev/null || { echo "skipped: needs tcpdump"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# IPv4/UDP frames of many lengths on the wire, each kept to 96 bytes.
python3 - "$tmp/cut.pcap" <<'PY'
import struct, sys
snap = 96
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snap, 1))
t = 0
for size in [60, 64, 100, 499, 500, 501, 999, 1000, 1001, 1200, 1514] * 7 + list(range(60, 1515, 13)):
    payload = size - 42
    udp = struct.pack("!HHHH", 4000, 53 if size % 2 else 9000, 8 + payload, 0) + bytes(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp
    t += 1
    out.write(struct.pack("<IIII", t, 0, min(snap, len(frame)), len(frame)) + frame[:snap])
PY

# The count node named NAME in srl's final JSON line.
counted() {  # OUTPUT NAME
  python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
print(next(n["blocks"] for n in last["nodes"] if n.get("name") == sys.argv[2]))' "$1" "$2"
}

# srl's filter FILTER against tcpdump's EXPR on the capture, as WHAT.
against_tcpdump() {  # WHAT FILTER EXPR
  local want got
  want=$(tcpdump -nr "$tmp/cut.pcap" "$3" 2>/dev/null | wc -l)
  "$srl" run -j -e "(pcapin, file=\"$tmp/cut.pcap\") > $2 > (count, name=c)" >"$tmp/out" 2>"$tmp/err"
  got=$(counted "$tmp/out" c 2>/dev/null)
  [[ $got == "$want" && $want -gt 0 ]] && ok "$1: $got, as tcpdump" \
    || fail "$1: srl $got, tcpdump $want: $(tail -2 "$tmp/err")"
}
for expr in "greater 1000" "less 500" "len >= 700 and len <= 1200" "udp dst port 53 and greater 1001"; do
  against_tcpdump "bpf '$expr'" "(bpf, expr=\"$expr\")" "$expr"
done
against_tcpdump "len filter" "(len, min=1000, max=1514)" "len >= 1000 and len <= 1514"


# Byte counters count the wire: the sum of the records' original lengths.
wire=$(python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read(); i, total = 24, 0
while i < len(d):
    _, _, cap, orig = struct.unpack_from("<IIII", d, i); total += orig; i += 16 + cap
print(total)' "$tmp/cut.pcap")
bytes=$(python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
print(next(n["bytes"] for n in last["nodes"] if n["filter"] == "pcapin"))' "$tmp/out" 2>/dev/null)
[[ $bytes == "$wire" ]] && ok "byte counters: $bytes bytes on the wire" \
  || fail "byte counters: $bytes, the wire held $wire"

# IPv6 with extension headers (hop-by-hop, routing, fragment, destination
# options, chained): libpcap's protochain loops over them, a classic BPF
# program that jumps back, which only userspace runs; srl selects what
# tcpdump selects, and its plan says why the filter is not in the kernel.
python3 - "$tmp/ip6.pcap" <<'PY'
import struct, sys
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
tcp = struct.pack("!HHIIBBHHH", 4000, 80, 0, 0, 0x50, 2, 100, 0, 0)
udp = struct.pack("!HHHH", 4000, 53, 8, 0)
def ext(nh, length=8):  # a generic extension header of `length` bytes
    return bytes([nh, length // 8 - 1]) + bytes(length - 2)
def frag(nh):
    return bytes([nh, 0]) + bytes(6)
def frame(nh, payload):
    ip = struct.pack("!IHBB", 0x60000000, len(payload), nh, 64) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    return bytes.fromhex("020000000002020000000001") + b"\x86\xdd" + ip + payload
frames = [frame(6, tcp), frame(17, udp), frame(0, ext(6) + tcp), frame(0, ext(17) + udp),
          frame(0, ext(43, 16) + ext(6) + tcp), frame(60, ext(44) + frag(6) + tcp),
          frame(0, ext(60) + ext(43) + ext(17, 24) + udp), frame(59, b""), frame(58, bytes(8))]
for t, f in enumerate(frames * 3, 1):
    out.write(struct.pack("<IIII", t, 0, len(f), len(f)) + f)
PY
for expr in "ip6 protochain 6" "ip6 protochain 17" "ip6 protochain 58"; do
  # One line per packet starts with its time (hex dumps of unknown ICMPv6 follow).
  want=$(tcpdump -nr "$tmp/ip6.pcap" "$expr" 2>/dev/null | grep -c '^[0-9]')
  "$srl" run -j -e "(pcapin, file=\"$tmp/ip6.pcap\") > (bpf, expr=\"$expr\") > (count, name=c)" \
    >"$tmp/out" 2>"$tmp/err"
  got=$(counted "$tmp/out" c 2>/dev/null)
  [[ $got == "$want" && $want -gt 0 ]] && ok "bpf '$expr': $got, as tcpdump" \
    || fail "bpf '$expr': srl $got, tcpdump $want: $(tail -2 "$tmp/err")"
done
if "$srl" plan --dev lo --no-profile -j -e '(rx, dev=lo) > (bpf, expr="ip6 protochain 6") > (count)' \
  >"$tmp/plan.json" 2>"$tmp/err"; then
  python3 -c '
import json, sys
n = next(n for n in json.load(open(sys.argv[1]))["nodes"] if n["filter"] == "bpf")
assert n["space"].startswith("user"), n["space"]
assert "jumps back" in json.dumps(n), n
' "$tmp/plan.json" && ok "plan: protochain in userspace, its kernel alternatives refused (a loop)" \
    || fail "plan: protochain: $(head -c 600 "$tmp/plan.json")"
else
  fail "plan: protochain: $(tail -3 "$tmp/err")"
fi

# Written again, the original lengths stay.
"$srl" run -e "(pcapin, file=\"$tmp/cut.pcap\") > (pcap, file=\"$tmp/again.pcap\", snaplen=64)" \
  >/dev/null 2>"$tmp/err"
a=$(tcpdump -nr "$tmp/cut.pcap" 'greater 1000' 2>/dev/null | wc -l)
b=$(tcpdump -nr "$tmp/again.pcap" 'greater 1000' 2>/dev/null | wc -l)
[[ $a == "$b" && $a -gt 0 ]] && ok "pcap sink keeps the original length ($b greater 1000)" \
  || fail "pcap sink: $b records greater 1000 after writing, $a before: $(tail -2 "$tmp/err")"

# Counting by class: per destination port, as tcpdump counts each port,
# with byte tallies on the wire; and with one key, the rest as "other".
"$srl" run -j -e "(pcapin, file=\"$tmp/cut.pcap\") > (udp) > (port, which=dst) > (count, by=class, name=ports)" \
  >"$tmp/out" 2>"$tmp/err"
p53=$(tcpdump -nr "$tmp/cut.pcap" 'udp dst port 53' 2>/dev/null | wc -l)
p9000=$(tcpdump -nr "$tmp/cut.pcap" 'udp dst port 9000' 2>/dev/null | wc -l)
python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
n = next(n for n in last["nodes"] if n["name"] == "ports")
got = {c["class"]: c["blocks"] for c in n["classes"]}
assert got == {53: int(sys.argv[2]), 9000: int(sys.argv[3])}, got
assert sum(c["bytes"] for c in n["classes"]) == n["bytes"], n
' "$tmp/out" "$p53" "$p9000" && ok "count by class: port 53 $p53, port 9000 $p9000, as tcpdump" \
  || fail "count by class: $(tail -c 600 "$tmp/out") $(tail -2 "$tmp/err")"
"$srl" run -j -e "(pcapin, file=\"$tmp/cut.pcap\") > (udp) > (port, which=dst) > (count, by=class, keys=1, name=ports)" \
  >"$tmp/out" 2>"$tmp/err"
python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
n = next(n for n in last["nodes"] if n["name"] == "ports")
names = [c["name"] for c in n["classes"]]
assert len(names) == 2 and names[-1] == "other", n["classes"]
assert sum(c["blocks"] for c in n["classes"]) == n["blocks"], n
' "$tmp/out" && ok "count by class, keys=1: one class and other, adding up to the total" \
  || fail "count by class, keys=1: $(tail -c 600 "$tmp/out")"

# 2. A sink on a full device.
"$srl" run -j -e "(pcapin, file=\"$tmp/cut.pcap\") > (pcap, file=\"/dev/full\", name=full)" \
  >"$tmp/out" 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] && ok "a sink that cannot write: exit 1" || fail "a sink that cannot write: exit $rc"
grep -q "n1 full (pcap): writing '/dev/full': No space left on device" "$tmp/err" \
  && ok "a sink that cannot write: says where and why" || fail "a sink that cannot write: $(cat "$tmp/err")"
python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
n = next(n for n in last["nodes"] if n.get("name") == "full")
assert "No space left on device" in n["failure"], n
assert n["lost"] > 0 and n["dropped"] == 0, n
' "$tmp/out" && ok "a sink that cannot write: its failure in the JSON" \
  || fail "a sink that cannot write: no failure in the JSON: $(tail -1 "$tmp/out")"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
