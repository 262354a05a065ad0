#!/usr/bin/env bash
# Faults, case 3: the state database on a full filesystem. `srl rm` fails
# with the reason; the request keeps running and stays listed, now and after
# a restart (once there is room again); removing it then works. Then the
# disk fills at every write of an apply, a replace and a removal in turn
# (SRL_JOURNAL_FAIL_FROM=N: that write and all later ones fail): each fails
# saying why, and after a restart the state is the one before it.
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

# A full disk from the n-th write of an operation on, for n = 1, 2, ...
# until the operation goes through: each time it fails saying why, and after
# a restart the state is the one before it (the request absent, as it was,
# or still there), counting; never half applied or half removed.
#   apply:   keep (port 53) is new      replace: keep becomes port 57
#   remove:  keep goes
keep_text() { quiet_srl show -j keep 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])' 2>/dev/null; }
counts_on() {  # PORT: keep counts a datagram to PORT
  local c0 c1
  c0=$(count_keep); send_steady 0.1 "$1" >/dev/null; c1=$(count_keep)
  [[ -n $c0 && -n $c1 ]] && ((c1 > c0))
}
every_write() {  # apply|replace|remove
  local op=$1 n out rc names
  for n in $(seq 1 40); do
    start_daemon SRL_JOURNAL_FAIL_FROM="$n" || return
    case $op in
      apply) out=$("$srl" apply -n keep --dev vb -e "$keep53" 2>&1) ;;
      replace) out=$("$srl" apply --replace -n keep --dev vb -e "$keep57" 2>&1) ;;
      remove) out=$("$srl" rm keep 2>&1) ;;
    esac
    rc=$?
    stop_daemon
    start_daemon || return
    names=$(listed)
    if [[ $rc -eq 0 ]]; then
      case $op in
        apply) [[ $names == "keep other " ]] && counts_on 53 ;;
        replace) [[ $names == "keep other " && $(keep_text) == "$keep57" ]] && counts_on 57 ;;
        remove) [[ $names == "other " ]] ;;
      esac && ok "$op: a full disk at each of its $((n - 1)) writes: it failed, saying why, and left the state before; with room it went through" \
        || fail "$op: went through at write $n, but after a restart: '$names'"
      stop_daemon
      return
    fi
    [[ $out == *"full"* ]] || fail "$op, write $n: failed without saying why: $out"
    case $op in
      apply) [[ $names == "other " ]] ;;
      replace) [[ $names == "keep other " && $(keep_text) == "$keep53" ]] && counts_on 53 ;;
      remove) [[ $names == "keep other " ]] && counts_on 53 ;;
    esac || fail "$op, write $n: after a restart the state is not the one before ('$names', keep: '$(keep_text)')"
    stop_daemon
  done
  fail "$op: still failing at write 40"
}
keep53='(udp) > (port, which=dst) 53> (count)'
keep57='(udp) > (port, which=dst) 57> (count)'
rm -f "$state" "$state"*
start_daemon || { summary; exit 1; }
"$srl" apply -n other --dev vb -e '(udp) > (port, which=dst) 54> (count)' >/dev/null 2>&1 || fail "apply other"
stop_daemon
every_write apply    # ends with keep (53) applied
every_write replace  # ends with keep (57)
start_daemon && "$srl" apply --replace -n keep --dev vb -e "$keep53" >/dev/null 2>&1 \
  || fail "replace keep back"
stop_daemon
every_write remove   # ends with keep gone
start_daemon && "$srl" rm other >/dev/null 2>&1 || fail "rm other"
stop_daemon
! xdp_attached && [[ -z $(new_objects 5) && -z $(pins) ]] && ok "nothing left" \
  || fail "left behind: objects='$(new_objects 1)' pins='$(pins)'"
summary
