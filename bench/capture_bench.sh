#!/usr/bin/env bash
# CPU per captured packet of srl's copy channel against tcpdump, on a veth
# pair, with a UDP application on the receiving host that must get every
# datagram while the capture watches.
#
#   srl run --dev IF -e '(udp) > (port, which=dst) 9000> (pcap, file=F, snaplen=S)'
#   tcpdump -i IF -w F -s S 'udp dst port 9000'
#
# Usage: capture_bench.sh SRL [options]
#   -u UDP_BLAST   sender (default: bench/udp_blast next to SRL's build)
#   -k UDP_SINK    receiver (default: bench/udp_sink next to SRL's build)
#   -c CONTROLD    also run part 2 through this controld (`srl apply` N times)
#   -o CSV         raw per-run figures (default: bench/results/capture.csv)
#   -p PARTS       1, 2 or 1,2 (default 1,2)
#   -m MODES       part 1 capture modes, of srl, tcpdump, srl-xdp, srl-generic,
#                  srl-tc (default srl,tcpdump; baseline, no capture, always
#                  runs); srl chooses its hook by the plan, the others pin it
#   -q PROFILE     the cost profile srl and controld plan with (`srl calibrate
#                  -o PROFILE`; default: none, the catalog's costs)
#   -f FRAMES      part 1 frame sizes and rates, SIZE:PPS,... (default 64:200000,1500:100000)
#   -S PERCENTS    part 1 share of the datagrams to the captured port (default 1,100)
#   -N LIST        part 2 capture counts (default 1,4,16)
#   -P SIZE:PCT    part 2 traffic (default 64:1, at part 1's rate for that size)
#   -T TOOLS       part 2 tools, of srl, tcpdump, controld (default srl,tcpdump,
#                  and controld with -c)
#   -s SNAPLEN     snap length of both tools (default 65535)
#   -t SECONDS     traffic per run (default 2)
#   -r ROUNDS      part 1 rounds (default 7);  -R ROUNDS  part 2 rounds (default 7)
#   -C TX:RX       CPUs of the sender and of the receiving side (default 0:1)
#   -w SECONDS     wait up to this long in all for an idle machine before
#                  runs (each run waits for <= 10% busy, up to 60 s; default 300)
#   -F CPU_S       run again (up to 3 attempts) when other processes took more
#                  than this CPU time during a run (default 0.2)
#   -x N           at most N such retries in all (default 20)
#
# Needs root; builds nothing (ninja -C build srl udp_blast udp_sink first).
# Takes /tmp/srl-live.lock (re-executes itself under flock) so no other live
# test runs meanwhile. Creates two network namespaces joined by a veth pair
# of its own, a bpffs and a tmpfs for the capture files, all removed on exit.
#
# Each run: udp_sink on the receiving side (bound to ports 9000 and 9001;
# it empties its sockets every millisecond instead of waiting on them, so
# that its cost does not depend on how wake-ups fall), then the capture(s),
# then udp_blast sends rate x seconds datagrams from source port 9000 at a
# fixed rate, 1 in 100/PCT to port 9000, the rest to 9001. CPU is measured
# from just before the sender starts to 1.5 s after it ends (libpcap hands
# a partly filled ring block to tcpdump after its 1 s timeout):
#   mach  busy time of the whole machine, the headline: CPUs x wall time
#         minus idle time (/proc/stat idle + iowait, measured at each idle
#         entry and exit with NO_HZ_IDLE; user, system and softirq there are
#         tick samples, which alias with this periodic load: kept as
#         mach_tick). `extra` = mach minus the same round's baseline run (no
#         capture): the capture process plus the kernel work it causes,
#         which is not separable per namespace.
#   own   the capture process(es) alone (all threads, /proc/PID/task/*/schedstat)
#   path  sender + udp_sink (getrusage) + capture + ksoftirqd: per-task
#         accounting, which other load on the machine does not pollute. On a
#         veth the receive softirq runs in the sender's syscall and is
#         charged to it (no IRQ time accounting).
# Checks per run: the sink got every datagram (and /proc/net/snmp Udp
# RcvbufErrors did not move), each capture captured every selected one
# (srl's pcap node counters, tcpdump's "packets captured"), and every file
# holds exactly that many records, all UDP to port 9000 with caplen =
# min(len, snaplen). Failures are reported, not fatal. Each run records
# where the capture ran (CSV column hook: srl's hook as it reported it,
# AF_PACKET for tcpdump), shown beside the tool in the tables.
set -uo pipefail

args=("$@")
here=$(cd "$(dirname "$0")" && pwd)
usage() { sed -n '2,66p' "$0"; }
[[ $# -ge 1 && $1 != -h ]] || { usage; exit 2; }
srl=$1; shift
build=$(cd "$(dirname "$srl")/.." 2>/dev/null && pwd)
blast=$build/bench/udp_blast sink=$build/bench/udp_sink controld=""
csv=$here/results/capture.csv parts=1,2 modes=srl,tcpdump
frames=64:200000,1500:100000 percents=1,100 counts=1,4,16 part2=64:1
snaplen=65535 seconds=2 rounds=7 rounds2=7 cpus=0:1 idle_wait=300 foreign_max=0.2 max_retries=20 tools="" profile=""
while getopts "u:k:c:o:p:m:f:S:N:P:T:s:t:r:R:C:w:F:x:q:h" opt; do
  case $opt in
    u) blast=$OPTARG ;; k) sink=$OPTARG ;; c) controld=$OPTARG ;; o) csv=$OPTARG ;;
    p) parts=$OPTARG ;; m) modes=$OPTARG ;; f) frames=$OPTARG ;; S) percents=$OPTARG ;;
    N) counts=$OPTARG ;; P) part2=$OPTARG ;; T) tools=$OPTARG ;; s) snaplen=$OPTARG ;; t) seconds=$OPTARG ;;
    r) rounds=$OPTARG ;; R) rounds2=$OPTARG ;; C) cpus=$OPTARG ;; w) idle_wait=$OPTARG ;;
    F) foreign_max=$OPTARG ;; x) max_retries=$OPTARG ;; q) profile=$OPTARG ;;
    *) usage; exit 2 ;;
  esac
done
die() { echo "capture_bench: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "capture_bench: needs root" >&2; exit 77; }
for f in "$srl" "$blast" "$sink" ${controld:+"$controld"}; do [[ -x $f ]] || die "no executable $f"; done
command -v tcpdump >/dev/null || die "no tcpdump"
# The system's python: a version manager's shim takes a second to start.
py=/usr/bin/python3
[[ -x $py ]] || py=$(command -v python3) || die "no python3"
int() { [[ $1 =~ ^[0-9]+$ ]]; }
int "$seconds" && int "$rounds" && int "$rounds2" && int "$snaplen" && int "$idle_wait" && int "$max_retries" \
  && [[ $foreign_max =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad number"
((max_retries <= 200)) || die "-x: at most 200"
((seconds >= 1 && seconds <= 30 && rounds >= 1 && rounds <= 20 && rounds2 >= 1 && rounds2 <= 20)) \
  || die "-t 1..30, -r and -R 1..20"
((snaplen >= 64 && snaplen <= 65535)) || die "-s 64..65535"
[[ $parts =~ ^(1|2|1,2|2,1)$ ]] || die "bad -p"
[[ $frames =~ ^[0-9]+:[0-9]+(,[0-9]+:[0-9]+)*$ ]] || die "bad -f"
[[ $percents =~ ^[0-9]+(,[0-9]+)*$ && $counts =~ ^[0-9]+(,[0-9]+)*$ ]] || die "bad -S or -N"
[[ $part2 =~ ^[0-9]+:[0-9]+$ && $cpus =~ ^[0-9]+:[0-9]+$ ]] || die "bad -P or -C"
IFS=, read -ra mode_list <<<"$modes"
for m in "${mode_list[@]}"; do [[ $m =~ ^(srl|tcpdump|srl-xdp|srl-generic|srl-tc)$ ]] || die "unknown mode $m"; done
[[ -z $profile || -r $profile ]] || die "-q: cannot read $profile"
IFS=, read -ra frame_list <<<"$frames"
[[ -z $tools ]] && tools=srl,tcpdump${controld:+,controld}
IFS=, read -ra tool_list <<<"$tools"
for t in "${tool_list[@]}"; do
  [[ $t =~ ^(srl|tcpdump|controld)$ ]] || die "unknown part 2 tool $t"
  [[ $t != controld || -n $controld ]] || die "-T controld needs -c CONTROLD"
done
IFS=, read -ra percent_list <<<"$percents"
IFS=, read -ra count_list <<<"$counts"
for p in "${percent_list[@]}"; do ((p >= 1 && p <= 100 && 100 % p == 0)) || die "-S: percents that divide 100"; done
for n in "${count_list[@]}"; do ((n >= 1 && n <= 32)) || die "-N: 1..32 captures"; done
for fr in "${frame_list[@]}"; do
  ((${fr%%:*} >= 64 && ${fr%%:*} <= 1500 && ${fr#*:} >= 1000 && ${fr#*:} <= 2000000)) \
    || die "-f: sizes 64..1500, rates 1000..2000000"
done
rate_of() {  # SIZE: its rate in -f
  local fr
  for fr in "${frame_list[@]}"; do [[ ${fr%%:*} == "$1" ]] && { echo "${fr#*:}"; return 0; }; done
  return 1
}
rate_of "${part2%%:*}" >/dev/null || die "-P: frame size ${part2%%:*} is not in -f"
((${part2#*:} >= 1 && 100 % ${part2#*:} == 0)) || die "-P: a percent that divides 100"
tx_cpu=${cpus%%:*} rx_cpu=${cpus#*:}
((tx_cpu < $(nproc) && rx_cpu < $(nproc))) || die "-C: this machine has $(nproc) CPUs"

# Everything below runs under the lock the other live tests take.
if [[ -z ${CAPTURE_BENCH_LOCKED:-} ]]; then
  flock -n /tmp/srl-live.lock true || echo "capture_bench: waiting for /tmp/srl-live.lock (up to 30 min)"
  CAPTURE_BENCH_LOCKED=1 exec flock -w 1800 /tmp/srl-live.lock "$0" "${args[@]}"
fi

srl=$(realpath "$srl") blast=$(realpath "$blast") sink=$(realpath "$sink")
[[ -n $controld ]] && controld=$(realpath "$controld")
# srl and controld plan with this profile, or with none (not root's own).
if [[ -n $profile ]]; then export SRL_PROFILE=$(realpath "$profile"); else export SRL_PROFILE=/nonexistent/srl-profile.json; fi
mkdir -p "$(dirname "$csv")" && csv=$(realpath "$csv")
id=$$
a=cb-a-$id b=cb-b-$id va=cbva$id vb=cbvb$id
port=9000 other=9001
tmp=$(mktemp -d /tmp/capture-bench.XXXXXX)
bpffs=$tmp/bpffs out=$tmp/out
pids=() sink_pid="" daemon_pid=""
cleanup() {
  local p
  for p in "${pids[@]}" $sink_pid $daemon_pid; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}" $sink_pid $daemon_pid; do wait "$p" 2>/dev/null; done
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  umount "$bpffs" 2>/dev/null
  umount "$out" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$here/veth_hosts.sh"
veth_hosts "$a" "$b" "$va" "$vb" 10.89.0
mkdir -p "$bpffs" "$out" && mount -t bpf bpf "$bpffs" && mount -t tmpfs -o size=6g,mode=1777 tmpfs "$out" \
  || { echo "cannot mount the bpffs or the tmpfs" >&2; exit 1; }

hz=$(getconf CLK_TCK)
ncpu=$(grep -c '^cpu[0-9]' /proc/stat)
# Busy time of the machine, two ways. /proc/stat's user, system, irq and
# softirq are sampled at each tick (CONFIG_TICK_CPU_ACCOUNTING): a periodic
# load like this one (the sender's paced batches, the sink's 1 ms polls)
# aliases with the 250 Hz tick, and the same run reads from 1.1 to 2.2 s.
# Idle time, with NO_HZ_IDLE, is measured at every entry to and exit from
# idle: busy = CPUs x wall time - idle (and iowait) is exact to the 10 ms
# that /proc/stat rounds to. `mach` is that one; `mach_tick` the sampled one.
idle_jiffies() { awk '/^cpu /{print $5 + $6}' /proc/stat; }
busy_jiffies() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
steal_jiffies() { awk '/^cpu /{print $9}' /proc/stat; }
now_us() { echo "${EPOCHREALTIME/./}"; }
task_ns() {  # PID: on-CPU ns of all its threads
  # %.0f: mawk prints sums past 2^31 in %.6g (3.1555e+09), which $(( )) refuses.
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}
# CPU ticks (utime + stime + reaped children's) of every user process but
# this script and its descendants: what else ran on the machine (other
# users' builds and commands). Short-lived processes are seen through the
# parent that reaps them, so this overcounts (a reaped child brings all its
# time), which only makes a run look noisier than it was.
foreign_ticks() {
  "$py" - "$$" <<'PY'
import os, sys
root, me = int(sys.argv[1]), os.getpid()
procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        s = open("/proc/%s/stat" % d).read()
    except OSError:
        continue
    f = s[s.rfind(")") + 2:].split()
    procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
children = {}
for p, (pp, _) in procs.items():
    children.setdefault(pp, []).append(p)
mine, todo = {root, me}, [root, me]
while todo:
    for c in children.get(todo.pop(), []):
        if c not in mine:
            mine.add(c)
            todo.append(c)
print(sum(t for p, (pp, t) in procs.items() if p not in mine and p != 2 and pp != 2))
PY
}
ksoftirqd_ns() {
  local sum=0 p
  for p in $(pgrep -x 'ksoftirqd/[0-9]+'); do sum=$((sum + $(task_ns "$p"))); done
  echo "$sum"
}
udp_stat() {  # FIELD of the Udp line of /proc/net/snmp in B
  ip netns exec "$b" awk -v f="$1" '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1 }
                                           else print $c }' /proc/net/snmp
}
hooked() { [[ $(ip -n "$b" link show "$vb") == *xdp* || $(tc -n "$b" filter show dev "$vb" ingress 2>/dev/null) == *bpf* ]]; }

# Busy share of the machine over SECONDS, in percent of all CPUs.
busy_percent() {
  local i0 w0 i1 w1
  i0=$(idle_jiffies) w0=$(now_us)
  sleep "$1"
  i1=$(idle_jiffies) w1=$(now_us)
  awk -v w=$((w1 - w0)) -v i=$((i1 - i0)) -v c="$ncpu" -v hz="$hz" \
    'BEGIN { b = 100 - 100 * i / hz / (c * w / 1e6); printf "%d", b < 0 ? 0 : b }'
}
# Before each run: wait until the machine is at most 10% busy over a
# quarter of a second, up to 60 s per run and -w seconds in all; sets busy_before.
wait_budget=$idle_wait
idle_gate() {
  local start=$SECONDS
  busy_before=$(busy_percent 0.25)
  while ((busy_before > 10 && SECONDS - start < 60 && wait_budget > 0)); do
    sleep 1
    wait_budget=$((wait_budget - 2))
    busy_before=$(busy_percent 0.5)
  done
}

# --- controld (part 2 through the daemon) -----------------------------------
export SRL_SOCKET=$tmp/controld.sock
start_daemon() {
  ip netns exec "$b" taskset -c "$rx_cpu" "$controld" --socket "$SRL_SOCKET" --state "$tmp/state.db" \
    --bpffs "$bpffs" --cache "$tmp/cache" 2>>"$tmp/controld.log" &
  daemon_pid=$!
  for _ in $(seq 300); do
    [[ -S $SRL_SOCKET ]] && "$srl" ls -q >/dev/null 2>"$tmp/ls.err" && return 0
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "controld did not start: $(tail -3 "$tmp/controld.log"); srl ls: $(cat "$tmp/ls.err" 2>/dev/null)" >&2
  return 1
}

# --- one run -----------------------------------------------------------------
request() {  # FILE: the srl request writing FILE
  echo "(udp) > (port, which=dst) ${port}> (pcap, file=\"$1\", snaplen=$snaplen)"
}

# Starts N captures of MODE; sets pids. Returns once they capture (bounded).
start_capture() {  # MODE N
  local mode=$1 n=$2 i
  pids=() capture_hook=
  case $mode in
    baseline) ;;
    srl | srl-xdp | srl-generic | srl-tc)
      local extra=() reqs=()
      [[ $mode == srl-xdp ]] && extra=(--hook xdp)
      [[ $mode == srl-generic ]] && extra=(--hook xdp --xdp-mode generic)
      [[ $mode == srl-tc ]] && extra=(--hook tc)
      for ((i = 1; i <= n; i++)); do reqs+=(-e "$(request "$out/srl.$i.pcap")"); done
      ip netns exec "$b" taskset -c "$rx_cpu" "$srl" run --dev "$vb" "${extra[@]}" --bpffs "$bpffs" \
        --cache "$tmp/cache" --interval 3600 -j "${reqs[@]}" >"$tmp/srl.out" 2>"$tmp/srl.err" &
      pids=($!)
      for _ in $(seq 600); do
        if grep -q 'program id' "$tmp/srl.err"; then
          # Where srl's plan put the request: a capture is read with its hook.
          capture_hook=$(grep 'program id' "$tmp/srl.err" | grep -o 'TC ingress\|XDP native\|XDP generic' | sort -u | paste -sd+)
          return 0
        fi
        kill -0 "${pids[0]}" 2>/dev/null || break
        sleep 0.05
      done
      echo "srl did not start: $(cat "$tmp/srl.err")" >&2; return 1 ;;
    tcpdump)
      capture_hook="AF_PACKET"
      for ((i = 1; i <= n; i++)); do
        ip netns exec "$b" taskset -c "$rx_cpu" tcpdump -i "$vb" -w "$out/td.$i.pcap" -s "$snaplen" \
          "udp dst port $port" >/dev/null 2>"$tmp/td.$i.err" &
        pids+=($!)
      done
      for ((i = 1; i <= n; i++)); do
        for _ in $(seq 200); do grep -q 'listening on' "$tmp/td.$i.err" && break; sleep 0.05; done
        grep -q 'listening on' "$tmp/td.$i.err" || { echo "tcpdump did not start: $(cat "$tmp/td.$i.err")" >&2; return 1; }
      done ;;
    controld)
      start_daemon || return 1
      pids=("$daemon_pid")
      for ((i = 1; i <= n; i++)); do
        "$srl" apply -n "cap$i" --dev "$vb" -e "$(request "$out/cd.$i.pcap")" >>"$tmp/apply.log" 2>&1 \
          || { echo "srl apply cap$i failed: $(tail -3 "$tmp/apply.log")" >&2; return 1; }
      done ;;
  esac
}

# Stops the captures of MODE; sets captured (sum over the N captures, from
# the tools' own counters), capture_dropped and the error text if any.
stop_capture() {  # MODE N
  local mode=$1 n=$2 i p rc
  captured=- capture_dropped=- stop_error=""
  case $mode in
    baseline) ;;
    srl*)
      kill -TERM "${pids[0]}"; wait "${pids[0]}"; rc=$?
      pids=()
      [[ $rc -eq 0 ]] || stop_error="srl run exited $rc: $(tail -3 "$tmp/srl.err" | tr '\n' ' ')"
      # Captured: the pcap nodes' blocks; dropped: the copies its channels
      # lost (a full copy area), as tcpdump's "dropped by kernel".
      read -r captured capture_dropped < <("$py" -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = lines[-1]
assert last["final"]
print(sum(n["blocks"] for n in last["nodes"] if n["filter"] == "pcap"),
      sum(c.get("lost", 0) for c in last.get("channels", [])))' "$tmp/srl.out" 2>/dev/null) \
        || { captured='?' capture_dropped=-; }
      [[ -n $captured ]] || captured='?'
      [[ -n $capture_dropped ]] || capture_dropped=-
      cp "$tmp/srl.err" "$tmp/last-srl.err" ;;
    tcpdump)
      for p in "${pids[@]}"; do kill -INT "$p"; done
      for p in "${pids[@]}"; do wait "$p"; done
      pids=()
      captured=0 capture_dropped=0
      for ((i = 1; i <= n; i++)); do
        local c d
        c=$(awk '/packets captured/{print $1}' "$tmp/td.$i.err") d=$(awk '/dropped by kernel/{print $1}' "$tmp/td.$i.err")
        [[ -n $c && -n $d ]] || { captured='?'; stop_error="tcpdump $i: $(cat "$tmp/td.$i.err")"; break; }
        captured=$((captured + c)) capture_dropped=$((capture_dropped + d))
      done ;;
    controld)
      captured=0
      for ((i = 1; i <= n; i++)); do
        local c
        c=$("$srl" stats -j "cap$i" 2>/dev/null | "$py" -c '
import json, sys
print(sum(n["blocks"] for n in json.load(sys.stdin)["nodes"] if n["filter"] == "pcap"))' 2>/dev/null) \
          || { captured='?'; stop_error="srl stats cap$i failed"; }
        [[ $captured != '?' ]] && captured=$((captured + c))
      done
      # Removing a request rebuilds the userspace part of the others on the
      # device, which truncates their pcap files (a bug at the time of
      # writing): stop the daemon first (its userspace parts close their
      # files; the kernel parts stay), keep the files, then start it again
      # and remove the requests.
      kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid="" pids=()
      for ((i = 1; i <= n; i++)); do mv "$out/cd.$i.pcap" "$out/kept.cd.$i.pcap" 2>/dev/null; done
      start_daemon || stop_error+=" controld did not start again"
      for ((i = 1; i <= n; i++)); do "$srl" rm "cap$i" >>"$tmp/apply.log" 2>&1 || stop_error+=" srl rm cap$i failed"; done
      kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=""
      rm -f "$out"/cd.*.pcap "$tmp/state.db" "$tmp"/state.db-* ;;
  esac
  for _ in $(seq 40); do hooked || break; sleep 0.05; done
  hooked && stop_error+=" a hook is still attached to $vb after the capture ended"
  return 0
}

# Records, records not UDP to the port or not cut at the snap length, and
# the fewest records in one file, over the capture files of this run.
check_files() {
  local files=("$out"/*.pcap)
  [[ -e ${files[0]} ]] || { echo "0 0 0"; return; }
  "$py" "$here/capture_files.py" "$port" "$snaplen" "${files[@]}" |
    awk '{t += $2; b += ($3 < 0 ? 1 : $3); if (f == "" || $2 < f) f = $2} END {print t + 0, b + 0, f + 0}'
}

header=part,frame,percent,n,mode,round,rate,sent,selected,host_received,host_selected,rcvbuf_errors,captured,capture_dropped,file_packets,file_bad,file_fewest,send_seconds,mach_s,own_s,sender_s,sink_s,ksoftirqd_s,steal_s,busy_before,mach_tick_s,window_s,foreign_s,attempt,error,hook
echo "$header" >"$csv"  # each run is appended as it ends
failed_runs=()
run_one() {  # PART FRAME PERCENT N MODE ROUND
  local part=$1 frame=$2 pct=$3 n=$4 mode=$5 round=$6
  local rate every count payload busy_before
  idle_gate
  rate=$(rate_of "$frame") every=$((100 / pct)) count=$((rate * seconds)) payload=$((frame - 42))
  ip netns exec "$b" taskset -c "$rx_cpu" "$sink" --ports=$port,$other --max-seconds=$((seconds * 4 + 120)) \
    --poll-us=1000 >"$tmp/sink.out" 2>"$tmp/sink.err" &
  sink_pid=$!
  for _ in $(seq 100); do grep -q ready "$tmp/sink.err" && break; sleep 0.02; done
  if ! start_capture "$mode" "$n"; then
    local q
    for q in "${pids[@]}" $sink_pid $daemon_pid; do kill -TERM "$q" 2>/dev/null; done
    for q in "${pids[@]}" $sink_pid $daemon_pid; do wait "$q" 2>/dev/null; done
    pids=() sink_pid="" daemon_pid=""
    rm -f "$out"/*.pcap "$tmp/state.db" "$tmp"/state.db-*
    return 1
  fi
  sleep 0.3
  local busy0 soft0 own0=0 rcvbuf0 p steal0 steal1 idle0 idle1 wall0 wall1 foreign0 foreign1
  rcvbuf0=$(udp_stat RcvbufErrors)
  foreign0=$(foreign_ticks)
  for p in "${pids[@]}"; do own0=$((own0 + $(task_ns "$p"))); done
  soft0=$(ksoftirqd_ns) busy0=$(busy_jiffies) steal0=$(steal_jiffies) idle0=$(idle_jiffies) wall0=$(now_us)
  local line
  line=$(ip netns exec "$a" taskset -c "$tx_cpu" "$blast" --dst=10.89.0.2 --port=$port --sport=$port \
    --every=$every --other-port=$other --count="$count" --rate="$rate" --payload="$payload" \
    --max-seconds=$((seconds * 3 + 10)))
  sleep 1.5
  local busy1 soft1 own1=0
  idle1=$(idle_jiffies) wall1=$(now_us) busy1=$(busy_jiffies) soft1=$(ksoftirqd_ns) steal1=$(steal_jiffies)
  foreign1=$(foreign_ticks)
  for p in "${pids[@]}"; do own1=$((own1 + $(task_ns "$p"))); done
  stop_capture "$mode" "$n"
  kill -TERM "$sink_pid"; wait "$sink_pid"; sink_pid=""
  local rcvbuf1 files
  rcvbuf1=$(udp_stat RcvbufErrors)
  files=$(check_files)
  rm -f "$out"/*.pcap
  field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }
  local sent got got_sel sender_s sink_s
  sent=$(field sent "$line") got=$(field received "$(cat "$tmp/sink.out")")
  got_sel=$(field port_$port "$(cat "$tmp/sink.out")")
  sender_s=$(awk -v u="$(field user_s "$line")" -v s="$(field sys_s "$line")" 'BEGIN{print u + s}')
  sink_s=$(awk -v u="$(field user_s "$(cat "$tmp/sink.out")")" -v s="$(field sys_s "$(cat "$tmp/sink.out")")" 'BEGIN{print u + s}')
  [[ ${sent:-0} -gt 0 ]] || { echo "udp_blast sent nothing: $line" >&2; return 1; }
  local selected=$(((sent + every - 1) / every))
  local f_total f_bad f_fewest
  read -r f_total f_bad f_fewest <<<"$files"
  [[ $mode == baseline ]] && f_total=- f_bad=- f_fewest=-
  local err=$stop_error
  [[ $got == "$sent" && $got_sel == "$selected" ]] || err+=" host got $got of $sent ($got_sel of $selected selected)"
  [[ $mode == baseline || $captured == $((selected * n)) ]] || err+=" captured $captured of $((selected * n))"
  [[ $mode == baseline || ($f_total == $((selected * n)) && $f_bad == 0) ]] || err+=" files: $f_total records, $f_bad bad"
  err=${err//[,\"]/ }
  echo "$part,$frame,$pct,$n,$mode,$round,$rate,$sent,$selected,$got,$got_sel,$((rcvbuf1 - rcvbuf0)),$captured,$capture_dropped,$f_total,$f_bad,$f_fewest,$(field seconds "$line"),$(awk -v w=$((wall1 - wall0)) -v i=$((idle1 - idle0)) -v c="$ncpu" -v hz="$hz" 'BEGIN{printf "%.3f", c * w / 1e6 - i / hz}'),$(awk -v x=$((own1 - own0)) 'BEGIN{printf "%.4f", x / 1e9}'),$sender_s,$sink_s,$(awk -v x=$((soft1 - soft0)) 'BEGIN{printf "%.4f", x / 1e9}'),$(awk -v j=$((steal1 - steal0)) -v hz="$hz" 'BEGIN{printf "%.2f", j / hz}'),$busy_before,$(awk -v j=$((busy1 - busy0)) -v hz="$hz" 'BEGIN{printf "%.3f", j / hz}'),$(awk -v w=$((wall1 - wall0)) 'BEGIN{printf "%.3f", w / 1e6}'),$(awk -v j=$((foreign1 - foreign0)) -v hz="$hz" 'BEGIN{printf "%.2f", j / hz}'),$attempt,\"${err# }\",${capture_hook:--}" >"$tmp/run"
  awk -F, '{printf "  %-11s f=%-4s %3s%% n=%-2s r=%s sent=%s host=%s captured=%s mach=%ss own=%ss foreign=%ss %s\n", $5, $2, $3, $4, $6, $8, $10, $13, $19, $20, $28, $30}' "$tmp/run"
  foreign_s=$(cut -d, -f28 "$tmp/run")
}

# A run again while other processes took more than -F CPU-seconds during
# it, up to 3 attempts (and -x retries in all); the attempt with the least
# foreign CPU is kept.
retries_left=$max_retries
run_kept() {  # PART FRAME PERCENT N MODE ROUND
  local best="" best_foreign=""
  for attempt in 1 2 3; do
    if ! run_one "$@"; then
      echo "    (the run failed: again)"
      continue
    fi
    if [[ -z $best ]] || awk -v a="$foreign_s" -v b="$best_foreign" 'BEGIN{exit !(a < b)}'; then
      best=$(cat "$tmp/run") best_foreign=$foreign_s
    fi
    awk -v a="$foreign_s" -v m="$foreign_max" 'BEGIN{exit !(a <= m)}' && break
    ((retries_left > 0 && attempt < 3)) || break
    retries_left=$((retries_left - 1))
    echo "    (other processes took ${foreign_s} s of CPU during the run: again)"
  done
  if [[ -z $best ]]; then
    failed_runs+=("$*")
    return 0
  fi
  echo "$best" >>"$csv"
}

# --- the runs ----------------------------------------------------------------
echo "srl: $srl"
echo "udp_blast: $blast, udp_sink: $sink${controld:+, controld: $controld}"
echo "kernel $(uname -r), $(nproc) CPUs; sender on CPU $tx_cpu, udp_sink and captures on CPU $rx_cpu"
echo "snaplen $snaplen, $seconds s of traffic per run; request: $(request F)"
echo "machine $(busy_percent 2)% busy before the runs (load: $(cut -d' ' -f1-3 /proc/loadavg));" \
  "each run waits for <= 10% busy (up to 60 s, $idle_wait s in all)"
echo

if [[ $parts == *1* ]]; then
  echo "part 1: CPU per captured packet, $rounds rounds"
  for fr in "${frame_list[@]}"; do
    for pct in "${percent_list[@]}"; do
      list=(baseline "${mode_list[@]}")
      for ((r = 1; r <= rounds; r++)); do
        for ((k = 0; k < ${#list[@]}; k++)); do  # the order rotates from round to round
          m=${list[$(((k + r - 1) % ${#list[@]}))]}
          run_kept 1 "${fr%%:*}" "$pct" 1 "$m" "$r"
        done
      done
    done
  done
fi
if [[ $parts == *2* ]]; then
  echo "part 2: N captures sharing a prefix, ${part2%%:*} B frames, ${part2#*:}% selected, $rounds2 rounds"
  list=(baseline:1)
  for t in "${tool_list[@]}"; do for n in "${count_list[@]}"; do list+=("$t:$n"); done; done
  for ((r = 1; r <= rounds2; r++)); do
    for ((k = 0; k < ${#list[@]}; k++)); do
      e=${list[$(((k + r - 1) % ${#list[@]}))]}
      run_kept 2 "${part2%%:*}" "${part2#*:}" "${e#*:}" "${e%%:*}" "$r"
    done
  done
fi
echo
((${#failed_runs[@]} == 0)) || echo "runs that failed 3 times and are left out: ${failed_runs[*]}"
echo "raw figures: $csv"
echo

"$py" - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def f(r, k): return float(r[k])
def path(r): return f(r, "sender_s") + f(r, "sink_s") + f(r, "own_s") + f(r, "ksoftirqd_s")
def med(xs): return statistics.median(xs) if xs else float("nan")
def runs(part, frame, pct, n, mode):
    return [r for r in rows if (r["part"], r["frame"], r["percent"], r["n"], r["mode"]) == (part, frame, pct, n, mode)]
def base_of(r):  # the baseline run of the same part, configuration and round
    for b in rows:
        if (b["part"], b["frame"], b["percent"], b["mode"], b["round"]) == (r["part"], r["frame"], r["percent"], "baseline", r["round"]):
            return b
def diffs(rs, measure):  # per round: run - its round's baseline
    return [measure(r) - measure(base_of(r)) for r in rs if base_of(r)]
def extra(rs, measure):  # their median
    return med(diffs(rs, measure))
def ranged(rs, measure):  # "median [min..max]"
    d = diffs(rs, measure)
    return "%.3f [%.2f..%.2f]" % (med(d), min(d), max(d)) if d else "-"
def checks(rs, n):
    sel = int(rs[0]["selected"]) * n
    cap = min(int(r["captured"]) if r["captured"].isdigit() else -1 for r in rs)
    host = min(int(r["host_received"]) for r in rs)
    sent = int(rs[0]["sent"])
    drops = sum(int(r["capture_dropped"]) for r in rs if r["capture_dropped"].isdigit())
    errs = sum(1 for r in rs if r["error"])
    return sel, cap, host, sent, drops, errs
def ok(got, want): return "all %d" % want if got == want else "**%d of %d**" % (got, want)
def uniq(items): return list(dict.fromkeys(items))  # in order of first appearance
mach = lambda r: f(r, "mach_s")

p1 = [r for r in rows if r["part"] == "1"]
if p1:
    print("Part 1: CPU per captured packet (medians over %d rounds). extra = CPU-s above the same" % len({r["round"] for r in p1}))
    print("round's baseline (no capture): whole machine (mach) and per-task (path); own = the capture")
    print("process alone; us/pkt = extra mach CPU-us per captured packet. [min..max] over the rounds.\n")
    print("| frame | sel | pps | tool | sent | host got (min) | captured (min) | cap. drops | mach s | extra mach s | own s | extra path s | us/pkt mach | us/pkt path | srl/tcpdump mach | srl/tcpdump path |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    configs = uniq((r["frame"], r["percent"]) for r in p1)
    modes = uniq(r["mode"] for r in p1)
    for frame, pct in configs:
        per = {}
        for m in modes:
            rs = runs("1", frame, pct, "1", m)
            if not rs: continue
            sel, cap, host, sent, drops, errs = checks(rs, 1)
            em, ep = extra(rs, mach), extra(rs, path)
            per[m] = (em / sel * 1e6 if m != "baseline" else None, ep / sel * 1e6 if m != "baseline" else None)
            ratio_m = ratio_p = ""
            if m.startswith("srl") and "tcpdump" in [x for x in modes]:
                t = runs("1", frame, pct, "1", "tcpdump")
                tm, tp = extra(t, mach), extra(t, path)
                ratio_m = "%.2f" % (em / tm) if tm > 0 else "n/a"
                ratio_p = "%.2f" % (ep / tp) if tp > 0 else "n/a"
            hooks = "+".join(uniq(r.get("hook", "-") for r in rs if r.get("hook", "-") not in ("", "-")))
            print("| %s | %s%% | %s | %s | %d | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s |" % (
                frame, pct, rs[0]["rate"], m + (" (%s)" % hooks if hooks else ""), sent, ok(host, sent),
                ok(cap, sel) if m != "baseline" else "-", drops if m != "baseline" and any(r["capture_dropped"].isdigit() for r in rs) else "-",
                med([mach(r) for r in rs]),
                ranged(rs, mach) if m != "baseline" else "-",
                "%.3f" % med([f(r, "own_s") for r in rs]) if m != "baseline" else "-",
                "%.3f" % ep if m != "baseline" else "-",
                "%.2f" % per[m][0] if m != "baseline" else "-",
                "%.2f" % per[m][1] if m != "baseline" else "-", ratio_m, ratio_p))
    bad = [r for r in p1 if r["error"]]
    if bad:
        print("\nRuns with a failed check:")
        for r in bad: print("- %s B %s%% %s round %s: %s" % (r["frame"], r["percent"], r["mode"], r["round"], r["error"]))
    print()

p2 = [r for r in rows if r["part"] == "2"]
if p2:
    frame, pct = p2[0]["frame"], p2[0]["percent"]
    print("Part 2: N captures of the same traffic, %s B frames, %s%% selected (medians over %d rounds)." % (frame, pct, len({r["round"] for r in p2})))
    print("total = extra CPU-s of all N captures over the round's baseline ([min..max] over the rounds);")
    print("growth = total(N) / total(smallest N).\n")
    print("| tool | N | host got (min) | captured (min, all N) | cap. drops | extra mach s | own s | extra path s | growth mach | growth path |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tools = uniq(r["mode"] for r in p2 if r["mode"] != "baseline")
    ns = sorted({int(r["n"]) for r in p2 if r["mode"] != "baseline"})
    growth = {}
    for t in tools:
        first = None
        for n in ns:
            rs = runs("2", frame, pct, str(n), t)
            if not rs: continue
            sel, cap, host, sent, drops, errs = checks(rs, n)
            em, ep = extra(rs, mach), extra(rs, path)
            if first is None: first = (n, em, ep)
            gm = em / first[1] if first[1] > 0 else float("nan")
            gp = ep / first[2] if first[2] > 0 else float("nan")
            growth[(t, n)] = (gm, gp)
            print("| %s | %d | %s | %s | %s | %s | %.3f | %s | %.2f | %.2f |" % (
                t, n, ok(host, sent), ok(cap, sel), drops if any(r["capture_dropped"].isdigit() for r in rs) else "-",
                ranged(rs, mach), med([f(r, "own_s") for r in rs]), ranged(rs, path), gm, gp))
    bad = [r for r in p2 if r["error"]]
    if bad:
        print("\nRuns with a failed check:")
        for r in bad: print("- %s N=%s round %s: %s" % (r["mode"], r["n"], r["round"], r["error"]))
    print()

# Noise: mach - path is what ran besides the measured tasks (other load,
# kernel time charged to nobody we count); busy_before, how busy the
# machine was just before the run.
if rows:
    print("Noise per mode: median [max] of mach - path (CPU-s per run besides the measured tasks: other")
    print("load, and kernel time charged to no task, like interrupts that wake an idle CPU), of the CPU")
    print("other processes took (after retries), of the tick-sampled busy time minus mach, and the most")
    print("the machine was busy in the quarter second before a run.\n")
    print("| part | mode | mach - path s | other processes s | mach_tick - mach s | busy before % (max) | steal s (max) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for k in uniq((r["part"], r["mode"]) for r in rows):
        rs = [x for x in rows if (x["part"], x["mode"]) == k]
        d = [mach(x) - path(x) for x in rs]
        t = [f(x, "mach_tick_s") - mach(x) for x in rs]
        o = [f(x, "foreign_s") for x in rs]
        print("| %s | %s | %.2f [%.2f] | %.2f [%.2f] | %.2f [%.2f..%.2f] | %d | %.2f |" % (k[0], k[1], med(d), max(d), med(o), max(o), med(t), min(t), max(t),
              max(int(x["busy_before"]) for x in rs), max(f(x, "steal_s") for x in rs)))
PY
