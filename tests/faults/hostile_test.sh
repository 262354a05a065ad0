#!/usr/bin/env bash
# Faults, cases 6, 7, 8, 9 and 11: hostile and careless callers.
#  - A 5000-term tcpdump expression: refused within its translation budget,
#    while other callers list and apply meanwhile (compiled outside the
#    manager's lock).
#  - A member is judged by their own nodes only: root's capture elsewhere on
#    the device does not refuse a member's count; `srl stats` as a member
#    names no other user's request; a member's capture is created 0600.
#  - The verifier's budget is a capacity in the plan: what does not fit in a
#    hook's program runs in userspace, a kernel part that cannot fit is
#    refused before any step, and every request on the hook can be removed.
#  - A dangling symbolic link in the user directory, planted to lead out
#    (to a directory the member could write): refused, nothing created there.
#  - A relative file path is refused (the daemon's working directory is
#    nobody's); invalid UTF-8 in a request file is reported with its place.
# Nothing is left behind. Needs root; exits 77 (skipped) without it.
# Usage: hostile_test.sh CONTROLD SRL
set -uo pipefail
. "$(dirname "$0")/lib.sh" srlh "$1" "$2"
trap 'stop_daemon; cleanup' EXIT
mkdir -p "$tmp/users" "$tmp/outside"
chown nobody:nogroup "$tmp/users" "$tmp/outside"
chmod 755 "$tmp"
daemon_args=(--user-dir "$tmp/users" --group nogroup --member-requests 3 --member-watches 1
  --member-kernel-insns 400 --verifier-admission 24000)
as_member() { setpriv --reuid=nobody --regid=nogroup --init-groups "$@"; }
quiet_srl() { ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$@"; }

snapshot
start_daemon || { summary; exit 1; }

# --- 6: one long expression stalls nobody ----------------------------------
# 800 alternatives take libpcap over 5 s (the time budget), 5000 more memory
# than the budget: the first runs in the background while the others call.
for n in 800 5000; do
  python3 -c "
print('(bpf, expr=\"' + ' or '.join('port %d' % (1000 + i) for i in range($n)) + '\") > (count)')" \
    >"$tmp/big$n.srl"
done
( start=$(date +%s%N)
  out=$("$srl" apply -n slow --dev vb "$tmp/big800.srl" 2>&1); rc=$?
  echo "$rc $(( ($(date +%s%N) - start) / 1000000 ))" >"$tmp/slow.rc"
  printf '%s\n' "$out" >"$tmp/slow.out" ) &
slow=$!
sleep 1
start=$(date +%s%N)
out=$("$srl" apply -n big --dev vb "$tmp/big5000.srl" 2>&1)
rc=$? ms=$(( ($(date +%s%N) - start) / 1000000 ))
[[ $rc -eq 1 && $out == *"exceeded its memory budget"* ]] \
  && ok "a 5000-term expression is refused within its memory budget (${ms} ms)" \
  || fail "the 5000-term expression: exit $rc after $ms ms: ${out:0:600}"
out=$(quiet_srl "$srl" ls 2>&1) && ok "ls answers while an 800-term expression is translated" \
  || fail "ls during the slow apply: $out"
out=$("$srl" apply -n small --dev vb -e '(udp) > (port, which=dst) 53> (count)' 2>&1) \
  && ok "another apply goes through meanwhile" || fail "apply during the slow apply: $out"
[[ -e /proc/$slow ]] && ok "(the 800-term apply was still translating meanwhile)" \
  || fail "the 800-term apply ended before the others called: no concurrency shown"
wait "$slow"
read -r rc ms <"$tmp/slow.rc"
[[ $rc -eq 1 && $(cat "$tmp/slow.out") == *"exceeded its time budget"* ]] \
  && ok "the 800-term expression is stopped at its time budget (${ms} ms)" \
  || fail "the 800-term expression: exit $rc after $ms ms: $(head -c 600 "$tmp/slow.out")"
[[ $(quiet_srl "$srl" ls -q 2>/dev/null | tr '\n' ' ') == "small " ]] && ok "only small is stored" \
  || fail "stored: $(quiet_srl "$srl" ls -q 2>&1)"

# --- 8: a member is judged by their own nodes ------------------------------
"$srl" apply -n rootcap --dev vb -e "(udp) > (port, which=dst) 54> (pcap, file=\"$tmp/root.pcap\")" \
  >/dev/null 2>&1 || fail "root's capture"
out=$(as_member "$srl" apply -n mycount --dev vb -e '(icmp) > (count)' 2>&1)
[[ $? -eq 0 ]] && ok "member: a count beside root's capture on the device is allowed" \
  || fail "member count beside root's capture: $out"
[[ $out != *root.pcap* ]] || fail "member was told root's capture path: $out"
out=$(as_member "$srl" apply -n mycap --dev vb \
  -e "(udp) > (port, which=dst) 55> (pcap, file=\"$tmp/users/mine.pcap\")" 2>&1)
[[ $? -eq 0 ]] && ok "member: a capture in the user directory" || fail "member capture: $out"
out=$(as_member "$srl" stats 2>&1)
[[ $out == *mycount* && $out != *rootcap* && $out != *small* ]] \
  && ok "member: stats names their requests only" || fail "member stats: $out"
mode=$(stat -c %a "$tmp/users/mine.pcap" 2>&1)
[[ $mode == 600 && $(stat -c %U "$tmp/users/mine.pcap") == nobody ]] \
  && ok "member: their capture is created 0600, theirs" || fail "member capture mode: $mode"
mode=$(stat -c %a "$tmp/root.pcap" 2>&1)
[[ $mode == 600 ]] && ok "root's capture through controld is created 0600" \
  || fail "root capture mode: $mode"
out=$(as_member "$srl" rm rootcap 2>&1)
[[ $? -eq 1 && $out == *"no request named rootcap of nobody"* ]] \
  && ok "member: another user's request is not theirs to know of" || fail "member rm rootcap: $out"

# --- quotas: requests kept, kernel instructions, Watch streams open ---------
out=$(as_member "$srl" apply -n q3 --dev vb -e '(tcp) > (count)' 2>&1) || fail "member third request: $out"
out=$(as_member "$srl" apply -n q4 --dev vb -e '(tcp) > (count)' 2>&1)
[[ $? -eq 1 && $out == *"keeps 3 requests, the most a user other than root may"* ]] \
  && ok "member: a fourth request is refused (--member-requests 3): ${out#*: }" \
  || fail "member fourth request: $out"
as_member "$srl" rm q3 >/dev/null 2>&1 || fail "member rm q3"
out=$(as_member "$srl" apply -n q4 --dev vb -e '(tcp) > (count)' 2>&1) \
  && ok "member: with one removed, another goes in" || fail "member q4 after rm: $out"
as_member "$srl" rm q4 >/dev/null 2>&1 || fail "member rm q4"
wide=$(python3 -c "print(' or '.join('port %d' % (7000 + i) for i in range(20)))")
out=$(as_member "$srl" apply -n q5 --dev vb -e "(bpf, expr=\"$wide\") > (count)" 2>&1)
[[ $? -eq 1 && $out == *"the most a user other than root may is 400"* ]] \
  && ok "member: an expression past their kernel instructions is refused (--member-kernel-insns 400): ${out#*: }" \
  || fail "member kernel instructions: $out"
out=$(as_member "$srl" apply -n q5 --dev vb -e "(bpf, expr=\"$wide\", space=user) > (count)" 2>&1) \
  && ok "member: the same expression pinned in userspace goes in" \
  || fail "member expression in userspace: $out"
as_member "$srl" rm q5 >/dev/null 2>&1 || fail "member rm q5"
# (setpriv execs timeout, so $! is the process that passes a kill on to srl)
setpriv --reuid=nobody --regid=nogroup --init-groups \
  timeout 6 "$srl" stats -w --interval 0.001 mycount >"$tmp/watch1" 2>&1 &
watcher=$!
sleep 2
out=$(as_member timeout 5 "$srl" stats -w mycount 2>&1)
[[ $out == *"watches open, the most a user other than root may"* ]] \
  && ok "member: a second watch is refused (--member-watches 1)" || fail "member second watch: $out"
reports=$(grep -c "^at " "$tmp/watch1")
((reports >= 5 && reports <= 30)) \
  && ok "member: a watch asked every 1 ms reports at the members' shortest interval ($reports reports in ~2 s)" \
  || fail "member watch reports: $reports in ~2 s: $(head -5 "$tmp/watch1")"
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
for _ in 1 2 3 4 5 6; do  # the daemon sees the stream end within its next report
  out=$(as_member timeout 2 "$srl" stats -w mycount 2>&1)
  [[ $out == *"watches open"* ]] || break
  sleep 0.5
done
[[ $out != *"watches open"* && $out == *mycount* ]] && ok "member: once it ended, a new watch is let in" \
  || fail "member watch after the first ended: $out"

# --- 9: a dangling symbolic link does not lead out -------------------------
ln -s "$tmp/outside/escaped.pcap" "$tmp/users/link.pcap"
out=$(as_member "$srl" apply -n escape --dev vb \
  -e "(udp) > (port, which=dst) 56> (pcap, file=\"$tmp/users/link.pcap\")" 2>&1)
rc=$?
[[ $rc -eq 1 && ! -e $tmp/outside/escaped.pcap ]] \
  && ok "member: a dangling link out of the user directory is refused, nothing created: ${out##*: }" \
  || fail "member dangling link: exit $rc, created: $(ls "$tmp/outside"): $out"
ln -s /etc "$tmp/users/etc"
out=$(as_member "$srl" apply -n escape --dev vb \
  -e "(udp) > (port, which=dst) 56> (pcap, file=\"$tmp/users/etc/srl-escaped.pcap\")" 2>&1)
[[ $? -eq 1 && ! -e /etc/srl-escaped.pcap ]] && ok "member: a directory link out is refused" \
  || fail "member directory link: $out"
rm -f /etc/srl-escaped.pcap

# --- 7: the verifier's budget is a capacity --------------------------------
# Planned within 24,000 verifier instructions (--verifier-admission): the
# plan bounds a hook program's work from above (~11,000 here for the parse,
# the exits and the filters' first use, ~8,000 for a union of 20 prefixes;
# docs/optimizer.md). A request whose kernel part alone cannot fit (60
# prefixes pinned to TC; one program holds a device's XDP and TC nodes) is
# refused by the plan, before any step, saying why. Of three unions of 20 prefixes, those that fit run in the
# kernel and the others in userspace; no program is refused at load. Every
# request can be removed, in any order.
python3 -c "
print(' or '.join('(addr, net=10.%d.%d.0/24, which=src, space=tc)' % (j % 250, 90 + j // 250) for j in range(60)) + ' > (count)')" \
  >"$tmp/pinned.srl"
out=$("$srl" apply -n pinned --dev vb "$tmp/pinned.srl" 2>&1); rc=$?
((rc == 1)) && [[ $out == *"of the verifier's instructions"* && $out == *"it may take 24000"* ]] \
  && ok "verifier budget: a kernel part that cannot fit is refused by the plan: ${out:0:400}" \
  || fail "verifier budget: pinned: exit $rc: ${out:0:600}"
for i in 1 2 3; do
  python3 -c "
print(' or '.join('(addr, net=10.%d.%d.0/24, which=src)' % (j % 250, $i * 10 + j // 250) for j in range(20)) + ' > (count)')" \
    >"$tmp/wide$i.srl"
done
refused=""
for i in 1 2 3; do
  out=$("$srl" apply -n "wide$i" --dev vb "$tmp/wide$i.srl" 2>&1) || refused+=" wide$i: ${out:0:400}"
done
# Where each union runs now: the plan of the whole hook chooses which.
spaces=$(quiet_srl "$srl" ls -j 2>/dev/null | python3 -c '
import json, sys
print(" ".join(n["space"] for r in json.load(sys.stdin) if r["name"].startswith("wide")
               for n in r["nodes"] if n["filter"] == "union"))')
[[ -z $refused && $spaces == *user* && $spaces == *vb* ]] \
  && ok "verifier budget: unions in the kernel while they fit, the others in userspace: $spaces" \
  || fail "verifier budget: unions placed $spaces; refused:$refused"
[[ $(quiet_srl "$srl" ls -q 2>/dev/null | grep -c '^wide\|^pinned') -eq 3 ]] \
  && ok "verifier budget: the refused request is not stored" \
  || fail "verifier budget: stored $(quiet_srl "$srl" ls -q 2>&1 | tr '\n' ' ')"
for i in 2 1 3; do
  out=$("$srl" rm "wide$i" 2>&1) || fail "verifier budget: rm wide$i: $out"
done
[[ $(quiet_srl "$srl" ls -q 2>/dev/null | grep -c '^wide') -eq 0 ]] \
  && ok "verifier budget: every wide union removed" || fail "verifier budget: left after rm"

# --- 11: relative paths, invalid UTF-8 -------------------------------------
out=$("$srl" apply -n rel --dev vb -e '(udp) > (pcap, file="../../srl-relative.pcap")' 2>&1)
[[ $? -eq 1 && $out == *"is a relative path"* ]] && ok "a relative file path is refused: ${out##*: }" \
  || fail "relative path: $out"
printf '(udp) > (count, name="caf\xe9")\n' >"$tmp/latin1.srl"
out=$("$srl" apply -n latin1 --dev vb "$tmp/latin1.srl" 2>&1)
[[ $? -eq 1 && $out == "$tmp/latin1.srl:1:26: error: invalid UTF-8 byte 0xE9"* ]] \
  && ok "invalid UTF-8 is reported with its place: $out" || fail "invalid UTF-8: $out"

for r in small rootcap; do "$srl" rm "$r" >/dev/null 2>&1 || fail "rm $r"; done
for r in mycount mycap; do as_member "$srl" rm "$r" >/dev/null 2>&1 || fail "member rm $r"; done
stop_daemon
nothing_left "the hostile callers' test"
summary
