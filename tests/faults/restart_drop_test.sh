#!/usr/bin/env bash
# Faults, case 1: a drop holds while the daemon restarts under traffic.
# 30 counting requests and one drop share the XDP hook of vb; datagrams to
# the dropped port flow the whole time while the daemon is stopped
# (SIGTERM) and started, and killed (SIGKILL) and started, again and
# again. Recovery builds every stored request of the device first and
# swaps the whole program into the adopted hook in one update, so that
# - not one datagram reaches the dropped port's server;
# - the hook always holds a program (sampled every 10 ms);
# - every request is back, and the counters went on counting.
# Needs root; exits 77 (skipped) without it.
# Usage: restart_drop_test.sh CONTROLD SRL [RESTARTS]
set -uo pipefail
restarts=${3:-3}
. "$(dirname "$0")/lib.sh" srlf "$1" "$2"

snapshot
start_daemon || { summary; exit 1; }
n=30
apply_requests $n
xdp_attached && ok "$((n + 1)) requests on vb's XDP hook" || fail "nothing attached to vb"

# A server on the dropped port, a watcher of the hook, and a sender at
# about 1,000 datagrams a second to the dropped port and to c1's.
seconds=$((restarts * 8 + 4))
count_received 4444 $((seconds + 2)) >"$tmp/received" &
receiver=$!
( end=$((SECONDS + seconds)); gaps=0
  while ((SECONDS < end)); do
    [[ $(ip -n "$b" link show vb) == *xdp* ]] || gaps=$((gaps + 1))
    sleep 0.01
  done
  echo "$gaps" >"$tmp/gaps" ) &
watcher=$!
send_steady "$seconds" 4444 5001 >"$tmp/sent" &
sender=$!
sleep 1
before=$("$srl" stats -j c1 2>/dev/null | python3 -c '
import json, sys
print(next(x["blocks"] for x in json.load(sys.stdin)["nodes"] if x["filter"] == "count"))')
for r in $(seq 1 "$restarts"); do
  if ((r % 2)); then stop_daemon; else kill_daemon; fi
  sleep 1
  start_daemon || break
  sleep 2
done
wait "$sender"
wait "$watcher"
wait "$receiver"
sent=$(cat "$tmp/sent")
received=$(cat "$tmp/received")
[[ $received == 0 ]] \
  && ok "$restarts restarts (SIGTERM and SIGKILL in turn) under traffic: 0 of $sent datagrams got past the drop" \
  || fail "$received of $sent datagrams got past the drop during $restarts restarts"
[[ $(cat "$tmp/gaps") == 0 ]] && ok "the hook held a program at every look (every 10 ms)" \
  || fail "the hook was empty at $(cat "$tmp/gaps") looks"
listed=$("$srl" ls -q 2>/dev/null | wc -l)
[[ $listed == $((n + 1)) ]] && ok "all $listed requests are back" || fail "$listed of $((n + 1)) requests are back"
after=$("$srl" stats -j c1 2>/dev/null | python3 -c '
import json, sys
print(next(x["blocks"] for x in json.load(sys.stdin)["nodes"] if x["filter"] == "count"))')
[[ -n $before && -n $after ]] && ((after > before)) \
  && ok "c1 counted on across the restarts ($before, then $after)" \
  || fail "c1's count: $before before, $after after"
grep -q "recovery unit=[^ ]* requests=$((n + 1))" "$tmp/controld.log" && ok "recovery brought the device's requests up as one unit" \
  || fail "no unit recovery in the log: $(grep recovery "$tmp/controld.log" | tail -3)"

remove_requests $n
stop_daemon
! xdp_attached && [[ -z $(new_objects 5) && -z $(pins) ]] && ok "removed: nothing left" \
  || fail "left behind: attached=$(xdp_attached && echo yes) objects='$(new_objects 1)' pins='$(pins)'"
summary
