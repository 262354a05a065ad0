#!/usr/bin/env bash
# The first hour, from an installed tree: `cmake --install` into a staging
# directory (DESTDIR) puts the programs, the daemon commands' module, man
# pages, the systemd unit (with the installed paths), the documentation and
# the examples in place; the installed srl finds its module; and the
# README's first request, run by the installed srl on test hosts (its
# device swapped for theirs), counts what it should. The default device
# rule too: the only Ethernet device that is up, said on stderr.
# Needs root (test hosts); exits 77 without it.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(realpath "$1") src=$(realpath "$2")
srl=$build/cli/srl  # lib.sh's leftover checks
. "$(dirname "$0")/../live/lib.sh" srli
stage=$tmp/stage

out=$(DESTDIR=$stage cmake --install "$build" 2>&1)
[[ $? -eq 0 ]] && ok "cmake --install into a staging directory" || fail "cmake --install: $out"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
root=$stage$prefix
for f in bin/srl bin/srlc bin/controld share/man/man1/srl.1 share/man/man1/srlc.1 \
         share/man/man8/controld.8 lib/systemd/system/controld.service \
         share/doc/srl/README.md share/doc/srl/docs/counters.md \
         share/doc/srl/examples/ssh-attempts.srl share/bash-completion/completions/srl; do
  [[ -s $root/$f ]] && ok "installed: $f" || fail "not installed: $f"
done
module=$(find "$root" -name 'srl-daemon-cli.so' | head -1)
[[ -n $module ]] && ok "installed: the daemon commands' module (${module#"$root"/})" \
  || fail "no srl-daemon-cli.so under $root"
grep -q "^ExecStart=$prefix/bin/controld " "$root/lib/systemd/system/controld.service" \
  && ok "the unit starts the installed controld ($prefix/bin/controld)" \
  || fail "unit: $(grep ExecStart "$root/lib/systemd/system/controld.service")"
man -l "$root/share/man/man1/srl.1" 2>/dev/null | grep -q "srl stats \[OPTIONS\]" \
  && ok "srl(1) holds every subcommand's help" || fail "srl(1): no 'srl stats' usage in it"
[[ $("$root/bin/srl" --version) == "srl "* && $("$root/bin/controld" --version) == "controld "* ]] \
  && ok "--version" || fail "--version: $("$root/bin/srl" --version)"
# The module found beside the installed program: a daemon command runs and
# says there is no daemon (instead of failing to load).
out=$(SRL_SOCKET=$tmp/none.sock "$root/bin/srl" ls 2>&1)
[[ $out == *"no controld socket at $tmp/none.sock"* ]] && ok "installed srl loads its module" \
  || fail "installed srl ls: $out"
out=$("$root/bin/controld" --bogus 2>&1)
[[ $? -eq 2 ]] && ok "controld: an unknown option exits 2, as every command" \
  || fail "controld --bogus: exit $? ($out)"

# The README's first request, on vb instead of eth0.
first=$(grep -m1 "^srl run --dev eth0 " "$src/README.md")
[[ -n $first ]] || fail "README.md has no 'srl run --dev eth0 ...' line"
expr=$(sed -n "s/^srl run --dev eth0 -e '\(.*\)'$/\1/p" <<<"$first")
counter=$(grep -o 'name=[a-z_]*' <<<"$expr" | tail -1 | cut -d= -f2)
make_hosts
ip netns exec "$a" ping -c 1 -W 2 10.77.0.2 >/dev/null || { echo "no connectivity" >&2; exit 1; }
run_first() {  # ARGS...: the installed srl, the README's request, 30 + 10 datagrams
  ip netns exec "$b" "$root/bin/srl" run "$@" --bpffs "$bpffs" --duration 4 -j -e "$expr" \
    >"$tmp/out" 2>"$tmp/err" &
  local pid=$!
  for _ in $(seq 100); do tc_attached || xdp_attached && break; sleep 0.1; done
  send_dns 30 10
  wait "$pid"
}
snapshot
run_first --dev vb
python3 -c '
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
n = next(n for n in last["nodes"] if n["name"] == sys.argv[2])
assert last["final"] and n["blocks"] == 30, n
' "$tmp/out" "$counter" && ok "the README's first request: $counter counted 30 of 30 ($expr)" \
  || fail "the README's first request: $(tail -c 400 "$tmp/out") $(tail -3 "$tmp/err")"
nothing_left "the README's first request"
run_first
grep -q "receiving on vb, the only Ethernet device that is up" "$tmp/err" \
  && ok "no --dev: the only Ethernet device that is up, said" || fail "no --dev: $(cat "$tmp/err")"
nothing_left "no --dev"
summary
