#!/usr/bin/env bash
# Faults, case 3: the state database on a full filesystem. `srl rm` fails
# with the reason; the request keeps running and stays listed, now and after
# a restart (once there is room again); removing it then works. Then the
# disk fills at every write of a removal in turn (SRL_JOURNAL_FAIL_FROM=N:
# that write and all later ones fail): the removal fails, and after a
# restart the request is back (the state before); it never vanishes.
# Nothing is left behind. The database lives on a small tmpfs of the test's own.
# Needs root; exits 77 (skipped) without it.
# Usage: disk_full_test.sh CONTROLD SRL
set -uo pipefail
. "$(dirname "$0")/lib.sh" srlx "$1" "$2"
small=$tmp/small
mkdir -p "$small" && mount -t tmpfs -o size=4m tmpfs "$small" || { echo "cannot mount a tmpfs" >&2; exit 1; }
trap 'stop_daemon; umount "$small" 2>/dev/null; cleanup' EXIT
state=$small/state.db
# Read-only queries. Under the sanitizer build, LeakSanitizer's thread
# tracer crashes now and then when this client exits ("Tracer caught
# signal 11"), failing a query that worked; the client's own leaks are
# checked by every other test, so here its leak check is off.
quiet_srl() { ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$srl" "$@"; }
count_keep() {
  quiet_srl stats -j keep 2>/dev/null |
    python3 -c 'import json,sys; print(next(n["blocks"] for n in json.load(sys.stdin)["nodes"] if n["filter"]=="count"))' 2>/dev/null
}
listed() { quiet_srl ls -q 2>/dev/null | tr '\n' ' '; }

snapshot
start_daemon || { summary; exit 1; }
"$srl" apply -n keep --dev vb -e '(udp) > (port, which=dst) 53> (count)' >/dev/null 2>&1 || fail "apply keep"
"$srl" apply -n other --dev vb -e '(udp) > (port, which=dst) 54> (count)' >/dev/null 2>&1 || fail "apply other"
# Fill the filesystem to the last byte.
dd if=/dev/zero of="$small/filler" bs=4k status=none 2>/dev/null
out=$("$srl" rm keep 2>&1)
rc=$?
[[ $rc -ne 0 && $out == *"full"* ]] && ok "full disk: srl rm keep fails, saying why: ${out%%$'\n'*}" \
  || fail "full disk: srl rm keep: exit $rc: $out"
names=$(listed)
[[ $names == "keep other " ]] && ok "full disk: keep is still listed" || fail "full disk: listed '$names'"
c0=$(count_keep)
send_steady 1 53 >/dev/null
c1=$(count_keep)
[[ -n $c0 && -n $c1 ]] && ((c1 > c0)) && ok "full disk: keep still counts ($c0, then $c1)" \
  || fail "full disk: keep's count $c0, then $c1"
# Room again, and a restart: keep comes back.
stop_daemon
rm -f "$small/filler"
start_daemon || { summary; exit 1; }
names=$(listed)
[[ $names == "keep other " ]] && ok "after a restart: keep and other are back" || fail "after a restart: '$names'"
"$srl" rm keep >/dev/null 2>&1 && "$srl" rm other >/dev/null 2>&1 && ok "with room: both removed" \
  || fail "with room: rm failed"
stop_daemon

for n in $(seq 1 40); do
  rm -f "$state" "$state"*
  start_daemon || break
  "$srl" apply -n keep --dev vb -e '(udp) > (port, which=dst) 53> (count)' >/dev/null 2>&1
  "$srl" apply -n other --dev vb -e '(udp) > (port, which=dst) 54> (count)' >/dev/null 2>&1
  stop_daemon
  start_daemon SRL_JOURNAL_FAIL_FROM="$n" || break
  out=$("$srl" rm keep 2>&1)
  if [[ $? -eq 0 ]]; then
    ok "a full disk at each of the $((n - 1)) writes of a removal: it failed, and keep came back"
    stop_daemon
    start_daemon || break
    names=$(listed)
    [[ $names == "other " ]] || fail "after the removal: '$names'"
    "$srl" rm other >/dev/null 2>&1 || fail "rm other"
    stop_daemon
    break
  fi
  [[ $out == *"full"* ]] || fail "write $n: rm keep failed without saying why: $out"
  stop_daemon
  start_daemon || break
  c0=$(count_keep); send_steady 1 53 >/dev/null; c1=$(count_keep)
  names=$(listed)
  [[ $names == "keep other " && -n $c0 && -n $c1 ]] && ((c1 > c0)) \
    || fail "write $n: after a restart keep is not back and counting ($names, $c0 -> $c1)"
  "$srl" rm keep >/dev/null 2>&1 && "$srl" rm other >/dev/null 2>&1 || fail "write $n: rm with room failed"
  stop_daemon
done
! xdp_attached && [[ -z $(new_objects 5) && -z $(pins) ]] && ok "nothing left" \
  || fail "left behind: objects='$(new_objects 1)' pins='$(pins)'"
summary
