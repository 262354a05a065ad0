#!/usr/bin/env bash
# Packets per second and CPU per packet of `srl run` counting DNS queries on
# a veth pair, against tcpdump capturing the same ones, and against no
# capture at all. Builds nothing: give the paths of srl and udp_blast, or
# let it take them from /work/main/build.
#
# Usage: xdp_veth_bench.sh [-s SRL] [-u UDP_BLAST] [-n PACKETS] [-r RUNS] [-m MODES]
#   -n  datagrams per run (default 2000000)
#   -r  runs of every mode, interleaved (default 3)
#   -m  modes, comma-separated, of: baseline, srl-native, srl-generic, tcpdump
#       (default: all four)
#
# Needs root. Creates two network namespaces and a veth pair of its own
# (unique names, removed on exit); all traffic stays inside them. udp_blast
# sends 100-byte frames (UDP to 10.88.0.2:53, nobody listening) from
# namespace A to B. Per run it prints: datagrams sent; delivered (rx_packets
# of the receiving veth); seen (srl's count node / tcpdump's "packets
# captured") and dropped (tcpdump's "dropped by kernel"); the sender's rate;
# and CPU time per datagram:
#   path  = sender (user+sys, getrusage) + capture process + ksoftirqd, from
#           per-process accounting; immune to other load on the machine. The
#           kernel has no IRQ time accounting here, so the receive path's
#           softirq work, which on a veth mostly runs when the sender's
#           syscall re-enables bottom halves, is charged to the sender.
#   capt  = the capture process alone (srl run / tcpdump, /proc/PID/schedstat)
#   mach  = busy time of the whole machine (/proc/stat: user, nice, system,
#           irq, softirq) over the run; includes anything else running.
# The last table gives medians per mode and the extra path CPU per datagram
# over the baseline: what capturing costs.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${SRL_BUILD:-$here/../build}
srl=$build/cli/srl blast=$build/bench/udp_blast
packets=2000000 runs=3 modes=baseline,srl-native,srl-generic,tcpdump
while getopts "s:u:n:r:m:h" opt; do
  case $opt in
    s) srl=$OPTARG ;;
    u) blast=$OPTARG ;;
    n) packets=$OPTARG ;;
    r) runs=$OPTARG ;;
    m) modes=$OPTARG ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "xdp_veth_bench: needs root" >&2; exit 77; }
for f in "$srl" "$blast"; do [[ -x $f ]] || { echo "xdp_veth_bench: no executable $f" >&2; exit 2; }; done
srl=$(realpath "$srl") blast=$(realpath "$blast")
[[ $packets =~ ^[0-9]+$ && $runs =~ ^[0-9]+$ && $runs -ge 1 && $runs -le 20 ]] ||
  { echo "xdp_veth_bench: bad -n or -r" >&2; exit 2; }
command -v tcpdump >/dev/null || modes=${modes//tcpdump/}

id=$$
a=xb-a-$id b=xb-b-$id va=xbva$id vb=xbvb$id
tmp=$(mktemp -d /tmp/xdp-veth-bench.XXXXXX)
bpffs=$tmp/bpffs
capture_pid=""
cleanup() {
  [[ -n $capture_pid ]] && kill "$capture_pid" 2>/dev/null && wait "$capture_pid" 2>/dev/null
  [[ -n ${XDP_VETH_BENCH_KEEP:-} ]] && mkdir -p "$XDP_VETH_BENCH_KEEP" && cp "$tmp"/results "$tmp"/*.err "$XDP_VETH_BENCH_KEEP" 2>/dev/null
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  umount "$bpffs" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$here/veth_hosts.sh"
veth_hosts "$a" "$b" "$va" "$vb" 10.88.0
mkdir -p "$bpffs" && mount -t bpf bpf "$bpffs"

request='(ipv4) > (udp) > (port, which=dst) 53> (count)'

busy_jiffies() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }  # on-CPU ns of a task
ksoftirqd_ns() {
  local sum=0 p
  for p in $(pgrep -x 'ksoftirqd/[0-9]+'); do sum=$((sum + $(cpu_ns "$p"))); done
  echo "$sum"
}
vb_stat() { ip netns exec "$b" cat "/sys/class/net/$vb/statistics/$1"; }
xdp_attached() { [[ $(ip -n "$b" link show "$vb") == *prog/xdp* ]]; }  # no SIGPIPE under pipefail
hz=$(getconf CLK_TCK)

# Starts the capture of MODE in namespace B; sets capture_pid. Returns when it
# is ready (bounded).
start_capture() {
  case $1 in
    baseline) capture_pid="" ;;
    srl-native | srl-generic)
      ip netns exec "$b" "$srl" run --dev "$vb" --xdp-mode "${1#srl-}" --bpffs "$bpffs" \
        --cache "$tmp/cache" --interval 3600 -j -e "$request" >"$tmp/out" 2>"$tmp/err" &
      capture_pid=$!
      for _ in $(seq 200); do xdp_attached && return 0; sleep 0.05; done
      echo "srl never attached: $(cat "$tmp/err")" >&2; return 1 ;;
    tcpdump)
      ip netns exec "$b" tcpdump -i "$vb" -w /dev/null 'udp dst port 53' >"$tmp/out" 2>"$tmp/err" &
      capture_pid=$!
      for _ in $(seq 200); do grep -q 'listening on' "$tmp/err" && return 0; sleep 0.05; done
      echo "tcpdump never started: $(cat "$tmp/err")" >&2; return 1 ;;
  esac
}

# Stops the capture of MODE (run RUN) and waits for it to exit; sets seen
# and dropped. Runs in this shell (not in a subshell), which alone can wait.
stop_capture() {
  seen=- dropped=-
  case $1 in
    baseline) ;;
    srl-*)
      kill -TERM "$capture_pid"; wait "$capture_pid"; capture_pid=""
      seen=$(python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
assert last["final"]
print(next(n["blocks"] for n in last["nodes"] if n["filter"] == "count"))' "$tmp/out") || seen='?' ;;
    tcpdump)
      kill -INT "$capture_pid"; wait "$capture_pid"; capture_pid=""
      cp "$tmp/err" "$tmp/tcpdump.$2.err"
      seen=$(awk '/packets captured/{print $1}' "$tmp/err") dropped=$(awk '/dropped by kernel/{print $1}' "$tmp/err")
      seen=${seen:-?} dropped=${dropped:-?} ;;
  esac
}

results=$tmp/results
run_one() {  # MODE RUN
  local mode=$1 seen dropped
  start_capture "$mode" || return 1
  sleep 0.3
  local rx0 drop0 busy0 soft0 capt0=0
  rx0=$(vb_stat rx_packets) drop0=$(vb_stat rx_dropped)
  soft0=$(ksoftirqd_ns) busy0=$(busy_jiffies)
  [[ -n $capture_pid ]] && capt0=$(cpu_ns "$capture_pid")
  local line
  line=$(ip netns exec "$a" "$blast" --dst=10.88.0.2 --port=53 --count="$packets" --max-seconds=120)
  # Let the receiver drain: tcpdump (libpcap's TPACKET_V3 ring) gets a block
  # that is not full only when its 1 s timeout expires.
  sleep 1.5
  local rx1 drop1 busy1 soft1 capt1=0
  [[ -n $capture_pid ]] && capt1=$(cpu_ns "$capture_pid")
  busy1=$(busy_jiffies) soft1=$(ksoftirqd_ns)
  rx1=$(vb_stat rx_packets) drop1=$(vb_stat rx_dropped)
  stop_capture "$mode" "$2"
  # udp_blast prints: sent=N seconds=S pps=P errors=E user_s=U sys_s=Y
  field() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1 == k {print $2}'; }
  local sent pps user sys
  sent=$(field sent) pps=$(field pps) user=$(field user_s) sys=$(field sys_s)
  [[ $sent -gt 0 ]] || { echo "udp_blast sent nothing: $line" >&2; return 1; }
  awk -v mode="$mode" -v run="$2" -v sent="$sent" -v pps="$pps" \
    -v delivered=$((rx1 - rx0)) -v rxdrop=$((drop1 - drop0)) -v seen="$seen" -v dropped="$dropped" \
    -v sender_s="$(awk -v u="$user" -v s="$sys" 'BEGIN{print u + s}')" \
    -v capt_ns=$((capt1 - capt0)) -v soft_ns=$((soft1 - soft0)) \
    -v busy_ns="$(awk -v j=$((busy1 - busy0)) -v hz="$hz" 'BEGIN{printf "%.0f", j * 1e9 / hz}')" \
    'BEGIN {
       path = (sender_s * 1e9 + capt_ns + soft_ns) / sent
       printf "%s %s %d %d %d %s %s %d %.1f %.1f %.1f %.1f\n", mode, run, sent, delivered, rxdrop,
              seen, dropped, pps, path, capt_ns / sent, soft_ns / sent, busy_ns / sent
     }' >>"$results"
}

echo "srl: $srl"
echo "udp_blast: $blast"
echo "kernel $(uname -r), $(nproc) CPUs, $packets datagrams of 100-byte frames per run, $runs runs per mode"
echo "request: $request"
echo
IFS=, read -ra mode_list <<<"$modes"
for ((r = 1; r <= runs; r++)); do
  for mode in "${mode_list[@]}"; do
    [[ -n $mode ]] || continue
    run_one "$mode" "$r" || { echo "run $r of $mode failed" >&2; exit 1; }
  done
done

printf '| mode | run | sent | delivered | rx dropped | seen | capture dropped | pps | path ns/pkt | capt ns/pkt | ksoftirqd ns/pkt | mach ns/pkt |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
awk '{printf "| %s | %s | %d | %d | %d | %s | %s | %d | %.0f | %.0f | %.0f | %.0f |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12}' "$results"
echo
echo "Medians over the runs; extra = path ns/pkt minus the baseline's."
printf '| mode | pps | seen / sent | path ns/pkt | extra ns/pkt | capt ns/pkt | mach ns/pkt |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
python3 - "$results" "${mode_list[@]}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda m, i: statistics.median(float(r[i]) for r in rows if r[0] == m)
base = med("baseline", 8) if any(r[0] == "baseline" for r in rows) else None
for m in sys.argv[2:]:
    if not m or not any(r[0] == m for r in rows):
        continue
    seen = [r for r in rows if r[0] == m and r[5] != "-"]
    ratio = "%.4f" % statistics.median(int(r[5]) / int(r[2]) for r in seen) if seen else "-"
    extra = "%.0f" % (med(m, 8) - base) if base is not None and m != "baseline" else "-"
    print("| %s | %.0f | %s | %.0f | %s | %.0f | %.0f |" % (m, med(m, 7), ratio, med(m, 8), extra, med(m, 9), med(m, 11)))
EOF
