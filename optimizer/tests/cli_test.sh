#!/usr/bin/env bash
# The optimizer's commands: srl plan, srl spaces, srl calibrate. Uses the
# scenario models, so nothing depends on this machine except calibrate.
set -euo pipefail
srl=${1:?usage: cli_test.sh PATH/TO/srl SCENARIO_DIR}
dir=${2:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
models=$dir/models

# Table: header, the node lines, baselines, solver line.
out=$("$srl" plan --no-profile --model "$models/two-cores.json" --dev eth0 -e '(tcp) > (http) > (print)')
[[ $out == "node  name            filter  space"* ]] || fail "plan table header: $out"
[[ $out == *"n1    tcp             tcp     xdp:eth0"* ]] || fail "tcp not in xdp:eth0: $out"
[[ $out == *"n2    tcp>http        http    user:"* ]] || fail "http's name: $out"
[[ $out == *"baseline all-user"* && $out == *"solver: GLPK optimal"* ]] || fail "plan footer: $out"

# JSON and DOT.
"$srl" plan --no-profile --model "$models/two-cores.json" --dev eth0 -j -e '(udp) > (dns) > (count)' >"$tmp/p.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["srl_plan_version"]==1 and j["nodes"][2]["filter"]=="dns" and j["nodes"][3]["name"]=="udp>dns>count"' "$tmp/p.json" ||
  fail "plan JSON"
"$srl" plan --no-profile --model "$models/two-cores.json" --dev eth0 --placement -e '(udp) > (dns) > (count)' >"$tmp/pl.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["srl_placement_version"]==1 and j["hooks"]["eth0"]["hook"] in ("xdp","tc") and [n["space"] for n in j["nodes"]][2:]==["user","user"] and j["workers"]==1' "$tmp/pl.json" ||
  fail "srl plan --placement: $(cat "$tmp/pl.json")"
dot=$("$srl" plan --no-profile --model "$models/smartnic.json" --dev eth0 --dot -e '(ipv4) > (udp) > (port) 53> (dns)')
[[ $dot == "digraph plan {"* && $dot == *"subgraph cluster_"* && $dot == *'label="offload:eth0'* ]] || fail "plan DOT: $dot"

# Several requests at once share their common prefix.
echo '(tcp) > (port) 22> (count)' >"$tmp/a.srl"
echo '(tcp) > (port) 80> (count)' >"$tmp/b.srl"
"$srl" plan --no-profile --model "$models/two-cores.json" --dev eth0 -j "$tmp/a.srl" "$tmp/b.srl" >"$tmp/ab.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j["nodes"])==5 and j["nodes"][1]["members"]==["r1/n1","r2/n1"]' "$tmp/ab.json" ||
  fail "shared prefix"

# Objectives.
"$srl" plan --no-profile --model "$models/two-cores.json" --dev eth0 --objective throughput -j \
  -e '(tcp) > ((match, pattern="a") | (match, pattern="b"))' >"$tmp/t.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["objective"]["kind"]=="throughput" and j["objective"]["sustainable_rate_pps"]>0' "$tmp/t.json" ||
  fail "throughput objective"

# Errors: compile error (1), placement error (1), bad model (2), usage (2).
set +e
"$srl" plan --no-profile --model "$models/two-cores.json" -e '(tcp) >' 2>"$tmp/err"; rc=$?
[[ $rc == 1 ]] || fail "compile error exit $rc"
"$srl" plan --no-profile --model "$models/two-cores.json" --dev eth0 -e '(http) > (count, space=xdp)' 2>"$tmp/err"; rc=$?
[[ $rc == 1 ]] && grep -q "cannot place n1 (http)" "$tmp/err" || fail "placement error exit $rc: $(cat "$tmp/err")"
echo '{"srl_model_version": 1, "spaces": [{"id": "x", "kind": "gpu"}]}' >"$tmp/bad.json"
"$srl" plan --no-profile --model "$tmp/bad.json" -e '(tcp)' 2>"$tmp/err"; rc=$?
[[ $rc == 2 ]] && grep -q 'spaces\[0\].kind: unknown kind "gpu"' "$tmp/err" || fail "bad model exit $rc: $(cat "$tmp/err")"
"$srl" plan --objective fastest -e '(tcp)' 2>/dev/null; rc=$?
[[ $rc == 2 ]] || fail "usage error exit $rc"
set -e

# spaces: a model file round-trips through --save.
"$srl" spaces --no-profile --model "$models/two-nics.json" --save "$tmp/m.json" >"$tmp/m.txt"
grep -q "xdp:eth1" "$tmp/m.txt" || fail "spaces table"
"$srl" spaces --no-profile --model "$tmp/m.json" -j >"$tmp/m2.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); assert a["spaces"]==b["spaces"] and a["channels"]==b["channels"]' \
  "$tmp/m.json" "$tmp/m2.json" || fail "spaces --save round trip"

# spaces: the table and -j of a model file as their golden files
# (tests/golden/spaces.{txt,json}; SRL_UPDATE_GOLDEN=1 rewrites them).
golden=$(cd "$(dirname "$0")" && pwd)/golden
"$srl" spaces --no-profile --model "$models/two-nics.json" | sed "s|$models/||" >"$tmp/spaces.txt"
"$srl" spaces --no-profile --model "$models/two-nics.json" -j >"$tmp/spaces.json"
for f in spaces.txt spaces.json; do
  [[ -n ${SRL_UPDATE_GOLDEN:-} ]] && cp "$tmp/$f" "$golden/$f"
  diff -u "$golden/$f" "$tmp/$f" >"$tmp/diff" || fail "srl spaces: differs from golden/$f: $(head -20 "$tmp/diff")"
done

# calibrate writes a profile that plan then uses.
"$srl" calibrate --no-bpf --seconds 0.02 -o "$tmp/profile.json" >/dev/null
out=$("$srl" plan --profile "$tmp/profile.json" --model "$models/two-cores.json" --dev eth0 -e '(tcp) > (count)')
[[ $out == *"costs: profile of"* ]] || fail "plan did not use the profile: $out"
echo "srl plan/spaces/calibrate: all checks passed"
