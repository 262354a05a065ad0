#!/usr/bin/env bash
# How long controld takes to bring N stored requests back after a restart,
# and how many datagrams get past a drop while it does, on a veth pair in
# namespaces of its own (needs root; takes /tmp/srl-live.lock).
#
# Usage: recovery_bench.sh CONTROLD SRL [ROUNDS] [N...]
#   N requests `(udp) > (port, which=dst) P> (count)` plus one
#   `(udp) > (port, which=dst) 4444> (drop)` on vb's XDP hook; the daemon is
#   stopped (SIGTERM) and started ROUNDS times (default 5) for each N
#   (default 1 30 100) while ~1,000 datagrams a second go to port 4444.
#   Recovery time: from the daemon's exec to the first `srl ls` that lists
#   all N + 1 requests (polled every 10 ms). Leaked: datagrams the server
#   on port 4444 received over all rounds of that N.
set -uo pipefail
[[ $# -ge 2 ]] || { sed -n '2,14p' "$0"; exit 2; }
if [[ -z ${RECOVERY_BENCH_LOCKED:-} ]]; then
  RECOVERY_BENCH_LOCKED=1 exec flock -w 1800 /tmp/srl-live.lock "$0" "$@"
fi
controld=$(realpath "$1") srl=$(realpath "$2")
rounds=${3:-5}
shift $(($# >= 3 ? 3 : 2))
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1 30 100)
. "$(dirname "$0")/../tests/live/lib.sh" srlrb
make_hosts
export SRL_SOCKET=$tmp/controld.sock
now_ms() { date +%s%3N; }
start_daemon() {
  ip netns exec "$b" "$controld" --socket "$SRL_SOCKET" --state "$tmp/state.db" --bpffs "$bpffs" \
    2>>"$tmp/controld.log" &
  dpid=$!
}
wait_listed() {  # N: until srl ls lists N requests (at most 60 s)
  for _ in $(seq 6000); do
    [[ -S $SRL_SOCKET && $("$srl" ls -q 2>/dev/null | wc -l) == "$1" ]] && return 0
    sleep 0.01
  done
  return 1
}
echo "controld: $controld"
echo "kernel $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
echo "| stored requests | rounds | recovery ms, median [min..max] | datagrams past the drop (sent) |"
echo "|---:|---:|---:|---:|"
for n in "${counts[@]}"; do
  rm -f "$tmp/state.db"*
  start_daemon
  wait_listed 0 || { echo "controld did not start" >&2; exit 1; }
  for i in $(seq 1 "$n"); do
    "$srl" apply -n "c$i" --dev vb -e "(udp) > (port, which=dst) $((5000 + i))> (count)" >/dev/null \
      || { echo "apply c$i failed" >&2; exit 1; }
  done
  "$srl" apply -n guard --dev vb -e '(udp) > (port, which=dst) 4444> (drop)' >/dev/null || exit 1
  seconds=$((rounds * 6 + 10))
  count_received 4444 $((seconds + 2)) >"$tmp/received" &
  receiver=$!
  send_steady "$seconds" 4444 >"$tmp/sent" &
  sender=$!
  times=()
  for r in $(seq 1 "$rounds"); do
    stop_daemon
    sleep 0.5
    t0=$(now_ms)
    start_daemon
    wait_listed $((n + 1)) || { echo "N=$n: not all requests back" >&2; break; }
    times+=($(($(now_ms) - t0)))
    sleep 1
  done
  wait "$sender" "$receiver"
  stats=$(printf '%s\n' "${times[@]}" | sort -n | awk '{v[NR]=$1} END {printf "%d [%d..%d]", v[int((NR+1)/2)], v[1], v[NR]}')
  echo "| $n | ${#times[@]} | $stats | $(cat "$tmp/received") ($(cat "$tmp/sent")) |"
  for i in $(seq 1 "$n"); do "$srl" rm "c$i" >/dev/null 2>&1; done
  "$srl" rm guard >/dev/null 2>&1
  stop_daemon
done
