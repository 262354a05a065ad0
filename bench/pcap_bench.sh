#!/usr/bin/env bash
# srl run against tcpdump on the same job: read a large capture, keep TCP
# port 80, write a capture.
#
#   srl run -e '(pcapin, file=F) > (tcp) > (port) 80> (pcap, file=G)'
#   tcpdump -r F -w G 'tcp port 80'
#
# Both read the same file from the page cache; CPU time (user + system) is
# measured with wait4() of the child, the median of ROUNDS runs. The floor
# is what the kernel costs both for the I/O alone: dd reading the capture in
# 512 KiB blocks plus dd writing as many bytes as the output holds. Both
# outputs are checked to hold the same number of packets.
# Usage: pcap_bench.sh SRL [PACKETS] [ROUNDS]
set -euo pipefail
srl=$(realpath "$1")
packets=${2:-1000000}
rounds=${3:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A capture of `packets` Ethernet/IPv4 frames: a third TCP to port 80, a third
# TCP to other ports, a third UDP; sizes from 60 to 1514 bytes.
python3 - "$tmp/in.pcap" "$packets" <<'PY'
import struct, sys, random
random.seed(7)
path, n = sys.argv[1], int(sys.argv[2])
def frame(proto, sport, dport, size):
    l4 = (struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 65535, 0, 0) if proto == 6
          else struct.pack("!HHHH", sport, dport, 8, 0))
    pay = size - 14 - 20 - len(l4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + pay, 1, 0, 64, proto, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4 + b"x" * pay
frames = []
for i in range(512):
    size = random.choice([60, 60, 90, 200, 576, 1514])
    kind = i % 3
    if kind == 0: frames.append(frame(6, 1024 + i, 80, size))
    elif kind == 1: frames.append(frame(6, 1024 + i, 443, size))
    else: frames.append(frame(17, 1024 + i, 53, size))
with open(path, "wb") as out:
    out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    recs = [struct.pack("<IIII", 0, 0, len(f), len(f)) + f for f in frames]
    for i in range(n):
        r = recs[i % 512]
        out.write(struct.pack("<II", 1700000000 + i // 1000000, i % 1000000) + r[8:])
PY
size=$(du -m "$tmp/in.pcap" | cut -f1)

cpu() {  # CMD...: prints "user+sys wall" seconds of the child
  # Each run starts with no dirty pages (else one run's output is written
  # back while the next one runs, and which of the two pays depends on the
  # order of the runs) and with the whole capture in the page cache (this
  # machine's cache may have let some of it go since the last run).
  sync
  cat "$tmp/in.pcap" >/dev/null
  # wait4() gives that one child's usage. RUSAGE_CHILDREN would not: it also
  # counts whatever the interpreter's own start-up ran and waited for before
  # it (a version-manager shim's commands survive its exec into python).
  python3 - "$@" <<'PY'
import os, subprocess, sys, time
t = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, r = os.wait4(p.pid, 0)
wall = time.monotonic() - t
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("%s failed: %s" % (sys.argv[1], os.waitstatus_to_exitcode(status)))
print("%.3f %.3f" % (r.ru_utime + r.ru_stime, wall))
PY
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$tmp/srl.cpu"; : >"$tmp/tcpdump.cpu"; : >"$tmp/srl.wall"; : >"$tmp/tcpdump.wall"
: >"$tmp/floor.cpu"
for _ in $(seq "$rounds"); do
  read -r c w < <(cpu "$srl" run -e "(pcapin, file=\"$tmp/in.pcap\") > (tcp) > (port) 80> (pcap, file=\"$tmp/srl.pcap\")")
  echo "$c" >>"$tmp/srl.cpu"; echo "$w" >>"$tmp/srl.wall"
  read -r c w < <(cpu tcpdump -r "$tmp/in.pcap" -w "$tmp/tcpdump.pcap" 'tcp port 80')
  echo "$c" >>"$tmp/tcpdump.cpu"; echo "$w" >>"$tmp/tcpdump.wall"
  # The floor both pay in the kernel: reading the capture and writing (over
  # the last round's file, truncated) as many bytes as the output has.
  out_mb=$(( ($(stat -c %s "$tmp/srl.pcap") + 1048575) / 1048576 ))
  read -r c1 _ < <(cpu dd if="$tmp/in.pcap" of=/dev/null bs=512K)
  read -r c2 _ < <(cpu dd if=/dev/zero of="$tmp/floor.out" bs=1M count="$out_mb")
  awk -v a="$c1" -v b="$c2" 'BEGIN { printf "%.3f\n", a + b }' >>"$tmp/floor.cpu"
done
n_srl=$(tcpdump -r "$tmp/srl.pcap" 2>/dev/null | wc -l)
n_td=$(tcpdump -r "$tmp/tcpdump.pcap" 2>/dev/null | wc -l)
[[ $n_srl -eq $n_td ]] || { echo "outputs differ: srl $n_srl packets, tcpdump $n_td" >&2; exit 1; }
s=$(median <"$tmp/srl.cpu"); t=$(median <"$tmp/tcpdump.cpu"); f=$(median <"$tmp/floor.cpu")
sw=$(median <"$tmp/srl.wall"); tw=$(median <"$tmp/tcpdump.wall")
echo "capture: $packets packets, $size MB; both wrote $n_srl packets"
printf "%-10s %10s %10s %14s\n" tool "cpu s" "wall s" "ns/packet cpu"
awk -v s="$s" -v t="$t" -v f="$f" -v sw="$sw" -v tw="$tw" -v n="$packets" 'BEGIN {
  printf "%-10s %10.3f %10.3f %14.1f\n", "srl", s, sw, s * 1e9 / n
  printf "%-10s %10.3f %10.3f %14.1f\n", "tcpdump", t, tw, t * 1e9 / n
  printf "%-10s %10.3f %10s %14.1f\n", "floor", f, "-", f * 1e9 / n
  printf "tcpdump cpu / srl cpu = %.2f\n", t / s
  if (s > f) printf "above the floor (dd read + dd write): tcpdump / srl = %.2f\n", (t - f) / (s - f) }'
