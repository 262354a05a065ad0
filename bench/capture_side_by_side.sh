#!/usr/bin/env bash
# srl and tcpdump capturing the same traffic at the same time, each one's
# CPU taken from one `perf record -a -g` of the run.
#
#   srl run --dev IF -e '(udp) > (port, which=dst) 9000> (pcap, file=F, snaplen=S)'
#   tcpdump -i IF -w F -s S 'udp dst port 9000'
#
# Why side by side: on this kind of machine (a KVM guest) the same run's
# whole-machine CPU varies by a third from one minute to the next, more
# than one capture costs (capture_bench.sh measures that way, against a
# baseline run). Run together, both tools see the same packets under the
# same conditions, and the ratio of their costs is taken within one run.
#
# Usage: capture_side_by_side.sh SRL [options]
#   -q PROFILE   the cost profile srl plans with (`srl calibrate -o PROFILE`)
#   -H HOOK      pin srl's hook (tc or xdp) instead of the plan's choice
#   -f FRAMES    frame sizes and rates, SIZE:PPS,... (default 64:200000,1500:100000)
#   -S PERCENTS  share of the datagrams to the captured port (default 100,1)
#   -N COUNTS    parallel captures of each tool, COUNT,... (default 1): N
#                requests in one `srl run` (or N `srl apply`), N tcpdumps
#   -c CONTROLD  srl's captures through this controld (`srl apply`; its own
#                socket, state and bpffs) instead of `srl run`
#   -A           apart: each configuration runs twice, srl alone and then
#                tcpdump alone (same traffic, same attribution), where N
#                captures of one tool would slow the other's (caches, CPU)
#   -B           and a third run per configuration with a hand-written TC
#                program on a tcx link in srl's place (hand_tc in
#                bench/bpf/handwritten.c, held by tcx_hold): it counts the
#                selected datagrams and copies nothing, the least any
#                per-packet hook costs here (srl_via "hand"; its count in
#                srl_captured, its hook in the srl columns)
#   -s SNAPLEN   snap length of both tools (default 65535)
#   -t SECONDS   traffic per run (default 5)
#   -r ROUNDS    rounds; each runs every configuration once (default 5)
#   -F HZ        perf sampling frequency per CPU (default 4999)
#   -C TX:RX     CPUs of the sender and of the receiving side (default 0:1)
#   -o CSV       per-run figures (default bench/results/capture-side-by-side.csv)
#   -k DIR       keep each run's perf data there (SIZE-PERCENT-N-ROUND-TOOLS.data)
#                and the pids (.pids), for `perf report --pid`
#
# Needs root, perf, tcpdump, python3; builds nothing (ninja -C build srl
# udp_blast udp_sink controld tcx_hold first). Takes /tmp/srl-live.lock. Creates two
# network namespaces joined by a veth pair, a bpffs and a tmpfs for the
# capture files, all removed on exit.
#
# Attribution of each sample (its thread and its kernel call chain):
#   srl own       a thread of srl's process (of controld's, through it)
#   srl hook      under srl's hook: its program, the hook's dispatch
#                 (tc_run / tcx_run / cls_bpf_classify; do_xdp_generic, or
#                 veth_xdp_rcv_skb with its copy into a page-pool page), and
#                 the wake-up work its copy ring queues (bpf_ringbuf_notify)
#   tcpdump own   a thread of a tcpdump process
#   tcpdump tap   under the AF_PACKET tap (tpacket_rcv / packet_rcv): its
#                 filter, its clock read, its copy and its wake-ups
# ns/pkt = samples x (1 s / HZ) / packets captured (all N files); ms = the
# same in all. Both tools' filters run on every packet, the unselected ones
# too; that is in their figures. What neither includes: effects on the rest
# of the path (caches, the sink's wake-ups), which capture_bench.sh's
# whole-machine figures hold, noise and all.
# Checks per run: the host's UDP sink got every datagram, every capture of
# both tools captured every selected one (records in its file), each file's
# records are UDP to the port with caplen = min(len, snaplen)
# (capture_files.py, shared with capture_bench.sh).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage() { sed -n '2,63p' "$0"; }
[[ $# -ge 1 && $1 != -h ]] || { usage; exit 2; }
args=("$@")
srl=$(realpath "$1"); shift
build=$(cd "$(dirname "$srl")/.." 2>/dev/null && pwd)
blast=$build/bench/udp_blast sink=$build/bench/udp_sink
profile="" hook="" frames=64:200000,1500:100000 percents=100,1 captures=1 controld="" apart="" hand=""
snaplen=65535 seconds=5 rounds=5 hz=4999 cpus=0:1 csv=$here/results/capture-side-by-side.csv keep=""
while getopts "q:H:f:S:N:c:ABs:t:r:F:C:o:k:h" opt; do
  case $opt in
    q) profile=$(realpath "$OPTARG") ;;
    H) hook=$OPTARG ;;
    f) frames=$OPTARG ;;
    S) percents=$OPTARG ;;
    N) captures=$OPTARG ;;
    c) controld=$(realpath "$OPTARG") ;;
    A) apart=1 ;;
    B) hand=1 ;;
    s) snaplen=$OPTARG ;;
    t) seconds=$OPTARG ;;
    r) rounds=$OPTARG ;;
    F) hz=$OPTARG ;;
    C) cpus=$OPTARG ;;
    o) csv=$OPTARG ;;
    k) keep=$(realpath -m "$OPTARG") ;;
    *) usage; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "capture_side_by_side.sh: needs root" >&2; exit 2; }
for t in perf tcpdump python3; do
  command -v "$t" >/dev/null || { echo "capture_side_by_side.sh: needs $t" >&2; exit 2; }
done
hold=$build/bench/tcx_hold
for f in "$srl" "$blast" "$sink" ${controld:+"$controld"} ${hand:+"$hold"}; do
  [[ -x $f ]] || { echo "capture_side_by_side.sh: $f: not built" >&2; exit 2; }
done
if [[ -z ${SRL_SIDE_BY_SIDE_LOCKED:-} ]]; then
  export SRL_SIDE_BY_SIDE_LOCKED=1
  exec flock /tmp/srl-live.lock "$0" "${args[@]}"
fi
mkdir -p "$(dirname "$csv")" && csv=$(realpath "$csv")
tx_cpu=${cpus%%:*} rx_cpu=${cpus##*:}
port=9000 other=9001

tmp=$(mktemp -d /tmp/srl-sbs.XXXXXX)
a=sbsa$$ b=sbsb$$ va=sbva$$ vb=sbvb$$
srl_pid="" daemon_pid=""
cleanup() {
  local p
  for p in $(jobs -p); do kill -INT "$p" 2>/dev/null; done
  sleep 0.3
  for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  umount "$tmp/bpffs" "$tmp/out" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$here/veth_hosts.sh"
veth_hosts "$a" "$b" "$va" "$vb" 10.91.0
mkdir -p "$tmp/bpffs" "$tmp/out" "$tmp/cache" "$tmp/kept"
mount -t bpf bpf "$tmp/bpffs" || exit 1
mount -t tmpfs -o size=2g tmpfs "$tmp/out" || exit 1
chmod 777 "$tmp/out"

profile_args=(--no-profile)
[[ -n $profile ]] && profile_args=(--profile "$profile")
hook_args=()
[[ -n $hook ]] && hook_args=(--hook "$hook")
# controld plans with SRL_PROFILE (or with none: not root's own).
export SRL_PROFILE=${profile:-/nonexistent/srl-profile.json}
export SRL_SOCKET=$tmp/controld.sock

[[ -s $csv ]] || echo "size,percent,captures,srl_via,round,sent,selected,host_got,srl_captured,tcpdump_captured,srl_hook,srl_own_ns,srl_hook_ns,tcpdump_own_ns,tcpdump_tap_ns,srl_ns,tcpdump_ns,ratio,srl_ms,tcpdump_ms,checks" >"$csv"

# Records of a capture file, and OK when every one is UDP to the port with
# caplen = min(len, snaplen) (capture_files.py), else BAD.
pcap_check() {  # FILE SNAPLEN -> "RECORDS OK|BAD"
  python3 "$here/capture_files.py" "$port" "$2" "$1" | awk '{print $2, ($3 == 0 ? "OK" : "BAD")}'
}

# Attributes the samples of one perf data file (see the header).
attribute() {  # DATA SRL_PID TCPDUMP_PIDS -> "SRL_OWN SRL_HOOK TD_OWN TD_TAP OTHER"
  perf script -i "$1" -F pid,ip,sym 2>/dev/null | python3 -c '
import sys
srl, td = sys.argv[1], set(sys.argv[2].split(","))
count = {"srl_own": 0, "srl_hook": 0, "td_own": 0, "td_tap": 0, "other": 0}
hook = ("tc_run", "tcx_run", "cls_bpf_classify", "bpf_ringbuf_notify", "do_xdp_generic",
        "veth_xdp_rcv_skb")
tap = ("tpacket_rcv", "packet_rcv")
def close(pid, frames):
    if pid is None:
        return
    if pid == srl:
        count["srl_own"] += 1
    elif pid in td:
        count["td_own"] += 1
    elif any(f in tap for f in frames):
        count["td_tap"] += 1
    elif any(f in hook or f.endswith(("_srl_tc", "_srl_xdp", "_hand_tc")) for f in frames):
        count["srl_hook"] += 1
    else:
        count["other"] += 1
pid, frames = None, []
for line in sys.stdin:
    s = line.strip()
    if not s:
        close(pid, frames); pid, frames = None, []
    elif pid is None:
        pid = s.split()[0]
    else:
        parts = s.split()
        if len(parts) >= 2:
            frames.append(parts[1].split("+")[0])
close(pid, frames)
print(count["srl_own"], count["srl_hook"], count["td_own"], count["td_tap"], count["other"])
' "$2" "$3"
}

request() {  # FILE
  echo "(udp) > (port, which=dst) $port> (pcap, file=\"$1\", snaplen=$snaplen)"
}

start_daemon() {
  ip netns exec "$b" taskset -c "$rx_cpu" "$controld" --socket "$SRL_SOCKET" --state "$tmp/state.db" \
    --bpffs "$tmp/bpffs" --cache "$tmp/cache" 2>>"$tmp/controld.log" &
  daemon_pid=$!
  for _ in $(seq 300); do
    [[ -S $SRL_SOCKET ]] && "$srl" ls -q >/dev/null 2>&1 && return 0
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "controld did not start: $(tail -3 "$tmp/controld.log")" >&2
  return 1
}

# srl's side: N requests in one `srl run`, or N `srl apply` to controld.
# Sets srl_pid (the process that reads the copies) and srl_hook.
start_srl() {  # N
  local n=$1 i reqs=()
  srl_hook=
  if [[ -z $controld ]]; then
    for ((i = 1; i <= n; i++)); do reqs+=(-e "$(request "$tmp/out/srl.$i.pcap")"); done
    ip netns exec "$b" taskset -c "$rx_cpu" "$srl" run --dev "$vb" "${hook_args[@]}" "${profile_args[@]}" \
      --bpffs "$tmp/bpffs" --cache "$tmp/cache" --interval 3600 -j "${reqs[@]}" \
      >"$tmp/srl.out" 2>"$tmp/srl.err" &
    srl_pid=$!
    for _ in $(seq 600); do grep -q 'program id' "$tmp/srl.err" && break; sleep 0.05; done
    grep -q 'program id' "$tmp/srl.err" || { echo "srl did not start: $(cat "$tmp/srl.err")" >&2; return 1; }
    srl_hook=$(grep 'program id' "$tmp/srl.err" | grep -o 'TC ingress\|XDP native\|XDP generic' | sort -u | paste -sd+)
    return 0
  fi
  rm -f "$tmp/state.db"*
  start_daemon || return 1
  srl_pid=$daemon_pid
  for ((i = 1; i <= n; i++)); do
    "$srl" apply -n "cap$i" --dev "$vb" -e "$(request "$tmp/out/srl.$i.pcap")" >>"$tmp/apply.log" 2>&1 \
      || { echo "srl apply cap$i failed: $(tail -3 "$tmp/apply.log")" >&2; return 1; }
  done
  # Where the daemon put the kernel part: the hook attached to the device.
  if [[ -n $(find "$tmp/bpffs" -name tc-link 2>/dev/null) ]] ||
    ip netns exec "$b" tc filter show dev "$vb" ingress 2>/dev/null | grep -q bpf; then
    srl_hook="TC ingress"
  elif ip -n "$b" link show "$vb" | grep -q xdp; then
    srl_hook="XDP"
  else
    srl_hook="?"
  fi
}

# Stops srl's side with its files closed and whole, and leaves the device
# without a hook.
stop_srl() {  # N
  local n=$1 i
  kill -INT "$srl_pid" 2>/dev/null
  wait "$srl_pid" 2>/dev/null
  [[ -z $controld ]] && return 0
  # The daemon closed the files and left the datapath pinned. Keep the
  # files, then remove the requests through a new daemon (a removal
  # rebuilds the others' userspace parts, and with them their files).
  for ((i = 1; i <= n; i++)); do mv "$tmp/out/srl.$i.pcap" "$tmp/kept/" 2>/dev/null; done
  if start_daemon; then
    for ((i = 1; i <= n; i++)); do "$srl" rm "cap$i" >>"$tmp/apply.log" 2>&1; done
    kill -INT "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  for ((i = 1; i <= n; i++)); do mv "$tmp/kept/srl.$i.pcap" "$tmp/out/" 2>/dev/null; done
}

# The hand-written hook in srl's place (-B): sets srl_pid and srl_hook.
start_hand() {
  ip netns exec "$b" taskset -c "$rx_cpu" "$hold" "$here/bpf/handwritten.c" hand_tc "$vb" \
    "$tmp/cache" >"$tmp/hand.out" 2>"$tmp/hand.err" &
  srl_pid=$! srl_hook="TC ingress (hand-written)"
  for _ in $(seq 200); do grep -q attached "$tmp/hand.err" && return 0; sleep 0.05; done
  echo "tcx_hold did not attach: $(cat "$tmp/hand.err")" >&2
  return 1
}

run_one() {  # SIZE PPS PERCENT N ROUND TOOLS (both, srl, tcpdump or hand)
  local size=$1 pps=$2 pct=$3 n=$4 round=$5 tools=$6 i
  local count=$((pps * seconds)) every=$((100 / pct)) payload=$(($1 - 42))
  local selected=$(((count + every - 1) / every))
  rm -f "$tmp/out"/*
  ip netns exec "$b" taskset -c "$rx_cpu" "$sink" --ports=$port,$other --max-seconds=$((seconds + 60)) \
    --poll-us=1000 >"$tmp/sink.out" 2>"$tmp/sink.err" &
  local sink_pid=$!
  for _ in $(seq 100); do grep -q ready "$tmp/sink.err" && break; sleep 0.05; done
  srl_pid=- srl_hook=-  # "-": no process, no sample matches
  if [[ $tools == hand ]]; then
    start_hand || { kill -INT $srl_pid $sink_pid 2>/dev/null; wait 2>/dev/null; return 1; }
  elif [[ $tools != tcpdump ]] && ! start_srl "$n"; then
    kill -INT $srl_pid $sink_pid 2>/dev/null
    wait 2>/dev/null
    return 1
  fi
  local td_pids=() td_n=$n
  [[ $tools == srl || $tools == hand ]] && td_n=0 td_pids=(-)
  for ((i = 1; i <= td_n; i++)); do
    ip netns exec "$b" taskset -c "$rx_cpu" tcpdump -i "$vb" -w "$tmp/out/td.$i.pcap" -s "$snaplen" \
      "udp dst port $port" >/dev/null 2>"$tmp/td.$i.err" &
    td_pids+=($!)
    for _ in $(seq 200); do grep -q 'listening on' "$tmp/td.$i.err" && break; sleep 0.05; done
  done
  sleep 0.5
  perf record -q -a -g -F "$hz" -o "$tmp/perf.data" -- \
    ip netns exec "$a" taskset -c "$tx_cpu" "$blast" --dst=10.91.0.2 --port=$port --sport=$port \
    --every=$every --other-port=$other --count=$count --rate="$pps" --payload=$payload \
    --max-seconds=$((seconds * 3 + 10)) >"$tmp/blast.out" 2>&1
  # libpcap hands a partly filled block over after its 1 s timeout.
  sleep 1.5
  if [[ $tools != srl ]]; then
    kill -INT "${td_pids[@]}" 2>/dev/null
    wait "${td_pids[@]}" 2>/dev/null
  fi
  if [[ $tools == hand ]]; then
    kill -INT "$srl_pid" 2>/dev/null
    wait "$srl_pid" 2>/dev/null
  elif [[ $tools != tcpdump ]]; then
    stop_srl "$n"
  fi
  kill -TERM $sink_pid 2>/dev/null
  wait $sink_pid 2>/dev/null
  local sent host_got srl_rec=0 td_rec=0 r ok checks=ok
  sent=$(grep -o 'sent=[0-9]*' "$tmp/blast.out" | cut -d= -f2)
  host_got=$(grep -o '^received=[0-9]*' "$tmp/sink.out" | cut -d= -f2)
  if [[ $tools == hand ]]; then
    srl_rec=$(grep -o 'counted=[0-9]*' "$tmp/hand.out" | cut -d= -f2)
    [[ ${srl_rec:-0} == "$selected" ]] || checks="hand-written hook counted ${srl_rec:-?} of $selected"
  fi
  for ((i = 1; i <= n; i++)); do
    if [[ $tools != tcpdump && $tools != hand ]]; then
      read -r r ok < <(pcap_check "$tmp/out/srl.$i.pcap" "$snaplen")
      srl_rec=$((srl_rec + r))
      [[ $r == "$selected" && $ok == OK ]] || checks="srl file $i: $r records ($ok) of $selected"
    fi
    if [[ $tools != srl && $tools != hand ]]; then
      read -r r ok < <(pcap_check "$tmp/out/td.$i.pcap" "$snaplen")
      td_rec=$((td_rec + r))
      [[ $r == "$selected" && $ok == OK ]] || checks="tcpdump file $i: $r records ($ok) of $selected"
    fi
  done
  [[ ${sent:-0} == "$count" ]] || checks="sent ${sent:-?} of $count"
  [[ ${host_got:-0} == "$count" ]] || checks="host got ${host_got:-?} of $count"
  local td_list
  td_list=$(IFS=,; echo "${td_pids[*]}")
  if [[ -n $keep ]]; then
    mkdir -p "$keep"
    cp "$tmp/perf.data" "$keep/$size-$pct-$n-$round-$tools.data"
    echo "srl $srl_pid tcpdump $td_list" >"$keep/$size-$pct-$n-$round-$tools.pids"
  fi
  local s_own s_hook t_own t_tap other
  read -r s_own s_hook t_own t_tap other < <(attribute "$tmp/perf.data" "$srl_pid" "$td_list")
  python3 - "$size" "$pct" "$n" "${controld:+controld}" "$round-$tools" "$count" "$selected" "${host_got:-0}" \
    "$srl_rec" "$td_rec" "$srl_hook" "$s_own" "$s_hook" "$t_own" "$t_tap" "$hz" "$checks" >>"$csv" <<'PY'
import sys
(size, pct, n, via, rnd, sent, sel, got, srec, trec, hook, s_own, s_hook, t_own, t_tap, hz,
 checks) = sys.argv[1:]
ms = lambda samples: int(samples) * 1e3 / int(hz)
per = lambda samples, pkts: ms(samples) * 1e6 / max(int(pkts), 1)
so, sh = per(s_own, srec), per(s_hook, srec)
to, tt = per(t_own, trec), per(t_tap, trec)
ratio = (so + sh) / (to + tt) if to + tt > 0 and so + sh > 0 else float('nan')
via = "hand" if rnd.endswith("-hand") else via or "run"
print(f"{size},{pct},{n},{via},{rnd},{sent},{sel},{got},{srec},{trec},{hook},"
      f"{so:.0f},{sh:.0f},{to:.0f},{tt:.0f},{so + sh:.0f},{to + tt:.0f},{ratio:.3f},"
      f"{ms(int(s_own) + int(s_hook)):.1f},{ms(int(t_own) + int(t_tap)):.1f},{checks}")
PY
  tail -1 "$csv"
}

echo "# $(date -u +%FT%TZ) capture_side_by_side.sh: srl=$srl${controld:+ controld=$controld}${hook:+ hook=$hook} profile=${profile:-none} t=${seconds}s rounds=$rounds F=${hz}Hz" >&2
IFS=, read -ra frame_list <<<"$frames"
IFS=, read -ra pct_list <<<"$percents"
IFS=, read -ra n_list <<<"$captures"
# Rounds outermost, so that the configurations share the machine's drift.
for ((r = 1; r <= rounds; r++)); do
  for fr in "${frame_list[@]}"; do
    for pct in "${pct_list[@]}"; do
      for n in "${n_list[@]}"; do
        if [[ -n $apart ]]; then
          for t in srl tcpdump; do
            run_one "${fr%%:*}" "${fr##*:}" "$pct" "$n" "$r" $t || echo "run failed: $fr $pct% N=$n round $r $t" >&2
          done
        else
          run_one "${fr%%:*}" "${fr##*:}" "$pct" "$n" "$r" both || echo "run failed: $fr $pct% N=$n round $r" >&2
        fi
        if [[ -n $hand && $n == 1 ]]; then
          run_one "${fr%%:*}" "${fr##*:}" "$pct" 1 "$r" hand || echo "run failed: $fr $pct% hand-written, round $r" >&2
        fi
      done
    done
  done
done
