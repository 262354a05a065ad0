#!/usr/bin/env bash
# Faults, case 5: a damaged state database never costs the running
# datapaths. With a drop and 20 counting requests on vb, the daemon is
# stopped and its database damaged three ways: the header overwritten, a
# page in the middle overwritten, the file truncated. Each time the daemon
# - refuses to start (exit 1), naming the damage and how to restore;
# - leaves the hook attached and its pins in place: the drop still drops;
# and after the restore it names (the backup it keeps), it starts with
# every request back.
# Needs root; exits 77 (skipped) without it.
# Usage: corrupt_db_test.sh CONTROLD SRL
set -uo pipefail
. "$(dirname "$0")/lib.sh" srlq "$1" "$2"

snapshot
start_daemon || { summary; exit 1; }
n=20
apply_requests $n
stop_daemon
[[ -f $state.good ]] && ok "a backup of the last good state is kept ($state.good)" \
  || fail "no backup at $state.good"
pins_before=$(pins)
pages=$(($(stat -c %s "$state") / 4096))
((pages >= 4)) || fail "the database has only $pages pages"

damage() {  # HOW
  cp "$state.good" "$state"
  rm -f "$state-wal" "$state-shm"
  case $1 in
    header) printf 'this is not a database at all....' | dd of="$state" conv=notrunc status=none ;;
    middle) head -c 4096 /dev/urandom | dd of="$state" bs=4096 seek=$((pages / 2)) conv=notrunc status=none ;;
    truncated) truncate -s $((pages / 2 * 4096)) "$state" ;;
  esac
}
for how in header middle truncated; do
  damage "$how"
  ip netns exec "$b" timeout 20 "$controld" --socket "$SRL_SOCKET" --state "$state" --bpffs "$bpffs" \
    >/dev/null 2>"$tmp/refused"
  rc=$?
  [[ $rc == 1 ]] && grep -q "is damaged" "$tmp/refused" && grep -q "cp $state.good $state" "$tmp/refused" \
    && ok "$how: controld refused to start, naming the damage and the restore" \
    || fail "$how: exit $rc: $(tail -2 "$tmp/refused")"
  xdp_attached && [[ $(pins) == "$pins_before" ]] && ok "$how: the hook and its pins are untouched" \
    || fail "$how: attached=$(xdp_attached && echo yes || echo no) pins='$(pins)'"
  count_received 4444 3 >"$tmp/received" &
  receiver=$!
  send_steady 2 4444 >"$tmp/sent"
  wait "$receiver"
  [[ $(cat "$tmp/received") == 0 ]] && ok "$how: the drop still drops ($(cat "$tmp/sent") sent, 0 received)" \
    || fail "$how: $(cat "$tmp/received") of $(cat "$tmp/sent") got past the drop"
done

# The restore the message names.
cp "$state.good" "$state"
rm -f "$state-wal" "$state-shm"
start_daemon
listed=$("$srl" ls -q 2>/dev/null | wc -l)
[[ $listed == $((n + 1)) ]] && ok "restored: all $listed requests are back" \
  || fail "restored: $listed of $((n + 1)) requests"

remove_requests $n
stop_daemon
! xdp_attached && [[ -z $(new_objects 5) && -z $(pins) ]] && ok "removed: nothing left" \
  || fail "left behind: objects='$(new_objects 1)' pins='$(pins)'"
summary
