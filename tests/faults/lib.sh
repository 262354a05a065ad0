# Shared by the fault tests: the live tests' hosts (../live/lib.sh), a
# controld of the test's own in $b, and the requests they put on vb.
# Usage: . lib.sh PREFIX CONTROLD SRL
controld=$(realpath "$2")
srl=$(realpath "$3")
. "$(dirname "${BASH_SOURCE[0]}")/../live/lib.sh" "$1"
make_hosts
export SRL_SOCKET=$tmp/controld.sock
state=$tmp/state.db
daemon_args=()  # more of controld's options, for every start
start_daemon() {  # [ENV=VALUE...]: until it answers; sets dpid
  env "$@" ip netns exec "$b" "$controld" --socket "$SRL_SOCKET" --state "$state" --bpffs "$bpffs" \
    "${daemon_args[@]}" 2>>"$tmp/controld.log" &
  dpid=$!
  await_daemon
}
kill_daemon() {  # SIGKILL: a crash
  kill -KILL "$dpid" 2>/dev/null
  wait "$dpid" 2>/dev/null
  dpid=""
}
# N counting requests c1..cN (ports 5001..) and guard, a drop of port 4444.
apply_requests() {  # N
  local i
  for i in $(seq 1 "$1"); do
    "$srl" apply -n "c$i" --dev vb -e "(udp) > (port, which=dst) $((5000 + i))> (count)" \
      >/dev/null 2>&1 || fail "apply c$i"
  done
  "$srl" apply -n guard --dev vb -e '(udp) > (port, which=dst) 4444> (drop)' >/dev/null 2>&1 \
    || fail "apply guard"
}
remove_requests() {  # N
  local i
  for i in $(seq 1 "$1"); do "$srl" rm "c$i" >/dev/null 2>&1 || fail "rm c$i"; done
  "$srl" rm guard >/dev/null 2>&1 || fail "rm guard"
}
