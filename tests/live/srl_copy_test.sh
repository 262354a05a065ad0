#!/usr/bin/env bash
# Watching traffic never takes it from the host (docs/language.md "Watching
# and taking"), live on veth pairs in namespaces of its own:
#  1. a UDP server on the watched host receives N of N datagrams while a
#     capture of the same traffic holds N of N: XDP native, XDP generic, TC;
#  2. ping loses nothing while a sample of its packets goes to a fifo that
#     tcpdump reads;
#  3. a tx mirror delivers every selected frame to the far end of another
#     device, and the host still gets each one;
#  4. a full copy ring loses copies, counts them, and the host loses nothing;
#  5. a userspace drop takes: the server gets only what it does not drop;
#  6. beside xdp-filter loaded first, both do their jobs, either goes alone;
#  7. with CONTROLD: 1. and 3. again through the daemon (srl apply, srl rm).
# Nothing is left behind after any of them. Needs root, tcpdump, python3.
# Usage: srl_copy_test.sh SRL [CONTROLD]
set -uo pipefail
srl=$(realpath "$1")
controld=${2:+$(realpath "$2")}
. "$(dirname "$0")/lib.sh" srl-c
command -v tcpdump >/dev/null || { echo "skipped: needs tcpdump"; exit 77; }
make_hosts

# A UDP server on 10.77.0.2:PORT in $b that counts datagrams until it has
# been idle for 2 s, then writes the count to FILE. Returns once it listens.
serve() {  # PORT FILE
  rm -f "$2" "$2.ready"
  ip netns exec "$b" python3 - "$1" "$2" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("10.77.0.2", int(sys.argv[1])))
open(sys.argv[2] + ".ready", "w").close()
s.settimeout(2)
n = 0
try:
    while True:
        s.recv(4096)
        n += 1
except socket.timeout:
    pass
open(sys.argv[2], "w").write(str(n))
PY
  server=$!
  for _ in $(seq 100); do [[ -e $2.ready ]] && break; sleep 0.05; done
}
# Datagrams the host's UDP took in, in $b, so far.
udp_in() { ip netns exec "$b" awk '/^Udp:/ {if (h) {print $2} else h=1}' /proc/net/snmp; }
# N datagrams of SIZE bytes from $a to 10.77.0.2:PORT, GAP seconds apart.
send() {  # N PORT SIZE GAP
  ip netns exec "$a" python3 - "$@" <<'PY'
import socket, sys, time
n, port, size, gap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(bytes(size), ("10.77.0.2", port))
    if gap: time.sleep(gap)
PY
}
wait_attached() {
  for _ in $(seq 100); do
    xdp_attached || tc_attached && return 0
    sleep 0.05
  done
  return 1
}

# 1. Capture and serve the same datagrams.
n=300
for how in "xdp native" "xdp generic" "tc"; do
  set -- $how
  hook=$1 mode=${2:-}
  snapshot
  rm -f "$tmp/cap.pcap" "$tmp/got"
  ip netns exec "$b" "$srl" run --dev vb --hook "$hook" ${mode:+--xdp-mode "$mode"} --duration 6 \
    --bpffs "$bpffs" -e "(udp) > (port, which=dst) 53> (pcap, file=\"$tmp/cap.pcap\")" \
    >"$tmp/out" 2>&1 &
  run=$!
  wait_attached || fail "$how: never attached"
  serve 53 "$tmp/got"
  send $n 53 60 0.002
  wait "$server"
  wait "$run" || fail "$how: srl run failed: $(tail -5 "$tmp/out")"
  got=$(cat "$tmp/got" 2>/dev/null || echo 0)
  captured=$(tcpdump -nr "$tmp/cap.pcap" 'udp dst port 53' 2>/dev/null | wc -l)
  [[ $got -eq $n ]] && ok "$how: the server received $got of $n while srl watched" \
    || fail "$how: the server received $got of $n"
  [[ $captured -eq $n ]] && ok "$how: the capture holds $captured of $n" \
    || fail "$how: the capture holds $captured of $n"
  grep -q "1 exit(s) to userspace (1 copy, 0 take)" "$tmp/out" && ok "$how: the run says it copies" \
    || fail "$how: no copy in the report: $(grep -m3 exit "$tmp/out")"
  nothing_left "$how capture"
done

# 2. ping and a sample into a fifo that tcpdump reads live.
snapshot
fifo=$tmp/sample.fifo
ip netns exec "$b" "$srl" run --dev vb --duration 6 --bpffs "$bpffs" \
  -e "(ip) > (sample, n=10) > (fifo, path=\"$fifo\")" >"$tmp/out" 2>&1 &
run=$!
wait_attached || fail "sample: never attached"
for _ in $(seq 50); do [[ -p $fifo ]] && break; sleep 0.05; done
timeout 10 tcpdump -nr "$fifo" >"$tmp/sampled" 2>/dev/null &
reader=$!
loss=$(ip netns exec "$a" ping -c 100 -i 0.02 -W 1 10.77.0.2 | sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p')
wait "$run"
wait "$reader"
[[ $loss == 0 ]] && ok "ping lost nothing while a sample went to a fifo" || fail "ping lost $loss%"
sampled=$(grep -c ICMP "$tmp/sampled")
[[ $sampled -ge 5 ]] && ok "tcpdump read $sampled sampled packets from the fifo" \
  || fail "tcpdump read $sampled sampled packets from the fifo"
nothing_left "sample to a fifo"

# 3. A tx mirror to a third host: ids0 in $b, its peer idc in $c.
c=srl-c-c-$$
ip netns add "$c"
ip link add ids0 netns "$b" type veth peer name idc netns "$c"
ip -n "$b" link set ids0 up
ip -n "$c" link set idc up
snapshot
ip netns exec "$c" timeout 8 tcpdump -ni idc -w "$tmp/mirror.pcap" 'udp dst port 53' 2>/dev/null &
dump=$!
sleep 1
ip netns exec "$b" "$srl" run --dev vb --duration 5 --bpffs "$bpffs" \
  -e "(udp) > (port, which=dst) 53> (tx, dev=ids0)" >"$tmp/out" 2>&1 &
run=$!
wait_attached || fail "mirror: never attached"
serve 53 "$tmp/got"
send 100 53 60 0.002
wait "$server"
wait "$run"
kill -INT "$dump" 2>/dev/null
wait "$dump"
got=$(cat "$tmp/got" 2>/dev/null || echo 0)
mirrored=$(tcpdump -nr "$tmp/mirror.pcap" 2>/dev/null | wc -l)
[[ $mirrored -eq 100 ]] && ok "the mirror delivered $mirrored of 100 to the far end" \
  || fail "the mirror delivered $mirrored of 100: $(tail -4 "$tmp/out")"
[[ $got -eq 100 ]] && ok "the host still got $got of 100" || fail "the host got $got of 100"
tc_attached && fail "mirror: still attached after the run" || true
nothing_left "tx mirror"
ip netns del "$c"

# 4. A copy ring of 4 KiB: a burst overflows it; the host loses nothing and
# the losses are counted on the channel.
snapshot
ip netns exec "$b" "$srl" run --dev vb --duration 4 --copy-ring-kib 4 --bpffs "$bpffs" -j \
  -e "(udp) > (port, which=dst) 53> (pcap, file=\"$tmp/small.pcap\")" >"$tmp/out" 2>"$tmp/err" &
run=$!
wait_attached || fail "full ring: never attached"
serve 53 "$tmp/got"
before=$(udp_in)
send 2000 53 1000 0
wait "$server"
wait "$run"
got=$(cat "$tmp/got" 2>/dev/null || echo 0)
captured=$(tcpdump -nr "$tmp/small.pcap" 2>/dev/null | wc -l)
lost=$(tail -1 "$tmp/out" | python3 -c '
import json, sys
final = json.loads(sys.stdin.read())
print(sum(c.get("lost", 0) for c in final.get("channels", []) if c["name"].startswith("ringbuf:")))')
[[ $captured -lt 2000 && $((captured + lost)) -eq 2000 ]] \
  && ok "a full ring lost $lost copies, counted; $captured captured" \
  || fail "full ring: captured $captured, counted lost $lost, of 2000"
# The server's socket buffer may overflow on its own in a burst: count
# what the host's UDP took in.
delivered=$(($(udp_in) - before))
[[ $delivered -ge 2000 ]] && ok "the host's UDP took in every datagram ($got reached the server)" \
  || fail "the host's UDP took in $delivered"
nothing_left "full copy ring"

# 5. A userspace drop takes the blocks on its path.
snapshot
ip netns exec "$b" "$srl" run --dev vb --duration 5 --bpffs "$bpffs" \
  -e "(udp) > (port, which=dst) 53> (dns) > (drop)" >"$tmp/out" 2>&1 &
run=$!
wait_attached || fail "take: never attached"
serve 53 "$tmp/got"
send 50 53 60 0.002
wait "$server"
wait "$run"
got=$(cat "$tmp/got" 2>/dev/null || echo 0)
grep -q "1 exit(s) to userspace (0 copy, 1 take)" "$tmp/out" && ok "the run says it takes" \
  || fail "no take in the report: $(grep -m3 exit "$tmp/out")"
# All-zero payloads are not DNS: dns rejects them, yet they were taken.
[[ $got -eq 0 ]] && ok "taken blocks left the stack (the server got $got)" \
  || fail "a take let $got of 50 through"
nothing_left "userspace drop"

# 6. Beside xdp-filter (xdp-tools), loaded first. Where the kernel cannot
# build libxdp's dispatcher (it refuses extension programs), xdp-filter
# holds the XDP hook outright: the plan says so and runs at TC. Both do
# their jobs, and either goes without stopping the other.
if command -v xdp-filter >/dev/null; then
  xf() { ip netns exec "$b" env LIBXDP_BPFFS="$bpffs" xdp-filter "$@" >/dev/null 2>&1; }
  snapshot
  xf load vb && xf port 9999 || fail "xdp-filter did not load"
  capture() {  # FILE SECONDS
    ip netns exec "$b" "$srl" run --dev vb --duration "$2" --bpffs "$bpffs" \
      -e "(udp) > (port, which=dst) 53> (pcap, file=\"$1\")" >"$tmp/out" 2>&1 &
    run=$!
    for _ in $(seq 100); do tc_attached && return 0; sleep 0.05; done
    return 1
  }
  capture "$tmp/xf.pcap" 6 || fail "beside xdp-filter: srl never attached at TC: $(tail -3 "$tmp/out")"
  count_received 9999 3 >"$tmp/dropped" &
  dropped=$!
  serve 53 "$tmp/got"
  send 100 53 60 0.002
  send 50 9999 60 0.002
  wait "$server" "$dropped"
  wait "$run"
  got=$(cat "$tmp/got" 2>/dev/null || echo 0)
  captured=$(tcpdump -nr "$tmp/xf.pcap" 'udp dst port 53' 2>/dev/null | wc -l)
  grep -q "held by program [0-9]* 'xdpfilt_" "$tmp/out" \
    && ok "beside xdp-filter: srl names the program that holds the XDP hook" \
    || fail "beside xdp-filter: the holder is not named: $(grep -i held "$tmp/out")"
  [[ $got -eq 100 && $captured -eq 100 && $(cat "$tmp/dropped") -eq 0 ]] \
    && ok "beside xdp-filter: srl at TC captured $captured of 100, the host got $got; xdp-filter dropped all 50 to 9999" \
    || fail "beside xdp-filter: got $got, captured $captured of 100; $(cat "$tmp/dropped") of 50 passed xdp-filter"
  # srl gone: xdp-filter runs on.
  count_received 9999 2 >"$tmp/dropped" &
  dropped=$!
  send 50 9999 60 0.002
  wait "$dropped"
  xdp_attached && [[ $(cat "$tmp/dropped") -eq 0 ]] && ok "srl gone: xdp-filter still drops" \
    || fail "srl gone: xdp-filter let $(cat "$tmp/dropped") of 50 through"
  # xdp-filter gone: srl runs on (until it is stopped: how long starting
  # and unloading take does not cut the traffic off).
  capture "$tmp/xf2.pcap" 60 || fail "beside xdp-filter: srl never attached at TC again"
  xf unload vb || fail "xdp-filter unload"
  serve 53 "$tmp/got"
  send 100 53 60 0.002
  wait "$server"
  kill -INT "$run" 2>/dev/null
  wait "$run"
  captured=$(tcpdump -nr "$tmp/xf2.pcap" 'udp dst port 53' 2>/dev/null | wc -l)
  [[ $captured -eq 100 ]] && ok "xdp-filter gone: srl captured $captured of 100 on" \
    || fail "xdp-filter gone: srl captured $captured of 100"
  nothing_left "beside xdp-filter"
else
  echo "skipped: beside xdp-filter (xdp-tools is not installed)"
fi

# 7. The same capture through controld.
if [[ -n $controld ]]; then
  export SRL_SOCKET=$tmp/controld.sock
  snapshot
  ip netns exec "$b" "$controld" --socket "$SRL_SOCKET" --state "$tmp/state.db" --bpffs "$bpffs" \
    --copy-area-kib 256 2>>"$tmp/controld.log" &
  dpid=$!
  for _ in $(seq 100); do
    [[ -S $SRL_SOCKET ]] && "$srl" ls -q >/dev/null 2>&1 && break
    sleep 0.05
  done
  out=$("$srl" apply -n cap --dev vb -e "(udp) > (port, which=dst) 53> (pcap, file=\"$tmp/d.pcap\")" 2>&1)
  [[ $? -eq 0 ]] && ok "controld: capture applied" || fail "controld: apply: $out"
  # --copy-area-kib sizes each CPU's area: the map's value is the area,
  # its header (192 bytes) and the slack (65,600 bytes).
  sizes=$(bpftool -j map show 2>/dev/null | python3 -c '
import json, sys
print(" ".join(str(m["bytes_value"]) for m in json.load(sys.stdin) if m.get("name") == "srl_ring0"))')
  [[ $sizes == "$((256 * 1024 + 192 + 65600))" ]] \
    && ok "controld: --copy-area-kib 256 gives areas of 256 KiB" \
    || fail "controld: --copy-area-kib 256: srl_ring0 value sizes '$sizes'"
  serve 53 "$tmp/got"
  send $n 53 60 0.002
  wait "$server"
  "$srl" rm cap >/dev/null 2>&1 || fail "controld: srl rm cap"
  got=$(cat "$tmp/got" 2>/dev/null || echo 0)
  captured=$(tcpdump -nr "$tmp/d.pcap" 'udp dst port 53' 2>/dev/null | wc -l)
  [[ $got -eq $n && $captured -eq $n ]] \
    && ok "controld: the server received $got of $n, the capture holds $captured" \
    || fail "controld: the server received $got, the capture holds $captured, of $n"
  # A tx mirror through the daemon: the far end of ids0 gets every frame,
  # the host too.
  c=srl-c-c-$$
  ip netns add "$c"
  ip link add ids0 netns "$b" type veth peer name idc netns "$c"
  ip -n "$b" link set ids0 up
  ip -n "$c" link set idc up
  ip netns exec "$c" timeout 8 tcpdump -ni idc -w "$tmp/mirror2.pcap" 'udp dst port 53' 2>/dev/null &
  dump=$!
  sleep 1
  out=$("$srl" apply -n mirror --dev vb -e "(udp) > (port, which=dst) 53> (tx, dev=ids0)" 2>&1)
  [[ $? -eq 0 ]] && ok "controld: mirror applied" || fail "controld: apply mirror: $out"
  serve 53 "$tmp/got"
  send 100 53 60 0.002
  wait "$server"
  "$srl" rm mirror >/dev/null 2>&1 || fail "controld: srl rm mirror"
  kill -INT "$dump" 2>/dev/null
  wait "$dump"
  got=$(cat "$tmp/got" 2>/dev/null || echo 0)
  mirrored=$(tcpdump -nr "$tmp/mirror2.pcap" 2>/dev/null | wc -l)
  [[ $mirrored -eq 100 && $got -eq 100 ]] \
    && ok "controld: the mirror delivered $mirrored of 100 to the far end, the host got $got" \
    || fail "controld: the mirror delivered $mirrored of 100, the host got $got"
  ip netns del "$c"
  stop_daemon
  nothing_left "controld capture"
fi

summary
