#!/usr/bin/env bash
# Command-line behaviour of srlc: exit codes, input sources, output forms.
# Usage: srlc_test.sh SRLC REPO_ROOT
set -uo pipefail
srlc=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect_rc RC DESCRIPTION -- COMMAND...
expect_rc() {
  local want=$1 what=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [[ $got -eq $want ]]; then ok; else fail "$what: exit $got, expected $want; stderr: $(head -3 "$tmp/err")"; fi
}
expect_in() {  # expect_in FILE TEXT DESCRIPTION
  if grep -qF -- "$2" "$1"; then ok; else fail "$3: '$2' not in $(basename "$1"): $(head -5 "$1")"; fi
}

expect_rc 0 "compile -e" -- "$srlc" -e '(tcp) > (port) 22> (count)'
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["srl_dag_version"]==1 and len(d["nodes"])==4' "$tmp/out" && ok || fail "-e JSON is not the DAG"

expect_rc 1 "compile error" -- "$srlc" -e '(tcp) > (tpc)'
expect_in "$tmp/err" "<expr>:1:10: error: unknown filter 'tpc'; did you mean 'tcp'?" "-e input is named <expr>"
[[ ! -s $tmp/out ]] && ok || fail "nothing on stdout after a compile error"

printf '(udp) >\n  (dns, bad=1)\n' >"$tmp/req.srl"
expect_rc 1 "file with error" -- "$srlc" "$tmp/req.srl"
expect_in "$tmp/err" "$tmp/req.srl:2:9: error: unknown option 'bad'" "file name and position"

echo '(tcp) > (count)' | "$srlc" - >"$tmp/out" 2>"$tmp/err" && ok || fail "stdin"
echo '(tcp) > (tpc)' | "$srlc" - >/dev/null 2>"$tmp/err"
expect_in "$tmp/err" "<stdin>:1:10" "stdin is named <stdin>"

expect_rc 2 "no input" -- "$srlc"
expect_rc 2 "both file and -e" -- "$srlc" "$tmp/req.srl" -e '(tcp)'
expect_rc 2 "missing file" -- "$srlc" "$tmp/nosuch.srl"
expect_in "$tmp/err" "cannot read" "missing file message"
expect_rc 2 "bad --emit" -- "$srlc" --emit=xml -e '(tcp)'
expect_rc 2 "unknown flag" -- "$srlc" --frobnicate -e '(tcp)'
expect_rc 2 "unknown pass" -- "$srlc" --dump-after=nosuch -e '(tcp)'
expect_rc 0 "--help" -- "$srlc" --help
expect_in "$tmp/out" "--emit" "--help lists options"
expect_rc 0 "--version" -- "$srlc" --version
grep -Eqx 'srlc [0-9]+\.[0-9]+\.[0-9]+' "$tmp/out" && ok || fail "--version: $(cat "$tmp/out")"

expect_rc 0 "warning alone" -- "$srlc" -e '(tcp) 22> (count)'
expect_in "$tmp/err" "warning: selector '22>' never matches" "warning printed"
expect_rc 1 "-Werror" -- "$srlc" -Werror -e '(tcp) 22> (count)'
expect_rc 1 "--Werror" -- "$srlc" --Werror -e '(tcp) 22> (count)'

expect_rc 0 "--emit=dag" -- "$srlc" --emit=dag --dev veth0 -e '(tcp) > (count)'
expect_in "$tmp/out" "n0  rx" "dag table lists the implicit rx"
expect_in "$tmp/out" 'dev="veth0"' "--dev reaches the implicit rx"
expect_rc 0 "--emit=dot" -- "$srlc" --emit=dot -e '(port) 22> (count)'
expect_in "$tmp/out" 'n1 -> n2 [label="22"]' "dot edge label"
expect_rc 0 "--emit=ast" -- "$srlc" --emit=ast -e '(tcp) > (count)'
expect_in "$tmp/out" '"kind": "seq"' "ast JSON"
expect_rc 0 "--emit=srl" -- "$srlc" --emit=srl -e '(tcp)>(port)   443,22>(count)'
expect_in "$tmp/out" "(tcp) > (port) 22,443> (count);" "canonical text"

expect_rc 0 "-o" -- "$srlc" -o "$tmp/dag.json" -e '(tcp) > (count)'
[[ -s $tmp/dag.json && ! -s $tmp/out ]] && ok || fail "-o writes the file, not stdout"
expect_rc 2 "-o unwritable" -- "$srlc" -o "$tmp/no/such/dir/x.json" -e '(tcp)'

expect_rc 0 "--list-passes" -- "$srlc" --list-passes
[[ $(head -1 "$tmp/out" | cut -f1) == parse && $(tail -1 "$tmp/out" | cut -f1) == canonicalize ]] && ok || fail "pass list order"
expect_rc 0 "--dump-after=lower" -- "$srlc" --dump-after=lower -e '(tcp) > (count)'
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["nodes"])==2, d' "$tmp/out" && ok || fail "lower dump has no implicit source yet"
expect_rc 0 "--dump-after=all" -- "$srlc" --dump-after=all -e '(tcp) > (count)'
[[ $(wc -l <"$tmp/out") -eq 9 ]] && ok || fail "one JSON line per pass"

expect_rc 0 "--filters" -- "$srlc" --filters
expect_in "$tmp/out" "tcpstream" "--filters table"
expect_rc 0 "--filters json" -- "$srlc" --filters --emit=json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["filters"])>=37' "$tmp/out" && ok || fail "--filters JSON"

expect_rc 1 "json diagnostics" -- "$srlc" --diagnostics-format=json -e '(tcp) > (tpc)'
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[0]["line"]==1 and d[0]["col"]==10' "$tmp/err" && ok || fail "JSON diagnostics"

# Every example compiles cleanly.
for f in "$root"/examples/*.srl; do
  expect_rc 0 "example $(basename "$f")" -- "$srlc" -Werror --dev veth0 "$f"
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
