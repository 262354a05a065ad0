#!/usr/bin/env bash
# controld as a process: it listens on its socket, refuses to start while
# another daemon answers there, stops on SIGTERM with exit 0 and removes its
# socket. Usage: daemon_test.sh CONTROLD
set -uo pipefail
controld=$(realpath "$1")
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

sock=$tmp/run/controld.sock
"$controld" --socket "$sock" --group srl-no-such-group 2>"$tmp/err1" &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
[[ -S $sock ]] && ok "listens on $sock" || fail "no socket: $(cat "$tmp/err1")"
[[ $(stat -c %a "$sock") == 600 ]] && ok "socket mode 0600 without the group" \
  || fail "socket mode $(stat -c %a "$sock")"

"$controld" --socket "$sock" 2>"$tmp/err2"
rc=$?
[[ $rc -eq 1 ]] && grep -q "another daemon answers on $sock" "$tmp/err2" \
  && ok "a second daemon on the same socket is refused" || fail "second daemon: exit $rc: $(cat "$tmp/err2")"

kill -TERM "$pid"
wait "$pid"
rc=$?
[[ $rc -eq 0 ]] && ok "SIGTERM: exit 0" || fail "SIGTERM: exit $rc: $(cat "$tmp/err1")"
[[ ! -e $sock ]] && ok "socket removed" || fail "socket left behind"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
