#!/usr/bin/env bash
# controld as a process: it listens on its socket, refuses to start while
# another daemon answers there, serves `srl filters`, stops on SIGTERM with
# exit 0 and removes its socket; `srl filters` without a daemon says so; the
# CLI's daemon commands load from their module, and only they; every daemon
# command's -j output equals its golden file.
# Usage: daemon_test.sh CONTROLD SRL
set -uo pipefail
controld=$(realpath "$1")
srl=$(realpath "$2")
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
"$controld" --socket "$sock" --group srl-no-such-group --state "$tmp/state.db" \
  --bpffs "$tmp/bpffs" 2>"$tmp/err1" &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
[[ -S $sock ]] && ok "listens on $sock" || fail "no socket: $(cat "$tmp/err1")"
[[ $(stat -c %a "$sock") == 600 ]] && ok "socket mode 0600 without the group" \
  || fail "socket mode $(stat -c %a "$sock")"

"$controld" --socket "$sock" --state "$tmp/state2.db" --bpffs "$tmp/bpffs" 2>"$tmp/err2"
rc=$?
[[ $rc -eq 1 ]] && grep -q "another daemon answers on $sock" "$tmp/err2" \
  && ok "a second daemon on the same socket is refused" || fail "second daemon: exit $rc: $(cat "$tmp/err2")"

"$srl" filters --socket "$sock" >"$tmp/filters" 2>&1
rc=$?
[[ $rc -eq 0 ]] && grep -q "^tcpstream  *filter  *user " "$tmp/filters" \
  && ok "srl filters through the daemon" || fail "srl filters: exit $rc: $(cat "$tmp/filters")"
SRL_SOCKET=$sock "$srl" filters -j >"$tmp/filters.json" 2>&1
python3 -c 'import json,sys; f={x["name"]: x for x in json.load(open(sys.argv[1]))}; assert f["port"]["options"][0]["default"] == "any"' \
  "$tmp/filters.json" && ok "srl filters -j via SRL_SOCKET" || fail "srl filters -j: $(head -5 "$tmp/filters.json")"

# Every daemon command's -j output against its golden file
# (tests/controld/golden/*.json; SRL_UPDATE_GOLDEN=1 rewrites them), what
# differs from run to run (times, the caller, this test's directory) put
# in words first. A request over a capture, run to its end.
golden=$(cd "$(dirname "$0")" && pwd)/golden
python3 - "$tmp/in.pcap" <<'PY'
import struct, sys
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
for i, (proto, dport) in enumerate([(17, 53), (17, 53), (17, 123), (6, 22), (17, 53)]):
    l4 = (struct.pack("!HHHH", 40000, dport, 28, 0) + bytes(20) if proto == 17
          else struct.pack("!HHIIBBHHH", 40000, dport, 0, 0, 0x50, 2, 0, 0, 0))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                     bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + l4
    out.write(struct.pack("<IIII", i + 1, 0, len(frame), len(frame)) + frame)
PY
normalized() {  # the JSON on stdin, run-to-run differences in words
  python3 -c '
import json, sys
tmp = sys.argv[1]
def walk(x, key=None):
    if isinstance(x, dict): return {k: walk(v, k) for k, v in x.items()}
    if isinstance(x, list): return [walk(v) for v in x]
    if key in ("time", "applied_at") and isinstance(x, str): return "TIME"
    if key == "owner": return "OWNER"
    if key == "owner_uid": return "UID"
    if isinstance(x, str): return x.replace(tmp, "TMP")
    return x
print(json.dumps(walk(json.load(sys.stdin)), indent=2))' "$tmp"
}
"$srl" apply --socket "$sock" -n replay -j \
  -e "(pcapin, file=\"$tmp/in.pcap\") > (udp) > (port, which=dst) > (count, by=class, name=ports)" \
  >"$tmp/apply_j.raw" 2>"$tmp/apply_j_replay.err" || fail "apply replay: $(cat "$tmp/apply_j_replay.err")"
for _ in $(seq 100); do
  [[ $("$srl" show --socket "$sock" -j replay 2>/dev/null) == *'"state": "ended"'* ]] && break
  sleep 0.1
done
for cmd in "apply -j replay" "filters -j" "ls -j" "show -j replay" "stats -j replay"; do
  name=${cmd// /_}; name=${name//-/}
  if [[ $cmd == apply* ]]; then  # its output, kept above
    normalized <"$tmp/apply_j.raw" >"$tmp/$name.json"
  else
    # shellcheck disable=SC2086
    "$srl" $cmd --socket "$sock" 2>"$tmp/$name.err" | normalized >"$tmp/$name.json"
  fi
  if [[ -n ${SRL_UPDATE_GOLDEN:-} ]]; then
    cp "$tmp/$name.json" "$golden/$name.json"
  fi
  diff -u "$golden/$name.json" "$tmp/$name.json" >"$tmp/$name.diff" \
    && ok "srl $cmd: as its golden file" \
    || fail "srl $cmd: differs from golden/$name.json: $(head -20 "$tmp/$name.diff") $(cat "$tmp/$name.err")"
done
"$srl" rm --socket "$sock" replay >/dev/null 2>&1 || fail "rm replay"

kill -TERM "$pid"
wait "$pid"
rc=$?
[[ $rc -eq 0 ]] && ok "SIGTERM: exit 0" || fail "SIGTERM: exit $rc: $(cat "$tmp/err1")"
[[ ! -e $sock ]] && ok "socket removed" || fail "socket left behind"

"$srl" filters --socket "$sock" >/dev/null 2>"$tmp/err3"
rc=$?
[[ $rc -eq 1 ]] && grep -q "no controld socket at $sock (is controld running?" "$tmp/err3" \
  && ok "no daemon: srl filters says so" || fail "no daemon: exit $rc: $(cat "$tmp/err3")"

# The daemon commands are a module of their own: other commands never load
# gRPC, and without the module they still work while daemon commands say
# where they looked for it.
loaded=$(LD_DEBUG=files "$srl" run --help 2>&1 >/dev/null | grep -c 'file=.*libgrpc' || true)
[[ $loaded -eq 0 ]] && ok "srl run does not load gRPC" || fail "srl run loaded gRPC ($loaded)"
loaded=$(LD_DEBUG=files "$srl" ls --socket "$sock" 2>&1 >/dev/null | grep -c 'file=.*libgrpc' || true)
[[ $loaded -gt 0 ]] && ok "srl ls loads gRPC (the module)" || fail "srl ls did not load gRPC"
mkdir -p "$tmp/bin"
cp "$srl" "$tmp/bin/srl"
"$tmp/bin/srl" run --help >/dev/null 2>&1 && ok "without the module: srl run works" \
  || fail "without the module: srl run --help failed"
"$tmp/bin/srl" ls --socket "$sock" >/dev/null 2>"$tmp/err5"
rc=$?
[[ $rc -eq 1 ]] && grep -q "cannot load the daemon commands (srl-daemon-cli.so)" "$tmp/err5" \
  && grep -q "$tmp/bin/srl-daemon-cli.so: not there" "$tmp/err5" \
  && ok "without the module: srl ls says where it looked" || fail "without the module: exit $rc: $(cat "$tmp/err5")"

# --version, without the daemon commands' module (srl) and before any start.
for p in "$srl" "$controld"; do
  v=$("$p" --version 2>&1)
  [[ $? -eq 0 && $v =~ ^(srl|controld)\ [0-9]+\.[0-9]+\.[0-9]+$ ]] && ok "$(basename "$p") --version: $v" \
    || fail "$(basename "$p") --version: $v"
done

# Options from the configuration file.
cat >"$tmp/controld.conf" <<CONF
socket = "$tmp/conf.sock"
group = "srl-no-such-group"
state = "$tmp/conf.db"
bpffs = "$tmp/bpffs"
log-format = "json"
CONF
"$controld" --config "$tmp/controld.conf" 2>"$tmp/err4" &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do [[ -S $tmp/conf.sock ]] && break; sleep 0.05; done
"$srl" filters --socket "$tmp/conf.sock" >/dev/null 2>&1 && ok "options from --config" \
  || fail "--config: $(cat "$tmp/err4")"
# Without its group the socket is root's alone; another user is told so.
chmod 711 "$tmp"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$srl" ls --socket "$tmp/conf.sock" \
  >/dev/null 2>"$tmp/err7"
grep -q "Permission denied (it is root's alone, mode 0600.*groupadd --system srl" "$tmp/err7" \
  && ok "another user is told the socket is root's alone, and the fix" \
  || fail "another user on a 0600 socket: $(cat "$tmp/err7")"
kill -TERM "$pid"
wait "$pid"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1]) if l.strip()]' "$tmp/err4" \
  && grep -q '"event":"listening"' "$tmp/err4" && ok "JSON log lines" || fail "log: $(head -3 "$tmp/err4")"

# A key the daemon does not know stops the start, naming it.
printf 'socket = "%s"\nmax-requets = 3\n' "$tmp/typo.sock" >"$tmp/typo.conf"
timeout 10 "$controld" --config "$tmp/typo.conf" >"$tmp/out6" 2>"$tmp/err6"
rc=$?
[[ $rc -ne 0 && $rc -ne 124 && ! -e $tmp/typo.sock ]] && grep -q "max-requets" "$tmp/err6" "$tmp/out6" \
  && ok "an unknown key in --config stops the start: $(cat "$tmp/err6" "$tmp/out6" | head -1)" \
  || fail "unknown config key: exit $rc: $(cat "$tmp/err6" "$tmp/out6")"
# A group that does not exist: the socket is root's alone, said at start.
grep -q '"event":"no-group".*"group":"srl-no-such-group".*groupadd' "$tmp/err4" \
  && ok "a missing group is a warning with the fix" || fail "no warning for a missing group: $(head -3 "$tmp/err4")"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
