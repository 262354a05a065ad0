#!/usr/bin/env bash
# controld end to end, through the real daemon and the srl CLI, on a veth
# pair between two network namespaces with real traffic:
# - apply, stats, ls, show, rm; two requests on one device share its hook,
#   and counters carry over when the program is swapped;
# - replacing a request under traffic loses no packet: a request that is
#   never replaced counts every packet sent while another is replaced;
# - a failure injected at every step of a transaction, and a crash at every
#   step followed by a restart, leave the machine exactly as before, with
#   nothing leaked (a removal a crash cut did not happen);
# - a member of the daemon's group and an outsider are each refused what
#   they may not do.
# Needs root; exits 77 (skipped) without it.
# Usage: requests_live_test.sh CONTROLD SRL
set -uo pipefail
controld=$(realpath "$1")
srl=$(realpath "$2")
. "$(dirname "$0")/../live/lib.sh" srld
make_hosts
ip netns exec "$a" ping -c 1 -W 2 10.77.0.2 >/dev/null || { echo "no connectivity" >&2; exit 1; }
# Other users must reach the socket (the member test); files they name go
# under $tmp/users, theirs.
chmod 755 "$tmp"
mkdir -p "$tmp/users"
chown nobody:nogroup "$tmp/users"
export SRL_SOCKET=$tmp/controld.sock
state=$tmp/state.db
start_daemon() {  # [ENV=VALUE...]: the daemon in $b, with test hooks
  env "$@" ip netns exec "$b" "$controld" --socket "$SRL_SOCKET" --group nogroup \
    --state "$state" --bpffs "$bpffs" --metrics 127.0.0.1:9477 --user-dir "$tmp/users" \
    2>>"$tmp/controld.log" &
  dpid=$!
  await_daemon
}
send() {  # N datagrams to port 53
  ip netns exec "$a" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])): s.sendto(b"q" * 20, ("10.77.0.2", 53))
' "$1"
}
count_of() {  # REQUEST: blocks of its count node
  "$srl" stats -j "$1" 2>/dev/null | python3 -c '
import json, sys
print(next(n["blocks"] for n in json.load(sys.stdin)["nodes"] if n["filter"] == "count"))'
}
# The daemon's open descriptors and its own threads (gRPC's pool, named
# grpc*, timer*, event_engine and so on, grows and shrinks by itself).
held() {
  echo "$(ls /proc/"$dpid"/fd | wc -l) fds," \
    "$(cat /proc/"$dpid"/task/*/comm 2>/dev/null | grep -c '^controld$') threads"
}
names() { "$srl" ls -q 2>/dev/null | tr '\n' ' '; }

web='(udp) > (port) 53> (count)'
all='(udp) > (count)'  # shares rx > udp with web

# --- apply, share a device, carry counters over a swap, remove -----------
snapshot
start_daemon
out=$("$srl" apply -n web --dev vb -e "$web" 2>&1)
[[ $? -eq 0 && $out == *"applied web (4 nodes: 4 kernel, 0 user)"* ]] && ok "apply web" \
  || fail "apply web: $out"
xdp_attached && ok "web: XDP attached to vb" || fail "web: nothing attached"
send 100
n=$(count_of web)
[[ $n == 100 ]] && ok "web counted 100 of 100" || fail "web counted $n, expected 100"
"$srl" apply -n all --dev vb -e "$all" >/dev/null 2>&1 && ok "apply all on the same device (sharing rx > udp)" \
  || fail "apply all"
send 50
n=$(count_of web) m=$(count_of all)
[[ $n == 150 && $m == 50 ]] && ok "after the swap: web 150, all 50 (carried over)" \
  || fail "after the swap: web $n (150), all $m (50)"
# Counters outlive the daemon: stopped, or killed, the next one goes on from
# what the last counted (the kernel programs counted on meanwhile).
stop_daemon
send 10
start_daemon
n=$(count_of web) m=$(count_of all)
[[ $n == 160 && $m == 60 ]] && ok "restart: web 160, all 60, counted on while no daemon ran" \
  || fail "after a restart: web $n (160), all $m (60)"
kill -KILL "$dpid"; wait "$dpid" 2>/dev/null; dpid=""
send 10
start_daemon
n=$(count_of web) m=$(count_of all)
[[ $n == 170 && $m == 70 ]] && ok "after SIGKILL: web 170, all 70" \
  || fail "after SIGKILL: web $n (170), all $m (70)"
metrics=$(ip netns exec "$b" python3 -c '
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=5).read().decode())')
[[ $metrics == *'srl_node_blocks_total{request="web",node="udp>port[53]>count",filter="count",space="xdp:vb"} 170'* \
   && $metrics == *"srl_requests 2"* ]] && ok "Prometheus metrics: web's count node at 170" \
  || fail "metrics: $(grep -m3 'count\|srl_requests' <<<"$metrics")"
# The counters' one shape (docs/counters.md): names, versioned, and in the
# text table; rates in the Watch stream's second report.
"$srl" stats -j web 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["srl_counters_version"] == 1 and r["time"].endswith("Z"), r
n = {x["name"]: x for x in r["nodes"]}
assert set(n) == {"rx", "udp", "udp>port", "udp>port[53]>count"}, n
c = n["udp>port[53]>count"]
assert c["node"] == "n3" and c["blocks"] == 170 and c["dropped"] == 0 and c["lost"] == 0, c
assert c["blocks_per_s"] is None, c
' && ok "stats -j: version 1, every node named, web's count at 170" || fail "stats -j: $("$srl" stats -j web 2>&1 | head -c 600)"
out=$("$srl" stats web 2>&1)
[[ $out == *"n3   udp>port[53]>count count"* ]] && ok "stats: the names in the table" \
  || fail "stats: $out"
timeout 5 "$srl" stats -w -j --interval 0.3 web >"$tmp/watch" 2>/dev/null
python3 -c '
import json, sys
reports = [json.loads(l)["counters"] for l in open(sys.argv[1]) if "counters" in l]
assert len(reports) >= 2, reports
assert reports[0]["interval_s"] is None and reports[1]["interval_s"] > 0.2, reports[:2]
assert all(n["blocks_per_s"] == 0 for n in reports[1]["nodes"]), reports[1]
' "$tmp/watch" && ok "stats -w: rates from the second report on (0 per second: no traffic)" \
  || fail "stats -w: $(head -c 600 "$tmp/watch")"
out=$("$srl" plan -n web --dev vb -e '(udp) > (port) 54> (count)' 2>&1)
[[ $? -eq 0 && $out == *"replace web"* && $out == *"+ web/n2 port xdp:vb"* \
   && $out == *"swap the program on the xdp hook of vb in one update (shared with all)"* ]] \
  && ok "srl plan -n web: the changes against what runs" || fail "plan diff: $out"
out=$("$srl" apply -n web --dev vb -e "$web" 2>&1)
[[ $? -eq 1 && $out == *"a request named web exists"* ]] && ok "apply over a name: refused" \
  || fail "apply over a name: $out"
[[ $(names) == "all web " ]] && ok "srl ls: all web" || fail "srl ls: $(names)"
out=$("$srl" spaces --socket "$SRL_SOCKET" --dev vb 2>&1)
[[ $? -eq 0 && $out == *"xdp:vb"* ]] && ok "srl spaces through the daemon" || fail "spaces: $out"
out=$("$srl" show web 2>&1)
[[ $out == *"(udp) > (port) 53> (count)"* && $out == *"xdp:vb"* ]] && ok "srl show web" \
  || fail "srl show: $out"

# --- replace under traffic: not one packet without a program --------------
ip netns exec "$a" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20000):
    s.sendto(b"q" * 20, ("10.77.0.2", 53))
    if i % 100 == 0: time.sleep(0.01)
' &
sender=$!
before=$(count_of all)
replaced=0
for i in $(seq 10); do
  port=$((53 + i % 2 * 1000))
  "$srl" apply -n web --replace --dev vb -e "(udp) > (port) ${port}> (count)" >/dev/null 2>&1 \
    && replaced=$((replaced + 1))
done
wait "$sender"
after=$(count_of all)
[[ $replaced -eq 10 ]] && ok "10 replaces under traffic" || fail "$replaced of 10 replaces"
[[ $((after - before)) -eq 20000 ]] && ok "replace under traffic: 20000 of 20000 packets counted" \
  || fail "replace under traffic: $((after - before)) of 20000 counted"
echo "replace: $((after - before)) of 20000 packets seen by a program during 10 replaces"

# With a userspace part in the unit (dns behind AF_XDP), every rebuild binds
# the AF_XDP queue anew: the kernel part still sees every packet; what the
# userspace part misses while no socket is bound is measured.
"$srl" apply -n dnsq --dev vb -e '(udp) > (port) 53> (dns) > (count)' >/dev/null 2>&1 \
  || fail "apply dnsq"
ip netns exec "$a" python3 -c '
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5000):
    s.sendto(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00"
             + struct.pack("!HH", 1, 1), ("10.77.0.2", 53))
    if i % 100 == 0: time.sleep(0.01)
' &
sender=$!
all0=$(count_of all) dns0=$(count_of dnsq)
for i in $(seq 5); do
  port=$((53 + i % 2 * 1000))
  "$srl" apply -n web --replace --dev vb -e "(udp) > (port) ${port}> (count)" >/dev/null 2>&1 \
    || fail "replace web next to dnsq"
done
wait "$sender"
sleep 0.3
all1=$(count_of all) dns1=$(count_of dnsq)
[[ $((all1 - all0)) -eq 5000 ]] \
  && ok "rebuilds with a userspace part: the kernel part counted 5000 of 5000" \
  || fail "rebuilds with a userspace part: the kernel part counted $((all1 - all0)) of 5000"
echo "rebuilds with a userspace part: userspace got $((dns1 - dns0)) of 5000 during 5 rebuilds"
"$srl" rm dnsq >/dev/null 2>&1

"$srl" rm web all >/dev/null 2>&1 && ok "srl rm web all" || fail "srl rm"
! xdp_attached && ok "rm: nothing attached" || fail "rm: XDP left on vb"
left=$(new_objects 5)
[[ -z $left ]] && ok "rm: no srl program or map left" || fail "rm: left $left"
[[ -z $(pins) ]] && ok "rm: no pins left" || fail "rm: pins left: $(pins)"
stop_daemon

# --- the daemon down: kernel datapaths keep running, and a restart takes
# them over without a gap (the new program is swapped into the pinned hook) --
rm -f "$state" "$state"-*
snapshot
start_daemon
"$srl" apply -n guard --dev vb -e '(udp) > (port) 9999> (drop)' >/dev/null 2>&1 \
  || fail "apply guard"
count_received 9999 7 >"$tmp/received" &
receiver=$!
ip netns exec "$a" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5000):
    s.sendto(b"x", ("10.77.0.2", 9999))
    if i % 100 == 0: time.sleep(0.01)
' &
sender=$!
sleep 0.2
stop_daemon
xdp_attached && ok "daemon down: the XDP program still runs" || fail "daemon down: detached"
sleep 0.2
start_daemon
wait "$sender"
wait "$receiver"
[[ $(cat "$tmp/received") == 0 ]] \
  && ok "daemon stopped and restarted under traffic: 0 of 5000 datagrams got past the drop" \
  || fail "restart under traffic: $(cat "$tmp/received") of 5000 datagrams got past the drop"
[[ $(names) == "guard " ]] && ok "restart: guard is up again" || fail "restart: '$(names)'"
# A request with a userspace part: while the daemon is down its kernel part
# runs on and what went up reaches the stack (no socket to take it).
"$srl" apply -n dnsq --dev vb -e '(udp) > (port) 5353> (dns) > (count)' >/dev/null 2>&1 \
  || fail "apply dnsq"
stop_daemon
xdp_attached || fail "dnsq: detached while the daemon is down"
ip netns exec "$b" timeout 5 python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.0.2", 5353))
s.settimeout(3)
n = 0
try:
    while n < 50:
        s.recv(100); n += 1
except OSError:
    pass
print(n)' >"$tmp/received" &
receiver=$!
sleep 0.3
send_dns() {  # N DNS queries to port 5353
  ip netns exec "$a" python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00"
             + struct.pack("!HH", 1, 1), ("10.77.0.2", 5353))' "$1"
}
send_dns 50
wait "$receiver"
[[ $(cat "$tmp/received") == 50 ]] \
  && ok "daemon down: blocks bound for userspace reach the stack (50 of 50)" \
  || fail "daemon down: the host received $(cat "$tmp/received") of 50"
start_daemon
send_dns 30
sleep 0.3
n=$(count_of dnsq)
[[ $n == 30 ]] && ok "restart: dnsq's userspace part counts again (30 of 30)" \
  || fail "restart: dnsq counted $n of 30"
"$srl" rm guard dnsq >/dev/null 2>&1
stop_daemon
! xdp_attached && [[ -z $(new_objects 5) && -z $(pins) ]] && ok "guard removed: nothing left" \
  || fail "guard removed: left $(new_objects 1) $(pins)"

# --- a failure at every step: the state before, nothing leaked -----------
# Step N of applying web alone, of applying it next to `all` (a swap), and
# of a request with a userspace part (engine, AF_XDP sockets).
dns='(udp) > (port) 53> (dns) > (count)'
for case in "none web" "all web" "none dns"; do
  read -r base what <<<"$case"
  text=$web
  [[ $what == dns ]] && text=$dns
  for n in $(seq 1 12); do
    rm -f "$state" "$state"-*
    if [[ $base == all ]]; then
      start_daemon || break
      "$srl" apply -n all --dev vb -e "$all" >/dev/null 2>&1
      stop_daemon
    fi
    snapshot
    start_daemon SRL_FAIL_AT="$n" || break
    held_before=$(held)
    out=$("$srl" apply -n web --dev vb -e "$text" 2>&1)
    rc=$?
    [[ $rc -eq 0 || $(held) == "$held_before" ]] \
      || fail "$what next to $base, fail at $n: the daemon held $held_before, now $(held)"
    if [[ $rc -eq 0 ]]; then
      ok "$what next to $base: apply has $((n - 1)) steps; each failure left the state before"
      "$srl" rm web all >/dev/null 2>&1
      stop_daemon
      break
    fi
    expect="all "
    [[ $base == none ]] && expect=""
    [[ $rc -eq 1 && $out == *"injected failure at step $n "* && $(names) == "$expect" ]] \
      || fail "base $base, fail at $n: exit $rc, requests '$(names)': $out"
    if [[ $base == all ]]; then
      c0=$(count_of all); send 10; c1=$(count_of all)
      [[ $((c1 - c0)) -eq 10 ]] || fail "base all, fail at $n: all no longer counts ($c0 -> $c1)"
      "$srl" rm all >/dev/null 2>&1
    fi
    xdp_attached && fail "$what next to $base, fail at $n: XDP left attached"
    stop_daemon
    left=$(new_objects 5)
    [[ -z $left ]] || fail "base $base, fail at $n: left $left"
    [[ -z $(pins) ]] || fail "base $base, fail at $n: pins left: $(pins)"
  done
done

# --- a crash at every step, then a restart: the state before, no leak -----
for n in $(seq 1 12); do
  rm -f "$state" "$state"-*
  start_daemon || break
  "$srl" apply -n all --dev vb -e "$all" >/dev/null 2>&1
  stop_daemon
  snapshot
  start_daemon SRL_CRASH_AT="$n" || break
  "$srl" apply -n web --dev vb -e "$web" >/dev/null 2>&1
  rc=$?
  if [[ $rc -eq 0 ]]; then
    ok "crash: apply has $((n - 1)) steps"
    "$srl" rm web all >/dev/null 2>&1
    stop_daemon
    break
  fi
  wait "$dpid" 2>/dev/null
  drc=$?
  dpid=""
  [[ $drc -eq 86 ]] || fail "crash at $n: the daemon ended with $drc, not the crash hook's 86"
  [[ $rc -eq 1 ]] || fail "crash at $n: the client got exit $rc"
  start_daemon || break
  # `all` is up again, `web` never finished: the state before.
  [[ $(names) == "all " ]] || fail "crash at $n: requests after recovery '$(names)'"
  c0=$(count_of all); send 10; c1=$(count_of all)
  [[ $((c1 - c0)) -eq 10 ]] || fail "crash at $n: all does not count after recovery"
  "$srl" rm all >/dev/null 2>&1
  stop_daemon
  left=$(new_objects 5)
  [[ -z $left ]] || fail "crash at $n: left $left"
  [[ -z $(pins) ]] || fail "crash at $n: pins left: $(pins)"
  xdp_attached && fail "crash at $n: XDP left on vb"
done
ok "crash at every step: recovered to the state before, nothing leaked"

# A crash at every step of removing web (next to all): the client is told it
# failed, and after recovery both run (the state before: a removal is done
# only once committed); removing web again works; nothing leaked.
for n in $(seq 1 12); do
  rm -f "$state" "$state"-*
  start_daemon || break
  "$srl" apply -n all --dev vb -e "$all" >/dev/null 2>&1
  "$srl" apply -n web --dev vb -e "$web" >/dev/null 2>&1
  stop_daemon
  snapshot
  start_daemon SRL_CRASH_AT="$n" || break
  "$srl" rm web >/dev/null 2>&1
  rc=$?
  if [[ $rc -eq 0 ]]; then
    ok "crash: removing web has $((n - 1)) steps; after each crash and recovery, the state before"
    "$srl" rm all >/dev/null 2>&1
    stop_daemon
    break
  fi
  wait "$dpid" 2>/dev/null
  dpid=""
  start_daemon || break
  [[ $(names) == "all web " ]] || fail "crash in rm at $n: requests after recovery '$(names)'"
  c0=$(count_of all); w0=$(count_of web); send 10; c1=$(count_of all); w1=$(count_of web)
  [[ $((c1 - c0)) -eq 10 && $((w1 - w0)) -eq 10 ]] \
    || fail "crash in rm at $n: all counted $((c1 - c0)), web $((w1 - w0)) of 10 after recovery"
  "$srl" rm web >/dev/null 2>&1 || fail "crash in rm at $n: removing web again failed"
  "$srl" rm all >/dev/null 2>&1
  stop_daemon
  left=$(new_objects 5)
  [[ -z $left ]] || fail "crash in rm at $n: left $left"
  [[ -z $(pins) ]] || fail "crash in rm at $n: pins left: $(pins)"
done

# --- who may do what -------------------------------------------------------
rm -f "$state" "$state"-*
start_daemon
"$srl" apply -n roots --dev vb -e "$all" >/dev/null 2>&1
as_member() { setpriv --reuid=nobody --regid=nogroup --init-groups "$@"; }
as_outsider() { setpriv --reuid=daemon --regid=daemon --init-groups "$@"; }
out=$(as_member "$srl" apply -n mine --dev vb -e "$web" 2>&1)
[[ $? -eq 0 ]] && ok "member: applies a counting request" || fail "member apply: $out"
out=$(as_member "$srl" apply -n dropper --dev vb -e "(udp) > (drop)" 2>&1)
[[ $? -eq 1 && $out == *"would run in the kernel, where this caller may place only"* ]] \
  && ok "member: a kernel drop is refused" || fail "member drop: $out"
# A drop in userspace would take every block that reaches it from the host.
out=$(as_member "$srl" apply -n taker --dev vb -e "(udp) > (dns) > (drop)" 2>&1)
[[ $? -eq 1 && $out == *"would take blocks from the host's stack in userspace"* ]] \
  && ok "member: a userspace drop (a take) is refused" || fail "member take: $out"
# Watching in userspace copies: allowed, and removed again.
out=$(as_member "$srl" apply -n watcher --dev vb -e "(udp) > (dns) > (count)" 2>&1)
[[ $? -eq 0 ]] && ok "member: a userspace watch is allowed" || fail "member watch: $out"
# It watches copies: the host still gets every datagram.
count_received 7777 3 >"$tmp/member_got" &
receiver=$!
sleep 0.5
ip netns exec "$a" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20): s.sendto(b"m", ("10.77.0.2", 7777))'
wait "$receiver"
[[ $(cat "$tmp/member_got") == 20 ]] \
  && ok "member: the host got 20 of 20 datagrams while the member's userspace watch ran" \
  || fail "member watch: the host got $(cat "$tmp/member_got") of 20 datagrams"
as_member "$srl" rm watcher >/dev/null 2>&1
out=$(as_member "$srl" ls -q 2>&1)
[[ $out == "mine" ]] && ok "member: sees only their own" || fail "member ls: $out"
out=$(as_member "$srl" rm roots 2>&1)
[[ $? -eq 1 && $out == *"no request named roots of nobody"* ]] \
  && ok "member: cannot remove root's (told only that no such request of theirs exists)" \
  || fail "member rm roots: $out"
out=$(as_member "$srl" stats roots 2>&1)
[[ $? -eq 1 && $out == *"no request named roots of nobody"* ]] && ok "member: cannot read root's counters" \
  || fail "member stats roots: $out"
out=$(as_outsider "$srl" ls 2>&1)
[[ $? -eq 1 && ($out == *"Permission denied"* || $out == *"neither root nor in group"*) ]] \
  && ok "outsider: refused" || fail "outsider ls: $out"
out=$("$srl" ls -q 2>&1)
[[ $out == $'mine\nroots' ]] && ok "root sees every request" || fail "root ls: $out"
as_member "$srl" rm mine >/dev/null 2>&1 && ok "member: removes their own" || fail "member rm"
out=$(as_member "$srl" apply -n cap --dev vb -e "(udp) > (port) 53> (dns) > (pcap, file=\"$tmp/mine.pcap\")" 2>&1)
[[ $? -eq 1 && $out == *"outside the directories where this caller may name files ($tmp/users)"* ]] \
  && ok "member: a capture outside the user directory is refused" || fail "member capture outside: $out"
out=$(as_member "$srl" apply -n cap --dev vb -e "(udp) > (port) 53> (dns) > (pcap, file=\"$tmp/users/../mine.pcap\")" 2>&1)
[[ $? -eq 1 && $out == *"outside the directories"* ]] && ok "member: .. does not lead out" \
  || fail "member capture ..: $out"
out=$(as_member "$srl" apply -n cap --dev vb -e "(udp) > (port) 53> (dns) > (pcap, file=\"$tmp/users/dns.pcap\")" 2>&1)
[[ $? -eq 0 ]] && ok "member: a capture in the user directory" || fail "member capture: $out"
ip netns exec "$a" python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    s.sendto(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + struct.pack("!HH", 1, 1), ("10.77.0.2", 53))'
sleep 0.5
as_member "$srl" rm cap >/dev/null 2>&1
[[ $(stat -c %U "$tmp/users/dns.pcap" 2>/dev/null) == nobody ]] \
  && ok "member: the capture file belongs to them" \
  || fail "member capture owner: $(stat -c %U "$tmp/users/dns.pcap" 2>&1)"
n=$(tcpdump -nr "$tmp/users/dns.pcap" 2>/dev/null | wc -l)
[[ $n -eq 20 ]] && ok "member: tcpdump reads 20 of 20 queries from it" || fail "member capture: $n packets"
"$srl" rm roots >/dev/null 2>&1

# A count by class in the kernel through the daemon: its classes in stats
# and metrics, and still there, counting on, after a restart.
classes_of() {  # REQUEST NAME: "CLASS:BLOCKS ..." of that node
  "$srl" stats -j "$1" 2>/dev/null | python3 -c '
import json, sys
n = next(n for n in json.load(sys.stdin)["nodes"] if n["name"] == sys.argv[1])
print(" ".join("%s:%d" % (c["name"] or c["class"], c["blocks"]) for c in n["classes"]))' "$2"
}
"$srl" apply -n ports --dev vb -e '(udp) > (port, which=dst) > (count, by=class, name=by_port)' \
  >/dev/null 2>&1 || fail "apply ports"
send 5
out=$(classes_of ports by_port)
[[ $out == "53:5" ]] && ok "count by class through controld: port 53 5" || fail "count by class: '$out'"
metrics=$(ip netns exec "$b" python3 -c '
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=5).read().decode())')
[[ $metrics == *'srl_node_class_blocks_total{request="ports",node="by_port",filter="count",space="xdp:vb",class="53"} 5'* ]] \
  && ok "count by class: a metric series per class" \
  || fail "count by class metrics: $(grep -m2 class_blocks <<<"$metrics")"
stop_daemon
send 3
start_daemon
out=$(classes_of ports by_port)
[[ $out == "53:8" ]] && ok "count by class: after a restart, 8 (counted on while no daemon ran)" \
  || fail "count by class after a restart: '$out'"
"$srl" rm ports >/dev/null 2>&1
stop_daemon

summary
