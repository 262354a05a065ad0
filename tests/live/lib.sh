# Shared by the live tests: two test hosts (network namespaces $a and $b
# joined by a veth pair va/vb), a bpffs of their own, pass/fail counting,
# and the srl BPF objects that exist. Source it after setting `srl`; it
# skips (exit 77) without root, and removes everything on exit.
# Usage: . lib.sh PREFIX    (namespaces PREFIX-a-PID and PREFIX-b-PID)

[[ $(id -u) -eq 0 ]] || { echo "skipped: needs root"; exit 77; }

# Plans use the catalog's costs, not a profile the machine's root happens
# to have calibrated (srl and controld read $SRL_PROFILE first).
export SRL_PROFILE=/nonexistent/srl-test-profile.json

a=$1-a-$$ b=$1-b-$$
tmp=$(mktemp -d)
bpffs=$tmp/bpffs
passed=0 failed=0
# A daemon a test starts sets dpid; it is stopped (SIGTERM) on exit too.
dpid=""
stop_daemon() {
  [[ -n $dpid ]] || return 0
  kill -TERM "$dpid" 2>/dev/null
  wait "$dpid" 2>/dev/null
  dpid=""
}
cleanup() {
  stop_daemon
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  umount "$bpffs" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
summary() {  # the last command of a test: its status
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}

# va (10.77.0.1) in $a, vb (10.77.0.2) in $b, IPv6 off so that no stray
# neighbour discovery reaches a counted run; a bpffs mounted at $bpffs.
make_hosts() {
  ip netns add "$a" && ip netns add "$b" || { echo "cannot create namespaces" >&2; exit 1; }
  ip link add va netns "$a" type veth peer name vb netns "$b"
  ip -n "$a" addr add 10.77.0.1/24 dev va
  ip -n "$b" addr add 10.77.0.2/24 dev vb
  for ns in "$a" "$b"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip -n "$a" link set va up
  ip -n "$b" link set vb up
  mkdir -p "$bpffs" && mount -t bpf bpf "$bpffs"
}

# Ids of srl programs and maps that exist now. Other processes on the
# machine may hold their own, so tests compare against a snapshot taken
# before each step instead of expecting none.
srl_objects() {
  { bpftool prog show 2>/dev/null | awk -F: '/name srl_/ {print "prog " $1}'
    bpftool map show 2>/dev/null | awk -F: '/name srl_/ {print "map " $1}'; } | sort
}
snapshot() { srl_objects >"$tmp/before"; }
# srl objects made since the snapshot and still there after up to SECONDS
# (released programs and maps go after an RCU grace period, AF_XDP sockets
# after their deferred teardown).
new_objects() {  # SECONDS
  local new=""
  for _ in $(seq $(($1 * 10))); do
    new=$(srl_objects | comm -13 "$tmp/before" - | tr '\n' ' ')
    [[ -z $new ]] && break
    sleep 0.1
  done
  echo "$new"
}

# Output is captured before matching: with pipefail, `tc ... | grep -q` fails
# whenever grep exits before tc's next flushed line (SIGPIPE).
xdp_attached() { [[ $(ip -n "$b" link show vb) == *xdp* ]]; }
# An srl program on a tcx link (srl's TC hook where the kernel has tcx).
# bpftool 7.1 names the link type only by its number (BPF_LINK_TYPE_TCX,
# 11) and not the link's device: any srl program on one counts, and the
# tests hook one device at a time.
tcx_attached() {
  local id
  for id in $(bpftool -j link show 2>/dev/null | python3 -c '
import json, sys
print(" ".join(str(l["prog_id"]) for l in json.load(sys.stdin) if l.get("type") in (11, "tcx")))'); do
    [[ $(bpftool prog show id "$id" 2>/dev/null) == *"name srl_"* ]] && return 0
  done
  return 1
}
tc_attached() { [[ $(tc -n "$b" filter show dev vb ingress 2>/dev/null) == *bpf* ]] || tcx_attached; }
# Files pinned under the bpffs's srl directory (directories left empty are
# not pins).
pins() { find "$bpffs/srl" -mindepth 1 ! -type d 2>/dev/null | tr '\n' ' '; }

# Nothing of srl left on vb, among BPF objects, or in the pins; a test
# calls it after each step, with what the step was.
nothing_left() {  # WHAT
  local left=""
  xdp_attached && left+=" xdp-on-vb"
  tc_attached && left+=" tc-filter-on-vb"
  [[ $(tc -n "$b" qdisc show dev vb) == *clsact* ]] && left+=" clsact-qdisc"
  local new
  new=$(new_objects 3)
  [[ -z $new ]] || left+=" ($new)"
  [[ -z $(ls -A "$bpffs/srl/run" 2>/dev/null) ]] || left+=" pins"
  [[ -z $left ]] && ok "$1: nothing left" || fail "$1: left behind:$left"
}

# Until the daemon (dpid) answers `srl ls` on $SRL_SOCKET, at most 30 s;
# a failure names the last lines of its log.
await_daemon() {
  for _ in $(seq 600); do
    [[ -S $SRL_SOCKET ]] && "$srl" ls -q >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  fail "controld did not start: $(tail -3 "$tmp/controld.log")"
  return 1
}

# A UDP server on 10.77.0.2:PORT in $b: prints how many datagrams it got
# in SECONDS (started in the background by the caller).
count_received() {  # PORT SECONDS
  ip netns exec "$b" timeout $(($2 + 10)) python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.0.2", int(sys.argv[1])))
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    s.settimeout(max(0.01, min(0.5, end - time.time())))
    try:
        s.recv(100); n += 1
    except OSError:
        pass
print(n)' "$1" "$2"
}

# About 1,000 datagrams a second from $a to each PORT of 10.77.0.2 for
# SECONDS; prints how many went to each.
send_steady() {  # SECONDS PORT...
  ip netns exec "$a" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + float(sys.argv[1])
ports = [int(p) for p in sys.argv[2:]]
n = 0
while time.time() < end:
    for p in ports: s.sendto(b"x", ("10.77.0.2", p))
    n += 1
    if n % 10 == 0: time.sleep(0.01)
print(n)' "$@"
}

# From $a: N datagrams of 20 bytes to 10.77.0.2:53, then M of 1 byte to
# 10.77.0.2:5353.
send_dns() {  # N M
  ip netns exec "$a" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])): s.sendto(b"q" * 20, ("10.77.0.2", 53))
for _ in range(int(sys.argv[2])): s.sendto(b"x", ("10.77.0.2", 5353))
' "$1" "$2"
}
