#!/usr/bin/env bash
# srl run with a userspace part, end to end:
#  1. a capture file through userspace only: pcapin -> tcp -> port 80 -> pcap;
#     tcpdump reads the output and counts what `tcpdump -r in 'tcp port 80'`
#     counts, and the records are identical;
#  2. live: kernel -> copy ring -> userspace on a veth pair in namespaces of its
#     own: every matching frame sent is in the pcap file, nothing else, and
#     nothing is left behind.
# Needs root and tcpdump; exits 77 (skipped) without them.
# Usage: srl_user_test.sh SRL
set -uo pipefail
srl=$(realpath "$1")
. "$(dirname "$0")/lib.sh" srl-u
command -v tcpdump >/dev/null || { echo "skipped: needs tcpdump"; exit 77; }

# Frames: TCP to port 80 and 81 and UDP to 80, each from its own ephemeral
# port, as Ethernet/IPv4. `frames N80 N81 NUDP` prints them hex-encoded.
cat >"$tmp/frames.py" <<'PY'
import struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def frame(proto, sport, dport, payload, dst_mac=b"\xff" * 6):
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                     bytes([10, 78, 0, 1]), bytes([10, 78, 0, 2]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + l4
def all_frames(n80, n81, nudp, dst_mac=b"\xff" * 6):
    out = []
    for i in range(max(n80, n81, nudp)):
        if i < n80: out.append(frame(6, 20000 + i, 80, b"x" * (i % 50), dst_mac))
        if i < n81: out.append(frame(6, 30000 + i, 81, b"y", dst_mac))
        if i < nudp: out.append(frame(17, 40000 + i, 80, b"z" * 10, dst_mac))
    return out
if __name__ == "__main__":
    mode = sys.argv[1]
    n80, n81, nudp = map(int, sys.argv[2:5])
    if mode == "pcap":  # a nanosecond pcap on stdout
        out = sys.stdout.buffer
        out.write(struct.pack("<IHHiIII", 0xa1b23c4d, 2, 4, 0, 0, 262144, 1))
        for i, f in enumerate(all_frames(n80, n81, nudp)):
            out.write(struct.pack("<IIII", 1700000000 + i // 1000, (i % 1000) * 1000003, len(f), len(f)) + f)
    else:  # send on device argv[5] through a packet socket
        import socket
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((sys.argv[5], 0))
        mac = bytes.fromhex(sys.argv[6].replace(":", ""))
        for f in all_frames(n80, n81, nudp, mac):
            s.send(f)
PY

# 1. Userspace only: a capture file in, a capture file out.
python3 "$tmp/frames.py" pcap 3000 1000 500 >"$tmp/in.pcap"
want=$(tcpdump -nr "$tmp/in.pcap" 'tcp port 80' 2>/dev/null | wc -l)
"$srl" run -j -e "(pcapin, file=\"$tmp/in.pcap\") > (tcp) > (port) 80> (pcap, file=\"$tmp/out.pcap\")" \
  >"$tmp/out.json" 2>"$tmp/err"
rc=$?
[[ $rc -eq 0 ]] && ok "pcapin: exit 0 at the end of the file" || fail "pcapin: exit $rc: $(cat "$tmp/err")"
got=$(tcpdump -nr "$tmp/out.pcap" 2>/dev/null | wc -l)
[[ $want -eq 3000 && $got -eq $want ]] && ok "pcapin: tcpdump reads $got of $want packets" \
  || fail "pcapin: tcpdump reads $got packets, expected $want (of 3000)"
# Record-identical: the same packets, timestamps and bytes as tcpdump's own selection.
tcpdump --time-stamp-precision=nano -nr "$tmp/in.pcap" -w "$tmp/want.pcap" 'tcp port 80' 2>/dev/null
cmp_out=$(python3 - "$tmp/want.pcap" "$tmp/out.pcap" <<'PY'
import struct, sys
def records(path):
    d = open(path, "rb").read()
    magic = struct.unpack("<I", d[:4])[0]
    ns = magic == 0xa1b23c4d
    out, at = [], 24
    while at + 16 <= len(d):
        s, frac, cap, length = struct.unpack("<IIII", d[at:at + 16])
        out.append((s * 10**9 + (frac if ns else frac * 1000), length, d[at + 16:at + 16 + cap]))
        at += 16 + cap
    return out
a, b = records(sys.argv[1]), records(sys.argv[2])
print("same" if a == b else "differ: %d vs %d records" % (len(a), len(b)))
PY
)
[[ $cmp_out == same ]] && ok "pcapin: records identical to tcpdump's selection" || fail "pcapin: $cmp_out"
python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
assert last["final"]
n = {x["filter"]: x for x in last["nodes"]}
assert n["pcapin"]["blocks"] == 4500, n["pcapin"]
assert n["tcp"]["accepted"] == 4000, n["tcp"]
assert n["pcap"]["blocks"] == 3000, n["pcap"]
assert all(x["space"] == "user" for x in last["nodes"])
' "$tmp/out.json" && ok "pcapin: counters 4500 in, 4000 tcp, 3000 written" \
  || fail "pcapin: counters: $(tail -1 "$tmp/out.json")"
"$srl" run -e "(pcapin, file=\"$tmp/missing.pcap\") > (pcap, file=\"$tmp/x.pcap\")" >/dev/null 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] && grep -q "missing.pcap" "$tmp/err" && ok "pcapin: a missing file is named" \
  || fail "pcapin missing file: exit $rc: $(cat "$tmp/err")"

# 2. Live: the kernel selects, a copy ring carries, userspace writes.
make_hosts
mac=$(ip -n "$b" -br link show vb | awk '{print $3}')

wait_for() {  # FILE PATTERN: up to 10 s for the run to report it
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
for hook in xdp auto; do
  snapshot
  out=$tmp/live-$hook.pcap
  ip netns exec "$b" "$srl" run --dev vb --hook "$hook" --xdp-mode generic --duration 6 \
    --bpffs "$bpffs" -j -e "(tcp) > (port, which=dst) 80> (pcap, file=\"$out\")" \
    >"$tmp/live.json" 2>"$tmp/err" &
  pid=$!
  if wait_for "$tmp/err" "copy ring"; then
    sleep 0.5
    ip netns exec "$a" python3 "$tmp/frames.py" send 400 100 100 va "$mac"
    wait "$pid"; rc=$?
    [[ $rc -eq 0 ]] && ok "live $hook: exit 0" || fail "live $hook: exit $rc: $(cat "$tmp/err")"
    got=$(tcpdump -nr "$out" 2>/dev/null | wc -l)
    sel=$(tcpdump -nr "$out" 'tcp dst port 80' 2>/dev/null | wc -l)
    [[ $got -eq 400 && $sel -eq 400 ]] && ok "live $hook: all 400 matching frames in the file, nothing else" \
      || fail "live $hook: $got frames in the file ($sel to port 80), expected 400: $(cat "$tmp/err")"
  else
    kill "$pid" 2>/dev/null; wait "$pid"
    fail "live $hook: no copy ring reported: $(cat "$tmp/err")"
  fi
  xdp_attached && fail "live $hook: XDP left on vb" || ok "live $hook: hook removed"
  new=$(new_objects 10)
  [[ -z $new ]] && ok "live $hook: no program or map left" || fail "live $hook: left: $new"
done

summary
