#!/usr/bin/env bash
# One hook's program as its requests grow: 1, 10, 50 and 100 requests with
# a tcpdump expression each (tests/support/tcpdump_expressions.h), in one
# run (needs root; takes /tmp/srl-live.lock).
#   1. verifier_bench: the verifier's instructions and the load time of the
#      merged program at XDP and TC, with clang's time and the optimizer's
#      bound beside them (median of 3);
#   2. controld on a veth pair in namespaces of its own (program cache of its
#      own, so the first deploy of each program compiles it): apply latency of
#      the k-th request while k - 1 are there (a program never compiled:
#      new), the removals newest first, the same applies again (cached) and
#      removals again, against `ip link set xdp obj` / `off` with a
#      hand-written program (bench/bpf/handwritten.c).
# Usage: verifier_scale.sh BUILD_DIR [OUT.csv]
set -uo pipefail
[[ $# -ge 1 ]] || { sed -n '2,14p' "$0"; exit 2; }
if [[ -z ${VERIFIER_SCALE_LOCKED:-} ]]; then
  VERIFIER_SCALE_LOCKED=1 exec flock -w 1800 /tmp/srl-live.lock "$0" "$@"
fi
build=$(realpath "$1")
out=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
controld=$build/controld/controld srl=$build/cli/srl load=$build/bench/controld_load
. "$here/../tests/live/lib.sh" srlvs
make_hosts
echo "commit $(git -C "$here" describe --always --dirty), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"

echo "== the verifier and the load, in process"
"$build/bench/verifier_bench" --csv | tee "$tmp/verifier.csv" | column -ts,

echo "== apply and remove through controld (gRPC, Unix socket)"
export SRL_SOCKET=$tmp/controld.sock
ip netns exec "$b" "$controld" --socket "$SRL_SOCKET" --state "$tmp/state.db" --bpffs "$bpffs" \
  --cache "$tmp/cache" 2>>"$tmp/controld.log" &
dpid=$!
for _ in $(seq 100); do
  [[ -S $SRL_SOCKET ]] && "$srl" ls -q >/dev/null 2>&1 && break
  sleep 0.05
done
"$load" fill --socket "$SRL_SOCKET" --dev vb --requests 100 --json >"$tmp/fill.json" \
  || { fail "controld_load fill: $(tail -3 "$tmp/controld.log")"; exit 1; }
python3 - "$tmp/fill.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'k':>4} {'apply new ms':>13} {'apply cached ms':>16} {'remove ms':>10} {'again ms':>9}")
for r in d["rows"]:
    print(f"{r['k']:>4} {r['apply_new_ms']:>13.1f} {r['apply_cached_ms']:>16.1f} {r['remove_ms']:>10.1f} {r['remove_again_ms']:>9.1f}")
cached = d["apply_cached_ms_by_k"]
for lo in range(0, len(cached), 10):
    part = cached[lo:lo + 10]
    print(f"apply cached, k = {lo + 1}-{lo + len(part)}: median {sorted(part)[len(part) // 2]:.1f} ms, max {max(part):.1f} ms")
PY
grep -o "verified in [0-9]* of" "$tmp/controld.log" | tail -1 | sed 's/^/controld, last program: /'
stop_daemon
[[ -z $(pins) ]] && ok "no pins left" || fail "pins left: $(pins)"

obj=$tmp/handwritten.o
clang -O2 -g -target bpf -mcpu=v3 -I"/usr/include/$(uname -m)-linux-gnu" \
  -c "$here/bpf/handwritten.c" -o "$obj"
on=() off=()
for _ in $(seq 20); do
  t0=$(date +%s%N); ip -n "$b" link set dev vb xdp obj "$obj" sec xdp; t1=$(date +%s%N)
  ip -n "$b" link set dev vb xdp off; t2=$(date +%s%N)
  on+=($(((t1 - t0) / 1000))) off+=($(((t2 - t1) / 1000)))
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[int((NR+1)/2)]/1000}'; }
echo "ip link set xdp obj (hand-written, precompiled): $(med "${on[@]}") ms; xdp off: $(med "${off[@]}") ms (median of 20)"

if [[ -n $out ]]; then
  python3 - "$tmp/verifier.csv" "$tmp/fill.json" "$(med "${on[@]}")" "$(med "${off[@]}")" \
    "$(git -C "$here" describe --always --dirty)" >"$out" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fill = {r["k"]: r for r in json.load(open(sys.argv[2]))["rows"]}
print("commit,requests,hook,verified_insns,bound_insns,load_ms,clang_ms,apply_new_ms,apply_cached_ms,remove_ms,ip_xdp_on_ms,ip_xdp_off_ms")
for r in rows:
    f = fill.get(int(r["requests"]), {})
    print(",".join(str(x) for x in [sys.argv[5], r["requests"], r["hook"], r["verified_insns"], r["bound_insns"], r["load_ms"], r["compile_ms"],
          f.get("apply_new_ms", ""), f.get("apply_cached_ms", ""), f.get("remove_ms", ""), sys.argv[3], sys.argv[4]]))
PY
  echo "written: $out"
fi
summary
