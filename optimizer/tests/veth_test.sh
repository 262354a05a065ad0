#!/usr/bin/env bash
# Behaviour of discovery and planning on real devices: a veth pair in a
# network namespace of its own (needs root; exit 77 = skipped otherwise).
# The namespace is removed on any exit. No traffic is sent.
set -euo pipefail
srl=${1:?usage: veth_test.sh PATH/TO/srl}
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
  echo "skipped: needs root and iproute2"
  exit 77
fi
ns=srlopt$$
spaces=$(mktemp)
profile=$(mktemp)
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$spaces" "$profile"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link add va type veth peer name vb
ip -n "$ns" link set va up
ip -n "$ns" link set vb up

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
in_ns() { ip netns exec "$ns" "$@"; }
# Reads a JSON document on stdin and evaluates a Python expression on it (j).
check() {
  python3 -c "import json,sys; j=json.load(sys.stdin); sys.exit(0 if ($1) else 1)" ||
    fail "$2"
}

# Discovery sees both ends, with native XDP (veth implements it) and AF_XDP.
in_ns "$srl" spaces -j --no-profile >"$spaces" || fail "srl spaces failed"
check 'any(s["id"]=="xdp:va" and s["mode"]=="native" and "afxdp" in s["capabilities"] for s in j["spaces"])' \
  "no native xdp:va space with AF_XDP" <"$spaces"
check 'any(s["id"]=="tc:vb" for s in j["spaces"]) and any(s["kind"]=="user" for s in j["spaces"])' \
  "tc:vb or user spaces missing" <"$spaces"
check 'any(c["from"]=="xdp:va" and c["kind"]=="afxdp" for c in j["channels"]) and not any(c["to"].startswith("xdp:") and c["from"].startswith("user:") for c in j["channels"])' \
  "channels: expected xdp -> user over AF_XDP and nothing going down" <"$spaces"

plan() { in_ns "$srl" plan --no-profile --dev va -j "$@"; }

# A pure L2-L4 request runs entirely in XDP.
plan -e '(eth) > (ipv4) > (udp) > (port, which=dst) 53> (count)' |
  check 'all(n["space"]=="xdp:va" for n in j["nodes"]) and len(j["nodes"])==6' \
    "L2-L4 request not entirely in xdp:va"

# tcp stays in the kernel; http and print run in userspace, fed copies through a ring buffer.
plan -e '(tcp) > (http) > (print)' |
  check '[n["space"].split(":")[0] for n in j["nodes"]]==["xdp","xdp","user","user"] and j["nodes"][2]["channel_in"]=="ringbuf" and j["edges"][1]["delivery"]=="copy"' \
    "(tcp) > (http) > (print) not placed xdp, xdp, user (a copy ring), user"

# space= pins are honoured.
plan -e '(tcp, space=user) > (count)' |
  check 'j["nodes"][1]["space"].startswith("user:") and j["nodes"][1]["why"].startswith("pinned")' \
    "space=user pin not honoured"
plan -e '(tcp, space=tc) > (count)' |
  check 'j["nodes"][1]["space"]=="tc:va"' "space=tc pin not honoured"

# Calibrated hooks: on a veth, native XDP copies every frame it sees into a
# page of its own, TC does not; the plan of a watch then hooks TC.
in_ns "$srl" calibrate --no-filters --seconds 0.1 -o "$profile" >/dev/null || fail "srl calibrate failed"
check 'j["hooks"]["veth"]["xdp-native"]["ns_per_block"] > j["hooks"]["veth"]["tc"]["ns_per_block"] and j["filters"]["rx"]["user"]["ns_per_block"] > 0' \
  "calibration: expected a veth's native XDP hook to cost more than its TC hook, and rx in userspace measured" <"$profile"
in_ns "$srl" spaces -j --profile "$profile" |
  check 'any(s["id"]=="xdp:va" and s["driver"]=="veth" and s["hook"]["ns_per_block"] > 0 for s in j["spaces"])' \
    "spaces: the profile's hook cost not on xdp:va"
in_ns "$srl" plan --profile "$profile" --dev va -j -e '(udp) > (port, which=dst) 53> (pcap, file="/tmp/x.pcap")' |
  check '[n["space"].split(":")[0] for n in j["nodes"]]==["tc","tc","tc","user"]' \
    "with calibrated hooks, a capture on a veth not hooked at TC"
# Leftovers: the calibration's namespace and veth pair went with its thread.
[[ -z $(ip -all netns exec ip -o link show 2>/dev/null | grep srlcal) && -z $(ip -o link show | grep srlcal) ]] ||
  fail "calibration left its veth pair"

# An unknown device is an error naming it.
if out=$(in_ns "$srl" plan --no-profile --dev nosuch0 -e '(tcp)' 2>&1); then
  fail "planning on a missing device succeeded"
fi
[[ $out == *"device 'nosuch0' does not exist here"* ]] || fail "unexpected error: $out"
echo "veth placement: all checks passed"
