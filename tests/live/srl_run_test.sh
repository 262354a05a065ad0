#!/usr/bin/env bash
# Live test of `srl run` on a veth pair between two network namespaces:
# exact counts of real traffic in native and generic XDP mode, clean-up
# after a normal exit, after a failure injected at every deploy step, and
# after SIGKILL followed by the next run. Needs root; exits 77 (skipped)
# without it.
# Usage: srl_run_test.sh SRL
set -uo pipefail
srl=$(realpath "$1")
. "$(dirname "$0")/lib.sh" srl
make_hosts
# Resolve ARP first, so that the counted run sees only the test's datagrams.
ip netns exec "$a" ping -c 1 -W 2 10.77.0.2 >/dev/null || { echo "no connectivity" >&2; exit 1; }

hooked() { xdp_attached || tc_attached; }
wait_attached() {  # up to 10 s
  for _ in $(seq 100); do hooked && return 0; sleep 0.1; done
  return 1
}
final_count() {  # blocks counted by the count node in the last JSON line
  python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
assert last["final"], last
print(next(n["blocks"] for n in last["nodes"] if n["filter"] == "count"))' "$1"
}

request='(ipv4) > (udp) > (port, which=dst) 53> (count)'
# tc-clsact: TC as kernels before 6.6 attach it (a cls_bpf filter on the
# clsact qdisc, forced by SRL_TC_ATTACH where the kernel has tcx).
for mode in native generic tc tc-clsact; do
  snapshot
  if [[ $mode == tc* ]]; then hook=(--hook tc); else hook=(--xdp-mode "$mode"); fi
  attach=tcx; [[ $mode == tc-clsact ]] && attach=clsact
  SRL_TC_ATTACH=$attach ip netns exec "$b" "$srl" run --dev vb "${hook[@]}" --duration 4 --bpffs "$bpffs" -j \
    -e "$request" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  if wait_attached; then
    send_dns 137 59
    wait "$pid"; rc=$?
    [[ $rc -eq 0 ]] && ok "$mode: exit 0" || fail "$mode: exit $rc: $(cat "$tmp/err")"
    want="XDP $mode"; [[ $mode == tc ]] && want="TC ingress (tcx link)"
    [[ $mode == tc-clsact ]] && want="TC ingress (cls_bpf"
    grep -qF "$want" "$tmp/err" && ok "$mode: reports the hook" || fail "$mode: hook not reported: $(cat "$tmp/err")"
    n=$(final_count "$tmp/out")
    [[ $n == 137 ]] && ok "$mode: counted 137 of 137" || fail "$mode: counted $n, expected 137"
  else
    kill "$pid" 2>/dev/null; wait "$pid"
    fail "$mode: never attached: $(cat "$tmp/err")"
  fi
  nothing_left "$mode"
done

# Two srl runs on one device's TC hook where the kernel has no tcx: each
# takes a priority of srl's on the clsact qdisc, both count every datagram
# (what the plan offers deploys), and the one that made the qdisc, ending
# last, removes it.
snapshot
SRL_TC_ATTACH=clsact ip netns exec "$b" "$srl" run --dev vb --hook tc --duration 7 --bpffs "$bpffs" -j \
  -e "$request" >"$tmp/out1" 2>"$tmp/err1" &
pid1=$!
wait_attached || fail "clsact, first run: never attached: $(cat "$tmp/err1")"
SRL_TC_ATTACH=clsact ip netns exec "$b" "$srl" run --dev vb --hook tc --duration 3 --bpffs "$bpffs" -j \
  -e "$request" >"$tmp/out2" 2>"$tmp/err2" &
pid2=$!
for _ in $(seq 100); do
  [[ $(tc -n "$b" filter show dev vb ingress 2>/dev/null | grep -c 'bpf.*direct-action') -ge 2 ]] && break
  sleep 0.1
done
[[ $(tc -n "$b" filter show dev vb ingress | grep -c 'bpf.*direct-action') -eq 2 ]] \
  && ok "clsact: a second srl run shares the TC hook" \
  || fail "clsact: second run not attached: $(cat "$tmp/err2")"
send_dns 41 7
wait "$pid2"; rc2=$?
wait "$pid1"; rc1=$?
n1=$(final_count "$tmp/out1") n2=$(final_count "$tmp/out2")
[[ $rc1 -eq 0 && $rc2 -eq 0 && $n1 == 41 && $n2 == 41 ]] \
  && ok "clsact: both runs counted 41 of 41" \
  || fail "clsact: exits $rc1/$rc2, counted $n1 and $n2 of 41: $(cat "$tmp/err1" "$tmp/err2")"
[[ -z $(tc -n "$b" qdisc show dev vb | grep clsact) ]] && ok "clsact: its maker removed the qdisc last" \
  || fail "clsact: qdisc left: $(tc -n "$b" qdisc show dev vb)"
nothing_left "clsact, two runs"

# Counting by class in the kernel (XDP and TC): per destination port,
# exactly.
for hook in xdp tc; do
  snapshot
  ip netns exec "$b" "$srl" run --dev vb --hook "$hook" --duration 4 --bpffs "$bpffs" -j \
    -e '(udp) > (port, which=dst) > (count, by=class, name=ports)' >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  if wait_attached; then
    send_dns 30 10
    wait "$pid"
    python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
n = next(n for n in last["nodes"] if n["name"] == "ports")
assert n["space"].startswith(sys.argv[2] + ":"), n
got = {c["class"]: c["blocks"] for c in n["classes"]}
assert got == {53: 30, 5353: 10}, got
' "$tmp/out" "$hook" && ok "$hook: count by class: port 53 30, port 5353 10" \
      || fail "$hook: count by class: $(tail -c 500 "$tmp/out") $(tail -2 "$tmp/err")"
  else
    kill "$pid" 2>/dev/null; wait "$pid"
    fail "$hook: count by class: never attached: $(cat "$tmp/err")"
  fi
  nothing_left "$hook: count by class"
done

# `srl run` plans with the same cost profile as `srl plan`: where the
# profile makes native XDP on a veth dear and TC cheap, both choose TC; with
# --no-profile (hooks cost nothing) both choose XDP.
hook_profile() {  # FILE TC-NS XDP-NATIVE-NS XDP-GENERIC-NS: a profile of a veth's hooks
  printf '{"srl_profile_version": 1, "host": "live-test", "hooks": {"veth": {%s, %s, %s}}}\n' \
    "\"tc\": {\"ns_per_block\": $2, \"ns_per_byte\": 0}" \
    "\"xdp-native\": {\"ns_per_block\": $3, \"ns_per_byte\": 0.03}" \
    "\"xdp-generic\": {\"ns_per_block\": $4, \"ns_per_byte\": 0}" >"$1"
}
hook_profile "$tmp/profile.json" 20 330 130
# Where TC is the dearest and generic XDP cheaper than native (and than a
# packet socket), both choose XDP in generic mode, and the run attaches in
# that mode.
hook_profile "$tmp/profile-generic.json" 200 150 30
for costs in "--profile $tmp/profile.json:TC ingress:tc:vb" \
  "--profile $tmp/profile-generic.json:XDP generic:xdp:vb" "--no-profile:XDP native:xdp:vb"; do
  IFS=: read -r flag want planned space <<<"$costs"
  snapshot
  ip netns exec "$b" "$srl" plan --dev vb $flag -e "$request" >"$tmp/plan" 2>&1
  grep -Eq "^n0 +rx +rx +$planned:$space " "$tmp/plan" && ok "plan $flag: rx at $planned" \
    || fail "plan $flag: expected rx at $planned: $(head -3 "$tmp/plan")"
  ip netns exec "$b" "$srl" run --dev vb $flag --duration 1 --bpffs "$bpffs" -e "$request" >"$tmp/out" 2>&1
  rc=$?
  [[ $rc -eq 0 ]] && grep -q "vb: $want" "$tmp/out" && ok "run $flag: deploys on $want, as planned" \
    || fail "run $flag: expected $want (exit $rc): $(cat "$tmp/out")"
  nothing_left "run $flag"
done
# --xdp-mode fixes the mode whatever the profile measured.
snapshot
ip netns exec "$b" "$srl" run --dev vb --profile "$tmp/profile-generic.json" --xdp-mode native \
  --duration 1 --bpffs "$bpffs" -e "$request" >"$tmp/out" 2>&1
rc=$?
[[ $rc -eq 0 ]] && grep -q "vb: XDP native" "$tmp/out" && ok "run --xdp-mode native: native, as fixed" \
  || fail "run --xdp-mode native: expected XDP native (exit $rc): $(cat "$tmp/out")"
nothing_left "run --xdp-mode native"
# A hook that runs is a fact for the next plan: its mode stays (srl's
# program swaps in, or joins libxdp's dispatcher, in that mode).
snapshot
ip netns exec "$b" "$srl" run --hook xdp --xdp-mode generic --dev vb --duration 20 \
  --bpffs "$bpffs" -e "$request" >/dev/null 2>"$tmp/err1" &
pid=$!
if wait_attached; then
  ip netns exec "$b" "$srl" spaces --dev vb -j --no-profile >"$tmp/spaces" 2>&1
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
x = [s for s in j["spaces"] if s["id"] == "xdp:vb"][0]
assert x["mode"] == "generic" and x.get("mode_fixed"), x
assert any("vb: XDP in generic mode: its hook runs srl" in n for n in j["notes"]), j["notes"]
' "$tmp/spaces" && ok "spaces: xdp:vb in the running hook's generic mode, said in a note" \
    || fail "spaces: expected xdp:vb generic and fixed: $(head -c 600 "$tmp/spaces")"
  ip netns exec "$b" "$srl" run --dev vb --xdp-mode native --duration 1 --bpffs "$bpffs" \
    -e "$request" >/dev/null 2>"$tmp/err"
  rc=$?
  [[ $rc -ne 0 ]] && grep -q "runs srl's program in generic mode" "$tmp/err" \
    && ok "run --xdp-mode native beside a generic hook: refused before deploying (exit $rc)" \
    || fail "run --xdp-mode native beside a generic hook: exit $rc: $(cat "$tmp/err")"
else
  fail "generic run: never attached: $(cat "$tmp/err1")"
fi
kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
nothing_left "runs beside a generic hook"

# The engine runs the workers the plan chose: http at 3 Mpps needs more
# than a core, so with --workers 2 the plan replicates it over both cores
# and the engine runs two named worker threads; at the default rate one.
for case in "3e6:2" "1e6:1"; do
  IFS=: read -r rate want <<<"$case"
  snapshot
  ip netns exec "$b" "$srl" run --dev vb --no-profile --workers 2 --rate "$rate" --duration 3 \
    --bpffs "$bpffs" -e '(tcp) > (http) > (count)' >"$tmp/out" 2>&1 &
  pid=$!
  threads=0
  for _ in $(seq 50); do
    sleep 0.1
    grep -q "userspace engine" "$tmp/out" || continue
    sleep 0.3
    threads=$(cat /proc/"$pid"/task/*/comm 2>/dev/null | grep -c '^srl-worker-')
    break
  done
  wait "$pid"
  rc=$?
  workers=$([[ $want -gt 1 ]] && echo "$want workers" || echo "1 worker")
  [[ $rc -eq 0 ]] && grep -q "the plan runs the userspace part on $want of at most 2 workers" "$tmp/out" \
    && grep -q "userspace engine: $workers" "$tmp/out" \
    && [[ $threads -eq $want ]] \
    && ok "--rate $rate --workers 2: the plan chose $want, the engine runs $want ($threads worker threads)" \
    || fail "--rate $rate --workers 2: expected $want workers (exit $rc, $threads threads): $(cat "$tmp/out")"
  nothing_left "--rate $rate --workers 2"
done

# A failure at each deploy step leaves nothing behind.
for step in compile load attach; do
  snapshot
  SRL_FAIL_AT=$step ip netns exec "$b" "$srl" run --dev vb --duration 1 --bpffs "$bpffs" \
    -e "$request" >/dev/null 2>"$tmp/err"
  rc=$?
  [[ $rc -eq 1 ]] && grep -q "injected failure at step '$step:vb'" "$tmp/err" && ok "fail at $step: exit 1" \
    || fail "fail at $step: exit $rc: $(cat "$tmp/err")"
  nothing_left "fail at $step"
done

# SIGKILL leaves the datapath running; the next run removes it. XDP and
# tcx links go with their pins (the next run detaches a tcx link first, as
# a TC filter, which is not a link, because it still runs the killed run's
# pinned program).
killed_run() {  # HOOK ATTACHED-CHECK
  local hook=$1 attached=$2 pid
  snapshot
  ip netns exec "$b" "$srl" run --hook "$hook" --dev vb --bpffs "$bpffs" -e "$request" >/dev/null 2>&1 &
  pid=$!
  wait_attached || fail "$hook kill: never attached"
  sleep 0.5
  kill -KILL "$pid"; wait "$pid" 2>/dev/null
  $attached && ok "$hook: after SIGKILL the datapath keeps running" || fail "$hook: after SIGKILL: nothing attached"
  ip netns exec "$b" "$srl" run --dev vb --duration 1 --bpffs "$bpffs" -e "$request" >/dev/null 2>"$tmp/err"
  grep -q "removed the datapath of ended run $pid" "$tmp/err" && ok "$hook: next run removes the killed run's datapath" \
    || fail "$hook: next run did not clean up: $(cat "$tmp/err")"
  # A clsact qdisc the killed run added stays (only its creator removes it).
  tc -n "$b" qdisc del dev vb clsact 2>/dev/null
  nothing_left "$hook: after SIGKILL and the next run"
}
killed_run xdp xdp_attached
killed_run tc tc_attached

# A userspace part hangs off the TC hook through the copy ring.
snapshot
ip netns exec "$b" "$srl" run --dev vb --hook tc --duration 1 --bpffs "$bpffs" -e '(tcp) > (http) > (count)' >"$tmp/out" 2>&1
[[ $? -eq 0 ]] && grep -q "vb: 1 exit(s) to userspace (1 copy, 0 take)" "$tmp/out" && ok "TC with a userspace part runs, copying" \
  || fail "TC with a userspace part: $(tail -5 "$tmp/out")"
nothing_left "TC with a userspace part"

# Headers beyond the skb's linear part, at TC: frames of 6,000 bytes sent
# through AF_PACKET arrive with only the Ethernet header linear; the parse
# runs out there, the program makes the block linear and parses again, and
# a tcpdump expression reads byte 4,000 of the UDP payload through the
# load-bytes helper. Every one of them is counted by both.
ip -n "$a" link set va mtu 9000 && ip -n "$b" link set vb mtu 9000
big_frames() {  # N
  ip netns exec "$a" python3 -c '
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s & 0xFFFF) + (s >> 16); s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
dst = bytes.fromhex(sys.argv[2].replace(":", ""))
src = bytes.fromhex(open("/sys/class/net/va/address").read().strip().replace(":", ""))
payload = bytearray(b"q" * 5900); payload[4000 - 8] = 0x41
udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("10.77.0.1"), socket.inet_aton("10.77.0.2"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("va", 0))
for _ in range(int(sys.argv[1])): s.send(dst + src + b"\x08\x00" + ip + udp)
' "$1" "$(ip netns exec "$b" cat /sys/class/net/vb/address)"
}
snapshot
ip netns exec "$b" "$srl" run --dev vb --hook tc --duration 4 --bpffs "$bpffs" -j \
  -e '(ipv4) > (udp) > (port, which=dst) 53> (count, name=port53); (bpf, expr="udp[4000] = 0x41") > (count, name=deep)' \
  >"$tmp/out" 2>"$tmp/err" &
pid=$!
if wait_attached; then
  big_frames 41
  wait "$pid"
  counts=$(python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
print(" ".join(str(n["blocks"]) for n in last["nodes"] if n.get("name") in ("port53", "deep")))' "$tmp/out")
  [[ $counts == "41 41" ]] && ok "TC, headers past the linear part: parsed and read, 41 and 41" \
    || fail "TC, headers past the linear part: counted '$counts', expected '41 41': $(tail -3 "$tmp/err")"
else
  kill "$pid" 2>/dev/null; wait "$pid"
  fail "TC, headers past the linear part: never attached: $(cat "$tmp/err")"
fi
nothing_left "TC, headers past the linear part"
ip -n "$a" link set va mtu 1500 && ip -n "$b" link set vb mtu 1500

summary
