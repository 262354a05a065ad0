#!/usr/bin/env bash
# TC programs side by side on one hook: every program given is attached to
# the same veth's tcx ingress at once (each by bench/tcx_hold), so each
# sees the same packets under the same conditions; the kernel's BPF
# statistics (kernel.bpf_stats_enabled) give each program's own run time
# per packet. The order on the hook rotates every round (the first program
# pays for bringing the packet into the cache). What it is for: telling
# what a change to a generated program costs per packet, live, where the
# test-run loop (xdp_bench) keeps everything in cache and whole-machine CPU
# (capture_side_by_side.sh) varies by more than the change.
#
# Usage: hook_programs.sh [-r ROUNDS] [-f SIZE:PPS] [-e EVERY] FILE.c:PROGRAM...
#   -r ROUNDS  rounds (default 5); one line per round, then the mean
#   -f         frame size and rate (default 64:200000)
#   -e EVERY   1 datagram in EVERY to port 9000, the rest to 9001 (default 100)
# A program is a C file and the SEC("tc") function in it, as tcx_hold
# takes them: bench/bpf/handwritten.c:hand_tc, or a program srl generated
# (its source is kept beside its object in srl's cache, /var/cache/srl/bpf).
# The times include the statistics' own clock reads (tens of ns here): only
# differences between programs mean something.
#
# Needs root, bpftool, python3; builds nothing (ninja -C build tcx_hold
# udp_blast udp_sink). Takes /tmp/srl-live.lock. Two network namespaces
# joined by a veth pair, removed on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${SRL_BUILD:-$here/../build}
rounds=5 frames=64:200000 every=100
while getopts "r:f:e:h" opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    f) frames=$OPTARG ;;
    e) every=$OPTARG ;;
    *) sed -n '2,27p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { sed -n '2,27p' "$0"; exit 2; }
[[ $(id -u) == 0 ]] || { echo "hook_programs.sh: needs root" >&2; exit 2; }
for f in tcx_hold udp_blast udp_sink; do
  [[ -x $build/bench/$f ]] || { echo "hook_programs.sh: $build/bench/$f: not built" >&2; exit 2; }
done
if [[ -z ${SRL_HOOK_PROGRAMS_LOCKED:-} ]]; then
  export SRL_HOOK_PROGRAMS_LOCKED=1
  exec flock /tmp/srl-live.lock "$0" -r "$rounds" -f "$frames" -e "$every" "$@"
fi
size=${frames%%:*} pps=${frames##*:}
programs=("$@")
a=hpa$$ b=hpb$$ va=hpva$$ vb=hpvb$$
tmp=$(mktemp -d /tmp/srl-hp.XXXXXX)
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  local p
  for p in $(jobs -p); do kill -INT "$p" 2>/dev/null; done
  wait 2>/dev/null
  sysctl -qw kernel.bpf_stats_enabled="$stats_before"
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$here/veth_hosts.sh"
veth_hosts "$a" "$b" "$va" "$vb" 10.93.0
sysctl -qw kernel.bpf_stats_enabled=1
ip netns exec "$b" taskset -c 1 "$build/bench/udp_sink" --ports=9000,9001 --max-seconds=3600 \
  --poll-us=1000 >/dev/null 2>&1 &
sleep 0.3
n=${#programs[@]}
echo "$size-byte frames at $pps/s, 1 in $every selected; ns per packet by the kernel's BPF statistics"
for r in $(seq "$rounds"); do
  pids=() ids=() names=()
  for k in $(seq 0 $((n - 1))); do
    spec=${programs[$(((k + r) % n))]}
    file=${spec%:*} prog=${spec##*:}
    ip netns exec "$b" taskset -c 1 "$build/bench/tcx_hold" "$file" "$prog" "$vb" "$tmp/cache" \
      >/dev/null 2>"$tmp/hold.$k" &
    pids+=($!)
    for _ in $(seq 200); do grep -q attached "$tmp/hold.$k" && break; sleep 0.05; done
    grep -q attached "$tmp/hold.$k" || { echo "$spec did not attach: $(cat "$tmp/hold.$k")" >&2; exit 1; }
    # The newest program of that name: the one just loaded.
    ids+=("$(bpftool prog show -j | python3 -c '
import json, sys
print(max(p["id"] for p in json.load(sys.stdin) if p.get("name") == sys.argv[1][:15]))' "$prog")")
    names+=("$spec")
  done
  ip netns exec "$a" taskset -c 0 "$build/bench/udp_blast" --dst=10.93.0.2 --port=9000 --sport=9000 \
    --every="$every" --other-port=9001 --count=$((pps * 5)) --rate="$pps" --payload=$((size - 42)) \
    --max-seconds=30 >/dev/null 2>&1
  line="round $r:"
  for k in $(seq 0 $((n - 1))); do
    ns=$(bpftool prog show id "${ids[$k]}" -j | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("%.1f" % (d.get("run_time_ns", 0) / max(1, d.get("run_cnt", 1))))')
    line+=" $(basename "${names[$k]}")=$ns"
    echo "${names[$k]} $ns" >>"$tmp/all"
  done
  echo "$line"
  for p in "${pids[@]}"; do kill -INT "$p"; done
  wait "${pids[@]}" 2>/dev/null
done
echo "mean over $rounds rounds:"
python3 -c '
import collections, sys
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, v = l.rsplit(" ", 1); d[k].append(float(v))
for k, v in d.items(): print("  %-50s %6.1f ns (%s)" % (k, sum(v) / len(v), " ".join("%.1f" % x for x in v)))' "$tmp/all"
